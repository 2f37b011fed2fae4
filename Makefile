# skrd: every build, check and test entry point. `.ci/run` calls `make test`.
# Run `make help` for the list. Targets that install packages need root (or sudo).

SHELL := /bin/bash
CARGO ?= cargo
PREFIX ?= /usr
DESTDIR ?=
FUZZ_SECONDS ?= 10

# Debian 12 packages: to build (tss-esapi needs tpm2-tss headers + clang for bindgen) and to test
# (swtpm is the TPM of every TPM test; python3-cryptography and openssl establish expected values
# independently of skrd's own code).
BUILD_DEBS := build-essential pkg-config clang libclang-dev libtss2-dev libcryptsetup-dev
TEST_DEBS  := swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0 libtss2-tcti-device0 openssl \
              python3 python3-cryptography cryptsetup-bin dbus dbus-bin systemd util-linux \
              qemu-system-x86 linux-image-amd64 dracut-core dracut-network socat cpio zstd curl \
              cryptsetup
# Only for `make bench-boot` (the clevis + tang side of the boot bench), never for `make test`.
BENCH_DEBS := clevis clevis-luks clevis-dracut clevis-systemd tang
FUZZ_TARGETS = $(shell sed -n 's/^name = "\(fuzz_[a-z0-9_]*\)"/\1/p' fuzz/Cargo.toml)

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps build check fmt-check clippy check-boundaries unit test fuzz-smoke fuzz \
        e2e demo demo-evidence bench-emulator bench-flow bench-daemon bench-boot install clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

deps: ## Install the Debian packages and cargo-fuzz that are missing (apt-get)
	@missing=$$(for p in $(BUILD_DEBS) $(TEST_DEBS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	    echo "make deps: installing $$missing"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make deps: all Debian packages present"; fi
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz

build: ## Build every binary, test and bench
	$(CARGO) build --locked --all-targets

fmt-check:
	$(CARGO) fmt --check

clippy:
	$(CARGO) clippy --locked --all-targets -- -D warnings

check-boundaries: ## Pure format and crypto code may not do I/O
	@if grep -rnE '\b(tokio|reqwest|tss_esapi|libcryptsetup_rs|zbus|std::fs|std::net|std::process|SystemTime|Instant::now)\b' src/format src/crypto; then \
	    echo "check-boundaries: src/format and src/crypto must stay pure (no I/O, no clock)"; exit 1; fi
	@echo "check-boundaries: src/format and src/crypto are pure"

check: fmt-check clippy check-boundaries ## fmt + clippy + boundaries

unit: ## cargo test (unit, integration against swtpm, CLI tests)
	$(CARGO) test --locked --all-targets

test: deps build check unit e2e fuzz-smoke ## What CI runs: install what is missing, build, every test
	@echo "make test: all checks passed"

fuzz-smoke: ## Run every fuzz target for FUZZ_SECONDS each
	@for t in $(FUZZ_TARGETS); do \
	    echo "fuzz-smoke: $$t ($(FUZZ_SECONDS) s)"; \
	    scripts/fuzz-seeds.sh $$t; \
	    RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	        >fuzz/$$t.log 2>&1 || { tail -40 fuzz/$$t.log; exit 1; }; \
	    grep -E '^Done [0-9]+ runs' fuzz/$$t.log || true; \
	done

fuzz: ## Fuzz one target for longer: make fuzz T=fuzz_snp_report FUZZ_SECONDS=600
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $(T) -- -max_total_time=$(FUZZ_SECONDS)

e2e: ## QEMU boot: initramfs with dracut/90skrd, swtpm, skr-emulator; unlock, outage, forged evidence
	$(CARGO) build --locked --bins
	./tests/e2e/run.sh

demo: deps ## Boot a VM in QEMU whose LUKS volumes skrd unlocks; print the guest's skrctl volumes + state
	$(CARGO) build --locked --bins
	./scripts/demo.sh

demo-evidence: deps ## Provision a swtpm like an Azure CVM and show what `skrctl evidence` finds
	$(CARGO) build --locked --bins
	./scripts/demo-evidence.sh

bench-emulator: ## Release requests/s and p50/p99 latency of skr-emulator on loopback (not part of test)
	./scripts/bench-release.sh

bench-flow: ## One complete vTPM release against skr-emulator + swtpm at L = 0 and 50 ms per call: per-step times, network/(2L)
	$(CARGO) bench --locked --profile dev --bench flow

bench-daemon: ## ReleaseKey of a cached key over D-Bus: p50/p99, req/s on 2 cores, idle RSS, binary size (not part of test)
	./scripts/bench-daemon.sh

bench-boot: deps ## 4 volumes at boot: skrd vs clevis + tang (QEMU), initramfs size, KDF (not part of test)
	@missing=$$(for p in $(BENCH_DEBS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	    echo "make bench-boot: installing $$missing"; \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(CARGO) build --locked --bins
	$(CARGO) build --locked --release --bins
	./scripts/bench-boot.sh

install: ## Install binaries, config, man pages, unit and D-Bus files under DESTDIR/PREFIX
	$(CARGO) build --locked --release --bins
	install -Dm0755 target/release/skrd $(DESTDIR)$(PREFIX)/sbin/skrd
	install -Dm0755 target/release/skrctl $(DESTDIR)$(PREFIX)/bin/skrctl
	install -Dm0755 target/release/skr-emulator $(DESTDIR)$(PREFIX)/bin/skr-emulator
	install -Dm0644 config/skrd.toml $(DESTDIR)/etc/skrd/skrd.toml
	install -d $(DESTDIR)/etc/skrd/skrd.toml.d
	install -Dm0644 systemd/skrd.service $(DESTDIR)$(PREFIX)/lib/systemd/system/skrd.service
	install -Dm0644 systemd/skrd-initrd.service $(DESTDIR)$(PREFIX)/lib/systemd/system/skrd-initrd.service
	install -Dm0644 systemd/skrd-initrd.socket $(DESTDIR)$(PREFIX)/lib/systemd/system/skrd-initrd.socket
	install -Dm0644 systemd/systemd-cryptsetup@.service.d/skrd-header.conf \
	    $(DESTDIR)$(PREFIX)/lib/systemd/system/systemd-cryptsetup@.service.d/skrd-header.conf
	install -d $(DESTDIR)$(PREFIX)/lib/dracut/modules.d/90skrd
	for f in dracut/90skrd/*; do \
	    install -m0$$( [ -x $$f ] && echo 755 || echo 644 ) -D "$$(readlink -f $$f)" \
	        $(DESTDIR)$(PREFIX)/lib/dracut/modules.d/90skrd/$$(basename $$f); done
	install -Dm0644 dbus/org.skrd.KeyRelease1.conf $(DESTDIR)$(PREFIX)/share/dbus-1/system.d/org.skrd.KeyRelease1.conf
	install -Dm0644 dbus/org.skrd.KeyRelease1.service $(DESTDIR)$(PREFIX)/share/dbus-1/system-services/org.skrd.KeyRelease1.service
	install -Dm0644 dbus/org.skrd.KeyRelease1.xml $(DESTDIR)$(PREFIX)/share/dbus-1/interfaces/org.skrd.KeyRelease1.xml
	for m in docs/man/*.[0-9]; do \
	    s=$${m##*.}; install -Dm0644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/$$(basename $$m); done

clean:
	$(CARGO) clean

#!/usr/bin/env bash
# Release benchmark of skr-emulator (issue 5 "Bench"; PROTOCOLS.md §5.2, §6.1-§6.4): starts
# `skr-emulator serve` on a fresh state directory, gets an IMDS token, attests a test SNP report
# (`sign-report`) at /attest/SevSnpVm with a transfer key in the runtime data, creates an exportable
# RSA-2048 key with a release policy, then measures on loopback, over keep-alive HTTPS connections:
#   - the baseline: GET {vault}/keys/NAME (TLS + HTTP + bearer check, no key operation);
#   - POST {vault}/keys/NAME/release for each enc mode (token verification, policy, RSA-OAEP +
#     AES-KWP wrap, RS256 JWS).
# It prints requests/s, p50 and p99 latency, and each p50 as a ratio to the baseline's p50 (the
# ratio is what carries over between machines). Figures only; nothing is asserted.
#
# Usage: scripts/bench-release.sh            (or: make bench-emulator)
# Environment: SKR_EMULATOR=path (default: build target/release/skr-emulator),
#              BENCH_REQUESTS (per measurement, default 400), BENCH_CONCURRENCY (default 4).
set -euo pipefail
cd "$(dirname "$0")/.."

emu=${SKR_EMULATOR:-}
if [ -z "$emu" ]; then
    cargo build --release --locked --bin skr-emulator >&2
    emu=target/release/skr-emulator
fi
requests=${BENCH_REQUESTS:-400}
concurrency=${BENCH_CONCURRENCY:-4}

state=$(mktemp -d -t skr-emulator-bench-XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$state"
}
trap cleanup EXIT

# The throttle (Azure: 2000 RSA-2048 operations per 10 s) is lifted: this measures the emulator.
"$emu" serve --state-dir "$state" --vault-ops-limit 100000000 >"$state/ready.json" 2>"$state/emulator.log" &
pid=$!
for _ in $(seq 600); do
    [ -s "$state/ready.json" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$state/emulator.log" >&2; exit 1; }
    sleep 0.1
done
[ -s "$state/ready.json" ] || { echo "bench-release: no start-up line within 60 s" >&2; exit 1; }

python3 - "$emu" "$state" "$requests" "$concurrency" <<'PY'
import base64, hashlib, http.client, json, ssl, subprocess, sys, threading, time
from urllib.parse import urlsplit
from cryptography.hazmat.primitives.asymmetric import rsa

emu, state, requests, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ep = json.loads(open(f"{state}/ready.json").readline())
ctx = ssl.create_default_context(cafile=ep["ca_pem"])
b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def conn(url):
    u = urlsplit(url)
    if u.scheme == "https":
        return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=60)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)

def call(c, method, url, body=None, headers=None):
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    c.request(method, urlsplit(url).path + ("?" + urlsplit(url).query if urlsplit(url).query else ""), data, h)
    r = c.getresponse()
    payload = r.read()
    return r.status, payload

# IMDS token for the vault.
c = conn(ep["imds"])
st, b = call(c, "GET", ep["imds"] + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net",
             headers={"Metadata": "true"})
assert st == 200, b
bearer = {"Authorization": "Bearer " + json.loads(b)["access_token"]}

# Transfer key in the runtime data, REPORT_DATA = SHA-256(runtime) || 0, attested at SevSnpVm.
tk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
n = tk.public_key().public_numbers().n.to_bytes(256, "big")
runtime = json.dumps({"keys": [{"e": "AQAB", "key_ops": ["encrypt"], "kid": "bench-transfer-key",
                                "kty": "RSA", "n": b64u(n)}]}, separators=(",", ":")).encode()
report_data = hashlib.sha256(runtime).digest() + bytes(32)
subprocess.run([emu, "sign-report", "--state-dir", state, "--report-data", report_data.hex(),
                "--out", f"{state}/report.bin"], check=True, stdout=subprocess.DEVNULL)
chain = open(f"{state}/vcek.pem", "rb").read() + open(f"{state}/cert-chain.pem", "rb").read()
report = json.dumps({"SnpReport": b64u(open(f"{state}/report.bin", "rb").read()), "VcekCertChain": b64u(chain)})
c = conn(ep["attestation"])
st, b = call(c, "POST", ep["attestation"] + "/attest/SevSnpVm?api-version=2022-08-01",
             {"report": b64u(report.encode()), "runtimeData": {"data": b64u(runtime), "dataType": "JSON"}})
assert st == 200, b
target = json.loads(b)["token"]

# The key to release.
policy = {"version": "1.0.0", "anyOf": [{"authority": ep["attestation"], "allOf": [
    {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"},
    {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "false"}]}]}
c = conn(ep["vault"])
key_url = ep["vault"] + "/keys/bench-rsa"
st, b = call(c, "POST", key_url + "/create?api-version=7.4",
             {"kty": "RSA-HSM", "key_size": 2048, "attributes": {"exportable": True},
              "release_policy": {"contentType": "application/json; charset=utf-8",
                                 "data": b64u(json.dumps(policy).encode())}}, bearer)
assert st == 200, b

def measure(method, url, body):
    """requests calls over `concurrency` keep-alive connections; (req/s, p50 ms, p99 ms)."""
    lat, errors, lock = [], [], threading.Lock()
    per = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]
    def worker(k):
        c = conn(url)
        call(c, method, url, body, bearer)  # warm-up: TLS handshake, not timed
        mine = []
        for _ in range(k):
            t = time.perf_counter()
            st, b = call(c, method, url, body, bearer)
            mine.append(time.perf_counter() - t)
            if st != 200:
                errors.append((st, b[:200]))
        with lock:
            lat.extend(mine)
    threads = [threading.Thread(target=worker, args=(k,)) for k in per]
    t0 = time.perf_counter()
    for t in threads: t.start()
    for t in threads: t.join()
    wall = time.perf_counter() - t0
    if errors:
        sys.exit(f"bench-release: {len(errors)} requests failed, first: {errors[0]}")
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    return len(lat) / wall, pick(0.50), pick(0.99)

rows = [("GET key (baseline)", measure("GET", key_url + "?api-version=7.4", None))]
for enc in ["CKM_RSA_AES_KEY_WRAP", "RSA_AES_KEY_WRAP_256", "RSA_AES_KEY_WRAP_384"]:
    rows.append((f"release {enc}", measure("POST", key_url + "/release?api-version=7.4",
                                            {"target": target, "enc": enc})))
base = rows[0][1][1]
print(f"skr-emulator release benchmark: loopback HTTPS, RSA-2048 key, {requests} requests per row, "
      f"{concurrency} keep-alive connections")
print(f"{'request':<34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p50/baseline':>14}")
for name, (rps, p50, p99) in rows:
    print(f"{name:<34}{rps:>9.1f}{p50:>9.2f}{p99:>9.2f}{p50 / base:>14.2f}")
PY

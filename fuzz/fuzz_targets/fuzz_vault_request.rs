//! Emulated Key Vault request bodies (create, import, release): parse only; no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::emulator::server::vault::fuzz_vault_request(data);
});

//! Key Vault release payload `key_hsm` (header + wrapped ciphertext): any bytes, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::format::jose::fuzz_key_hsm(data);
});

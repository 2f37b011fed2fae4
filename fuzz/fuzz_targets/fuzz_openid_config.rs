//! The attestation provider's OpenID metadata (PROTOCOLS.md §5.1): any bytes, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::attest::trust::fuzz_openid_config(data);
});

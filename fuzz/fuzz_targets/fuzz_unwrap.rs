//! Key unwrap inputs: ciphertext split, AES-KWP unwrap, released key material decoders: no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::crypto::fuzz_unwrap(data);
});

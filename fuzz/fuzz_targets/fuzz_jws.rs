//! JWS / JWT compact serialisation, headers, JWK sets: any bytes, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::format::jose::fuzz_jws(data);
});

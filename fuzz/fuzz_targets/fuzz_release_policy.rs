//! Key release policy documents: parse, validate and evaluate against fixed claims; no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::format::akv::policy::fuzz_policy(data);
});

//! IMDS managed-identity token responses and error bodies (PROTOCOLS.md §2.1): any bytes, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::identity::token::fuzz_token_response(data);
});

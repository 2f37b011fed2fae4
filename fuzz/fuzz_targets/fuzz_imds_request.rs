//! Raw requests to the emulated IMDS: head parser, routing and the token request's query checks
//! (api-version, resource, identity selectors); any bytes, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::emulator::server::imds::fuzz_imds_request(data);
});

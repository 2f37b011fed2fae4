//! The emulator's HTTP/1.1 request-head parser (`skr-emulator serve`, every listener): any
//! bytes, no panic, and accepted heads keep the parser's invariants.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::emulator::server::http::fuzz_http_head(data);
});

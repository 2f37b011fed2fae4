//! The azure-skr LUKS2 token JSON (host-controlled header input) and the key socket peer
//! name: parse, round-trip when accepted; no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::format::luks_token::fuzz_token(data);
    skrd::format::keysocket_peer::fuzz_peer(data);
});

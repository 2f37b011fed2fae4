//! MAA answers: the AzureGuest encrypted envelope (`{"token": b64url(JSON)}` and the JSON itself),
//! plain `{"token": JWT}` bodies and compact-JWT checks: any bytes, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::format::maa::envelope::fuzz_envelope(data);
});

//! `POST /attest/AzureGuest` request bodies of the emulated MAA (the AttestationInfo parser and
//! the TPM structures inside it): any bytes, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::emulator::server::azureguest::fuzz_guest_request(data);
});

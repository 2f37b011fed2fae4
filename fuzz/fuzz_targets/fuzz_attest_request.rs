//! `POST /attest/SevSnpVm` request bodies of the emulated MAA: any bytes, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skrd::emulator::server::sevsnpvm::fuzz_attest_request(data);
});

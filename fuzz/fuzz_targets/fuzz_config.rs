//! One configuration fragment parsed and validated: any bytes, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = skrd::config::fuzz_config_parse(data);
});

//! Azure HCL report parser, runtime-data JSON, binding check and JSON view: no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skrd::format::hcl;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = hcl::HclReport::parse(data) {
        let binding = report.check_binding();
        let _ = hcl::hcl_json(&report, &binding);
    }
});

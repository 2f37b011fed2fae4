//! SNP attestation report parser and its JSON view: any bytes, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skrd::format::snp;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = snp::Report::parse(data) {
        let _ = snp::report_json(&report);
        let _ = snp::check_report_data_binding(&report, data);
    }
});

//! Extended-report certificate table (GUID, offset, length entries): no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skrd::format::snp;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = snp::parse_cert_table(data) {
        let _ = entries.len();
        let _ = snp::cert_table::certs_from_table(data);
    }
});

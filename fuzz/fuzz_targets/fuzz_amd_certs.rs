//! AMD certificate input (PEM bundle, DER, certificate table) and THIM documents: no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skrd::format::snp;

fuzz_target!(|data: &[u8]| {
    let _ = snp::parse_certs(data);
    let _ = snp::parse_thim_document(data);
});

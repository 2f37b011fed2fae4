//! LUKS2 header checks (binary headers, checksums, strict JSON metadata, the detached pair):
//! no panic on host-controlled bytes. Seeded with a real cryptsetup header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skrd::format::luks2;

fuzz_target!(|data: &[u8]| {
    if let Ok(size) = luks2::binary::primary_hdr_size(data) {
        if let Ok(c) = luks2::check(data, size, "6f0e2d5a-1c3b-4a7e-9b1d-2f4c6e8a0b13") {
            let _ = c.header_pair();
        }
    }
    // The metadata checker on its own, for inputs that are not a whole header.
    let _ = luks2::metadata::check(data, 16384);
});

//! JWS / JWT compact serialisation, headers, JWK sets: any bytes, no panic. Beyond the
//! parsers, every input is also verified as an MAA token against a fixed key set (the real
//! published MAA keys and the sharedeus2 signing certificate), so key selection, RS256
//! signature verification and, for inputs that verify (the seeded real tokens), the claim
//! checks are fuzzed too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skrd::format::jose::jwk::KeySet;
use std::sync::OnceLock;

const JWKS: &[u8] = include_bytes!(
    "../../tests/fixtures/real/maa-tokens/jwks/secretnetwork-known-maa-keys.jwks.json"
);
const CERT: &[u8] =
    include_bytes!("../../tests/fixtures/real/maa-tokens/jwks/maa-sharedeus2-signing-cert-J0pAPdf.der");

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut set = KeySet::from_bytes(JWKS).expect("the real JWKS parses");
        set.keys
            .extend(KeySet::from_bytes(CERT).expect("the real certificate parses").keys);
        set
    })
}

fuzz_target!(|data: &[u8]| {
    skrd::format::jose::fuzz_jws(data);
    let _ = skrd::format::jose::fuzz_jwt_verify(data, keys());
});

//! EC P-521 keys in `skr-emulator serve`'s Key Vault (PROTOCOLS.md §6.4, §6.8): created and
//! imported, released to a transfer key in an MAA token like P-256/P-384, and the released
//! plaintext decoded with skrd's `crypto::key_material`.
//!
//! Expected values come from python3 `cryptography` (it makes the imported key and reads the
//! released PKCS#8 of the created one), never from the emulator's output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use common::emulator::{now, Emu};
use skrd::crypto::key_material::{decode, KeyKind};
use skrd::crypto::transfer_key::TransferKey;
use skrd::emulator::server::state::{load_or_create_rsa, maa_kid, MAA_KEY};

/// A P-521 private key from python `cryptography` as a JWK (d, x, y: 66 bytes each).
const GEN_PY: &str = r#"
import base64, json
from cryptography.hazmat.primitives.asymmetric import ec
k = ec.generate_private_key(ec.SECP521R1())
n = k.private_numbers()
b = lambda i: base64.urlsafe_b64encode(i.to_bytes(66, 'big')).rstrip(b'=').decode()
print(json.dumps({'kty': 'EC', 'crv': 'P-521', 'd': b(n.private_value),
                  'x': b(n.public_numbers.x), 'y': b(n.public_numbers.y)}))
"#;

/// argv[1] = PKCS#8 DER file; prints "<d hex> <x b64url> <y b64url>" (66-byte big-endian).
const READ_PY: &str = r#"
import base64, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
k = serialization.load_der_private_key(open(sys.argv[1], 'rb').read(), None)
assert isinstance(k.curve, ec.SECP521R1), k.curve.name
n = k.private_numbers()
b = lambda i: base64.urlsafe_b64encode(i.to_bytes(66, 'big')).rstrip(b'=').decode()
print(n.private_value.to_bytes(66, 'big').hex(), b(n.public_numbers.x), b(n.public_numbers.y))
"#;

struct Vault {
    emu: Emu,
    http: reqwest::blocking::Client,
    bearer: String,
    dir: std::path::PathBuf,
}

impl Vault {
    fn call(&self, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        let url = format!("{}{path}?api-version=7.4", self.emu.url("vault"));
        let resp = self
            .http
            .request(method, url)
            .bearer_auth(&self.bearer)
            .json(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap())
    }

    /// Releases `name` to a fresh transfer key; returns the decoded plaintext bytes.
    fn release(&self, name: &str, tk: &TransferKey) -> Vec<u8> {
        let iss = self.emu.url("attestation");
        let t = now();
        let runtime: Value = serde_json::from_slice(tk.runtime_data()).unwrap();
        let claims = json!({"iss": iss, "iat": t - 10, "nbf": t - 10, "exp": t + 600,
            "x-ms-ver": "1.0", "x-ms-attestation-type": "sevsnpvm",
            "x-ms-compliance-status": "azure-compliant-cvm", "x-ms-runtime": runtime});
        let signer = load_or_create_rsa(&self.dir, MAA_KEY, maa_kid).unwrap();
        let jku = format!("{iss}/certs");
        let target = signer.sign_jwt(&claims, &[("jku", &jku)]).unwrap();
        let url = format!(
            "{}/keys/{name}/release?api-version=7.4",
            self.emu.url("vault")
        );
        let resp = self
            .http
            .post(url)
            .bearer_auth(&self.bearer)
            .json(&json!({"target": target, "enc": "RSA_AES_KEY_WRAP_256"}))
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        assert_eq!(status, 200, "{text}");
        let v = self.emu.verify_release(&text, tk.modulus_len(), tk.kid());
        tk.unwrap_key_hsm(&v.payload.key_hsm)
            .unwrap()
            .expose()
            .to_vec()
    }
}

fn policy(authority: &str) -> Value {
    let p = json!({"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": [
        {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"}]}]});
    json!({"contentType": "application/json; charset=utf-8",
           "data": URL_SAFE_NO_PAD.encode(p.to_string()), "immutable": false})
}

#[test]
fn p521_keys_are_created_imported_released_and_decoded() {
    let state = common::fresh_state_dir();
    let emu = Emu::start(state.path(), &[]);
    let http = emu.client(Duration::from_secs(60));
    let bearer = emu.imds_token("https%3A%2F%2Fvault.azure.net");
    let v = Vault {
        emu,
        http,
        bearer,
        dir: state.path().to_path_buf(),
    };
    let authority = v.emu.url("attestation");
    let tk = TransferKey::generate(2048).unwrap();

    // Created: the released PKCS#8, read by python, holds the curve and the public x/y that
    // the create response announced; key_material extracts the same 66-byte scalar.
    let (st, created) = v.call(
        reqwest::Method::POST,
        "/keys/ec521/create",
        &json!({"kty": "EC-HSM", "crv": "P-521", "release_policy": policy(&authority),
                "attributes": {"exportable": true}}),
    );
    assert_eq!(st, 200, "{created}");
    assert_eq!(created["key"]["kty"], "EC-HSM");
    assert_eq!(created["key"]["crv"], "P-521");
    let plain = v.release("ec521", &tk);
    let f = state.path().join("p521.der");
    std::fs::write(&f, &plain).unwrap();
    let out = common::python(READ_PY, &[f.to_str().unwrap()]);
    let parts: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(parts[1], created["key"]["x"].as_str().unwrap());
    assert_eq!(parts[2], created["key"]["y"].as_str().unwrap());
    let material = decode(KeyKind::Ec, &skrd::secret::Secret::new(plain)).unwrap();
    assert_eq!(hex::encode(material.ikm().expose()), parts[0]);

    // Imported from python: released and decoded to python's private value.
    let jwk: Value = serde_json::from_str(common::python(GEN_PY, &[]).trim()).unwrap();
    let (st, imported) = v.call(
        reqwest::Method::PUT,
        "/keys/ec521-imported",
        &json!({"key": jwk, "hsm": true, "attributes": {"exportable": true},
                "release_policy": policy(&authority)}),
    );
    assert_eq!(st, 200, "{imported}");
    assert_eq!(imported["key"]["x"], jwk["x"]);
    let plain = v.release("ec521-imported", &tk);
    let material = decode(KeyKind::Ec, &skrd::secret::Secret::new(plain)).unwrap();
    let d = URL_SAFE_NO_PAD.decode(jwk["d"].as_str().unwrap()).unwrap();
    assert_eq!(material.ikm().expose(), &d[..]);

    // A JWK whose x/y are not the public key of d is refused.
    let mut wrong = jwk.clone();
    wrong["x"] = created["key"]["x"].clone();
    wrong["y"] = created["key"]["y"].clone();
    let (st, body) = v.call(
        reqwest::Method::PUT,
        "/keys/ec521-wrong",
        &json!({"key": wrong, "hsm": true, "attributes": {"exportable": true},
                "release_policy": policy(&authority)}),
    );
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"]["code"], "BadParameter", "{body}");
}

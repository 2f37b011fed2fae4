//! `skr-emulator serve` Key Vault / Managed HSM end to end (PROTOCOLS.md §6, §7): keys are
//! created, imported and read over HTTPS, released to a transfer key put in an MAA token, and the
//! response verified and unwrapped with skrd's own client code; negatives check the Azure
//! statuses of §6.7.
//!
//! The MAA token is minted here by signing claims with the state directory's MAA key
//! (`maa-key.pem`), exactly as the attest endpoint does. Expected values come from PROTOCOLS.md
//! (statuses, header member order, `key_hsm` shape) and from the key material the emulator stored
//! in its state file; `openssl pkey` independently checks that a released EC key is PKCS#8.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::emulator::{client as ca_client, now, Emu};

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use serde_json::{json, Value};
use skrd::crypto::transfer_key::TransferKey;
use skrd::emulator::server::state::{entra_kid, load_or_create_rsa, maa_kid, ENTRA_KEY, MAA_KEY};
use skrd::format::jose::release::{verify_release_response, ReleaseVerification, WrapAlgorithm};
use skrd::format::jose::x5c::ChainCert;

fn client(ca_pem: &Path) -> reqwest::blocking::Client {
    ca_client(ca_pem, Duration::from_secs(60))
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn unb64url(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

struct Ctx {
    emu: Emu,
    http: reqwest::blocking::Client,
    dir: std::path::PathBuf,
    vault_token: String,
    mhsm_token: String,
}

impl Ctx {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let emu = Emu::start(dir, extra);
        let http = client(Path::new(emu.ep["ca_pem"].as_str().unwrap()));
        let vault_token = emu.imds_token("https%3A%2F%2Fvault.azure.net");
        let mhsm_token = emu.imds_token("https%3A%2F%2Fmanagedhsm.azure.net%2F");
        Self {
            emu,
            http,
            dir: dir.to_path_buf(),
            vault_token,
            mhsm_token,
        }
    }

    fn base(&self, service: &str) -> String {
        self.emu.url(service)
    }

    fn token(&self, service: &str) -> &str {
        if service == "vault" {
            &self.vault_token
        } else {
            &self.mhsm_token
        }
    }

    /// Sends a request with the right bearer; returns status, headers, JSON body.
    fn call(
        &self,
        method: &str,
        service: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.call_with(
            method,
            service,
            path,
            "7.4",
            Some(self.token(service)),
            body,
        )
    }

    fn call_with(
        &self,
        method: &str,
        service: &str,
        path: &str,
        api_version: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let url = format!("{}{path}?api-version={api_version}", self.base(service));
        let mut rb = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        if let Some(t) = bearer {
            rb = rb.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().unwrap();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
        (status, headers, json)
    }

    /// The stored release plaintext of a key version (from the state file).
    fn stored_material(&self, flavour: &str, name: &str, version: &str) -> Vec<u8> {
        let path = self
            .dir
            .join("vault")
            .join(flavour)
            .join("keys")
            .join(name)
            .join(format!("{version}.json"));
        let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        unb64url(v["material"].as_str().unwrap())
    }

    /// An MAA-style token signed with the state directory's MAA key.
    fn maa_token(&self, claims_extra: Value, exp_offset: i64) -> String {
        let signer = load_or_create_rsa(&self.dir, MAA_KEY, maa_kid).unwrap();
        self.sign_maa(&signer, claims_extra, exp_offset)
    }

    /// A Key Vault access token signed with the state directory's Entra key, the claims of an
    /// IMDS token of the system identity with `edit` applied.
    fn entra_token(&self, edit: Value) -> String {
        let signer = load_or_create_rsa(&self.dir, ENTRA_KEY, entra_kid).unwrap();
        let ids = identities(&self.dir);
        let tenant = ids["tenant_id"].as_str().unwrap();
        let t = now();
        let mut claims = json!({
            "aud": "https://vault.azure.net",
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": t - 10,
            "nbf": t - 10,
            "exp": t + 3600,
            "oid": ids["identities"][0]["object_id"],
            "tid": tenant,
            "ver": "1.0",
        });
        for (k, v) in edit.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let kid = signer.kid.clone();
        signer.sign_jwt(&claims, &[("x5t", &kid)]).unwrap()
    }

    fn sign_maa(
        &self,
        signer: &skrd::emulator::server::state::RsaSigner,
        claims_extra: Value,
        exp_offset: i64,
    ) -> String {
        let iss = self.base("attestation");
        let t = now();
        let mut claims = json!({
            "iss": iss,
            "iat": t - 10,
            "nbf": t - 10,
            "exp": t + exp_offset,
            "x-ms-ver": "1.0",
            "x-ms-attestation-type": "sevsnpvm",
            "x-ms-compliance-status": "azure-compliant-cvm",
            "x-ms-sevsnpvm-is-debuggable": false,
        });
        for (k, v) in claims_extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let jku = format!("{iss}/certs");
        signer.sign_jwt(&claims, &[("jku", &jku)]).unwrap()
    }
}

/// The state directory's `identities.json` (tenant id, identities).
fn identities(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("identities.json")).unwrap()).unwrap()
}

/// The claims of a compact JWT this test made (read back, not verified).
fn unverified_claims(jwt: &str) -> Value {
    serde_json::from_slice(&unb64url(jwt.split('.').nth(1).unwrap())).unwrap()
}

fn policy(authority: &str) -> Value {
    let p = json!({"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": [
        {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"},
        {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "false"}]}]});
    json!({"contentType": "application/json; charset=utf-8", "data": b64url(p.to_string().as_bytes()), "immutable": false})
}

fn version_of(bundle: &Value) -> String {
    bundle["key"]["kid"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

/// The transfer key in the token's runtime keys, after a signing-only key that must be skipped
/// (§6.2: the first *suitable* key).
fn runtime_keys(tk: &TransferKey) -> Value {
    let jwks: Value = serde_json::from_slice(tk.runtime_data()).unwrap();
    let other = TransferKey::generate(2048).unwrap();
    let jwks2: Value = serde_json::from_slice(other.runtime_data()).unwrap();
    let mut sig = jwks2["keys"][0].clone();
    sig["key_ops"] = json!(["sign"]);
    sig["kid"] = json!("signing-only");
    let mut keys = vec![sig];
    keys.extend(jwks["keys"].as_array().unwrap().iter().cloned());
    json!({"x-ms-runtime": {"keys": keys},
           "x-ms-isolation-tee": {"x-ms-runtime": {"keys": [{"kid": "nested", "kty": "RSA", "key_ops": ["encrypt"], "n": "AQAB", "e": "AQAB"}]}}})
}

#[test]
fn create_get_import_release_and_restart() {
    let state = common::fresh_state_dir();
    let mut ctx = Ctx::start(state.path(), &[]);
    let authority = ctx.base("attestation");

    // Create + get for each key type (§6.8).
    let cases: &[(&str, Value)] = &[
        ("vault", json!({"kty": "RSA-HSM", "key_size": 2048})),
        ("vault", json!({"kty": "RSA-HSM", "key_size": 3072})),
        ("vault", json!({"kty": "RSA", "key_size": 4096})),
        ("vault", json!({"kty": "EC-HSM", "crv": "P-256"})),
        ("vault", json!({"kty": "EC-HSM", "crv": "P-384"})),
        ("managed_hsm", json!({"kty": "oct-HSM", "key_size": 256})),
    ];
    let mut created = Vec::new();
    for (i, (svc, req)) in cases.iter().enumerate() {
        let kty = req["kty"].as_str().unwrap();
        let hsm = kty.ends_with("-HSM");
        let mut body = req.clone();
        body["attributes"] = json!({"exportable": true});
        body["release_policy"] = policy(&authority);
        let name = format!("key-{i}");
        if !hsm {
            // Exportable keys must be HSM-protected (§7.4): a software key is refused.
            let (st, _, b) = ctx.call("POST", svc, &format!("/keys/{name}/create"), Some(&body));
            assert_eq!(
                (st, b["error"]["code"].as_str()),
                (400, Some("BadParameter"))
            );
            body = req.clone();
        }
        let (st, _, b) = ctx.call("POST", svc, &format!("/keys/{name}/create"), Some(&body));
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["key"]["kty"], kty, "{b}");
        assert_eq!(b["attributes"]["exportable"], hsm);
        assert_eq!(b.get("release_policy").is_some(), hsm);
        if let Some(bits) = req["key_size"].as_u64().filter(|_| kty.starts_with("RSA")) {
            assert_eq!(
                unb64url(b["key"]["n"].as_str().unwrap()).len() as u64 * 8,
                bits
            );
        }
        if let Some(crv) = req["crv"].as_str() {
            assert_eq!(b["key"]["crv"], crv);
            let len = if crv == "P-256" { 32 } else { 48 };
            assert_eq!(unb64url(b["key"]["x"].as_str().unwrap()).len(), len);
        }
        let version = version_of(&b);
        assert_eq!(version.len(), 32);
        let (st, _, g) = ctx.call("GET", svc, &format!("/keys/{name}"), None);
        assert_eq!(st, 200);
        assert_eq!(g["key"], b["key"]);
        let (st, _, g) = ctx.call("GET", svc, &format!("/keys/{name}/{version}"), None);
        assert_eq!(st, 200);
        assert_eq!(g["key"], b["key"]);
        created.push((svc.to_string(), name, b));
    }
    // oct keys are Managed HSM only (§7.4).
    let (st, _, b) = ctx.call(
        "POST",
        "vault",
        "/keys/octv/create",
        Some(&json!({"kty": "oct-HSM", "key_size": 256})),
    );
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (400, Some("BadParameter"))
    );
    // The key file holds private material: 0600.
    {
        use std::os::unix::fs::PermissionsExt;
        let (_, name, b) = &created[0];
        let path = state
            .path()
            .join(format!("vault/vault/keys/{name}/{}.json", version_of(b)));
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // Import an RSA JWK and an oct JWK (§6.8).
    let rsa_key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let primes = rsa_key.primes();
    let jwk = json!({"kty": "RSA", "key_ops": ["encrypt", "decrypt"],
        "n": b64url(&rsa_key.n().to_bytes_be()), "e": b64url(&rsa_key.e().to_bytes_be()),
        "d": b64url(&rsa_key.d().to_bytes_be()), "p": b64url(&primes[0].to_bytes_be()),
        "q": b64url(&primes[1].to_bytes_be())});
    let (st, _, imp) = ctx.call(
        "PUT",
        "vault",
        "/keys/imported-rsa",
        Some(&json!({"key": jwk, "hsm": true, "attributes": {"exportable": true}, "release_policy": policy(&authority)})),
    );
    assert_eq!(st, 200, "{imp}");
    assert_eq!(imp["key"]["kty"], "RSA-HSM");
    assert_eq!(imp["key"]["n"], jwk["n"]);
    assert_eq!(imp["key"]["key_ops"], json!(["encrypt", "decrypt"]));
    let k = [0x42u8; 32];
    let (st, _, imp_oct) = ctx.call(
        "PUT",
        "managed_hsm",
        "/keys/imported-oct",
        Some(
            &json!({"key": {"kty": "oct-HSM", "k": b64url(&k)}, "hsm": true,
                      "attributes": {"exportable": true}, "release_policy": policy(&authority)}),
        ),
    );
    assert_eq!(st, 200, "{imp_oct}");
    let (st, _, too_big) = ctx.call(
        "PUT",
        "managed_hsm",
        "/keys/big",
        Some(&json!({"key": {"kty": "oct-HSM", "k": b64url(&[1u8; 65])}})),
    );
    assert_eq!(st, 400);
    assert!(too_big["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum size is 64"));

    // Release: oct (mHSM), RSA and EC (vault), each enc mode; verify and unwrap.
    let ca_der = {
        let pem = std::fs::read_to_string(ctx.emu.ep["ca_pem"].as_str().unwrap()).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    let roots = vec![ChainCert::from_der("emulator CA", &ca_der).unwrap()];
    let tk = TransferKey::generate(2048).unwrap();
    let target = ctx.maa_token(runtime_keys(&tk), 3600);
    let releasable = [
        (
            "managed_hsm",
            "managed-hsm",
            created[5].1.clone(),
            version_of(&created[5].2),
        ),
        (
            "vault",
            "vault",
            created[0].1.clone(),
            version_of(&created[0].2),
        ),
        (
            "vault",
            "vault",
            created[3].1.clone(),
            version_of(&created[3].2),
        ),
        (
            "managed_hsm",
            "managed-hsm",
            "imported-oct".to_string(),
            version_of(&imp_oct),
        ),
    ];
    for (svc, flavour, name, version) in &releasable {
        for enc in [
            None,
            Some("RSA_AES_KEY_WRAP_256"),
            Some("RSA_AES_KEY_WRAP_384"),
        ] {
            let mut body = json!({"target": target, "nonce": "ADE0101"});
            if let Some(e) = enc {
                body["enc"] = json!(e);
            }
            let path = format!("/keys/{name}/release");
            let (st, _, resp) = ctx.call("POST", svc, &path, Some(&body));
            assert_eq!(st, 200, "{resp}");
            let raw = resp.to_string();
            let jws = resp["value"].as_str().unwrap();
            // §6.3: exact header member order.
            let header = String::from_utf8(unb64url(jws.split('.').next().unwrap())).unwrap();
            let order: Vec<usize> = [
                "\"alg\"",
                "\"kid\"",
                "\"x5t\"",
                "\"typ\"",
                "\"x5t#S256\"",
                "\"x5c\"",
            ]
            .iter()
            .map(|k| header.find(k).unwrap())
            .collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{header}");
            let expected_key = format!("{}{path}", ctx.base(svc)).replace("/release", "");
            let host = if *svc == "vault" {
                "skr-emulator.vault.azure.net"
            } else {
                "skr-emulator.managedhsm.azure.net"
            };
            let v = verify_release_response(
                raw.as_bytes(),
                &ReleaseVerification {
                    roots: &roots,
                    now: now(),
                    expected_host: Some(host),
                    rsa_block_len: tk.modulus_len(),
                    expected_key: Some(&expected_key),
                    expected_transfer_kid: Some(tk.kid()),
                },
            )
            .unwrap_or_else(|e| panic!("{svc}/{name} {enc:?}: {e}"));
            let want_enc = WrapAlgorithm::from_name(enc.unwrap_or("CKM_RSA_AES_KEY_WRAP")).unwrap();
            assert_eq!(v.payload.request.enc, want_enc);
            assert_eq!(v.payload.key_hsm.enc, want_enc);
            assert!(v.payload.key.kid.ends_with(version.as_str()));
            // §6.3: the policy is echoed without contentType.
            assert!(v.payload.release_policy.get("contentType").is_none());
            let plain = tk.unwrap_key_hsm(&v.payload.key_hsm).unwrap();
            let stored = ctx.stored_material(flavour, name, version);
            assert_eq!(plain.expose(), stored.as_slice(), "{name}");
            if name == "imported-oct" {
                assert_eq!(stored, k);
            }
        }
    }
    // The released RSA key is the PKCS#8 of the created key (same modulus), and the EC one is
    // PKCS#8 per openssl.
    {
        use rsa::pkcs8::DecodePrivateKey;
        let der = ctx.stored_material("vault", &created[0].1, &version_of(&created[0].2));
        let k = rsa::RsaPrivateKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(
            b64url(&k.n().to_bytes_be()),
            created[0].2["key"]["n"].as_str().unwrap()
        );
        let ec = ctx.stored_material("vault", &created[3].1, &version_of(&created[3].2));
        let f = state.path().join("ec.der");
        std::fs::write(&f, &ec).unwrap();
        let (ok, out) = common::openssl(&[
            "pkey",
            "-inform",
            "DER",
            "-in",
            f.to_str().unwrap(),
            "-noout",
            "-text",
        ]);
        assert!(ok, "{out}");
        assert!(out.contains("P-256") || out.contains("prime256v1"), "{out}");
    }

    // Restart keeps the keys.
    ctx.emu.sigterm();
    let ctx2 = Ctx::start(state.path(), &[]);
    for (svc, name, b) in &created {
        let (st, _, g) = ctx2.call("GET", svc, &format!("/keys/{name}"), None);
        assert_eq!(st, 200);
        let want = b["key"]["kid"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        assert_eq!(version_of(&g), want);
        assert_eq!(g["key"]["kty"], b["key"]["kty"]);
        assert_eq!(g["key"].get("n"), b["key"].get("n"));
    }
}

#[test]
fn release_refusals_and_errors() {
    let state = common::fresh_state_dir();
    let ctx = Ctx::start(state.path(), &[]);
    let authority = ctx.base("attestation");
    let (st, _, _) = ctx.call(
        "POST",
        "vault",
        "/keys/good/create",
        Some(&json!({"kty": "RSA-HSM", "attributes": {"exportable": true}, "release_policy": policy(&authority)})),
    );
    assert_eq!(st, 200);
    let (st, _, _) = ctx.call(
        "POST",
        "vault",
        "/keys/fixed/create",
        Some(&json!({"kty": "RSA-HSM"})),
    );
    assert_eq!(st, 200);
    let tk = TransferKey::generate(2048).unwrap();
    let good = ctx.maa_token(runtime_keys(&tk), 3600);

    // Bearer refusals: 401, Key Vault's body, x-ms-error-code and the challenge of §6.7
    // (`login.windows.net/<tenant>`, the vault's resource). Messages are the real ones:
    // AKV10000 (§6.7), AKV10022 and AKV10032 as Key Vault words them, "[TokenExpired] ..." as
    // reported against the real service (Azure/azure-sdk-for-python#27266).
    let tenant = identities(&ctx.dir)["tenant_id"]
        .as_str()
        .unwrap()
        .to_string();
    let challenge = format!(
        "Bearer authorization=\"https://login.windows.net/{tenant}\", resource=\"https://vault.azure.net\""
    );
    let body = json!({"target": good});
    let refused = |bearer: Option<&str>, message: &str| {
        let (st, h, b) = ctx.call_with(
            "POST",
            "vault",
            "/keys/good/release",
            "7.4",
            bearer,
            Some(&body),
        );
        assert_eq!(st, 401, "{b}");
        assert_eq!(h["x-ms-error-code"], "Unauthorized");
        assert_eq!(h["www-authenticate"].to_str().unwrap(), challenge);
        assert_eq!(
            b,
            json!({"error": {"code": "Unauthorized", "message": message}})
        );
    };
    refused(None, "AKV10000: Request is missing a Bearer or PoP token.");
    let mgmt = ctx.emu.imds_token("https%3A%2F%2Fmanagement.azure.com");
    refused(
        Some(&mgmt),
        "AKV10022: Invalid audience. Expected https://vault.azure.net, found: https://management.azure.com.",
    );
    // The Managed HSM token (requested for "https://managedhsm.azure.net/") is not for Key Vault.
    refused(
        Some(&ctx.mhsm_token),
        "AKV10022: Invalid audience. Expected https://vault.azure.net, found: https://managedhsm.azure.net/.",
    );
    // Signed by the emulator's Entra key but issued by another tenant.
    let other_tenant = "22222222-3333-4444-5555-666666666666";
    let foreign =
        ctx.entra_token(json!({"iss": format!("https://sts.windows.net/{other_tenant}/")}));
    refused(
        Some(&foreign),
        &format!(
            "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{tenant}/, found https://sts.windows.net/{other_tenant}/."
        ),
    );
    // Expired an hour ago (beyond any clock skew).
    let t = now();
    let expired = ctx.entra_token(json!({"iat": t - 7200, "nbf": t - 7200, "exp": t - 3600}));
    refused(
        Some(&expired),
        "[TokenExpired] Error validating token: 'S2S12086'.",
    );
    // The same claims, valid: accepted (the refusals above come from the one changed claim).
    let fine = ctx.entra_token(json!({}));
    let (st, _, b) = ctx.call_with("GET", "vault", "/keys/good", "7.4", Some(&fine), None);
    assert_eq!(st, 200, "{b}");

    // Bad api-version: 400 BadParameter.
    for v in ["7.2", "2016-10-01"] {
        let (st, _, b) = ctx.call_with(
            "GET",
            "vault",
            "/keys/good",
            v,
            Some(&ctx.vault_token),
            None,
        );
        assert_eq!(
            (st, b["error"]["code"].as_str()),
            (400, Some("BadParameter"))
        );
    }
    for v in ["7.3", "7.5", "7.6", "2025-07-01"] {
        let (st, _, _) = ctx.call_with(
            "GET",
            "vault",
            "/keys/good",
            v,
            Some(&ctx.vault_token),
            None,
        );
        assert_eq!(st, 200, "{v}");
    }

    // Target (MAA) token refusals: 403 Forbidden with x-ms-error-code (§6.7; Azure's message
    // text is not documented, §10, so the emulator's names the failed check).
    let forbidden = |target: &str, message: &str| {
        let (st, h, b) = ctx.call(
            "POST",
            "vault",
            "/keys/good/release",
            Some(&json!({"target": target})),
        );
        assert_eq!(st, 403, "{b}");
        assert_eq!(h["x-ms-error-code"], "Forbidden");
        assert_eq!(
            b,
            json!({"error": {"code": "Forbidden", "message": format!(
                "Target environment attestation statement cannot be verified: {message}")}})
        );
    };
    // Issued 2 h ago, expired 1 h ago (beyond the clock skew; iat/nbf before exp).
    let mut claims = runtime_keys(&tk);
    claims["iat"] = json!(now() - 7200);
    claims["nbf"] = claims["iat"].clone();
    let expired = ctx.maa_token(claims, -3600);
    let exp = unverified_claims(&expired)["exp"].as_i64().unwrap();
    forbidden(&expired, &format!("the token expired at {exp}"));
    // Signed by the emulator's own MAA key, but naming another issuer.
    let signer = load_or_create_rsa(&ctx.dir, MAA_KEY, maa_kid).unwrap();
    let mut claims = runtime_keys(&tk);
    claims["iss"] = json!("https://sharedeus2.eus2.attest.azure.net");
    let wrong_iss = ctx.sign_maa(&signer, claims, 3600);
    forbidden(
        &wrong_iss,
        &format!(
            "the token's issuer https://sharedeus2.eus2.attest.azure.net is not the attestation authority {}",
            ctx.base("attestation")
        ),
    );
    // Signed by another key (another emulator's MAA key).
    let other_dir = tempfile::tempdir().unwrap();
    let other = load_or_create_rsa(other_dir.path(), MAA_KEY, maa_kid).unwrap();
    let forged = ctx.sign_maa(&other, runtime_keys(&tk), 3600);
    forbidden(
        &forged,
        "the token is not signed by the attestation authority's key",
    );

    // Policy mismatch: 403 naming the unmet condition.
    let mut claims = runtime_keys(&tk);
    claims["x-ms-sevsnpvm-is-debuggable"] = json!(true);
    let debug = ctx.maa_token(claims, 3600);
    let (st, _, b) = ctx.call(
        "POST",
        "vault",
        "/keys/good/release",
        Some(&json!({"target": debug})),
    );
    assert_eq!(st, 403, "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(msg.contains("x-ms-sevsnpvm-is-debuggable"), "{msg}");
    assert!(!msg.contains("x-ms-attestation-type"), "{msg}");

    // No suitable transfer key (only the nested one): 400.
    let nested = ctx.maa_token(json!({"x-ms-isolation-tee": {"x-ms-runtime": {"keys": [{"kid": "n", "kty": "RSA", "key_ops": ["encrypt"], "n": "AQAB", "e": "AQAB"}]}}}), 3600);
    let (st, _, b) = ctx.call(
        "POST",
        "vault",
        "/keys/good/release",
        Some(&json!({"target": nested})),
    );
    assert_eq!(st, 400, "{b}");

    // Expired key: 403.
    let (st, _, _) = ctx.call(
        "POST",
        "vault",
        "/keys/old/create",
        Some(
            &json!({"kty": "RSA-HSM", "release_policy": policy(&authority), "tags": {"purpose": "disk"},
                     "attributes": {"exportable": true, "exp": now() - 60}}),
        ),
    );
    assert_eq!(st, 200);
    let (_, _, old) = ctx.call("GET", "vault", "/keys/old", None);
    assert_eq!(old["tags"], json!({"purpose": "disk"}));
    assert!(old["attributes"]["exp"].as_i64().unwrap() < now());
    let (st, _, b) = ctx.call(
        "POST",
        "vault",
        "/keys/old/release",
        Some(&json!({"target": good})),
    );
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (403, Some("Forbidden")),
        "{b}"
    );

    // Non-exportable key: 400 BadParameter; unknown key / version: 404 KeyNotFound.
    let (st, _, b) = ctx.call(
        "POST",
        "vault",
        "/keys/fixed/release",
        Some(&json!({"target": good})),
    );
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (400, Some("BadParameter")),
        "{b}"
    );
    let (st, _, b) = ctx.call(
        "POST",
        "vault",
        "/keys/nope/release",
        Some(&json!({"target": good})),
    );
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (404, Some("KeyNotFound"))
    );
    let (st, _, b) = ctx.call(
        "GET",
        "vault",
        &format!("/keys/good/{}", "0".repeat(32)),
        None,
    );
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (404, Some("KeyNotFound"))
    );
    // Missing target / bad enc: 400.
    let (st, _, _) = ctx.call("POST", "vault", "/keys/good/release", Some(&json!({})));
    assert_eq!(st, 400);
    let (st, _, _) = ctx.call(
        "POST",
        "vault",
        "/keys/good/release",
        Some(&json!({"target": good, "enc": "A256KW"})),
    );
    assert_eq!(st, 400);
    // Exportable without policy: 400 (§6.7 "Exportable keys must have release policy").
    let (st, _, b) = ctx.call(
        "POST",
        "vault",
        "/keys/x/create",
        Some(&json!({"kty": "RSA-HSM", "attributes": {"exportable": true}})),
    );
    assert_eq!(st, 400);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Exportable keys must have release policy"));
    // The good token still works.
    let (st, _, b) = ctx.call(
        "POST",
        "vault",
        "/keys/good/release",
        Some(&json!({"target": good})),
    );
    assert_eq!(st, 200, "{b}");
}

/// An RSA private JWK of `bits` made by python3 `cryptography` (independent of skrd, and fast).
fn python_rsa_jwk(bits: u32) -> Value {
    let out = common::python(
        r#"
import sys, json, base64
from cryptography.hazmat.primitives.asymmetric import rsa
k = rsa.generate_private_key(65537, int(sys.argv[1]))
n = k.private_numbers()
b = lambda i: base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, 'big')).rstrip(b'=').decode()
print(json.dumps({"kty": "RSA", "n": b(n.public_numbers.n), "e": b(n.public_numbers.e),
                  "d": b(n.d), "p": b(n.p), "q": b(n.q)}))
"#,
        &[&bits.to_string()],
    );
    serde_json::from_str(out.trim()).unwrap()
}

/// `Retry-After` of a 429 as an integer.
fn retry_after(h: &reqwest::header::HeaderMap) -> u64 {
    h["retry-after"].to_str().unwrap().parse().unwrap()
}

/// Throttling (PROTOCOLS.md §6.7): per 10 s, Azure allows 2000 RSA-2048, 500 RSA-3072,
/// 250 RSA-4096 and 2000 EC operations on HSM keys, so an operation weighs 1, 4, 8 and 1
/// RSA-2048 equivalents. With a limit of 16: one RSA-4096 GET (8) and two RSA-3072 GETs (4 + 4)
/// fill it exactly, and one EC GET more is refused. `Retry-After` is the time until the first
/// operation leaves the window, rounded up; refused operations do not count.
#[test]
fn throttle_weighs_rsa_sizes_and_retry_after_is_the_windows_remaining_time() {
    let state = common::fresh_state_dir();
    let ctx = Ctx::start(state.path(), &["--vault-ops-limit", "16"]);
    for (name, bits) in [("r4096", 4096), ("r3072", 3072)] {
        let (st, _, b) = ctx.call(
            "PUT",
            "vault",
            &format!("/keys/{name}"),
            Some(&json!({"key": python_rsa_jwk(bits), "hsm": true})),
        );
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["key"]["kty"], "RSA-HSM", "{b}");
    }
    let (st, _, _) = ctx.call(
        "POST",
        "vault",
        "/keys/ec/create",
        Some(&json!({"kty": "EC-HSM", "crv": "P-256"})),
    );
    assert_eq!(st, 200);
    let throttle = || -> Value {
        reqwest::blocking::Client::new()
            .get(format!("{}/throttle", ctx.base("admin")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    // Creates and imports are not counted (only GET and release are HSM operations here).
    assert_eq!(throttle()["vault"]["admitted_weight"], 0);

    let sent_first = Instant::now();
    let (st, _, b) = ctx.call("GET", "vault", "/keys/r4096", None);
    let answered_first = Instant::now();
    assert_eq!(st, 200, "{b}");
    for _ in 0..2 {
        let (st, _, b) = ctx.call("GET", "vault", "/keys/r3072", None);
        assert_eq!(st, 200, "{b}");
    }
    assert_eq!(
        throttle()["vault"],
        json!({"limit": 16, "in_window": 16, "admitted_weight": 16, "refused": 0})
    );
    // Full: one EC operation (weight 1) is refused, and so is another RSA-4096 one.
    let mut waits = Vec::new();
    for key in ["ec", "r4096"] {
        let sent = Instant::now();
        let (st, h, b) = ctx.call("GET", "vault", &format!("/keys/{key}"), None);
        let answered = Instant::now();
        assert_eq!(st, 429, "{key}: {b}");
        assert_eq!(h["x-ms-error-code"], "Throttled");
        assert_eq!(b["error"]["code"], "Throttled");
        // The first operation was counted between sent_first and answered_first, this refusal
        // between sent and answered: the window's remaining time lies between these bounds.
        let window = Duration::from_secs(10);
        let least = window.saturating_sub(answered - sent_first).as_millis();
        let most = window.saturating_sub(sent - answered_first).as_millis();
        let ra = retry_after(&h);
        assert!(
            (least.div_ceil(1000).max(1)..=most.div_ceil(1000).max(1)).contains(&u128::from(ra)),
            "Retry-After {ra} s, remaining time between {least} and {most} ms"
        );
        waits.push((answered, ra));
    }
    assert_eq!(
        throttle()["vault"],
        json!({"limit": 16, "in_window": 16, "admitted_weight": 16, "refused": 2})
    );
    // Managed HSM has its own window.
    assert_eq!(
        throttle()["managed_hsm"],
        json!({"limit": 16, "in_window": 0, "admitted_weight": 0, "refused": 0})
    );
    let (st, _, _) = ctx.call("GET", "managed_hsm", "/keys/ec", None);
    assert_eq!(st, 404);

    // After the announced wait the RSA-4096 operation has left the window (16 - 8 = 8 used);
    // had the refused RSA-4096 GET counted, an EC GET would still not fit (8 + 8 + 1 > 16).
    let (answered, ra) = waits[1];
    std::thread::sleep(Duration::from_secs(ra).saturating_sub(answered.elapsed()));
    let (st, _, b) = ctx.call("GET", "vault", "/keys/ec", None);
    assert_eq!(st, 200, "{b}");
    let (st, _, b) = ctx.call("GET", "vault", "/keys/r3072", None);
    assert_eq!(st, 200, "{b}");
}

/// The default limit is Azure's 2000 RSA-2048-equivalent operations per 10 s (§6.7), shown by
/// `--help` and by the admin listener's `GET /throttle`, where one RSA-4096 GET counts 8.
#[test]
fn default_throttle_limit_is_2000_per_10_s() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_skr-emulator"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let opt = help
        .split("--vault-ops-limit")
        .nth(1)
        .and_then(|t| t.split("\n  -").next())
        .unwrap();
    assert!(opt.contains("[default: 2000]"), "{opt}");

    let state = common::fresh_state_dir();
    let ctx = Ctx::start(state.path(), &[]);
    let (st, _, b) = ctx.call(
        "PUT",
        "vault",
        "/keys/r4096",
        Some(&json!({"key": python_rsa_jwk(4096), "hsm": true})),
    );
    assert_eq!(st, 200, "{b}");
    let (st, _, _) = ctx.call("GET", "vault", "/keys/r4096", None);
    assert_eq!(st, 200);
    let t: Value = reqwest::blocking::Client::new()
        .get(format!("{}/throttle", ctx.base("admin")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(t["window_s"], 10);
    assert_eq!(t["vault"]["limit"], 2000);
    assert_eq!(t["managed_hsm"]["limit"], 2000);
    assert_eq!(t["vault"]["admitted_weight"], 8);
}

/// Member paths (document order) of a release body's JWS header and payload and of the decoded
/// `key_hsm`, computed by python3's order-preserving json module.
const SHAPE_PY: &str = r#"
import base64, json, sys
def d(s):
    return base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))
def paths(o, pre=''):
    out = []
    if isinstance(o, dict):
        for k, v in o.items():
            out.append(pre + k)
            out += paths(v, pre + k + '.')
    return out
body = json.load(open(sys.argv[1]))
h, p, _ = body['value'].split('.')
payload = json.loads(d(p))
kh = json.loads(d(payload['response']['key']['key']['key_hsm']))
print(json.dumps({'header': paths(json.loads(d(h))),
                  'payload': paths(payload),
                  'key_hsm': paths(kh)}))
"#;

const UNWRAP_PY: &str = r#"
import base64, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding
def d(s):
    return base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))
body = json.load(open(sys.argv[1]))
key = serialization.load_pem_private_key(open(sys.argv[2], 'rb').read(), None)
payload = json.loads(d(body['value'].split('.')[1]))
kh = json.loads(d(payload['response']['key']['key']['key_hsm']))
h = {'CKM_RSA_AES_KEY_WRAP': hashes.SHA1, 'RSA_AES_KEY_WRAP_256': hashes.SHA256,
     'RSA_AES_KEY_WRAP_384': hashes.SHA384}[payload['request']['enc']]
ct = d(kh['ciphertext'])
n = key.key_size // 8
kek = key.decrypt(ct[:n], padding.OAEP(mgf=padding.MGF1(h()), algorithm=h(), label=None))
print(aes_key_unwrap_with_padding(kek, ct[n:]).hex())
"#;

#[test]
fn release_shape_matches_the_real_response_and_python_unwraps_it() {
    use rsa::pkcs8::EncodePrivateKey;
    let state = common::fresh_state_dir();
    let ctx = Ctx::start(state.path(), &[]);
    let authority = ctx.base("attestation");
    let (st, _, b) = ctx.call(
        "POST",
        "vault",
        "/keys/shape/create",
        Some(
            &json!({"kty": "RSA-HSM", "release_policy": policy(&authority),
                     "attributes": {"exportable": true, "nbf": now() - 60, "exp": now() + 86400}}),
        ),
    );
    assert_eq!(st, 200);
    let version = version_of(&b);
    let tk = TransferKey::generate(2048).unwrap();
    let pem = tk
        .private_key()
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    let key_file = state.path().join("transfer.pem");
    std::fs::write(&key_file, pem.as_bytes()).unwrap();
    let target = ctx.maa_token(runtime_keys(&tk), 3600);
    let real = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/real/thomvanl-skr-sample/sample-responses/2-keyvault-release-key/keyvault-release-key-reponse-body.json"
    );
    let want = common::python(SHAPE_PY, &[real]);
    let stored = hex::encode(ctx.stored_material("vault", "shape", &version));
    for enc in [
        "CKM_RSA_AES_KEY_WRAP",
        "RSA_AES_KEY_WRAP_256",
        "RSA_AES_KEY_WRAP_384",
    ] {
        let (st, _, resp) = ctx.call(
            "POST",
            "vault",
            &format!("/keys/shape/{version}/release"),
            Some(&json!({"target": target, "enc": enc})),
        );
        assert_eq!(st, 200, "{resp}");
        let f = state.path().join("release.json");
        std::fs::write(&f, resp.to_string()).unwrap();
        let got = common::python(SHAPE_PY, &[f.to_str().unwrap()]);
        assert_eq!(
            got, want,
            "member paths and order differ from the real Key Vault response"
        );
        // A CA with the same name but another P-256 key must not verify the chain (the
        // ecdsa-with-SHA256 signature is really checked).
        let other = tempfile::tempdir().unwrap();
        let impostor = skrd::emulator::server::tls::Ca::load_or_create(other.path()).unwrap();
        let pem = std::fs::read_to_string(&impostor.pem_path).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let roots = vec![ChainCert::from_der("impostor CA", &der).unwrap()];
        let err = verify_release_response(
            resp.to_string().as_bytes(),
            &ReleaseVerification {
                roots: &roots,
                now: now(),
                expected_host: None,
                rsa_block_len: tk.modulus_len(),
                expected_key: None,
                expected_transfer_kid: None,
            },
        );
        let e = err
            .expect_err("an impostor CA verified the chain")
            .to_string();
        assert!(e.contains("signature"), "{e}");
        let plain = common::python(
            UNWRAP_PY,
            &[f.to_str().unwrap(), key_file.to_str().unwrap()],
        );
        assert_eq!(plain.trim(), stored, "{enc}");
    }

    // The release policy comes back as Key Vault re-serialises it (§6.8): the real sample's
    // policy, uploaded pretty-printed, is echoed compact in the real member order (version,
    // anyOf; authority, allOf; claim, equals) -- byte for byte the real response's `data`, with
    // this emulator's authority in place of the real one.
    let real_body: Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/real/thomvanl-skr-sample/sample-responses/3-keyvault-release-key-decoded/keyvault-release-key-decoded-body.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let real_data = String::from_utf8(unb64url(
        real_body["response"]["key"]["release_policy"]["data"]
            .as_str()
            .unwrap(),
    ))
    .unwrap();
    let expected = real_data.replace("https://sharedweu.weu.attest.azure.net", &authority);
    assert_ne!(expected, real_data);
    let uploaded: Value = serde_json::from_str(&expected).unwrap();
    let pretty = serde_json::to_string_pretty(&uploaded).unwrap();
    let (st, _, b) = ctx.call(
        "POST",
        "vault",
        "/keys/real-policy/create",
        Some(
            &json!({"kty": "RSA-HSM", "attributes": {"exportable": true},
                     "release_policy": {"contentType": "application/json; charset=utf-8",
                                        "data": b64url(pretty.as_bytes())}}),
        ),
    );
    assert_eq!(st, 200, "{b}");
    let mut claims = runtime_keys(&tk);
    claims["x-ms-isolation-tee"]["x-ms-attestation-type"] = json!("sevsnpvm");
    claims["x-ms-isolation-tee"]["x-ms-compliance-status"] = json!("azure-compliant-cvm");
    let (st, _, resp) = ctx.call(
        "POST",
        "vault",
        "/keys/real-policy/release",
        Some(&json!({"target": ctx.maa_token(claims, 3600)})),
    );
    assert_eq!(st, 200, "{resp}");
    let payload = unverified_claims(resp["value"].as_str().unwrap());
    let echoed = &payload["response"]["key"]["release_policy"];
    assert_eq!(
        String::from_utf8(unb64url(echoed["data"].as_str().unwrap())).unwrap(),
        expected
    );
    assert_eq!(echoed.as_object().unwrap().len(), 2, "{echoed}");
    assert_eq!(echoed["immutable"], false);
}

#[test]
fn import_ec_jwk_stores_pkcs8_that_python_reads() {
    // python3 cryptography makes the key; it later reads the stored PKCS#8 back.
    let gen = r#"
import base64, json
from cryptography.hazmat.primitives.asymmetric import ec
k = ec.generate_private_key(ec.SECP384R1())
n = k.private_numbers()
b = lambda i: base64.urlsafe_b64encode(i.to_bytes(48, 'big')).rstrip(b'=').decode()
print(json.dumps({'kty': 'EC', 'crv': 'P-384', 'd': b(n.private_value),
                  'x': b(n.public_numbers.x), 'y': b(n.public_numbers.y)}))
"#;
    let jwk: Value = serde_json::from_str(common::python(gen, &[]).trim()).unwrap();
    let state = common::fresh_state_dir();
    let ctx = Ctx::start(state.path(), &[]);
    let authority = ctx.base("attestation");
    let (st, _, b) = ctx.call(
        "PUT",
        "vault",
        "/keys/ec-imported",
        Some(&json!({"key": jwk, "hsm": true, "attributes": {"exportable": true}, "release_policy": policy(&authority)})),
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["key"]["kty"], "EC-HSM");
    assert_eq!(b["key"]["crv"], "P-384");
    assert_eq!(b["key"]["x"], jwk["x"]);
    let der = ctx.stored_material("vault", "ec-imported", &version_of(&b));
    let f = state.path().join("ec.der");
    std::fs::write(&f, der).unwrap();
    let check = r#"
import base64, sys
from cryptography.hazmat.primitives import serialization
k = serialization.load_der_private_key(open(sys.argv[1], 'rb').read(), None)
print(base64.urlsafe_b64encode(k.private_numbers().private_value.to_bytes(48, 'big')).rstrip(b'=').decode())
"#;
    let d = common::python(check, &[f.to_str().unwrap()]);
    assert_eq!(d.trim(), jwk["d"].as_str().unwrap());
}

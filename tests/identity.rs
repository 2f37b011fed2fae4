//! `skrd::identity` against a real `skr-emulator serve`: IMDS managed-identity tokens (system-
//! and user-assigned, cache reuse and renewal, IMDS error bodies, 404/410 retries), THIM, and
//! Key Vault / Managed HSM GET key with the identity's bearer (PROTOCOLS.md §2.1, §2.3, §6).
//! Call counts come from the emulator's per-endpoint counters.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "net_fixture/mod.rs"]
mod net_fixture;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use base64::Engine;
use net_fixture::{deadline, rt, Fixture};
use serde_json::{json, Value};
use skrd::config::settings::{Identity, IdentitySettings};
use skrd::config::values::parse_key_url;
use skrd::error::ErrorCode;
use skrd::identity::{fetch_vcek_chain, get_key, TokenCache};
use skrd::net::{HttpRequest, Step};

trait IdentityFixture {
    fn identities(&self) -> Value;
    fn cache(&self, identity: Identity) -> TokenCache;
}

impl IdentityFixture for Fixture {
    fn identities(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("identities.json")).unwrap())
            .unwrap()
    }

    fn cache(&self, identity: Identity) -> TokenCache {
        TokenCache::new(
            self.http(),
            &IdentitySettings {
                identity,
                imds_url: self.emu.url("imds").parse().unwrap(),
            },
        )
    }
}

/// The claims of a JWT, decoded independently of skrd's JOSE code.
fn claims(jwt: &[u8]) -> Value {
    let payload = std::str::from_utf8(jwt).unwrap().split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn system_token_is_cached_per_resource_and_renewed_near_expiry() {
    let f = Fixture::start();
    let now = Arc::new(AtomicI64::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    ));
    let clock_now = now.clone();
    let cache = f
        .cache(Identity::SystemAssigned)
        .with_clock(Arc::new(move || clock_now.load(Ordering::SeqCst)));
    let rt = rt();
    let t1 = rt
        .block_on(cache.token("https://vault.azure.net", &deadline()))
        .unwrap();
    let t2 = rt
        .block_on(cache.token("https://vault.azure.net/", &deadline()))
        .unwrap();
    // Two tokens asked for, one IMDS call.
    assert_eq!(f.counter("imds-token"), 1);
    assert_eq!(t1.secret().expose(), t2.secret().expose());
    // §2.1: the token's aud is the requested resource; expires_on is its exp.
    let c = claims(t1.secret().expose());
    assert_eq!(c["aud"], "https://vault.azure.net");
    assert_eq!(c["exp"].as_i64().unwrap(), t1.expires_on);
    let system = f.identities()["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "system")
        .unwrap()
        .clone();
    assert_eq!(c["oid"], system["object_id"]);

    // Another resource: its own token.
    let h = rt
        .block_on(cache.token("https://managedhsm.azure.net", &deadline()))
        .unwrap();
    assert_eq!(
        claims(h.secret().expose())["aud"],
        "https://managedhsm.azure.net"
    );
    assert_eq!(f.counter("imds-token"), 2);

    // Less than 5 minutes before expiry: renewed.
    now.store(t1.expires_on - 299, Ordering::SeqCst);
    rt.block_on(cache.token("https://vault.azure.net", &deadline()))
        .unwrap();
    assert_eq!(f.counter("imds-token"), 3);
    // 5 min + 1 s before expiry: still the cached one.
    now.store(t1.expires_on - 301, Ordering::SeqCst);
    rt.block_on(cache.token("https://managedhsm.azure.net", &deadline()))
        .unwrap();
    assert_eq!(f.counter("imds-token"), 3);
}

#[test]
fn user_assigned_identity_by_client_object_and_resource_id() {
    let f = Fixture::start();
    let ids = f.identities();
    let user = ids["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "user")
        .unwrap()
        .clone();
    let s = |k: &str| user[k].as_str().unwrap().to_string();
    let rt = rt();
    let rid = skrd::config::values::parse_identity_resource_id(&s("resource_id")).unwrap();
    for identity in [
        Identity::ClientId(s("client_id").parse().unwrap()),
        Identity::ObjectId(s("object_id").parse().unwrap()),
        Identity::ResourceId(rid),
    ] {
        let t = rt
            .block_on(
                f.cache(identity.clone())
                    .token("https://vault.azure.net", &deadline()),
            )
            .unwrap();
        let c = claims(t.secret().expose());
        assert_eq!(c["appid"], user["client_id"], "{identity:?}");
        assert_eq!(c["oid"], user["object_id"], "{identity:?}");
    }
    // An identity that is not on this VM: IMDS invalid_request → specific code.
    let other = Identity::ClientId("a1b2c3d4-0000-4000-8000-000000000001".parse().unwrap());
    let e = rt
        .block_on(f.cache(other).token("https://vault.azure.net", &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "identity-invalid-request", "{e}");
    assert!(e.to_string().contains("Identity not found"), "{e}");
}

#[test]
fn imds_error_bodies_and_updating_statuses() {
    let f = Fixture::start();
    let rt = rt();
    // IMDS's documented error body for an unknown resource (§2.1).
    let e = rt
        .block_on(
            f.cache(Identity::SystemAssigned)
                .token("not-a-resource", &deadline()),
        )
        .unwrap_err();
    assert_eq!(e.code(), "identity-invalid-resource", "{e}");
    // 410 "updating" twice, then the token.
    f.faults(json!({"imds-token": {"status": 410, "times": 2}}));
    let before = f.counter("imds-token");
    rt.block_on(
        f.cache(Identity::SystemAssigned)
            .token("https://vault.azure.net", &deadline()),
    )
    .unwrap();
    assert_eq!(f.counter("imds-token") - before, 3);
    // A 200 that is not a token response.
    f.faults(json!({"imds-token": {"status": 200, "body": "{\"access_token\": 5}"}}));
    let e = rt
        .block_on(
            f.cache(Identity::SystemAssigned)
                .token("https://vault.azure.net", &deadline()),
        )
        .unwrap_err();
    assert_eq!(e.code(), "identity-token-response-invalid", "{e}");
    // 429 every time: the network layer's retries, then its error.
    f.faults(json!({"imds-token": {"status": 429}}));
    let e = rt
        .block_on(
            f.cache(Identity::SystemAssigned)
                .token("https://vault.azure.net", &deadline()),
        )
        .unwrap_err();
    assert_eq!(e.code(), "net-retries-exhausted", "{e}");
    assert!(e.to_string().contains("imds-token"), "{e}");
}

#[test]
fn thim_chain_is_fetched_and_parsed() {
    let f = Fixture::start();
    let imds = f.emu.url("imds").parse().unwrap();
    let (certs, resp) = rt()
        .block_on(fetch_vcek_chain(&f.http(), &imds, &deadline()))
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(certs.chain.len(), 2);
    // The emulator's VCEK, independently: openssl prints the subject of the vcekCert PEM.
    let doc: Value = serde_json::from_slice(&resp.body).unwrap();
    let pem = f.dir.path().join("vcek-from-thim.pem");
    std::fs::write(&pem, doc["vcekCert"].as_str().unwrap()).unwrap();
    let (ok, subject) =
        common::openssl(&["x509", "-in", pem.to_str().unwrap(), "-noout", "-subject"]);
    assert!(ok, "{subject}");
    assert!(subject.contains("SEV-VCEK"), "{subject}");
    // THIM unavailable (not an Azure SNP VM): a specific error.
    f.faults(json!({"thim": {"status": 404}}));
    let e = rt()
        .block_on(fetch_vcek_chain(&f.http(), &imds, &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "thim-status-unexpected");
}

fn create_key(f: &Fixture, cache: &TokenCache, service: &str, resource: &str, name: &str) {
    let rt = rt();
    let token = rt.block_on(cache.token(resource, &deadline())).unwrap();
    let authority = f.emu.url("attestation");
    let policy = json!({"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": [
        {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"}]}]});
    let kty = if service == "vault" {
        json!({"kty": "RSA-HSM", "key_size": 2048})
    } else {
        json!({"kty": "oct-HSM", "key_size": 256})
    };
    let mut body = kty;
    body["attributes"] = json!({"exportable": true});
    body["release_policy"] = json!({
        "contentType": "application/json; charset=utf-8",
        "data": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(policy.to_string()),
    });
    let url = format!("{}/keys/{name}/create?api-version=7.4", f.emu.url(service));
    let req = HttpRequest::post_json(
        Step::KeyGet,
        url.parse().unwrap(),
        body.to_string().into_bytes(),
    )
    .with_bearer(token.bearer());
    let r = rt.block_on(f.http().send(req, &deadline())).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn get_key_reads_the_release_policy_from_vault_and_managed_hsm() {
    let f = Fixture::start();
    let cache = f.cache(Identity::SystemAssigned);
    create_key(&f, &cache, "vault", "https://vault.azure.net", "rsa-key");
    create_key(
        &f,
        &cache,
        "managed_hsm",
        "https://managedhsm.azure.net",
        "oct-key",
    );
    let rt = rt();
    let fresh = f.cache(Identity::SystemAssigned);
    let before_tokens = f.counter("imds-token");

    let key = parse_key_url(&format!("{}/keys/rsa-key", f.emu.url("vault"))).unwrap();
    let b = rt
        .block_on(get_key(&f.http(), &fresh, &key, "7.4", &deadline()))
        .unwrap();
    assert_eq!(b.bundle["key"]["kty"], "RSA-HSM");
    assert!(b.bundle["release_policy"]["data"].is_string());
    assert_eq!(f.counter("vault-get"), 1);

    // The emulator's Managed HSM is on a loopback host: the first token (vault.azure.net) is
    // refused with a challenge naming managedhsm.azure.net, and the call is repeated once.
    let key = parse_key_url(&format!("{}/keys/oct-key", f.emu.url("managed_hsm"))).unwrap();
    let b = rt
        .block_on(get_key(&f.http(), &fresh, &key, "7.4", &deadline()))
        .unwrap();
    assert_eq!(b.bundle["key"]["kty"], "oct-HSM");
    assert_eq!(f.counter("managed-hsm-get"), 2);
    // Two resources, two IMDS calls in total (the vault token was reused for the first HSM try).
    assert_eq!(f.counter("imds-token") - before_tokens, 2);

    // Unknown key → key-get-not-found.
    let key = parse_key_url(&format!("{}/keys/nope", f.emu.url("vault"))).unwrap();
    let e = rt
        .block_on(get_key(&f.http(), &fresh, &key, "7.4", &deadline()))
        .unwrap_err();
    assert_eq!(e.code(), "key-get-not-found", "{e}");
}

#[test]
fn concurrent_requests_for_one_resource_share_one_imds_call() {
    let f = Fixture::start();
    // A slow IMDS makes the two requests overlap.
    f.faults(json!({"imds-token": {"delay_ms": 300}}));
    let cache = f.cache(Identity::SystemAssigned);
    let d = deadline();
    let (a, b) = rt().block_on(async {
        tokio::join!(
            cache.token("https://vault.azure.net", &d),
            cache.token("https://vault.azure.net", &d)
        )
    });
    assert_eq!(a.unwrap().secret().expose(), b.unwrap().secret().expose());
    assert_eq!(f.counter("imds-token"), 1);
}

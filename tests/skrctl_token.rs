//! `skrctl token verify` and `skrctl release verify` as an operator runs them: exit statuses,
//! `--json` output and error codes, on every real MAA token and the real release response.
//!
//! Expected verdicts come from `tests/fixtures/independent/jose_expected.json` (python3
//! `cryptography`, see `jose_expected.py`); RFC 3339 times from `date -u -d @<exp> +%FT%TZ`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const SKRCTL: &str = env!("CARGO_BIN_EXE_skrctl");
const EXPECTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/independent/jose_expected.json"
));

fn real(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real")
        .join(rel)
}

fn expected() -> Value {
    serde_json::from_str(EXPECTED).unwrap()
}

const JWKS: &str = "maa-tokens/jwks/secretnetwork-known-maa-keys.jwks.json";
const CERT: &str = "maa-tokens/jwks/maa-sharedeus2-signing-cert-J0pAPdf.der";
const RELEASE: &str =
    "thomvanl-skr-sample/sample-responses/2-keyvault-release-key/keyvault-release-key-reponse-body.json";

/// Runs skrctl with a configuration that does not exist (so no /etc file is read) unless the
/// arguments give one; returns (status, stdout JSON or Null, stderr).
fn run(args: &[&str]) -> (i32, Value, String) {
    let mut cmd = Command::new(SKRCTL);
    if !args.contains(&"--config") {
        cmd.args(["--config", "/nonexistent/skrd-test.toml"]);
    }
    let out = cmd.args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap(),
        json,
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `skrctl token verify PATH --keys KEYS --issuer <sharedeus2> --at AT --json`.
fn verify_sharedeus2(path: &Path, keys: &Path, at: &str) -> (i32, Value, String) {
    run(&[
        "token",
        "verify",
        path.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
        "--issuer",
        "https://sharedeus2.eus2.attest.azure.net",
        "--at",
        at,
        "--json",
    ])
}

/// RFC 3339 of a time one minute after the token's iat.
fn inside(t: &Value) -> String {
    rfc3339(t["iat"].as_i64().unwrap() + 60)
}

#[test]
fn every_real_token_with_the_jwks_and_the_certificate() {
    for t in expected()["tokens"].as_array().unwrap() {
        let file = real(t["file"].as_str().unwrap());
        let at = inside(t);
        for (keys, source) in [(JWKS, "jwks"), (CERT, "cert")] {
            let (code, out, err) = run(&[
                "token",
                "verify",
                file.to_str().unwrap(),
                "--keys",
                real(keys).to_str().unwrap(),
                "--issuer",
                t["iss"].as_str().unwrap(),
                "--at",
                &at,
                "--json",
            ]);
            let ok = t["verifies_with"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["source"] == source);
            assert_eq!(
                code,
                if ok { 0 } else { 1 },
                "{file:?} {source}: {out} {err}"
            );
            assert_eq!(out["verified"], ok);
            assert_eq!(out["kid"], t["header"]["kid"]);
            assert_eq!(out["issuer"], t["iss"]);
            assert_eq!(out["claims"]["exp"], t["exp"]);
            assert_eq!(
                out["claims"]["x-ms-attestation-type"],
                t["attestation_type"]
            );
            if ok {
                assert!(out["error"].is_null());
            } else {
                // Not in the JWKS: unknown kid. The kid-less certificate is tried and fails.
                let want = if source == "jwks" {
                    "jwt-unknown-kid"
                } else {
                    "jws-signature-invalid"
                };
                assert_eq!(out["error"]["code"], want, "{file:?} {source}");
            }
        }
    }
}

/// Converts the DER signing certificate to PEM with openssl (independent of skrd's own PEM code).
fn pem_with_openssl(der: &Path, out: &Path) {
    let st = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(der)
        .arg("-out")
        .arg(out)
        .status()
        .expect("openssl (make deps installs it)");
    assert!(st.success());
    let text = std::fs::read_to_string(out).unwrap();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
}

/// `--keys` with a PEM certificate: the same verdicts as the DER certificate
/// (jose_expected.json `verifies_with` source "cert"), also as the second certificate of a PEM
/// bundle after an unrelated one, and with CRLF line endings.
#[test]
fn every_real_token_with_the_pem_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("signing.pem");
    pem_with_openssl(&real(CERT), &pem);
    let signing = std::fs::read_to_string(&pem).unwrap();
    // An unrelated certificate first: the release response's DigiCert root (from x5c[2]).
    let (digicert, _) = roots(dir.path());
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        format!("{}{signing}", std::fs::read_to_string(digicert).unwrap()),
    )
    .unwrap();
    let crlf = dir.path().join("crlf.pem");
    std::fs::write(&crlf, signing.replace('\n', "\r\n")).unwrap();
    let mut verified = 0;
    for t in expected()["tokens"].as_array().unwrap() {
        let file = real(t["file"].as_str().unwrap());
        let ok = t["verifies_with"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["source"] == "cert");
        for keys in [&pem, &bundle, &crlf] {
            let (code, out, err) = run(&[
                "token",
                "verify",
                file.to_str().unwrap(),
                "--keys",
                keys.to_str().unwrap(),
                "--issuer",
                t["iss"].as_str().unwrap(),
                "--at",
                &inside(t),
                "--json",
            ]);
            assert_eq!(
                code,
                if ok { 0 } else { 1 },
                "{file:?} {keys:?}: {out} {err}"
            );
            assert_eq!(out["verified"], ok);
            assert_eq!(out["kid"], t["header"]["kid"]);
            if ok {
                assert!(out["error"].is_null());
                assert_eq!(out["claims"]["exp"], t["exp"]);
                verified += 1;
            } else {
                assert_eq!(out["error"]["code"], "jws-signature-invalid", "{file:?}");
            }
        }
    }
    // The four sharedeus2 SevSnpVm tokens, each with three PEM files.
    assert_eq!(verified, 12);
    // A PEM file whose certificate is damaged: unusable key file (2), not a refusal.
    let broken = dir.path().join("broken.pem");
    let mut lines: Vec<&str> = signing.lines().collect();
    lines.remove(3);
    std::fs::write(&broken, lines.join("\n")).unwrap();
    let (file, t) = jesserc();
    let (code, out, _) = run(&[
        "token",
        "verify",
        file.to_str().unwrap(),
        "--keys",
        broken.to_str().unwrap(),
        "--issuer",
        t["iss"].as_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (2, Some("jose-cert-invalid"))
    );
}

fn jesserc() -> (PathBuf, Value) {
    let t = expected()["tokens"][0].clone();
    (real(t["file"].as_str().unwrap()), t)
}

#[test]
fn expires_at_and_human_output() {
    let (file, t) = jesserc();
    let (code, out, _) = run(&[
        "token",
        "verify",
        file.to_str().unwrap(),
        "--keys",
        real(CERT).to_str().unwrap(),
        "--issuer",
        "https://sharedeus2.eus2.attest.azure.net/",
        "--at",
        &inside(&t),
        "--json",
    ]);
    assert_eq!(code, 0);
    // date -u -d @1734747894 +%FT%TZ
    assert_eq!(out["expires_at"], "2024-12-21T02:24:54Z");
    let out = Command::new(SKRCTL)
        .args([
            "token",
            "verify",
            file.to_str().unwrap(),
            "--keys",
            real(JWKS).to_str().unwrap(),
        ])
        .args([
            "--issuer",
            "https://sharedeus2.eus2.attest.azure.net",
            "--at",
            &inside(&t),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("token verified"), "{text}");
    assert!(
        text.contains("compliance status: azure-compliant-cvm"),
        "{text}"
    );
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The default allowance is the flow's 300 s (docs/errors-jose.md; tests/net_trust.rs checks
/// the flow at the same instants): with `--at`, a real token verifies at exp + 299 s and at
/// nbf - 300 s, and is refused at exp + 300 s and nbf - 301 s; `--skew 0` makes exp itself the
/// first refused second.
#[test]
fn the_skew_boundary_with_at() {
    let (file, t) = jesserc();
    let f = file.to_str().unwrap();
    let k = real(JWKS);
    let k = k.to_str().unwrap();
    let iss = "https://sharedeus2.eus2.attest.azure.net";
    let (exp, nbf) = (t["exp"].as_i64().unwrap(), t["nbf"].as_i64().unwrap());
    let at = |secs: i64, extra: &[&str]| {
        let when = rfc3339(secs);
        let mut args = vec![
            "token", "verify", f, "--keys", k, "--issuer", iss, "--at", &when, "--json",
        ];
        args.extend_from_slice(extra);
        let (code, out, _) = run(&args);
        (code, out["error"]["code"].as_str().map(str::to_string))
    };
    assert_eq!(at(exp + 299, &[]), (0, None));
    assert_eq!(at(exp + 300, &[]), (1, Some("jwt-expired".into())));
    assert_eq!(at(nbf - 300, &[]), (0, None));
    assert_eq!(at(nbf - 301, &[]), (1, Some("jwt-not-yet-valid".into())));
    assert_eq!(at(exp - 1, &["--skew", "0"]), (0, None));
    assert_eq!(at(exp, &["--skew", "0"]), (1, Some("jwt-expired".into())));
}

#[test]
fn refusals_exit_1_with_the_specific_code() {
    let (file, t) = jesserc();
    let f = file.to_str().unwrap();
    let keys = real(JWKS);
    let k = keys.to_str().unwrap();
    let iss = "https://sharedeus2.eus2.attest.azure.net";
    // Expired: every real token is, at the real current time.
    let (code, out, _) = run(&["token", "verify", f, "--keys", k, "--issuer", iss, "--json"]);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (1, Some("jwt-expired"))
    );
    // Wrong issuer.
    let (code, out, _) = run(&[
        "token",
        "verify",
        f,
        "--keys",
        k,
        "--issuer",
        "https://sharedweu.weu.attest.azure.net",
        "--at",
        &inside(&t),
        "--json",
    ]);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (1, Some("jwt-issuer-mismatch"))
    );
    // Not valid yet: 301 s before nbf with the default 300 s skew; --skew widens it.
    let nbf = t["nbf"].as_i64().unwrap();
    let before = time::OffsetDateTime::from_unix_timestamp(nbf - 301)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (code, out, _) = run(&[
        "token", "verify", f, "--keys", k, "--issuer", iss, "--at", &before, "--json",
    ]);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (1, Some("jwt-not-yet-valid"))
    );
    let (code, _, _) = run(&[
        "token", "verify", f, "--keys", k, "--issuer", iss, "--at", &before, "--skew", "301",
    ]);
    assert_eq!(code, 0);
    // Tampered tokens that still read as a compact JWS: refused (1).
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let parts: Vec<&str> = text.trim().split('.').collect();
    let cases = [
        (format!("{}.{}.{}", parts[0], &parts[1][4..], parts[2]), "jws-signature-invalid"),
        // {"alg":"none","kid":"J0pA…","typ":"JWT"} in base64url, the real payload and signature.
        (
            format!(
                "eyJhbGciOiJub25lIiwia2lkIjoiSjBwQVBkZlhYSHFXV2ltZ3JIODUzd01JZGg1L2ZMZTF6NnVTWFlQWENhMD0iLCJ0eXAiOiJKV1QifQ.{}.{}",
                parts[1], parts[2]
            ),
            "jws-alg-none",
        ),
    ];
    for (i, (token, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("t{i}.jwt"));
        std::fs::write(&path, token).unwrap();
        let (code, out, err) = run(&[
            "token",
            "verify",
            path.to_str().unwrap(),
            "--keys",
            k,
            "--issuer",
            iss,
            "--at",
            &inside(&t),
            "--json",
        ]);
        assert_eq!(
            (code, out["error"]["code"].as_str()),
            (1, Some(*want)),
            "case {i}: {err}"
        );
        assert_eq!(out["verified"], false);
        // The claims are shown unverified where the payload still decodes (the real kid).
        if *want == "jws-alg-none" {
            assert_eq!(out["kid"], t["header"]["kid"]);
            assert_eq!(out["claims"]["exp"], t["exp"]);
        }
    }
}

/// A file that is not a compact JWS at all (truncated at a '.', garbage, a JSON wrapper, an
/// empty file) is unusable input: exit 2, like `policy check --token`, and the JSON still has
/// every documented member, null where unknown.
#[test]
fn garbage_and_truncated_tokens_exit_2_with_every_member() {
    let (file, t) = jesserc();
    let k = real(JWKS);
    let text = std::fs::read_to_string(&file).unwrap();
    let parts: Vec<&str> = text.trim().split('.').collect();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (format!("{}.{}", parts[0], parts[1]), "jws-segment-count"),
        (
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
            "jws-segment-count",
        ),
        // 4n+1 base64url characters cannot be the encoding of any byte string (RFC 4648 §5).
        (
            format!("{}.{}x.{}", parts[0], parts[1], parts[2]),
            "jose-base64-invalid",
        ),
        ("not a token at all\n".to_string(), "jws-not-compact"),
        (
            format!("{{\"token\": \"{}\"}}", text.trim()),
            "jws-not-compact",
        ),
        (
            format!("{}.", &text.trim()[..text.trim().len() - 1]),
            "jws-segment-count",
        ),
        ("..".to_string(), "jws-segment-empty"),
        // base64url of "[1]": a header that is JSON but not an object.
        (
            format!("WzFd.{}.{}", parts[1], parts[2]),
            "jose-json-invalid",
        ),
    ];
    for (i, (token, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("g{i}.jwt"));
        std::fs::write(&path, token).unwrap();
        let (code, out, err) = verify_sharedeus2(&path, &k, &inside(&t));
        assert_eq!(
            (code, out["error"]["code"].as_str()),
            (2, Some(*want)),
            "case {i}: {out} {err}"
        );
        let obj = out.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["claims", "error", "expires_at", "issuer", "kid", "verified"],
            "case {i}"
        );
        assert_eq!(out["verified"], false);
        for m in ["claims", "issuer", "kid", "expires_at"] {
            assert!(out[m].is_null(), "case {i}: {m} = {}", out[m]);
        }
        // Human output: the code on stderr, nothing on stdout, same status.
        let out = Command::new(SKRCTL)
            .args(["--config", "/nonexistent/skrd-test.toml", "token", "verify"])
            .arg(&path)
            .args([
                "--keys",
                k.to_str().unwrap(),
                "--issuer",
                "https://x.example",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "case {i}");
        assert!(out.stdout.is_empty());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "case {i}"
        );
    }
    // Cut inside the signature at a decodable length (342 of 342 characters minus 2 gives
    // 340 = 4*85: 255 bytes, one short of RSA-2048's 256): a well-formed token whose signature
    // fails, so refused (1), not unusable.
    let cut = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        &parts[2][..parts[2].len() - 2]
    );
    assert_eq!(
        parts[2].len(),
        342,
        "RS256 with RSA-2048: 256 bytes = 342 base64url chars"
    );
    let path = dir.path().join("cut.jwt");
    std::fs::write(&path, cut).unwrap();
    let (code, out, _) = verify_sharedeus2(&path, &k, &inside(&t));
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (1, Some("jws-signature-invalid"))
    );
    assert_eq!(out["kid"], t["header"]["kid"]);
}

#[test]
fn unusable_inputs_exit_2() {
    let (file, t) = jesserc();
    let f = file.to_str().unwrap();
    let k = real(JWKS);
    let k = k.to_str().unwrap();
    let iss = "https://sharedeus2.eus2.attest.azure.net";
    // No --keys and a token from another issuer than the expected one: refused before any
    // key is fetched (nothing listens on port 9 of loopback; a fetch would fail with exit 2).
    let (code, out, _) = run(&[
        "token",
        "verify",
        f,
        "--issuer",
        "https://127.0.0.1:9",
        "--json",
    ]);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (1, Some("jwt-issuer-mismatch"))
    );
    // No --issuer and no configuration.
    let (code, out, _) = run(&["token", "verify", f, "--keys", k, "--json"]);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (2, Some("usage-issuer-missing"))
    );
    // Bad --at, unreadable files, a key file that holds no key.
    let (code, out, _) = run(&[
        "token",
        "verify",
        f,
        "--keys",
        k,
        "--issuer",
        iss,
        "--at",
        "yesterday",
        "--json",
    ]);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (2, Some("invalid-argument"))
    );
    let (code, out, _) = run(&[
        "token",
        "verify",
        "/nonexistent.jwt",
        "--keys",
        k,
        "--issuer",
        iss,
        "--json",
    ]);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (2, Some("file-unreadable"))
    );
    let (code, out, _) = run(&["token", "verify", f, "--keys", f, "--issuer", iss, "--json"]);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (2, Some("jose-key-source-unrecognised"))
    );
    // The issuer from the configuration's attestation.provider.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("skrd.toml");
    std::fs::write(&conf, format!("[attestation]\nprovider = \"{iss}\"\n")).unwrap();
    let (code, out, err) = run(&[
        "--config",
        conf.to_str().unwrap(),
        "token",
        "verify",
        f,
        "--keys",
        k,
        "--at",
        &inside(&t),
        "--json",
    ]);
    assert_eq!(code, 0, "{out} {err}");
}

// ---- release verify -----------------------------------------------------------------------

/// Writes x5c[2] of the real response (DigiCert Global Root G2: its SHA-256 equals
/// `openssl x509 -in /etc/ssl/certs/DigiCert_Global_Root_G2.pem -noout -fingerprint -sha256`)
/// as PEM, and the MAA signing certificate as an unrelated root.
fn roots(dir: &Path) -> (PathBuf, PathBuf) {
    use base64::Engine;
    let body: Value = serde_json::from_slice(&std::fs::read(real(RELEASE)).unwrap()).unwrap();
    let header = body["value"].as_str().unwrap().split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    let root_b64 = header["x5c"][2].as_str().unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(root_b64)
        .unwrap();
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&der)),
        "cb3ccbb76031e5e0138f8dd39a23f9de47ffc35e43c1144cea27d46a5ab1cb5f"
    );
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in root_b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let good = dir.join("digicert-g2.pem");
    std::fs::write(&good, pem).unwrap();
    (good, real(CERT))
}

const AT: &str = "2022-12-24T00:00:00Z";

#[test]
fn release_verified_with_the_right_root() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = roots(dir.path());
    let (code, out, err) = run(&[
        "release",
        "verify",
        real(RELEASE).to_str().unwrap(),
        "--root",
        good.to_str().unwrap(),
        "--at",
        AT,
        "--host",
        "skr-kvq6srllol2jntw.vault.azure.net",
        "--json",
    ]);
    assert_eq!(code, 0, "{out} {err}");
    let x = &expected()["release"];
    assert_eq!(out["verified"], true);
    assert_eq!(out["request"], x["request"]);
    assert_eq!(out["key"]["kid"], x["key"]["kid"]);
    assert_eq!(out["key"]["kty"], x["key"]["kty"]);
    assert_eq!(out["key"]["key_size"], x["key"]["n_bits"]);
    assert_eq!(out["key"]["key_ops"], x["key"]["key_ops"]);
    let w = &out["key"]["wrapping"];
    let xk = &x["key"]["key_hsm"];
    assert_eq!(w["kid"], xk["header"]["kid"]);
    assert_eq!(w["enc"], xk["header"]["enc"]);
    assert_eq!(w["alg"], xk["header"]["alg"]);
    assert_eq!(w["ciphertext_len"], xk["ciphertext_len"]);
    assert_eq!(w["rsa_block_len"], xk["rsa_block_len"]);
    assert_eq!(w["aes_kwp_len"], xk["aes_kwp_len"]);
    assert_eq!(out["release_policy"], x["release_policy"]);
    let subjects: Vec<Value> = x["x5c"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].clone())
        .collect();
    assert_eq!(out["chain"], Value::Array(subjects));
    // An RSA-3072 transfer key would leave 2640 - 384 = 2256 bytes (a multiple of 8).
    let (code, out, _) = run(&[
        "release",
        "verify",
        real(RELEASE).to_str().unwrap(),
        "--root",
        good.to_str().unwrap(),
        "--at",
        AT,
        "--transfer-key-bits",
        "3072",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out["key"]["wrapping"]["rsa_block_len"], 384);
    assert_eq!(out["key"]["wrapping"]["aes_kwp_len"], 2256);
}

#[test]
fn release_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (good, wrong) = roots(dir.path());
    let resp = real(RELEASE);
    let r = resp.to_str().unwrap();
    let g = good.to_str().unwrap();
    let check = |args: &[&str], want: &str| {
        let mut all = vec!["release", "verify"];
        all.extend_from_slice(args);
        all.push("--json");
        let (code, out, err) = run(&all);
        assert_eq!(
            (code, out["error"]["code"].as_str()),
            (1, Some(want)),
            "{args:?}: {err}"
        );
        assert_eq!(out["verified"], false);
        out
    };
    // Expired today; before the leaf's notBefore (2022-09-23T16:14:06Z) not yet valid.
    let out = check(&[r, "--root", g], "chain-cert-expired");
    // The payload is still described (unverified) to help the operator.
    assert_eq!(out["key"]["wrapping"]["ciphertext_len"], 2640);
    check(
        &[r, "--root", g, "--at", "2022-09-23T16:14:05Z"],
        "chain-cert-not-yet-valid",
    );
    check(
        &[r, "--root", wrong.to_str().unwrap(), "--at", AT],
        "chain-root-untrusted",
    );
    check(
        &[
            r,
            "--root",
            g,
            "--at",
            AT,
            "--host",
            "myvault.managedhsm.azure.net",
        ],
        "chain-name-mismatch",
    );
    check(
        &[r, "--root", g, "--at", AT, "--transfer-key-bits", "2056"],
        "release-ciphertext-length",
    );
    // Flipped payload byte and flipped signature byte.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body: Value = serde_json::from_slice(&std::fs::read(&resp).unwrap()).unwrap();
    let parts: Vec<String> = body["value"]
        .as_str()
        .unwrap()
        .split('.')
        .map(str::to_string)
        .collect();
    for (seg, want) in [
        (1usize, "jws-signature-invalid"),
        (2, "jws-signature-invalid"),
    ] {
        let mut p = parts.clone();
        let mut bytes = b64.decode(&p[seg]).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x04;
        p[seg] = b64.encode(&bytes);
        let path = dir.path().join(format!("flip{seg}.json"));
        std::fs::write(&path, serde_json::json!({"value": p.join(".")}).to_string()).unwrap();
        check(&[path.to_str().unwrap(), "--root", g, "--at", AT], want);
    }
    // Unusable: no such file, a root file that is not a certificate.
    let (code, out, _) = run(&[
        "release",
        "verify",
        "/nonexistent.json",
        "--root",
        g,
        "--json",
    ]);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (2, Some("file-unreadable"))
    );
    let (code, _, _) = run(&["release", "verify", r, "--root", r, "--json"]);
    assert_eq!(code, 2);
}

/// The member names of a JSON object, sorted.
fn members(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort_unstable();
    k
}

/// Every exit-2 path of `release verify` prints the documented members (null where unknown);
/// a body that is not `{"value": JWS}` (Key Vault's error body, truncated JSON, a JWS that is
/// not three segments) is unusable input (2), not a refusal.
#[test]
fn release_verify_unusable_inputs_exit_2_with_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = roots(dir.path());
    let g = good.to_str().unwrap();
    let want = [
        "at",
        "error",
        "key",
        "release_policy",
        "request",
        "roots",
        "verified",
    ];
    let body = std::fs::read_to_string(real(RELEASE)).unwrap();
    let cases = [
        // Key Vault's error body (PROTOCOLS.md §6.5).
        (
            r#"{"error":{"code":"Forbidden","message":"Target environment attestation statement cannot be verified."}}"#.to_string(),
            "release-body-invalid",
        ),
        (body[..body.len() / 2].to_string(), "release-body-invalid"),
        (r#"{"value": "abc.def"}"#.to_string(), "jws-segment-count"),
        (r#"{"value": "a b.c.d"}"#.to_string(), "jws-not-compact"),
    ];
    for (i, (text, code_want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("b{i}.json"));
        std::fs::write(&path, text).unwrap();
        let args = [path.to_str().unwrap(), "--root", g, "--at", AT];
        let out = unusable_with_every_member(&["release", "verify"], &args, code_want, &want);
        assert_eq!(out["at"], AT);
        for m in ["request", "key", "release_policy"] {
            assert!(out[m].is_null(), "case {i}: {m}");
        }
    }
    // Unreadable file, a root file that is no certificate, a bad --at, a bad key size.
    let r = real(RELEASE);
    let r = r.to_str().unwrap();
    for (args, code_want) in [
        (vec!["/nonexistent.json", "--root", g], "file-unreadable"),
        (vec![r, "--root", r], "chain-cert-invalid"),
        (vec![r, "--root", g, "--at", "soon"], "invalid-argument"),
        (
            vec![r, "--root", g, "--at", AT, "--transfer-key-bits", "2049"],
            "usage-invalid-key-size",
        ),
    ] {
        unusable_with_every_member(&["release", "verify"], &args, code_want, &want);
    }
}

/// `skrctl COMMAND ARGS --json` ends unusable (exit 2) with `code_want`, printing exactly the
/// members `want` and `"verified": false`; returns the printed object.
fn unusable_with_every_member(
    command: &[&str],
    args: &[&str],
    code_want: &str,
    want: &[&str],
) -> Value {
    let all = [command, args, &["--json"]].concat();
    let (code, out, err) = run(&all);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (2, Some(code_want)),
        "{args:?}: {err}"
    );
    assert_eq!(members(&out), want, "{args:?}");
    assert_eq!(out["verified"], false);
    out
}

/// `token verify`'s other exit-2 paths (no token file, no issuer, a key file without a key,
/// bad `--at`) print every documented member as well; where the token itself was readable, its
/// unverified claims are shown.
#[test]
fn token_verify_unusable_inputs_have_every_member() {
    let (file, t) = jesserc();
    let f = file.to_str().unwrap();
    let k = real(JWKS);
    let k = k.to_str().unwrap();
    let iss = "https://sharedeus2.eus2.attest.azure.net";
    let want = ["claims", "error", "expires_at", "issuer", "kid", "verified"];
    for (args, code_want, readable) in [
        (
            vec!["/nonexistent.jwt", "--keys", k, "--issuer", iss],
            "file-unreadable",
            false,
        ),
        (vec![f, "--keys", k], "usage-issuer-missing", true),
        (
            vec![f, "--keys", f, "--issuer", iss],
            "jose-key-source-unrecognised",
            true,
        ),
        (
            vec![f, "--keys", k, "--issuer", iss, "--at", "later"],
            "invalid-argument",
            true,
        ),
    ] {
        let out = unusable_with_every_member(&["token", "verify"], &args, code_want, &want);
        if readable {
            assert_eq!(out["kid"], t["header"]["kid"]);
            assert_eq!(out["issuer"], t["iss"]);
            // date -u -d @1734747894 +%FT%TZ
            assert_eq!(out["expires_at"], "2024-12-21T02:24:54Z");
        } else {
            assert!(out["claims"].is_null() && out["kid"].is_null());
        }
    }
}

/// clap's usage errors with `--json` anywhere on the command line print exactly one JSON
/// object `{"error": {"code": "usage-...", "message"}}` on stdout, nothing on stderr, exit 2;
/// without `--json`, clap's text on stderr and nothing on stdout.
#[test]
fn usage_errors_with_json_print_one_object() {
    let cases: &[(&[&str], &str)] = &[
        (&["token", "verify", "--json"], "usage-missing-argument"),
        (
            &["token", "verify", "x.jwt", "--bogus", "--json"],
            "usage-unknown-argument",
        ),
        (
            &["--json", "token", "verify", "x.jwt"],
            "usage-unknown-argument",
        ),
        (
            &["token", "verify", "x.jwt", "--skew", "soon", "--json"],
            "usage-invalid-value",
        ),
        (
            &["token", "frobnicate", "--json"],
            "usage-unknown-subcommand",
        ),
        (&["release", "verify", "--json"], "usage-missing-argument"),
        (
            &[
                "release",
                "verify",
                "r.json",
                "--transfer-key-bits",
                "x",
                "--json",
            ],
            "usage-invalid-value",
        ),
        (
            &[
                "policy", "check", "p.json", "--token", "t", "--claims", "c", "--json",
            ],
            "usage-argument-conflict",
        ),
        (
            &["attest", "--source", "nope", "--json"],
            "usage-invalid-value",
        ),
        (&["release", "--json"], "usage-missing-argument"),
        // Where no command takes --json, it is itself the unexpected argument.
        (&["--json"], "usage-unknown-argument"),
        (&["token", "--json"], "usage-unknown-argument"),
    ];
    for (args, want) in cases {
        let out = Command::new(SKRCTL).args(*args).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}");
        // Exactly one JSON value on stdout (a stream deserializer sees one, then the end).
        let mut values = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
        let v = values.next().unwrap().unwrap();
        assert!(values.next().is_none(), "{args:?}: more than one object");
        assert_eq!(members(&v), ["error"], "{args:?}");
        assert_eq!(v["error"]["code"], *want, "{args:?}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("--help"), "{args:?}: {message}");
        assert!(!message.starts_with("error:"), "{message}");
        assert!(out.stderr.is_empty(), "{args:?}");
        // Without --json: clap's text on stderr, stdout empty, same status.
        let plain: Vec<&str> = args.iter().copied().filter(|a| *a != "--json").collect();
        let out = Command::new(SKRCTL).args(&plain).output().unwrap();
        if plain.len() > 1 {
            assert_eq!(out.status.code(), Some(2), "{plain:?}");
            assert!(out.stdout.is_empty(), "{plain:?}");
            assert!(String::from_utf8_lossy(&out.stderr).starts_with("error:"));
        }
    }
    // --help stays help (status 0), even with --json.
    let out = Command::new(SKRCTL)
        .args(["token", "verify", "--help", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: skrctl token verify"));
}

/// Without --root the system bundle is used. The sample chains to DigiCert Global Root G2,
/// which Debian's ca-certificates ships; on a system without it the verdict is "untrusted".
#[test]
fn release_with_the_system_bundle() {
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    let Ok(text) = std::fs::read_to_string(bundle) else {
        eprintln!("no {} here: system-bundle test skipped", bundle.display());
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = roots(dir.path());
    let root_pem = std::fs::read_to_string(good).unwrap();
    let root_b64: String = root_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let bundle_b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let has_root = bundle_b64.contains(&root_b64);
    let (code, out, err) = run(&[
        "release",
        "verify",
        real(RELEASE).to_str().unwrap(),
        "--at",
        AT,
        "--json",
    ]);
    if has_root {
        assert_eq!(code, 0, "{out} {err}");
        assert_eq!(out["roots"], "/etc/ssl/certs/ca-certificates.crt");
    } else {
        assert_eq!(
            (code, out["error"]["code"].as_str()),
            (1, Some("chain-root-untrusted"))
        );
    }
}

// ---- token verify with the provider's published keys (skr-emulator) ----------------------

mod common;
#[path = "net_fixture/mod.rs"]
mod net_fixture;

/// A SevSnpVm-style token signed by `signer` (the emulator's MAA key, or a forger's).
fn emulator_token(signer: &skrd::emulator::server::state::RsaSigner, iss: &str) -> String {
    let t = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({"iss": iss, "iat": t - 10, "nbf": t - 10, "exp": t + 3600,
        "x-ms-ver": "1.0", "x-ms-attestation-type": "sevsnpvm"});
    signer.sign_jwt(&claims, &[]).unwrap()
}

#[test]
fn without_keys_the_configured_providers_keys_are_fetched() {
    use skrd::emulator::server::state::{load_or_create_rsa, maa_kid, MAA_KEY};
    let f = net_fixture::Fixture::start();
    let dir = tempfile::tempdir().unwrap();
    let conf = f.config_file(dir.path());
    let conf = conf.to_str().unwrap();
    let iss = f.emu.url("attestation");
    let signer = load_or_create_rsa(f.dir.path(), MAA_KEY, maa_kid).unwrap();
    let verify = |jwt: &Path| {
        run(&[
            "--config",
            conf,
            "token",
            "verify",
            jwt.to_str().unwrap(),
            "--json",
        ])
    };
    let good = dir.path().join("good.jwt");
    std::fs::write(&good, emulator_token(&signer, &iss)).unwrap();
    let (code, out, err) = verify(&good);
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(out["verified"], true);
    assert_eq!(out["kid"], signer.kid.as_str());
    assert_eq!(f.counters()["attestation-certs"], 1);

    // Forged: the published kid, another key.
    let other = tempfile::tempdir().unwrap();
    let mut forger = load_or_create_rsa(other.path(), "forged.pem", maa_kid).unwrap();
    forger.kid = signer.kid.clone();
    let forged = dir.path().join("forged.jwt");
    std::fs::write(&forged, emulator_token(&forger, &iss)).unwrap();
    let (code, out, _) = verify(&forged);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (1, Some("jws-signature-invalid"))
    );

    // Another issuer: refused, and nothing more was fetched.
    let before = f.counters();
    let foreign = dir.path().join("foreign.jwt");
    std::fs::write(&foreign, emulator_token(&signer, "https://evil.example")).unwrap();
    let (code, out, _) = verify(&foreign);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (1, Some("jwt-issuer-mismatch"))
    );
    assert_eq!(f.counters()["attestation-meta"], before["attestation-meta"]);

    // The provider's keys cannot be fetched: unusable (2), with the network code.
    f.faults(serde_json::json!({"attestation-certs": {"status": 503}}));
    let (code, out, _) = verify(&good);
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (2, Some("net-retries-exhausted"))
    );
}

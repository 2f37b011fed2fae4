//! `skrctl token verify` (owner: jose): verify an MAA attestation token offline against a key
//! file and print its claims (PROTOCOLS.md §5.4, §5.5).
//!
//! Exit status: 0 verified, 1 refused (the token was read and a check failed), 2 unusable
//! (a file cannot be read, the key file holds no key, no issuer, bad `--at`, or no `--keys`:
//! fetching the issuer's `/certs` needs the network client of a later release).

use crate::output::{self, print_json, unusable, Status};
use clap::Subcommand;
use serde_json::{json, Value};
use skrd::error::{ErrorCode, Problem};
use skrd::format::jose::jwk::KeySet;
use skrd::format::jose::jwt::{decode_unverified, verify_jwt, Validation, DEFAULT_SKEW_S};
use std::path::{Path, PathBuf};

/// Token subcommands.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Verify an MAA token (compact JWT): signature by the key its kid names, issuer, lifetime.
    Verify {
        /// File holding the compact JWT (surrounding whitespace is ignored).
        jwt_file: PathBuf,
        /// The issuer's keys: its /certs JWKS, one JWK, or its signing certificate (PEM or
        /// DER). Required for now (fetching /certs comes with the network client).
        #[arg(long, value_name = "JWKS_OR_CERT_FILE")]
        keys: Option<PathBuf>,
        /// Expected issuer (MAA base URL); default: attestation.provider of the configuration.
        #[arg(long, value_name = "URL")]
        issuer: Option<String>,
        /// Validate at this time instead of now (RFC 3339, e.g. 2024-12-20T18:30:00Z).
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// Allowed clock skew in seconds for exp, nbf and iat.
        #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_SKEW_S)]
        skew: i64,
        /// Print one JSON object: {"verified", "error", "issuer", "kid", "claims", "expires_at"}.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a token subcommand.
pub fn run(cmd: TokenCommand, config: Option<&Path>) -> Status {
    match cmd {
        TokenCommand::Verify {
            jwt_file,
            keys,
            issuer,
            at,
            skew,
            json,
        } => verify(
            &jwt_file,
            keys.as_deref(),
            issuer,
            at.as_deref(),
            skew,
            json,
            config,
        ),
    }
}

fn expected_issuer(issuer: Option<String>, config: Option<&Path>) -> Result<String, Problem> {
    if let Some(i) = issuer {
        return Ok(i);
    }
    let missing = || {
        Problem::new(
            "usage-issuer-missing",
            "no expected issuer: pass --issuer URL (the MAA base URL, e.g. \
             https://sharedeus2.eus2.attest.azure.net) or set attestation.provider in the \
             configuration",
        )
    };
    match skrd::config::load(config) {
        Ok(settings) => settings
            .attestation
            .map(|a| a.provider.as_str().to_string())
            .ok_or_else(missing),
        Err(_) if config.is_none() => Err(missing()),
        Err(errors) => Err(Problem::new(
            "usage-issuer-missing",
            format!("no --issuer, and the configuration does not load: {errors}"),
        )),
    }
}

fn verify(
    jwt_file: &Path,
    keys: Option<&Path>,
    issuer: Option<String>,
    at: Option<&str>,
    skew: i64,
    json: bool,
    config: Option<&Path>,
) -> Status {
    let token = match output::read_input(jwt_file, "token file") {
        Ok(t) => t,
        Err(p) => return unusable(&p, json),
    };
    let Some(keys_path) = keys else {
        let p = Problem::new(
            "usage-keys-missing",
            "no --keys given: fetching the issuer's /certs is not implemented yet; pass the \
             issuer's JWKS (https://<instance>/certs saved to a file) or its signing \
             certificate with --keys",
        );
        return unusable(&p, json);
    };
    let key_set = match output::read_input(keys_path, "key file").and_then(|bytes| {
        KeySet::from_bytes(&bytes).map_err(|e| {
            let mut p = e.problem();
            p.message = format!("{}: {}", keys_path.display(), p.message);
            p
        })
    }) {
        Ok(k) => k,
        Err(p) => return unusable(&p, json),
    };
    let issuer = match expected_issuer(issuer, config) {
        Ok(i) => i,
        Err(p) => return unusable(&p, json),
    };
    let now = match output::parse_at(at) {
        Ok(n) => n,
        Err(p) => return unusable(&p, json),
    };
    let mut validation = Validation::maa(&issuer, now);
    validation.skew_s = skew;

    match verify_jwt(&token, &key_set, &validation) {
        Ok(v) => {
            if json {
                print_json(&json!({
                    "verified": true,
                    "error": null,
                    "issuer": v.issuer,
                    "kid": v.kid,
                    "claims": v.claims,
                    "expires_at": output::rfc3339(v.expires_at),
                }));
            } else {
                println!("token verified");
                println!("  issuer: {}", v.issuer);
                println!("  kid: {}", v.kid.as_deref().unwrap_or("(none)"));
                println!(
                    "  expires at: {}",
                    output::rfc3339(v.expires_at).as_str().unwrap_or("?")
                );
                if let Ok(t) = v.attestation_type() {
                    println!("  attestation type: {t}");
                }
                if let Ok(s) = v.compliance_status() {
                    println!("  compliance status: {s}");
                }
            }
            Status::Ok
        }
        Err(e) => {
            let problem = e.problem();
            if json {
                // What the token claims, unverified (verified: false), to help find the cause.
                let (kid, claims) = match decode_unverified(&token) {
                    Ok((h, c)) => (h.kid, c),
                    Err(_) => (None, Value::Null),
                };
                print_json(&json!({
                    "verified": false,
                    "error": problem,
                    "issuer": claims.get("iss"),
                    "kid": kid,
                    "claims": claims,
                    "expires_at": claims.get("exp").and_then(Value::as_i64).map(output::rfc3339),
                }));
            } else {
                eprintln!(
                    "token refused: {}\n  code: {}",
                    problem.message, problem.code
                );
            }
            Status::Refused
        }
    }
}

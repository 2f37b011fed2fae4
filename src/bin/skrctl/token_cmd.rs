//! `skrctl token verify`: verify an MAA attestation token against a key file, or against the
//! keys the configured attestation provider publishes, and print its claims (PROTOCOLS.md §5.1,
//! §5.4, §5.5).
//!
//! Without `--keys`, the keys are fetched (OpenID metadata → `jwks_uri`) from the expected
//! issuer only: `--provider`/`--issuer` or `attestation.provider` of the configuration. A token
//! whose `iss` is another host is refused before anything is fetched: fetching keys from a URL
//! the token itself names would let any token vouch for itself.
//!
//! Exit status: 0 verified, 1 refused (the token was read and a check failed), 2 unusable
//! (a file cannot be read, the token file is not a compact JWS, the key file holds no key, no
//! issuer, bad `--at`, or the provider's keys cannot be fetched). With `--json` every outcome
//! prints the same members, null where unknown.

use crate::output::{self, print_json, unusable, Status};
use clap::Subcommand;
use serde_json::{json, Value};
use skrd::error::{ErrorCode, Problem};
use skrd::format::jose::jwk::KeySet;
use skrd::format::jose::jws::CompactJws;
use skrd::format::jose::jwt::{
    decode_unverified, normalise_issuer, verify_jwt, Validation, TOKEN_SKEW_S,
};
use skrd::format::jose::JoseError;
use std::path::{Path, PathBuf};

/// Token subcommands.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Verify an MAA token (compact JWT): signature by the key its kid names, issuer, lifetime.
    Verify {
        /// File holding the compact JWT (surrounding whitespace is ignored).
        jwt_file: PathBuf,
        /// The issuer's keys: its /certs JWKS, one JWK, or its signing certificate (PEM or
        /// DER). Without it, the expected issuer's published keys are fetched.
        #[arg(long, value_name = "JWKS_OR_CERT_FILE")]
        keys: Option<PathBuf>,
        /// Expected issuer (MAA base URL); default: attestation.provider of the configuration.
        #[arg(long, value_name = "URL", alias = "provider")]
        issuer: Option<String>,
        /// Validate at this time instead of now (RFC 3339, e.g. 2024-12-20T18:30:00Z).
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// Allowed clock skew in seconds for exp, nbf and iat (default: the 300 s the attestation
        /// flow allows, so both give the same verdict).
        #[arg(long, value_name = "SECONDS", default_value_t = TOKEN_SKEW_S)]
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
        Err(p) => return report(None, &p, json, Status::Unusable),
    };
    // A file that is not a compact JWS at all (garbage, truncated at a '.', a JSON wrapper)
    // is unusable input, like `policy check --token`; a token that parses and then fails a
    // check is a refusal.
    if let Err(e) = CompactJws::parse(&token) {
        if e.is_malformed() {
            return report(None, &e.problem(), json, Status::Unusable);
        }
    }
    let unusable = |p: &Problem| report(Some(&token), p, json, Status::Unusable);
    let issuer = match expected_issuer(issuer, config) {
        Ok(i) => i,
        Err(p) => return unusable(&p),
    };
    let key_set = match keys {
        Some(keys_path) => match output::read_input(keys_path, "key file").and_then(|bytes| {
            KeySet::from_bytes(&bytes).map_err(|e| {
                let mut p = e.problem();
                p.message = format!("{}: {}", keys_path.display(), p.message);
                p
            })
        }) {
            Ok(k) => k,
            Err(p) => return unusable(&p),
        },
        None => {
            // Never fetch keys for an issuer other than the expected one.
            if let Ok((_, claims)) = decode_unverified(&token) {
                if let Some(iss) = claims.get("iss").and_then(Value::as_str) {
                    if normalise_issuer(iss) != normalise_issuer(&issuer) {
                        let e = JoseError::IssuerMismatch {
                            expected: normalise_issuer(&issuer).to_string(),
                            found: iss.to_string(),
                        };
                        return report(Some(&token), &e.problem(), json, Status::Refused);
                    }
                }
            }
            match fetch_provider_keys(&issuer, config) {
                Ok(k) => k,
                Err(p) => return unusable(&p),
            }
        }
    };
    let now = match output::parse_at(at) {
        Ok(n) => n,
        Err(p) => return unusable(&p),
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
        Err(e) if e.is_malformed() => report(None, &e.problem(), json, Status::Unusable),
        Err(e) => report(Some(&token), &e.problem(), json, Status::Refused),
    }
}

/// Prints a refusal or an unusable input and returns `status`. With `--json`, every documented
/// member is present: what the token claims, unverified (`verified: false`), to help find the
/// cause, or null where the token could not be read.
fn report(token: Option<&[u8]>, problem: &Problem, json: bool, status: Status) -> Status {
    if json {
        let (kid, claims) = match token.map(decode_unverified) {
            Some(Ok((h, c))) => (h.kid, c),
            _ => (None, Value::Null),
        };
        print_json(&json!({
            "verified": false,
            "error": problem,
            "issuer": claims.get("iss"),
            "kid": kid,
            "claims": claims,
            "expires_at": claims.get("exp").and_then(Value::as_i64).map(output::rfc3339),
        }));
    } else if status == Status::Refused {
        eprintln!(
            "token refused: {}\n  code: {}",
            problem.message, problem.code
        );
    } else {
        unusable(problem, false);
    }
    status
}

/// The network side of skrctl: the configuration's `[network]`, `trust.ca_files`,
/// `[identity]` and `boot.deadline`, or the defaults when no configuration exists.
pub struct NetContext {
    /// The HTTP client.
    pub http: skrd::net::HttpClient,
    /// `[identity]`.
    pub identity: skrd::config::settings::IdentitySettings,
    /// The overall deadline of the command.
    pub deadline: skrd::net::Deadline,
    /// A single-threaded runtime for the calls.
    pub rt: tokio::runtime::Runtime,
}

/// Builds the [`NetContext`] from `--config` (must load when given) or the default files
/// (their absence means defaults).
pub fn net_context(config: Option<&Path>) -> Result<NetContext, Problem> {
    use skrd::config::settings::{defaults, Identity, IdentitySettings};
    use std::time::Duration;
    let (net, identity, deadline) = match skrd::config::load(config) {
        Ok(s) => (
            skrd::net::NetSettings::from_config(&s),
            s.identity.clone(),
            s.boot.deadline,
        ),
        Err(errors) if config.is_some() => return Err(errors.problem()),
        Err(_) => (
            skrd::net::NetSettings::default(),
            IdentitySettings {
                identity: Identity::SystemAssigned,
                imds_url: url::Url::parse(defaults::IMDS_URL).map_err(|e| {
                    skrd::net::NetError::ClientInit {
                        reason: format!("default IMDS URL: {e}"),
                    }
                    .problem()
                })?,
            },
            Duration::from_secs(defaults::BOOT_DEADLINE_S),
        ),
    };
    let http = skrd::net::HttpClient::new(&net).map_err(|e| e.problem())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            skrd::net::NetError::ClientInit {
                reason: format!("tokio runtime: {e}"),
            }
            .problem()
        })?;
    Ok(NetContext {
        http,
        identity,
        deadline: skrd::net::Deadline::after(deadline),
        rt,
    })
}

/// Fetches the signing keys the provider at `issuer` publishes.
fn fetch_provider_keys(issuer: &str, config: Option<&Path>) -> Result<KeySet, Problem> {
    let provider = url::Url::parse(issuer).map_err(|e| {
        Problem::new(
            "invalid-argument",
            format!("the issuer {issuer:?} is not a URL ({e}); give the provider's base URL"),
        )
    })?;
    let ctx = net_context(config)?;
    let keys = skrd::attest::trust::ProviderKeys::new(ctx.http.clone(), provider);
    ctx.rt
        .block_on(keys.keys(&ctx.deadline))
        .map_err(|e| e.problem())
}

//! `skrctl policy check` (owner: policy): validate a Key Vault / Managed HSM key release policy
//! and, given a token or its claims, say whether Key Vault would release the key and why not
//! (PROTOCOLS.md §7; the library does the work in `skrd::format::akv::policy`).
//!
//! With `--key-url URL` the policy is read from the live key (`GET {key}?api-version=…` with the
//! managed identity's token, [`skrd::identity::get_key`]) instead of a file.
//!
//! Exit status: 0 allowed (or valid, when no token is given), 1 denied, 2 invalid policy or
//! unusable input. The token's signature is NOT checked: the claims are read as they are.

use crate::output::{self, print_json, unusable, Status};
use clap::Subcommand;
use serde_json::{json, Value};
use skrd::error::{ErrorCode, Problem};
use skrd::format::akv::policy::{load_document, read_claims, LoadedPolicy, PolicyWarning};
use std::path::{Path, PathBuf};

/// The note printed with every evaluation.
const UNVERIFIED: &str = "claims are read without verifying the signature; use skrctl token verify";

/// Release-policy subcommands.
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate a release policy and optionally evaluate it against a token's claims.
    ///
    /// POLICY_FILE may be the policy JSON, Key Vault's {"contentType","data"} encoding or its
    /// base64url data, a key bundle or release response carrying release_policy, Azure CLI
    /// `az keyvault key show` output (releasePolicy.encodedPolicy), or a
    /// confidential-sidecar-containers importkeyconfig.json. With --key-url, the policy of a
    /// live key is read from Key Vault / Managed HSM with the VM's managed identity. The
    /// token's signature is not verified: claims are read as they are (use `skrctl token
    /// verify` for that). Exit status: 0 allowed (or valid without a token), 1 denied, 2
    /// invalid policy or unusable input.
    Check {
        /// The policy document.
        #[arg(value_name = "POLICY_FILE", required_unless_present = "key_url")]
        policy: Option<PathBuf>,
        /// Read the policy of this live key instead (https://NAME.vault.azure.net/keys/KEY[/VERSION]).
        #[arg(long, value_name = "URL", conflicts_with = "policy")]
        key_url: Option<String>,
        /// An MAA token (compact JWT, or the attest response {"token": ...}) to evaluate.
        #[arg(long, value_name = "JWT_FILE", conflicts_with = "claims")]
        token: Option<PathBuf>,
        /// The token's decoded claims (a JSON object) to evaluate.
        #[arg(long, value_name = "JSON_FILE")]
        claims: Option<PathBuf>,
        /// Print one JSON object: {"valid", "error", "source", "warnings", "allowed",
        /// "authority", "unmet": [{"path", "claim", "operator", "expected", "found", "reason"}],
        /// "signature_verified", "note"}.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a policy subcommand.
pub fn run(cmd: PolicyCommand, config: Option<&Path>) -> Status {
    match cmd {
        PolicyCommand::Check {
            policy,
            key_url,
            token,
            claims,
            json,
        } => {
            let source = match (policy, key_url) {
                (Some(p), _) => PolicySource::File(p),
                (None, Some(u)) => PolicySource::KeyUrl(u),
                (None, None) => {
                    let p = Problem::new("invalid-argument", "give a POLICY_FILE or --key-url URL");
                    return invalid(&p, json);
                }
            };
            check(
                &source,
                token.as_deref().or(claims.as_deref()),
                json,
                config,
            )
        }
    }
}

/// Where the policy comes from.
enum PolicySource {
    /// A local file.
    File(PathBuf),
    /// A live key's URL.
    KeyUrl(String),
}

/// Reads the key bundle of a live key (its `release_policy` is then loaded like a file).
fn fetch_key_bundle(url: &str, config: Option<&Path>) -> Result<Vec<u8>, Problem> {
    let key = skrd::config::values::parse_key_url(url).map_err(|e| {
        Problem::new(
            "invalid-argument",
            format!(
                "--key-url {url:?} is not a key identifier ({e}); write it as \
                     https://NAME.vault.azure.net/keys/KEY[/VERSION]"
            ),
        )
    })?;
    let ctx = crate::token_cmd::net_context(config)?;
    let tokens = skrd::identity::TokenCache::new(ctx.http.clone(), &ctx.identity);
    let api_version = skrd::config::settings::defaults::AKV_API_VERSION;
    ctx.rt
        .block_on(skrd::identity::get_key(
            &ctx.http,
            &tokens,
            &key,
            api_version,
            &ctx.deadline,
        ))
        .map(|b| b.body)
        .map_err(|e| e.problem())
}

fn invalid(problem: &Problem, json: bool) -> Status {
    if json {
        print_json(&json!({
            "valid": false,
            "error": problem,
            "allowed": null,
            "authority": null,
            "unmet": [],
        }));
        Status::Unusable
    } else {
        unusable(problem, false)
    }
}

fn check(
    source: &PolicySource,
    claims_path: Option<&Path>,
    json: bool,
    config: Option<&Path>,
) -> Status {
    let bytes = match source {
        PolicySource::File(p) => output::read_input(p, "policy"),
        PolicySource::KeyUrl(u) => fetch_key_bundle(u, config),
    };
    let loaded = match bytes.and_then(|b| load_document(&b).map_err(|e| e.problem())) {
        Ok(l) => l,
        Err(p) => return invalid(&p, json),
    };
    let mut warnings: Vec<PolicyWarning> = loaded.envelope_warnings.clone();
    warnings.extend(loaded.policy.warnings());
    let Some(claims_path) = claims_path else {
        if json {
            print_json(&json!({
                "valid": true,
                "error": null,
                "source": loaded.source.as_str(),
                "warnings": warnings,
                "allowed": null,
                "authority": null,
                "unmet": [],
            }));
        } else {
            describe(&loaded, &warnings);
        }
        return Status::Ok;
    };
    let claims = match output::read_input(claims_path, "claims")
        .and_then(|b| read_claims(&b).map_err(|e| e.problem()))
    {
        Ok(c) => c,
        Err(p) => {
            if json {
                print_json(&json!({
                    "valid": true,
                    "error": p,
                    "source": loaded.source.as_str(),
                    "warnings": warnings,
                    "allowed": null,
                    "authority": null,
                    "unmet": [],
                }));
                return Status::Unusable;
            }
            return unusable(&p, false);
        }
    };
    let eval = loaded.policy.evaluate(&claims);
    if json {
        print_json(&json!({
            "valid": true,
            "error": null,
            "source": loaded.source.as_str(),
            "warnings": warnings,
            "allowed": eval.allowed,
            "authority": eval.authority,
            "unmet": eval.unmet,
            "signature_verified": false,
            "note": UNVERIFIED,
        }));
    } else {
        describe(&loaded, &warnings);
        if eval.allowed {
            println!(
                "release: ALLOWED by authority {}",
                eval.authority.as_deref().unwrap_or("?")
            );
        } else {
            match &eval.authority {
                Some(a) => println!("release: DENIED (issuer matches authority {a})"),
                None => println!("release: DENIED (no authority matches the issuer)"),
            }
            for u in &eval.unmet {
                let found = u
                    .found
                    .as_ref()
                    .map_or_else(|| "missing".to_string(), Value::to_string);
                println!(
                    "  {}: {} {} {} (found: {found})\n    because: {}",
                    u.path, u.claim, u.operator, u.expected, u.reason
                );
            }
        }
        println!("note: {UNVERIFIED}");
    }
    if eval.allowed {
        Status::Ok
    } else {
        Status::Refused
    }
}

fn describe(loaded: &LoadedPolicy, warnings: &[PolicyWarning]) {
    let p = &loaded.policy;
    println!(
        "policy: valid (version {}, {} authorit{}, read from a {})",
        p.version,
        p.authorities.len(),
        if p.authorities.len() == 1 { "y" } else { "ies" },
        loaded.source.as_str()
    );
    for w in warnings {
        println!("warning: {}: {} ({})", w.path, w.message, w.code);
    }
}

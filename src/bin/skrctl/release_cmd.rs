//! `skrctl release KEY_NAME | --key-url URL`: attest, release one key from Key Vault / Managed
//! HSM and unwrap it (PROTOCOLS.md §6); prints metadata only, never key bytes; `--out-fd N`
//! hands the released plaintext to a script (oct: the raw key bytes; RSA/EC: the PKCS#8 DER
//! `PrivateKeyInfo` exactly as Key Vault released it). Exit status: 0 released, 1 refused
//! (release policy, attestation), 2 unusable.
//!
//! `skrctl release verify`: verify a saved Key Vault / Managed HSM key release
//! response offline and describe the wrapped key (PROTOCOLS.md §6.3, §6.4, §6.6).
//!
//! Trust: the `--root` files (PEM, one or more certificates, or DER), else the system bundle
//! (the first of the paths in [`SYSTEM_BUNDLES`] that exists, as Microsoft's client probes).
//! Nothing is unwrapped: the ciphertext's two parts are only measured.
//!
//! Exit status: 0 verified, 1 refused, 2 unusable (unreadable file, a body that is not
//! `{"value": JWS}` or whose JWS is not three base64url segments, no usable root, bad `--at`).
//! With `--json` every outcome prints the same members, null where unknown.

use crate::output::{self, print_json, unusable, Status};
use clap::Subcommand;
use serde_json::{json, Value};
use skrd::config::values::parse_key_url;
use skrd::error::{ErrorCode, Problem};
use skrd::format::jose::jws::CompactJws;
use skrd::format::jose::release::WrapAlgorithm;
use skrd::format::jose::release::{
    decode_release_payload, release_body_jws, verify_release_response, ReleasePayload,
    ReleaseVerification,
};
use skrd::format::jose::x5c::ChainCert;
use skrd::release::roots::SYSTEM_BUNDLES;
use skrd::release::KeyRequest;
use std::path::{Path, PathBuf};

/// `skrctl release`: release a key, or a subcommand.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReleaseArgs {
    #[command(subcommand)]
    command: Option<ReleaseCommand>,
    /// The key to release: a [keys.NAME] of the configuration (a key named "verify" needs --key-url).
    #[arg(
        value_name = "KEY_NAME",
        required_unless_present = "key_url",
        conflicts_with = "key_url"
    )]
    key_name: Option<String>,
    /// Release this key URL instead (https://VAULT.vault.azure.net/keys/NAME[/VERSION]).
    #[arg(long, value_name = "URL")]
    key_url: Option<String>,
    /// Wrapping to request: CKM_RSA_AES_KEY_WRAP, RSA_AES_KEY_WRAP_256 or RSA_AES_KEY_WRAP_384
    /// (default: the key's configured enc, else RSA_AES_KEY_WRAP_256).
    #[arg(long, value_name = "MODE")]
    enc: Option<String>,
    /// Evidence source (default: [evidence] source of the configuration).
    #[arg(long, value_enum)]
    source: Option<crate::attest_cmd::SourceArg>,
    /// Write the released key material to this already-open file descriptor.
    #[arg(long, value_name = "N")]
    out_fd: Option<i32>,
    /// Print one JSON object: {"released", "error", "key": {...}, "timings"}.
    #[arg(long)]
    json: bool,
}

/// Release subcommands.
#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Verify a key release response body ({"value": JWS}): x5c chain to a trusted root,
    /// signature, payload consistency; print the request, the key and how it is wrapped.
    Verify {
        /// File holding the response body as returned by POST .../release.
        response_file: PathBuf,
        /// Trusted root certificate(s), PEM or DER; repeatable. Default: the system bundle.
        #[arg(long = "root", value_name = "PEM")]
        roots: Vec<PathBuf>,
        /// Validate at this time instead of now (RFC 3339).
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// The vault host that was called; the signing certificate must name it.
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Size of the transfer key the key was wrapped to (sets the RSA block length).
        #[arg(long, value_name = "BITS", default_value_t = 2048)]
        transfer_key_bits: usize,
        /// Print one JSON object: {"verified", "error", "request", "key", "release_policy"}.
        #[arg(long)]
        json: bool,
    },
}

impl ReleaseArgs {
    /// `skrctl release verify` (offline, no key) rather than a release.
    pub fn is_verify(&self) -> bool {
        matches!(self.command, Some(ReleaseCommand::Verify { .. }))
    }
}

/// Runs `skrctl release ...`.
pub fn run(args: ReleaseArgs, config: Option<&Path>) -> Status {
    match args.command {
        None => release(&args, config),
        Some(ReleaseCommand::Verify {
            response_file,
            roots,
            at,
            host,
            transfer_key_bits,
            json,
        }) => verify(
            &response_file,
            &roots,
            at.as_deref(),
            host.as_deref(),
            transfer_key_bits,
            json,
        ),
    }
}

fn load_roots(paths: &[PathBuf]) -> Result<(Vec<ChainCert>, String), Problem> {
    if paths.is_empty() {
        for bundle in SYSTEM_BUNDLES {
            let path = Path::new(bundle);
            if path.exists() {
                let data = output::read_input(path, "system CA bundle")?;
                let (certs, _skipped) = ChainCert::load_pem_bundle(&data);
                if certs.is_empty() {
                    return Err(Problem::new(
                        "roots-unusable",
                        format!("{bundle} holds no decodable certificate; pass --root"),
                    ));
                }
                return Ok((certs, bundle.to_string()));
            }
        }
        return Err(Problem::new(
            "roots-unusable",
            format!("no --root given and no system CA bundle found (tried {SYSTEM_BUNDLES:?}); pass --root"),
        ));
    }
    let mut all = Vec::new();
    for p in paths {
        let data = output::read_input(p, "root certificate file")?;
        let certs = ChainCert::load_many(&data).map_err(|e| {
            let mut problem = e.problem();
            problem.message = format!("{}: {}", p.display(), problem.message);
            problem
        })?;
        all.extend(certs);
    }
    let names = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Ok((all, names))
}

fn payload_json(p: &ReleasePayload, rsa_block_len: usize) -> (Value, Value, Value) {
    let mut key = json!({
        "kid": p.key.kid,
        "kty": p.key.kty,
        "key_ops": p.key.key_ops,
    });
    if let Some(size) = p.key.key_size {
        key["key_size"] = json!(size);
    }
    if let Some(crv) = &p.key.crv {
        key["crv"] = json!(crv);
    }
    let (rsa_len, kwp_len) = match p.key_hsm.split(rsa_block_len) {
        Ok((r, k)) => (json!(r.len()), json!(k.len())),
        Err(_) => (Value::Null, Value::Null),
    };
    key["wrapping"] = json!({
        "kid": p.key_hsm.kid,
        "enc": p.key_hsm.enc.name(),
        "alg": p.key_hsm.alg,
        "ciphertext_len": p.key_hsm.ciphertext.len(),
        "rsa_block_len": rsa_len,
        "aes_kwp_len": kwp_len,
    });
    (p.request.raw.clone(), key, p.release_policy.clone())
}

/// The payload decoded without any check, for the output of a refused response.
fn unverified_payload(body: &[u8], rsa_block_len: usize) -> Option<ReleasePayload> {
    let compact = release_body_jws(body).ok()?;
    let jws = CompactJws::parse(compact.as_bytes()).ok()?;
    decode_release_payload(&jws.payload, rsa_block_len).ok()
}

fn verify(
    response_file: &Path,
    root_files: &[PathBuf],
    at: Option<&str>,
    host: Option<&str>,
    transfer_key_bits: usize,
    json: bool,
) -> Status {
    // Every exit-2 path prints the documented members too, null where unknown.
    let unusable_at = |p: &Problem, now: Option<i64>, roots: Option<&str>| {
        if json {
            print_json(&json!({
                "verified": false,
                "error": p,
                "at": now.map(output::rfc3339),
                "roots": roots,
                "request": null,
                "key": null,
                "release_policy": null,
            }));
            Status::Unusable
        } else {
            unusable(p, false)
        }
    };
    let body = match output::read_input(response_file, "release response") {
        Ok(b) => b,
        Err(p) => return unusable_at(&p, None, None),
    };
    let (roots, roots_from) = match load_roots(root_files) {
        Ok(r) => r,
        Err(p) => return unusable_at(&p, None, None),
    };
    let now = match output::parse_at(at) {
        Ok(n) => n,
        Err(p) => return unusable_at(&p, None, Some(&roots_from)),
    };
    if transfer_key_bits == 0 || transfer_key_bits % 8 != 0 {
        let p = Problem::new(
            "usage-invalid-key-size",
            format!("--transfer-key-bits {transfer_key_bits} is not a whole number of bytes"),
        );
        return unusable_at(&p, Some(now), Some(&roots_from));
    }
    let rsa_block_len = transfer_key_bits / 8;
    let v = ReleaseVerification {
        roots: &roots,
        now,
        expected_host: host,
        rsa_block_len,
        expected_key: None,
        expected_transfer_kid: None,
    };
    match verify_release_response(&body, &v) {
        Ok(r) => {
            let (request, key, policy) = payload_json(&r.payload, rsa_block_len);
            if json {
                print_json(&json!({
                    "verified": true,
                    "error": null,
                    "at": output::rfc3339(now),
                    "roots": roots_from,
                    "chain": r.chain,
                    "request": request,
                    "key": key,
                    "release_policy": policy,
                }));
            } else {
                println!("release response verified (roots: {roots_from})");
                for (i, s) in r.chain.iter().enumerate() {
                    println!("  chain[{i}]: {s}");
                }
                println!("  key: {} ({})", r.payload.key.kid, r.payload.key.kty);
                println!(
                    "  wrapped to: {} with {} ({} bytes ciphertext)",
                    r.payload.key_hsm.kid,
                    r.payload.key_hsm.enc.name(),
                    r.payload.key_hsm.ciphertext.len()
                );
            }
            Status::Ok
        }
        // Not a {"value": JWS} body at all (an error body, truncated JSON): unusable input.
        Err(e) if e.is_malformed() => unusable_at(&e.problem(), Some(now), Some(&roots_from)),
        Err(e) => {
            let problem = e.problem();
            if json {
                let (request, key, policy) = unverified_payload(&body, rsa_block_len)
                    .map(|p| payload_json(&p, rsa_block_len))
                    .unwrap_or((Value::Null, Value::Null, Value::Null));
                print_json(&json!({
                    "verified": false,
                    "error": problem,
                    "at": output::rfc3339(now),
                    "roots": roots_from,
                    "request": request,
                    "key": key,
                    "release_policy": policy,
                }));
            } else {
                eprintln!(
                    "release response refused: {}\n  code: {}",
                    problem.message, problem.code
                );
            }
            Status::Refused
        }
    }
}

fn usage(message: String) -> Problem {
    Problem::new("invalid-argument", message)
}

/// The key request of `KEY_NAME` or `--key-url`.
fn key_request(args: &ReleaseArgs, s: &skrd::config::Settings) -> Result<KeyRequest, Problem> {
    let mut req = match (&args.key_name, &args.key_url) {
        (Some(name), None) => {
            let k = s.keys.get(name).ok_or_else(|| {
                let known: Vec<&str> = s.keys.keys().map(String::as_str).collect();
                usage(format!(
                    "no key {name:?} in the configuration (known: {known:?}); define [keys.{name}] or pass --key-url"
                ))
            })?;
            KeyRequest::from_settings(name, k)
        }
        (None, Some(url)) => {
            let parsed = parse_key_url(url)
                .map_err(|e| usage(format!("--key-url {url:?} is not a key URL: {e}")))?;
            KeyRequest {
                name: url.clone(),
                url: parsed,
                enc: WrapAlgorithm::RsaAesKeyWrap256,
                api_version: skrd::format::maa::release::API_VERSION.to_string(),
            }
        }
        _ => {
            return Err(usage(
                "give exactly one of KEY_NAME and --key-url".to_string(),
            ))
        }
    };
    if let Some(enc) = &args.enc {
        req.enc = WrapAlgorithm::from_name(enc).ok_or_else(|| {
            usage(format!(
                "--enc {enc:?} is not one of {:?}",
                WrapAlgorithm::NAMES
            ))
        })?;
    }
    Ok(req)
}

/// Writes the released plaintext to the caller's open descriptor `fd` (never closes it).
fn write_fd(fd: i32, bytes: &[u8]) -> Result<(), Problem> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let bad = |why: String| Problem::new("output-unwritable", format!("--out-fd {fd}: {why}"));
    if fd < 0 {
        return Err(bad("not a file descriptor".to_string()));
    }
    // SAFETY: fcntl(F_GETFD) only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(bad(format!("{}", std::io::Error::last_os_error())));
    }
    // SAFETY: `fd` is open (checked above) and owned by the caller; ManuallyDrop keeps it open.
    let mut file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    file.write_all(bytes)
        .and_then(|()| file.flush())
        .map_err(|e| bad(e.to_string()))
}

fn release(args: &ReleaseArgs, config: Option<&Path>) -> Status {
    let s = match crate::attest_cmd::settings(config) {
        Ok(s) => s,
        Err(p) => return unusable(&p, args.json),
    };
    let req = match key_request(args, &s) {
        Ok(r) => r,
        Err(p) => return unusable(&p, args.json),
    };
    let source = match crate::attest_cmd::open_source(args.source, &s) {
        Ok(src) => src,
        Err(p) => return unusable(&p, args.json),
    };
    let mut outcome = match crate::attest_cmd::run_flow(&s, source, std::slice::from_ref(&req)) {
        Err(p) => return unusable(&p, args.json),
        Ok(Err(e)) => {
            return crate::attest_cmd::flow_failed(
                &e,
                args.json,
                json!({"released": false, "key_url": req.url.to_string()}),
            )
        }
        Ok(Ok(o)) => o,
    };
    let Some(key) = outcome.keys.pop() else {
        let p = Problem::new(
            "internal-task-failed",
            "the run released no key; this is a bug",
        );
        return unusable(&p, args.json);
    };
    if let Some(fd) = args.out_fd {
        if let Err(p) = write_fd(fd, key.plaintext.expose()) {
            return unusable(&p, args.json);
        }
    }
    let mut meta = json!({
        "name": key.name,
        "kid": key.kid,
        "kty": key.kty,
        "key_ops": key.key_ops,
        "enc": key.enc.name(),
        "description": key.material.description(),
        "length": key.plaintext.len(),
    });
    if let Some(size) = key.key_size {
        meta["key_size"] = json!(size);
    }
    if let Some(crv) = &key.crv {
        meta["crv"] = json!(crv);
    }
    if args.json {
        print_json(&json!({
            "released": true,
            "error": null,
            "key": meta,
            "written_to_fd": args.out_fd,
            "attestation": {
                "issuer": outcome.attestation.issuer,
                "expires_at": output::rfc3339(outcome.attestation.expires_at),
                "wrapped_to": outcome.attestation.holder.kid(),
            },
            "timings": crate::attest_cmd::timings_json(&outcome.report),
        }));
    } else {
        let r = &outcome.report;
        output::print_text(&format!(
            "released {} ({}, {})\n  kid: {}\n  wrapped with: {} to {}\n  time: {:.0} ms (evidence {:.0} ms, network {:.0} ms)\n{}",
            key.name,
            key.kty,
            key.material.description(),
            key.kid,
            key.enc.name(),
            outcome.attestation.holder.kid(),
            r.total_ms,
            r.evidence_ms,
            r.network_ms(),
            args.out_fd
                .map(|fd| format!("  key material written to fd {fd} ({} bytes)\n", key.plaintext.len()))
                .unwrap_or_default()
        ));
    }
    Status::Ok
}

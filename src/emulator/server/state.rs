//! The persistent state of `skr-emulator serve` (PROTOCOLS.md §8): the managed identities
//! (`identities.json`), the "Entra" token-signing key (`entra-key.pem`, public JWKS in
//! `entra-jwks.json`), the MAA signing key (`maa-key.pem`), and the test AMD chain
//! ([`crate::emulator::amd_chain`]). The TLS CA lives in [`super::tls`]. Everything is created
//! on first start and reused afterwards: a restart loses nothing.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::emulator::EmulatorError;

/// File of the managed identities.
pub const IDENTITIES_JSON: &str = "identities.json";
/// PKCS#8 PEM of the key signing the IMDS access tokens.
pub const ENTRA_KEY: &str = "entra-key.pem";
/// JWKS (public) of the IMDS access-token key, for tests and for the Key Vault emulator.
pub const ENTRA_JWKS: &str = "entra-jwks.json";
/// PKCS#8 PEM of the MAA token-signing key.
pub const MAA_KEY: &str = "maa-key.pem";

/// One managed identity of the emulated VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `"system"` or `"user"`.
    pub kind: String,
    /// Application (client) id: the token's `appid`.
    pub client_id: String,
    /// Object (principal) id: the token's `oid` and `sub`.
    pub object_id: String,
    /// ARM resource id (`msi_res_id`): the token's `xms_mirid`.
    pub resource_id: String,
}

/// `identities.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identities {
    /// Directory (tenant) id: the token's `tid` and issuer.
    pub tenant_id: String,
    /// The identities; at most one has kind `"system"`.
    pub identities: Vec<Identity>,
}

fn guid() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl Identities {
    /// A fresh set: one system-assigned and one user-assigned identity.
    pub fn fresh() -> Self {
        let sub = guid();
        let rg = format!("/subscriptions/{sub}/resourceGroups/skr-emulator/providers");
        Self {
            tenant_id: guid(),
            identities: vec![
                Identity {
                    kind: "system".to_string(),
                    client_id: guid(),
                    object_id: guid(),
                    resource_id: format!("{rg}/Microsoft.Compute/virtualMachines/skr-emulator-vm"),
                },
                Identity {
                    kind: "user".to_string(),
                    client_id: guid(),
                    object_id: guid(),
                    resource_id: format!(
                        "{rg}/Microsoft.ManagedIdentity/userAssignedIdentities/skr-emulator-uai"
                    ),
                },
            ],
        }
    }

    /// The system-assigned identity, if any.
    pub fn system(&self) -> Option<&Identity> {
        self.identities.iter().find(|i| i.kind == "system")
    }
}

/// An RSA-2048 signing key with its JWK thumbprint-like `kid`.
#[derive(Clone)]
pub struct RsaSigner {
    /// The private key.
    pub key: RsaPrivateKey,
    /// The `kid` announced in JWKS and JWT headers.
    pub kid: String,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl RsaSigner {
    /// PKCS#8 PEM of the private key.
    pub fn pkcs8_pem(&self) -> Result<String, EmulatorError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|p| p.to_string())
            .map_err(|_| EmulatorError::Encode { what: "RSA key" })
    }

    /// The public JWK (`kty`, `n`, `e`, `kid`, `alg`, `use`).
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": b64url(&self.key.n().to_bytes_be()),
            "e": b64url(&self.key.e().to_bytes_be()),
        })
    }

    /// A compact RS256 JWS over the JSON `claims`, with `typ` JWT and this key's `kid`
    /// (plus any extra header members).
    pub fn sign_jwt(
        &self,
        claims: &serde_json::Value,
        extra_header: &[(&str, &str)],
    ) -> Result<String, EmulatorError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        for (k, v) in extra_header {
            header[*k] = serde_json::Value::String((*v).to_string());
        }
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signer = SigningKey::<Sha256>::new(self.key.clone());
        let sig = signer
            .try_sign(input.as_bytes())
            .map_err(|source| EmulatorError::Sign { source })?;
        Ok(format!("{input}.{}", b64url(&sig.to_bytes())))
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EmulatorError + '_ {
    move |source| EmulatorError::StateIo {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads `dir/name` (PKCS#8 PEM) or generates an RSA-2048 key there; `kid_of` names it.
pub fn load_or_create_rsa(
    dir: &Path,
    name: &str,
    kid_of: fn(&[u8]) -> String,
) -> Result<RsaSigner, EmulatorError> {
    let path = dir.join(name);
    let key = if path.is_file() {
        let pem = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|_| EmulatorError::StateCorrupt {
            path: path.clone(),
            what: "not a PKCS#8 RSA private key",
        })?
    } else {
        let key = RsaPrivateKey::new(&mut OsRng, 2048).map_err(EmulatorError::KeyGen)?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| EmulatorError::Encode { what: "RSA key" })?;
        crate::emulator::amd_chain::write_atomic(dir, name, pem.as_bytes())?;
        key
    };
    let spki = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|_| EmulatorError::Encode {
            what: "RSA public key",
        })?;
    let kid = kid_of(spki.as_bytes());
    Ok(RsaSigner { key, kid })
}

/// Entra-style `kid`: base64url of SHA-1 of the SPKI (27 characters, like real `x5t`s).
pub fn entra_kid(spki: &[u8]) -> String {
    use sha1::Digest as _;
    b64url(&sha1::Sha1::digest(spki))
}

/// MAA-style `kid`: standard base64 of SHA-256 of the SPKI (44 characters with `+/=`, like the
/// real ones, which are opaque: PROTOCOLS.md §5.1).
pub fn maa_kid(spki: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki))
}

/// Everything the services need from the state directory.
#[derive(Debug)]
pub struct State {
    /// The directory.
    pub dir: PathBuf,
    /// Managed identities.
    pub identities: Identities,
    /// Signs IMDS access tokens.
    pub entra: RsaSigner,
    /// Signs MAA tokens; its self-signed certificate is served in `/certs`.
    pub maa: RsaSigner,
}

impl State {
    /// Loads the state in `dir`, creating what is missing.
    pub fn load_or_create(dir: &Path) -> Result<Self, EmulatorError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(IDENTITIES_JSON);
        let identities = if path.is_file() {
            let text = std::fs::read(&path).map_err(io_err(&path))?;
            let ids: Identities =
                serde_json::from_slice(&text).map_err(|source| EmulatorError::StateJson {
                    path: path.clone(),
                    source,
                })?;
            ids
        } else {
            let ids = Identities::fresh();
            let text = serde_json::to_vec_pretty(&ids)
                .map_err(|_| EmulatorError::Encode { what: "identities" })?;
            crate::emulator::amd_chain::write_atomic(dir, IDENTITIES_JSON, &text)?;
            ids
        };
        let entra = load_or_create_rsa(dir, ENTRA_KEY, entra_kid)?;
        let jwks = serde_json::json!({"keys": [entra.public_jwk()]});
        crate::emulator::amd_chain::write_atomic(dir, ENTRA_JWKS, jwks.to_string().as_bytes())?;
        let maa = load_or_create_rsa(dir, MAA_KEY, maa_kid)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            identities,
            entra,
            maa,
        })
    }
}

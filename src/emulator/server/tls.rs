//! TLS of `skr-emulator serve`: the emulator's own CA (ECDSA P-256, `ca.pem` + `ca-key.pem` in
//! the state directory, created once and reused), the server certificate it issues at every start
//! for the configured host names plus `localhost` and IP 127.0.0.1, the rustls acceptor (ring
//! provider, HTTP/1.1; or given PEM files instead), and the self-signed MAA signing certificate of PROTOCOLS.md §5.1.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::state::RsaSigner;
use super::ServeError;
use crate::emulator::amd_chain::write_atomic;

/// The CA certificate (PEM) clients trust.
pub const CA_PEM: &str = "ca.pem";
/// The CA private key (PKCS#8 PEM).
pub const CA_KEY: &str = "ca-key.pem";

fn rcgen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> ServeError {
    move |source| ServeError::Certificate {
        what,
        reason: source.to_string(),
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "skr-emulator");
    dn.push(DnType::CommonName, "skr-emulator test CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    params.serial_number = Some(SerialNumber::from(1u64));
    params
}

/// The CA: its key, and a certificate object with the same name and key as `ca.pem` (issuing
/// needs one; the stored `ca.pem` bytes are what clients trust and never change).
pub struct Ca {
    key: KeyPair,
    cert: rcgen::Certificate,
    /// Path of `ca.pem`.
    pub pem_path: PathBuf,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("pem_path", &self.pem_path)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `dir`, or creates and stores it.
    pub fn load_or_create(dir: &Path) -> Result<Self, ServeError> {
        let key_path = dir.join(CA_KEY);
        let pem_path = dir.join(CA_PEM);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ServeError::StateIo { path, source }
        };
        let (key, fresh) = if key_path.is_file() && pem_path.is_file() {
            let pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            (KeyPair::from_pem(&pem).map_err(rcgen_err("CA key"))?, false)
        } else {
            (KeyPair::generate().map_err(rcgen_err("CA key"))?, true)
        };
        let cert = ca_params()
            .self_signed(&key)
            .map_err(rcgen_err("CA certificate"))?;
        if fresh {
            write_atomic(dir, CA_KEY, key.serialize_pem().as_bytes())?;
            write_atomic(dir, CA_PEM, cert.pem().as_bytes())?;
        }
        Ok(Self {
            key,
            cert,
            pem_path,
        })
    }

    /// Issues a server certificate (new P-256 key) for `names`, `localhost`, 127.0.0.1, ::1 and
    /// the listeners' addresses `ips`. Returns (certificate DER, PKCS#8 key DER).
    pub fn issue_server(
        &self,
        names: &[String],
        ips: &[IpAddr],
    ) -> Result<(Vec<u8>, Vec<u8>), ServeError> {
        let mut params = leaf_params(names, None)?;
        for ip in ips {
            let san = SanType::IpAddress(*ip);
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(rcgen_err("server key"))?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(rcgen_err("server certificate"))?;
        Ok((cert.der().to_vec(), key.serialize_der()))
    }
}

impl Ca {
    /// Issues the Key Vault / Managed HSM release-signing certificate (PROTOCOLS.md §6.3): the
    /// RSA key of `signer`, CN = the first of `names`, SAN DNS = `names` + `localhost`, SAN IP = 127.0.0.1 and ::1, signed by
    /// this CA. Returns the certificate DER.
    pub fn issue_rsa_leaf(
        &self,
        signer: &RsaSigner,
        names: &[String],
    ) -> Result<Vec<u8>, ServeError> {
        let pem = signer.pkcs8_pem()?;
        let key = KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
            .map_err(rcgen_err("vault signing key"))?;
        let params = leaf_params(names, Some("skr-emulator"))?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(rcgen_err("vault signing certificate"))?;
        Ok(cert.der().to_vec())
    }
}

/// End-entity certificate parameters shared by every certificate the CA issues: CN = the first
/// of `names` (or localhost), optional O, SAN DNS = `names` + `localhost`, SAN IP = 127.0.0.1 and ::1, not a CA, digital
/// signature, AKI, valid 2024-01-01 to 2049-12-31.
fn leaf_params(
    names: &[String],
    organization: Option<&str>,
) -> Result<CertificateParams, ServeError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().map_or("localhost", |n| n.as_str()),
    );
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    params.distinguished_name = dn;
    for name in names.iter().map(String::as_str).chain(["localhost"]) {
        let ia5 = name
            .to_string()
            .try_into()
            .map_err(rcgen_err("host name"))?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    // Clients on this machine call the emulator at loopback addresses: name them as Azure's
    // certificates name their hosts, so clients check the name instead of skipping the check.
    for ip in [
        std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ] {
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    Ok(params)
}

/// A rustls acceptor for a certificate and key the emulator issued.
pub fn acceptor(
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    acceptor_for(
        vec![CertificateDer::from(cert_der)],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der)),
    )
}

/// A rustls acceptor for given PEM files: `cert` holds the chain (server certificate first),
/// `key` its private key (PKCS#8, SEC1 or PKCS#1).
pub fn acceptor_from_files(
    cert: &Path,
    key: &Path,
) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    let bad = |path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls::pki_types::pem::Error| ServeError::TlsFile {
            path,
            reason: e.to_string(),
        }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(bad(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad(cert))?;
    if chain.is_empty() {
        return Err(ServeError::TlsFile {
            path: cert.to_path_buf(),
            reason: "no CERTIFICATE block".to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(bad(key))?;
    acceptor_for(chain, key)
}

/// A rustls acceptor (ring provider, TLS 1.2/1.3, ALPN http/1.1) for a chain and key.
fn acceptor_for(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |e: rustls::Error| ServeError::Certificate {
        what: "TLS configuration",
        reason: e.to_string(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The MAA signing certificate (PROTOCOLS.md §5.1): self-signed by the MAA key, subject = issuer
/// = `CN=https://<host>`, validity 2019-05-01 → 2050-12-31, CA:false. Deterministic for a key and
/// host (fixed serial, PKCS#1 v1.5 signature), so it needs no file of its own.
pub fn maa_certificate(signer: &RsaSigner, host: &str) -> Result<Vec<u8>, ServeError> {
    let pem = signer.pkcs8_pem()?;
    let key = KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(rcgen_err("MAA signing key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("https://{host}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.not_before = rcgen::date_time_ymd(2019, 5, 1);
    params.not_after = rcgen::date_time_ymd(2050, 12, 31);
    params.serial_number = Some(SerialNumber::from(0x5ca1ab1eu64));
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_err("MAA certificate"))?;
    Ok(cert.der().to_vec())
}

//! The Key Vault / Managed HSM key release request (PROTOCOLS.md §6.1):
//! `POST {vault}/keys/{name}[/{version}]/release?api-version=…` with the body
//! `{"target": "<MAA JWT>", "enc": "<wrap algorithm>", "nonce": "<string>"?}`.
//!
//! skrd always names `enc` explicitly (the response's `request.enc` is still what counts,
//! §6.1); `nonce` is optional and only echoed.

use serde_json::json;
use url::Url;

use super::MaaFormatError;
use crate::format::jose::release::WrapAlgorithm;

/// Default api-version of release calls (the sidecar's; PROTOCOLS.md §6.1).
pub const API_VERSION: &str = "7.4";

/// The release URL of key `name` (optionally `version`) in the vault at `base`
/// (`scheme://host[:port]/`).
pub fn release_url(
    base: &Url,
    name: &str,
    version: Option<&str>,
    api_version: &str,
) -> Result<Url, MaaFormatError> {
    let invalid = |reason| MaaFormatError::KeyUrlInvalid {
        url: base.to_string(),
        reason,
    };
    let segment_ok =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !segment_ok(name) {
        return Err(invalid(
            "the key name is empty or has characters other than letters, digits and '-'",
        ));
    }
    if version.is_some_and(|v| !segment_ok(v)) {
        return Err(invalid("the key version is empty or not alphanumeric"));
    }
    let mut url = base.clone();
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|_| invalid("the vault URL cannot have a path"))?;
        path.clear().push("keys").push(name);
        if let Some(v) = version {
            path.push(v);
        }
        path.push("release");
    }
    url.set_query(None);
    url.query_pairs_mut()
        .append_pair("api-version", api_version);
    url.set_fragment(None);
    Ok(url)
}

/// The release request body.
pub fn release_body(target: &str, enc: WrapAlgorithm, nonce: Option<&str>) -> Vec<u8> {
    let mut body = json!({"target": target, "enc": enc.name()});
    if let Some(n) = nonce {
        body["nonce"] = json!(n);
    }
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn urls() {
        let base = Url::parse("https://contoso.vault.azure.net/").unwrap();
        // PROTOCOLS.md §6.1 template.
        assert_eq!(
            release_url(&base, "disk", None, "7.4").unwrap().as_str(),
            "https://contoso.vault.azure.net/keys/disk/release?api-version=7.4"
        );
        assert_eq!(
            release_url(&base, "disk", Some("0123456789abcdef0123456789abcdef"), "7.3")
                .unwrap()
                .as_str(),
            "https://contoso.vault.azure.net/keys/disk/0123456789abcdef0123456789abcdef/release?api-version=7.3"
        );
        let emu = Url::parse("https://127.0.0.1:8443/").unwrap();
        assert_eq!(
            release_url(&emu, "k-1", None, "7.4").unwrap().as_str(),
            "https://127.0.0.1:8443/keys/k-1/release?api-version=7.4"
        );
        for (name, version) in [
            ("", None),
            ("a/b", None),
            ("a", Some("")),
            ("a", Some("x?y")),
        ] {
            assert!(matches!(
                release_url(&base, name, version, "7.4"),
                Err(MaaFormatError::KeyUrlInvalid { .. })
            ));
        }
    }

    #[test]
    fn bodies() {
        // The C++ SKR sample's body shape (PROTOCOLS.md §6.1).
        let b: Value = serde_json::from_slice(&release_body(
            "a.b.c",
            WrapAlgorithm::RsaAesKeyWrap256,
            Some("ADE0101"),
        ))
        .unwrap();
        assert_eq!(
            b,
            json!({"target": "a.b.c", "enc": "RSA_AES_KEY_WRAP_256", "nonce": "ADE0101"})
        );
        let b: Value =
            serde_json::from_slice(&release_body("t", WrapAlgorithm::CkmRsaAesKeyWrap, None))
                .unwrap();
        assert_eq!(b, json!({"target": "t", "enc": "CKM_RSA_AES_KEY_WRAP"}));
    }
}

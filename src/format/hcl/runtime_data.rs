//! The HCL runtime ("variable") data JSON (PROTOCOLS.md §4.3, §9.1 trap 11).
//!
//! Parsed leniently: unknown members are kept, known members may be missing, and keys are found
//! by `kid`, never by position. Known members with the wrong JSON type are errors. Both shapes
//! are accepted:
//! - current HCL (2024+): `HCLAkPub` (`key_ops` `sign`) + `HCLEkPub`, `user-data` (128 hex),
//!   `vm-configuration` with `root-cert-thumbprint`, `tpm-persisted`;
//! - older HCL (2022-2023): only `HCLAkPub` (`key_ops` `encrypt`), `vm-configuration.current-time`,
//!   no `user-data`; the REST example's single `HCLTransferKey` and `secure-boot-template-id`.
//!
//! The bytes that are hashed into REPORT_DATA are kept by [`super::HclReport`]; this module only
//! reads them.

use super::error::HclError;
use crate::format::json::type_name;
use base64::Engine;
use serde_json::{Map, Value};

/// `kid` of the vTPM attestation key (persistent handle 0x81000003).
pub const KID_AK_PUB: &str = "HCLAkPub";
/// `kid` of the vTPM endorsement key (current HCL only).
pub const KID_EK_PUB: &str = "HCLEkPub";
/// `kid` of the transfer key in the MAA REST example.
pub const KID_TRANSFER_KEY: &str = "HCLTransferKey";

/// One JSON Web Key from the runtime data `keys` array.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwk {
    /// Key id (`HCLAkPub`, `HCLEkPub`, ...), if present.
    pub kid: Option<String>,
    /// Key type (`RSA` on every real report).
    pub kty: Option<String>,
    /// Permitted operations (`sign`, `encrypt`); empty when absent.
    pub key_ops: Vec<String>,
    /// RSA modulus, base64url as stored.
    pub n: Option<String>,
    /// RSA public exponent, base64url as stored.
    pub e: Option<String>,
    /// The whole JWK object, including members not listed above.
    pub raw: Map<String, Value>,
}

impl Jwk {
    /// The RSA modulus as big-endian bytes, if `n` is present.
    pub fn modulus(&self) -> Result<Option<Vec<u8>>, HclError> {
        self.decode_member(self.n.as_deref(), "n")
    }

    /// The RSA public exponent as big-endian bytes, if `e` is present.
    pub fn exponent(&self) -> Result<Option<Vec<u8>>, HclError> {
        self.decode_member(self.e.as_deref(), "e")
    }

    fn decode_member(
        &self,
        value: Option<&str>,
        member: &'static str,
    ) -> Result<Option<Vec<u8>>, HclError> {
        let Some(text) = value else {
            return Ok(None);
        };
        // JWK members are unpadded base64url; tolerate padding (be lenient when consuming).
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map(Some)
            .map_err(|_| HclError::KeyEncoding {
                kid: self.kid.clone().unwrap_or_default(),
                member,
            })
    }
}

/// `vm-configuration` of the runtime data. Every member is optional: they come and go between
/// HCL versions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmConfiguration {
    /// `console-enabled`.
    pub console_enabled: Option<bool>,
    /// `secure-boot`.
    pub secure_boot: Option<bool>,
    /// `tpm-enabled`.
    pub tpm_enabled: Option<bool>,
    /// `tpm-persisted` (current HCL only).
    pub tpm_persisted: Option<bool>,
    /// `vmUniqueId`: the VM's unique id, an upper-case GUID.
    pub vm_unique_id: Option<String>,
    /// `root-cert-thumbprint` (current HCL only), base64url.
    pub root_cert_thumbprint: Option<String>,
    /// `current-time` in Unix seconds (older HCL only).
    pub current_time: Option<i64>,
    /// `secure-boot-template-id` (MAA REST example).
    pub secure_boot_template_id: Option<String>,
    /// The whole object, including members not listed above.
    pub raw: Map<String, Value>,
}

/// The parsed runtime data.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeData {
    /// The `keys` array (empty when absent).
    pub keys: Vec<Jwk>,
    /// `vm-configuration`, if present.
    pub vm_configuration: Option<VmConfiguration>,
    /// `user-data`: the 64 bytes written to NV index 0x01400002 (zeros if never written).
    pub user_data: Option<[u8; 64]>,
    /// The whole JSON document.
    pub other: Value,
}

fn wrong_type(field: &str, expected: &'static str, found: &Value) -> HclError {
    HclError::RuntimeDataField {
        field: field.to_string(),
        expected,
        found: type_name(found),
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, HclError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(&format!("{path}{key}"), "string", other)),
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, HclError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(&format!("{path}{key}"), "boolean", other)),
    }
}

fn opt_i64(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, HclError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| wrong_type(&format!("{path}{key}"), "integer", v)),
        Some(other) => Err(wrong_type(&format!("{path}{key}"), "integer", other)),
    }
}

impl RuntimeData {
    /// Parses the variable data bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, HclError> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| HclError::RuntimeDataJson {
            detail: json_error_detail(&e),
            line: e.line(),
            column: e.column(),
        })?;
        let Value::Object(top) = &doc else {
            return Err(wrong_type("(top level)", "object", &doc));
        };

        let keys = match top.get("keys") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_jwk(i, item))
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => return Err(wrong_type("keys", "array", other)),
        };

        let vm_configuration = match top.get("vm-configuration") {
            None | Some(Value::Null) => None,
            Some(Value::Object(obj)) => Some(parse_vm_configuration(obj)?),
            Some(other) => return Err(wrong_type("vm-configuration", "object", other)),
        };

        let user_data = match top.get("user-data") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(parse_user_data(s)?),
            Some(other) => return Err(wrong_type("user-data", "string", other)),
        };

        Ok(Self {
            keys,
            vm_configuration,
            user_data,
            other: doc,
        })
    }

    /// The key with this `kid`, if any (the first one if the HCL ever repeated a kid).
    pub fn key(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// `HCLAkPub`: the public part of the vTPM AK at 0x81000003.
    pub fn ak_pub(&self) -> Option<&Jwk> {
        self.key(KID_AK_PUB)
    }

    /// `HCLEkPub`: the vTPM EK (current HCL only).
    pub fn ek_pub(&self) -> Option<&Jwk> {
        self.key(KID_EK_PUB)
    }

    /// `HCLTransferKey` (MAA REST example shape).
    pub fn transfer_key(&self) -> Option<&Jwk> {
        self.key(KID_TRANSFER_KEY)
    }

    /// `vm-configuration.vmUniqueId`, if present.
    pub fn vm_unique_id(&self) -> Option<&str> {
        self.vm_configuration
            .as_ref()
            .and_then(|c| c.vm_unique_id.as_deref())
    }
}

/// serde_json's message without its " at line L column C" suffix (kept in separate fields).
fn json_error_detail(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(pos) => text.get(..pos).unwrap_or(&text).to_string(),
        None => text,
    }
}

fn parse_jwk(index: usize, item: &Value) -> Result<Jwk, HclError> {
    let path = format!("keys[{index}].");
    let Value::Object(obj) = item else {
        return Err(wrong_type(&format!("keys[{index}]"), "object", item));
    };
    let key_ops = match obj.get("key_ops") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ops)) => ops
            .iter()
            .enumerate()
            .map(|(j, op)| match op {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong_type(&format!("{path}key_ops[{j}]"), "string", other)),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(wrong_type(&format!("{path}key_ops"), "array", other)),
    };
    Ok(Jwk {
        kid: opt_str(obj, "kid", &path)?,
        kty: opt_str(obj, "kty", &path)?,
        key_ops,
        n: opt_str(obj, "n", &path)?,
        e: opt_str(obj, "e", &path)?,
        raw: obj.clone(),
    })
}

fn parse_vm_configuration(obj: &Map<String, Value>) -> Result<VmConfiguration, HclError> {
    let p = "vm-configuration.";
    Ok(VmConfiguration {
        console_enabled: opt_bool(obj, "console-enabled", p)?,
        secure_boot: opt_bool(obj, "secure-boot", p)?,
        tpm_enabled: opt_bool(obj, "tpm-enabled", p)?,
        tpm_persisted: opt_bool(obj, "tpm-persisted", p)?,
        vm_unique_id: opt_str(obj, "vmUniqueId", p)?,
        root_cert_thumbprint: opt_str(obj, "root-cert-thumbprint", p)?,
        current_time: opt_i64(obj, "current-time", p)?,
        secure_boot_template_id: opt_str(obj, "secure-boot-template-id", p)?,
        raw: obj.clone(),
    })
}

fn parse_user_data(text: &str) -> Result<[u8; 64], HclError> {
    let length = text.chars().count();
    if length != 128 {
        return Err(HclError::UserDataInvalid { length, hint: "" });
    }
    let mut out = [0u8; 64];
    // hex accepts both cases; real reports use upper case.
    hex::decode_to_slice(text, &mut out).map_err(|_| HclError::UserDataInvalid {
        length,
        hint: " with non-hex characters",
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_example_shape_with_transfer_key() {
        // Shape of the MAA REST example (PROTOCOLS.md §4.3): one HCLTransferKey and a
        // secure-boot-template-id, no user-data.
        let json = br#"{"keys":[{"kid":"HCLTransferKey","key_ops":["encrypt"],"kty":"RSA","e":"AQAB","n":"AQAB"}],"vm-configuration":{"secure-boot":true,"secure-boot-template-id":"1734c6e8-3154-4dda-ba5f-a874cc483422","tpm-enabled":true,"vmUniqueId":"X"}}"#;
        let rd = RuntimeData::parse(json).unwrap();
        assert!(rd.ak_pub().is_none());
        let tk = rd.transfer_key().unwrap();
        assert_eq!(tk.key_ops, vec!["encrypt".to_string()]);
        // "AQAB" is base64url of 01 00 01 (RFC 7518 §6.3.1.2 example exponent 65537).
        assert_eq!(tk.exponent().unwrap().unwrap(), vec![1, 0, 1]);
        let cfg = rd.vm_configuration.unwrap();
        assert_eq!(
            cfg.secure_boot_template_id.as_deref(),
            Some("1734c6e8-3154-4dda-ba5f-a874cc483422")
        );
        assert_eq!(cfg.console_enabled, None);
        assert!(rd.user_data.is_none());
    }

    #[test]
    fn keys_found_by_kid_not_index() {
        let json = br#"{"keys":[{"kid":"HCLEkPub","kty":"RSA"},{"kid":"HCLAkPub","kty":"RSA","key_ops":["sign"]}]}"#;
        let rd = RuntimeData::parse(json).unwrap();
        assert_eq!(rd.ak_pub().unwrap().key_ops, vec!["sign".to_string()]);
        assert_eq!(rd.ek_pub().unwrap().kid.as_deref(), Some("HCLEkPub"));
    }

    #[test]
    fn invalid_json_is_specific() {
        let err = RuntimeData::parse(b"{\"keys\":[").unwrap_err();
        assert!(
            matches!(err, HclError::RuntimeDataJson { line: 1, .. }),
            "{err:?}"
        );
        let err = RuntimeData::parse(b"[1,2]").unwrap_err();
        assert!(matches!(
            err,
            HclError::RuntimeDataField {
                expected: "object",
                ..
            }
        ));
        let err = RuntimeData::parse(&[0xff, 0xfe]).unwrap_err();
        assert!(matches!(err, HclError::RuntimeDataJson { .. }));
    }

    #[test]
    fn wrong_types_are_specific() {
        let err =
            RuntimeData::parse(br#"{"vm-configuration":{"secure-boot":"true"}}"#).unwrap_err();
        assert_eq!(
            err,
            HclError::RuntimeDataField {
                field: "vm-configuration.secure-boot".into(),
                expected: "boolean",
                found: "string"
            }
        );
        let err = RuntimeData::parse(br#"{"keys":{}}"#).unwrap_err();
        assert!(matches!(
            err,
            HclError::RuntimeDataField {
                expected: "array",
                ..
            }
        ));
        let err = RuntimeData::parse(br#"{"keys":[{"key_ops":"sign"}]}"#).unwrap_err();
        assert!(
            matches!(err, HclError::RuntimeDataField { ref field, .. } if field == "keys[0].key_ops")
        );
    }

    #[test]
    fn user_data_must_be_128_hex_chars() {
        let ok = format!(r#"{{"user-data":"{}"}}"#, "aB".repeat(64));
        assert_eq!(
            RuntimeData::parse(ok.as_bytes()).unwrap().user_data,
            Some([0xab; 64])
        );
        let short = format!(r#"{{"user-data":"{}"}}"#, "00".repeat(63));
        assert_eq!(
            RuntimeData::parse(short.as_bytes()).unwrap_err(),
            HclError::UserDataInvalid {
                length: 126,
                hint: ""
            }
        );
        let nonhex = format!(r#"{{"user-data":"{}zz"}}"#, "00".repeat(63));
        assert!(matches!(
            RuntimeData::parse(nonhex.as_bytes()).unwrap_err(),
            HclError::UserDataInvalid { length: 128, .. }
        ));
        let multibyte = format!(r#"{{"user-data":"{}é"}}"#, "0".repeat(127));
        assert!(matches!(
            RuntimeData::parse(multibyte.as_bytes()).unwrap_err(),
            HclError::UserDataInvalid { length: 128, .. }
        ));
    }

    #[test]
    fn bad_base64url_modulus_is_specific() {
        let rd = RuntimeData::parse(br#"{"keys":[{"kid":"HCLAkPub","n":"!!"}]}"#).unwrap();
        assert_eq!(
            rd.ak_pub().unwrap().modulus().unwrap_err(),
            HclError::KeyEncoding {
                kid: "HCLAkPub".into(),
                member: "n"
            }
        );
    }
}

//! Base64 flavours of the JOSE formats (PROTOCOLS.md §9 "Base64 flavours", §9.1 traps 13, 17).
//!
//! Lenient when consuming, strict when producing: decoders accept padded and unpadded input
//! (the padding, when present, must be correct), encoders write unpadded base64url. Decoded
//! bytes are returned exactly: nothing is ever trimmed (a trailing 0x00 is data, trap 17).

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::error::JoseError;

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
const STD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);

/// Decodes base64url (RFC 4648 §5), padded or not: JWS segments, JWK members, `key_hsm`.
pub fn decode_url(field: &str, text: &str) -> Result<Vec<u8>, JoseError> {
    URL_LENIENT
        .decode(text)
        .map_err(|e| invalid(field, "base64url", &e))
}

/// Decodes standard base64 (RFC 4648 §4), padded or not: `x5c` entries.
pub fn decode_std(field: &str, text: &str) -> Result<Vec<u8>, JoseError> {
    STD_LENIENT
        .decode(text)
        .map_err(|e| invalid(field, "standard base64", &e))
}

/// Decodes any of the four flavours (std/url, padded/unpadded); one alphabet per input.
/// For fields that clients produce inconsistently (PROTOCOLS.md §9.1 trap 13).
pub fn decode_any(field: &str, text: &str) -> Result<Vec<u8>, JoseError> {
    match URL_LENIENT.decode(text) {
        Ok(bytes) => Ok(bytes),
        Err(url_err) => STD_LENIENT
            .decode(text)
            .map_err(|std_err| JoseError::Base64Invalid {
                field: field.to_string(),
                flavour: "base64 or base64url",
                reason: format!("as base64url: {url_err}; as standard base64: {std_err}"),
            }),
    }
}

/// Encodes as unpadded base64url (how JOSE fields are produced).
pub fn encode_url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn invalid(field: &str, flavour: &'static str, e: &base64::DecodeError) -> JoseError {
    JoseError::Base64Invalid {
        field: field.to_string(),
        flavour,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_accepts_padded_and_unpadded_and_keeps_trailing_zeros() {
        // "AAE" / "AAE=" is base64url of [0x00, 0x01]; "AQA" is [0x01, 0x00] (RFC 4648 table).
        assert_eq!(decode_url("t", "AAE").unwrap(), vec![0, 1]);
        assert_eq!(decode_url("t", "AAE=").unwrap(), vec![0, 1]);
        assert_eq!(decode_url("t", "AQA").unwrap(), vec![1, 0]);
        assert!(decode_url("t", "AA+E").is_err());
        assert!(decode_url("t", "AAE==").is_err());
    }

    #[test]
    fn std_and_any() {
        // 0xfb 0xff in std base64 is "+/8=", in base64url "-_8".
        assert_eq!(decode_std("t", "+/8=").unwrap(), vec![0xfb, 0xff]);
        assert!(decode_std("t", "-_8").is_err());
        assert_eq!(decode_any("t", "-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_any("t", "+/8").unwrap(), vec![0xfb, 0xff]);
        assert!(decode_any("t", "+_8").is_err());
        assert_eq!(encode_url(&[0xfb, 0xff]), "-_8");
    }
}

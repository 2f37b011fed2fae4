//! [`JoseError`]: every way a compact JWS, a JWK/JWKS/certificate key source or a JWT's claims
//! can be refused (PROTOCOLS.md §5.1, §5.4, §5.5, §9.1 traps 13, 14, 21, 23).
//!
//! Each variant carries the facts (expected vs found) and maps to a stable kebab-case code
//! through [`ErrorCode`]; the message says which check failed and what the operator should do.
//! The codes are listed in `docs/errors-jose.md`.

use crate::error::ErrorCode;

/// A JWS, JWK, JWKS or JWT error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    /// An input is larger than the limit for its kind.
    #[error(
        "{what} is too large: limit {limit} bytes, found {found}; this is not a token or key \
         file skrd produces or accepts (check the file given)"
    )]
    InputTooLarge {
        /// What was being read ("compact JWS", "key file", ...).
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
        /// The size given.
        found: usize,
    },

    /// A compact JWS contains bytes outside the base64url alphabet and '.'.
    #[error(
        "compact JWS contains a byte that is not base64url or '.' (0x{byte:02x} at offset \
         {offset}); pass the token text alone, without quotes or a JSON wrapper"
    )]
    JwsNotCompact {
        /// The offending byte.
        byte: u8,
        /// Its offset.
        offset: usize,
    },

    /// A compact JWS does not have exactly three '.'-separated segments.
    #[error(
        "compact JWS has {found} segments, expected 3 (header.payload.signature); \
         a JWE (5 segments) or a truncated token is not accepted"
    )]
    JwsSegmentCount {
        /// Number of segments found.
        found: usize,
    },

    /// One of the three segments is empty.
    #[error("compact JWS {segment} segment is empty; the token is truncated or unsigned")]
    JwsSegmentEmpty {
        /// "header", "payload" or "signature".
        segment: &'static str,
    },

    /// A base64 / base64url field does not decode.
    #[error("{field} is not valid {flavour}: {reason}; the token or key is corrupted")]
    Base64Invalid {
        /// The field ("JWS header", "`x5c[1]`", "JWK n", ...).
        field: String,
        /// The alphabet expected ("base64url", "standard base64").
        flavour: &'static str,
        /// The decoder's explanation.
        reason: String,
    },

    /// A JSON document (JWS header, JWT claims, JWK) does not parse or is not an object.
    #[error("{field} is not a JSON object: {reason}")]
    JsonInvalid {
        /// Which document.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },

    /// A JWS header field is missing or has the wrong JSON type.
    #[error("JWS header field \"{field}\" is {problem}: expected {expected}")]
    HeaderFieldInvalid {
        /// The header member.
        field: &'static str,
        /// "missing", "not a string", ...
        problem: &'static str,
        /// What is accepted.
        expected: &'static str,
    },

    /// The header names critical extensions, which skrd does not implement (RFC 7515 §4.1.11).
    #[error(
        "JWS header lists critical extensions {found:?}, which skrd does not understand; \
         MAA and Key Vault never send \"crit\": refuse the token"
    )]
    CritUnsupported {
        /// The extension names.
        found: Vec<String>,
    },

    /// `alg` is `none`: an unsigned token.
    #[error(
        "JWS is unsigned (alg \"{found}\"); skrd accepts only signed tokens (RS256): \
         the token was forged or stripped"
    )]
    AlgNone {
        /// The alg value as found.
        found: String,
    },

    /// `alg` is not one skrd verifies.
    #[error(
        "JWS algorithm \"{found}\" is not supported (supported: {supported:?}); MAA and Key \
         Vault sign with RS256 (PROTOCOLS.md §5.1, §6.6)"
    )]
    AlgUnsupported {
        /// The alg value.
        found: String,
        /// The algorithms skrd verifies.
        supported: &'static [&'static str],
    },

    /// `typ` is present but is not `JWT`.
    #[error(
        "JWS header typ is \"{found}\", expected \"JWT\"; this is not an MAA token or AKV response"
    )]
    TypUnexpected {
        /// The typ value.
        found: String,
    },

    /// The verification key's type does not fit `alg` (algorithm confusion).
    #[error(
        "key \"{kid}\" is a {kty} key but the JWS says alg {alg}, which needs an RSA key; \
         refusing (algorithm confusion)"
    )]
    KeyTypeMismatch {
        /// The JWS alg.
        alg: String,
        /// The key's kid ("(no kid)" for a certificate).
        kid: String,
        /// The key type found ("EC", "oct", ...).
        kty: String,
    },

    /// The JWK pins an `alg` different from the JWS header's.
    #[error("key \"{kid}\" is restricted to alg {key_alg} but the JWS says {alg}; refusing")]
    KeyAlgMismatch {
        /// The JWS alg.
        alg: String,
        /// The key's kid.
        kid: String,
        /// The JWK's alg member.
        key_alg: String,
    },

    /// The JWK's `use` is not `sig`.
    #[error("key \"{kid}\" has use \"{found}\", expected \"sig\"; it is not a token signing key")]
    KeyUseNotSignature {
        /// The key's kid.
        kid: String,
        /// The use member.
        found: String,
    },

    /// The RSA key is too short to be trusted.
    #[error(
        "RSA key \"{kid}\" has {bits} bits, fewer than the minimum {min}; \
         refusing signatures made with it"
    )]
    RsaKeyTooSmall {
        /// The key's kid.
        kid: String,
        /// Modulus size.
        bits: usize,
        /// Minimum accepted.
        min: usize,
    },

    /// The JWS `kid` is not in the key set (exact string comparison: kid is opaque).
    #[error(
        "no key with kid \"{kid}\" in the key set ({known} keys with kids: {known_kids:?}); \
         the issuer rolled its keys or the token comes from another issuer: refresh the \
         issuer's /certs (or pass its JWKS / signing certificate with --keys)"
    )]
    UnknownKid {
        /// The kid in the JWS header.
        kid: String,
        /// How many keys the set has.
        known: usize,
        /// The kids in the set.
        known_kids: Vec<String>,
    },

    /// The JWS has no `kid` and the key set holds more than one key.
    #[error(
        "JWS header has no kid and the key set has {keys} keys: cannot tell which key signed \
         it; pass the single signing key"
    )]
    KidMissing {
        /// Keys in the set.
        keys: usize,
    },

    /// Two keys in the set share the JWS `kid`.
    #[error("the key set has {count} keys with kid \"{kid}\"; a JWKS must not repeat a kid")]
    DuplicateKid {
        /// The repeated kid.
        kid: String,
        /// How many.
        count: usize,
    },

    /// A JWK is malformed.
    #[error("JWK {index} (kid {kid:?}) is invalid: {field} {problem}")]
    JwkInvalid {
        /// Position in the key set.
        index: usize,
        /// Its kid if any.
        kid: Option<String>,
        /// The member at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },

    /// The key file holds no key.
    #[error("the key set is empty; pass a JWKS with keys, a JWK, or a PEM/DER certificate")]
    KeySetEmpty,

    /// The key file is neither a JWK, a JWKS, nor a PEM/DER X.509 certificate.
    #[error(
        "key file is not a JWKS, a JWK, or a PEM/DER X.509 certificate ({reason}); \
         pass the issuer's /certs document or its signing certificate"
    )]
    KeySourceUnrecognised {
        /// What the detection found.
        reason: String,
    },

    /// An X.509 certificate in a key source or x5c does not parse.
    #[error("certificate {index} cannot be decoded: {reason}")]
    CertInvalid {
        /// Position (in the file or x5c).
        index: usize,
        /// The decoder's explanation.
        reason: String,
    },

    /// The signature does not verify with the selected key.
    #[error(
        "JWS signature ({alg}) does not verify with key \"{kid}\"; the token was altered, or \
         was signed by another key (check the issuer and its keys)"
    )]
    SignatureInvalid {
        /// The algorithm.
        alg: String,
        /// The key tried ("(no kid)" for a certificate); several joined by ", ".
        kid: String,
    },

    /// The payload is not UTF-8 JSON with an object at the top.
    #[error("JWT claims are not a JSON object: {reason}")]
    ClaimsInvalid {
        /// What was wrong.
        reason: String,
    },

    /// A claim skrd needs is absent.
    #[error(
        "JWT claim \"{claim}\" is missing; the token is not of the kind expected \
         (AzureGuest tokens keep SNP claims under x-ms-isolation-tee, SevSnpVm tokens at the top)"
    )]
    ClaimMissing {
        /// Dotted path of the claim.
        claim: String,
    },

    /// A claim has the wrong JSON type.
    #[error("JWT claim \"{claim}\" has the wrong type: expected {expected}, found {found}")]
    ClaimType {
        /// Dotted path of the claim.
        claim: String,
        /// Expected JSON type.
        expected: &'static str,
        /// Found JSON type.
        found: &'static str,
    },

    /// `iss` is not the expected issuer (after removing one trailing '/').
    #[error(
        "token issuer \"{found}\" is not the expected \"{expected}\"; the token comes from \
         another attestation provider: check attestation.provider / --issuer"
    )]
    IssuerMismatch {
        /// Expected issuer (normalised).
        expected: String,
        /// Issuer found (as in the token).
        found: String,
    },

    /// The header's `jku` is not `<issuer>/certs`.
    #[error(
        "token header jku \"{found}\" is not the issuer's key URL \"{expected}\"; refusing a \
         token that points at keys elsewhere"
    )]
    JkuMismatch {
        /// `<issuer>/certs`.
        expected: String,
        /// The jku found.
        found: String,
    },

    /// `exp` is in the past (beyond the skew allowance).
    #[error(
        "token expired at {exp} (Unix seconds); now is {now}, allowed clock skew {skew_s} s; \
         attest again (MAA tokens live 8 hours), or check the system clock"
    )]
    Expired {
        /// exp claim.
        exp: i64,
        /// The time used.
        now: i64,
        /// Skew allowance in seconds.
        skew_s: i64,
    },

    /// `nbf` is in the future (beyond the skew allowance).
    #[error(
        "token is not valid before {nbf} (Unix seconds); now is {now}, allowed clock skew \
         {skew_s} s; the system clock is behind: fix time synchronisation"
    )]
    NotYetValid {
        /// nbf claim.
        nbf: i64,
        /// The time used.
        now: i64,
        /// Skew allowance in seconds.
        skew_s: i64,
    },

    /// `iat` is in the future (beyond the skew allowance).
    #[error(
        "token claims to be issued at {iat} (Unix seconds), after now ({now}) plus the \
         allowed skew {skew_s} s; the system clock is behind: fix time synchronisation"
    )]
    IssuedInFuture {
        /// iat claim.
        iat: i64,
        /// The time used.
        now: i64,
        /// Skew allowance in seconds.
        skew_s: i64,
    },

    /// `iat`/`nbf` after `exp`.
    #[error("token lifetime is inconsistent: {claim} = {value} is after exp = {exp}")]
    LifetimeInvalid {
        /// "iat" or "nbf".
        claim: &'static str,
        /// Its value.
        value: i64,
        /// exp claim.
        exp: i64,
    },

    /// `x-ms-ver` is not the expected version.
    #[error("token x-ms-ver is \"{found}\", expected \"{expected}\"; update skrd to read this token format")]
    MsVerUnexpected {
        /// Expected version.
        expected: String,
        /// Found version.
        found: String,
    },
}

impl JoseError {
    /// `true` when the input cannot be read as a compact JWS at all (too large, not base64url
    /// text, not three segments, a header that is not a JSON object with a string `alg`):
    /// unusable input (skrctl exit 2), as opposed to a token that was read and failed a check
    /// (exit 1). Only errors [`super::jws::CompactJws::parse`] reports before looking at `alg`,
    /// `crit` or the signature qualify.
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Self::InputTooLarge { .. }
                | Self::JwsNotCompact { .. }
                | Self::JwsSegmentCount { .. }
                | Self::JwsSegmentEmpty { .. }
                | Self::Base64Invalid { .. }
                | Self::JsonInvalid { .. }
                | Self::HeaderFieldInvalid { .. }
        )
    }
}

impl ErrorCode for JoseError {
    fn code(&self) -> &'static str {
        match self {
            Self::InputTooLarge { .. } => "jose-input-too-large",
            Self::JwsNotCompact { .. } => "jws-not-compact",
            Self::JwsSegmentCount { .. } => "jws-segment-count",
            Self::JwsSegmentEmpty { .. } => "jws-segment-empty",
            Self::Base64Invalid { .. } => "jose-base64-invalid",
            Self::JsonInvalid { .. } => "jose-json-invalid",
            Self::HeaderFieldInvalid { .. } => "jws-header-invalid",
            Self::CritUnsupported { .. } => "jws-crit-unsupported",
            Self::AlgNone { .. } => "jws-alg-none",
            Self::AlgUnsupported { .. } => "jws-alg-unsupported",
            Self::TypUnexpected { .. } => "jws-typ-unexpected",
            Self::KeyTypeMismatch { .. } => "jws-key-type-mismatch",
            Self::KeyAlgMismatch { .. } => "jws-key-alg-mismatch",
            Self::KeyUseNotSignature { .. } => "jwk-use-not-signature",
            Self::RsaKeyTooSmall { .. } => "jwk-rsa-key-too-small",
            Self::UnknownKid { .. } => "jwt-unknown-kid",
            Self::KidMissing { .. } => "jwt-kid-missing",
            Self::DuplicateKid { .. } => "jwks-duplicate-kid",
            Self::JwkInvalid { .. } => "jwk-invalid",
            Self::KeySetEmpty => "jwks-empty",
            Self::KeySourceUnrecognised { .. } => "jose-key-source-unrecognised",
            Self::CertInvalid { .. } => "jose-cert-invalid",
            Self::SignatureInvalid { .. } => "jws-signature-invalid",
            Self::ClaimsInvalid { .. } => "jwt-claims-invalid",
            Self::ClaimMissing { .. } => "jwt-claim-missing",
            Self::ClaimType { .. } => "jwt-claim-type",
            Self::IssuerMismatch { .. } => "jwt-issuer-mismatch",
            Self::JkuMismatch { .. } => "jwt-jku-mismatch",
            Self::Expired { .. } => "jwt-expired",
            Self::NotYetValid { .. } => "jwt-not-yet-valid",
            Self::IssuedInFuture { .. } => "jwt-issued-in-future",
            Self::LifetimeInvalid { .. } => "jwt-lifetime-invalid",
            Self::MsVerUnexpected { .. } => "jwt-ms-ver-unexpected",
        }
    }
}

//! The peer address of a systemd-cryptsetup key-file request (DESIGN.md "Boot integration").
//!
//! When `/etc/crypttab` names an `AF_UNIX` socket as the key file, systemd-cryptsetup binds its
//! client socket to the abstract address `"\0" + <random u64 as lower-case hex> +
//! "/cryptsetup/" + <volume name>` before connecting, so the server learns which volume is asked
//! for from `getpeername()`. This module parses the abstract name (the bytes after the leading
//! NUL, as `SocketAddr::as_abstract_name` returns them) into the volume name. The name is
//! untrusted (any local process can connect): the caller still looks it up in the
//! configuration. PURE; no I/O.

use crate::error::ErrorCode;

/// The separator between the random prefix and the volume name.
pub const CRYPTSETUP_INFIX: &str = "/cryptsetup/";
/// Longest abstract name an `AF_UNIX` address can hold (108-byte `sun_path` minus the NUL).
pub const MAX_ABSTRACT_NAME: usize = 107;

/// Why a peer's address does not name a volume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerNameError {
    /// Longer than an `AF_UNIX` abstract name can be.
    #[error("the key socket peer's address is {found} bytes, longer than any abstract AF_UNIX name ({max}); not a systemd-cryptsetup request")]
    TooLong {
        /// Length found.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// Not `<hex>/cryptsetup/<volume>`.
    #[error("the key socket peer's address {found:?} is not \"<hex>/cryptsetup/<volume>\"; only systemd-cryptsetup (crypttab key file = the socket) is answered")]
    Shape {
        /// The name, lossily decoded, first 64 characters.
        found: String,
    },
    /// The volume part is empty or has characters no crypttab name has.
    #[error("the key socket peer asks for volume {found:?}, which is not a usable crypttab volume name (1-64 letters, digits, '_', '.', '+', '-')")]
    VolumeName {
        /// The volume part, lossily decoded, first 64 characters.
        found: String,
    },
}

impl ErrorCode for PeerNameError {
    fn code(&self) -> &'static str {
        match self {
            Self::TooLong { .. } => "keysocket-peer-too-long",
            Self::Shape { .. } => "keysocket-peer-shape",
            Self::VolumeName { .. } => "keysocket-peer-volume",
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(64).collect()
}

/// The volume name in a systemd-cryptsetup peer's abstract socket name (without the leading
/// NUL byte).
pub fn volume_from_abstract_name(name: &[u8]) -> Result<&str, PeerNameError> {
    if name.len() > MAX_ABSTRACT_NAME {
        return Err(PeerNameError::TooLong {
            found: name.len(),
            max: MAX_ABSTRACT_NAME,
        });
    }
    let shape = || PeerNameError::Shape { found: lossy(name) };
    let text = std::str::from_utf8(name).map_err(|_| shape())?;
    let (prefix, volume) = text.split_once(CRYPTSETUP_INFIX).ok_or_else(shape)?;
    // systemd formats the random part with "%" PRIx64: 1 to 16 lower-case hex digits.
    let prefix_ok = (1..=16).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !prefix_ok {
        return Err(shape());
    }
    let volume_ok = (1..=64).contains(&volume.len())
        && !volume.starts_with(['.', '-'])
        && volume
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c));
    if !volume_ok {
        return Err(PeerNameError::VolumeName {
            found: lossy(volume.as_bytes()),
        });
    }
    Ok(volume)
}

/// Fuzzing entry point.
#[doc(hidden)]
pub fn fuzz_peer(data: &[u8]) {
    let _ = volume_from_abstract_name(data);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn systemd_shapes() {
        // systemd's cryptsetup.c binds to "@%" PRIx64 "/cryptsetup/%s" (the '@' becomes the
        // leading NUL, which the caller has already removed).
        assert_eq!(
            volume_from_abstract_name(b"1a2b3c4d5e6f7081/cryptsetup/data").unwrap(),
            "data"
        );
        assert_eq!(
            volume_from_abstract_name(b"0/cryptsetup/my_disk-2.x").unwrap(),
            "my_disk-2.x"
        );
    }

    #[test]
    fn refusals() {
        let code = |b: &[u8]| volume_from_abstract_name(b).unwrap_err().code();
        assert_eq!(code(b""), "keysocket-peer-shape");
        assert_eq!(code(b"data"), "keysocket-peer-shape");
        assert_eq!(code(b"/cryptsetup/data"), "keysocket-peer-shape");
        assert_eq!(code(b"XYZ/cryptsetup/data"), "keysocket-peer-shape");
        assert_eq!(code(b"ABCDEF/cryptsetup/data"), "keysocket-peer-shape");
        assert_eq!(
            code(b"12345678901234567/cryptsetup/data"),
            "keysocket-peer-shape"
        );
        assert_eq!(code(b"1f/cryptsetup-pkcs11/data"), "keysocket-peer-shape");
        assert_eq!(code(b"1f/cryptsetup/"), "keysocket-peer-volume");
        assert_eq!(code(b"1f/cryptsetup/../x"), "keysocket-peer-volume");
        assert_eq!(code(b"1f/cryptsetup/a/b"), "keysocket-peer-volume");
        assert_eq!(code(b"1f/cryptsetup/a\0b"), "keysocket-peer-volume");
        assert_eq!(code(b"1f/cryptsetup/\xff"), "keysocket-peer-shape");
        assert_eq!(code(&[b'a'; 108]), "keysocket-peer-too-long");
    }
}

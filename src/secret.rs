//! Buffers for secret bytes: wiped on drop, locked in RAM, never printed.
//!
//! `Secret` holds key material, passphrases and tokens that grant a key. Its `Debug` prints only
//! the length. The pages are `mlock`ed (best effort: a failure is reported, not fatal, because an
//! unprivileged test process may have a zero `RLIMIT_MEMLOCK`).

use zeroize::Zeroize;

/// Secret bytes, zeroized on drop and locked into memory.
pub struct Secret {
    bytes: Box<[u8]>,
    locked: bool,
}

impl Secret {
    /// Takes ownership of `bytes`, wiping the source vector's spare capacity.
    pub fn new(mut bytes: Vec<u8>) -> Self {
        let boxed: Box<[u8]> = bytes.as_slice().into();
        bytes.zeroize();
        let locked = lock(&boxed);
        Self {
            bytes: boxed,
            locked,
        }
    }

    /// The secret bytes. Callers must not copy them into unprotected memory.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether `mlock` succeeded for this buffer.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

fn lock(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return true;
    }
    // SAFETY: mlock only reads the address range, which is valid for `bytes.len()` bytes.
    unsafe { libc::mlock(bytes.as_ptr().cast(), bytes.len()) == 0 }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.bytes.zeroize();
        if self.locked && !self.bytes.is_empty() {
            // SAFETY: same range that was locked in `new`.
            unsafe {
                libc::munlock(self.bytes.as_ptr().cast(), self.bytes.len());
            }
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[redacted {} bytes]", self.bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_bytes() {
        let s = Secret::new(vec![0x41; 16]);
        assert_eq!(format!("{s:?}"), "[redacted 16 bytes]");
        assert_eq!(s.expose(), &[0x41; 16]);
    }
}

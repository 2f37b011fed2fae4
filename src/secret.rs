//! Secret bytes and the memory they live in: wiped on drop, locked in RAM, never printed.
//!
//! Two layers keep key material out of swap:
//!
//! - **The whole process** ([`lock_process_memory`]): `mlockall(MCL_CURRENT | MCL_FUTURE |
//!   MCL_ONFAULT)`, called first thing in `main` of every program that handles keys (`skrd` in
//!   both modes; `skrctl release`, `attest`, `enroll`, `unlock`, `reenroll`). It covers what a
//!   per-buffer lock cannot reach: the RSA transfer key of the raw SNP flow and the RSA/EC keys
//!   rebuilt while decoding released material live in the `rsa`/`p256`… crates' own heap
//!   allocations, the TLS buffers that carry tokens, the async tasks' stacks. `MCL_ONFAULT`
//!   locks a page when it is first touched instead of faulting every mapping in, so the resident
//!   size does not grow (libcryptsetup locks its process for the same reason); the daemon
//!   unlocks its read-only file mappings (code, no secret can be there) once its start-up is
//!   done ([`crate::footprint`]). Locking is
//!   accounted against `RLIMIT_MEMLOCK` by *virtual* size (the kernel's `VmLck`), which is why
//!   `skrd.service` sets `LimitMEMLOCK=`. A failure is reported once, on stderr, with the code
//!   `memory-lock-failed`, and the program goes on: refusing to unlock a disk because swap might
//!   see a key would turn a hardening measure into an outage.
//! - **Each [`Secret`] buffer**, when the process is not locked (a library user, a test, a
//!   failed `mlockall`): its pages are `mlock`ed, best effort (`secret-lock-failed`, logged
//!   once). The kernel does not count locks, so a page shared by two live buffers is reference
//!   counted here and `munlock`ed only when the last of them is dropped. Once the process is
//!   locked, buffers neither lock nor unlock anything: a `munlock` would punch a hole into the
//!   process-wide lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use zeroize::Zeroize;

use crate::error::ErrorCode;

/// Why memory could not be locked into RAM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryLockError {
    /// `mlockall` failed: keys may be written to swap.
    #[error(
        "cannot lock the process memory into RAM (mlockall: {reason}; locked-memory limit \
         {limit}, process size {size}): key material may be written to swap; raise the limit \
         (LimitMEMLOCK= in the systemd unit, `ulimit -l` in a shell) or run with CAP_IPC_LOCK"
    )]
    ProcessLockFailed {
        /// The OS error.
        reason: String,
        /// `RLIMIT_MEMLOCK` as text ("8192 KiB", "unlimited").
        limit: String,
        /// The process's virtual size (`VmSize`) as text, or "unknown".
        size: String,
    },
    /// `mlock` of one secret buffer failed.
    #[error(
        "cannot lock a {len}-byte secret buffer into RAM (mlock: {reason}): it may be written \
         to swap; raise the locked-memory limit (LimitMEMLOCK=, `ulimit -l`) or run with \
         CAP_IPC_LOCK"
    )]
    BufferLockFailed {
        /// The buffer's length.
        len: usize,
        /// The OS error.
        reason: String,
    },
}

impl ErrorCode for MemoryLockError {
    fn code(&self) -> &'static str {
        match self {
            Self::ProcessLockFailed { .. } => "memory-lock-failed",
            Self::BufferLockFailed { .. } => "secret-lock-failed",
        }
    }
}

/// True once `mlockall` succeeded in this process.
static PROCESS_LOCKED: AtomicBool = AtomicBool::new(false);
/// The outcome of the first [`lock_process_memory`] call.
static PROCESS_LOCK: OnceLock<Result<(), MemoryLockError>> = OnceLock::new();

/// The smallest `RLIMIT_MEMLOCK` under which a process without CAP_IPC_LOCK locks itself whole.
///
/// With `MCL_FUTURE` the kernel accounts every later mapping in full against the limit (the
/// accounting is by address space, not resident memory: a thread's stack, a glibc malloc
/// arena's 64 MiB reservation — 128 MiB for a moment while glibc aligns it — count whole), and
/// refuses a mapping that would pass it: an allocation or a thread start then fails and the
/// program aborts. So a limit that admits the `mlockall` itself is not enough; below this
/// allowance the process stays unlocked (its [`Secret`] buffers are still locked page by page)
/// rather than risk that. Measured (tests/flow_memlock.rs): the daemon holds 88 MiB of address
/// space idle and peaks at 146 MiB under 20 concurrent releases (release build; 100 and 158 MiB
/// for the test build), `skrctl release` at about 165 MiB (test build).
/// systemd/skrd.service's `LimitMEMLOCK=` gives the daemon twice this.
pub const MIN_PROCESS_MEMLOCK: u64 = 256 << 20;

/// Locks every page of the process, those mapped now and those mapped later, into RAM as they
/// are first touched: `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)` (see the module docs
/// for why). Call it at the start of `main` of every program that handles keys, before any
/// thread or secret exists.
///
/// Without CAP_IPC_LOCK, the process is locked only when `RLIMIT_MEMLOCK` is at least
/// [`MIN_PROCESS_MEMLOCK`] (why: its documentation). Idempotent: the first call does the work
/// and, when the process cannot be locked, writes one warning line to stderr
/// (`<program>: warning: … (code memory-lock-failed)`; logging is not set up yet at that
/// point, and stderr is the journal under systemd); every later call returns the same outcome
/// without a second warning. The program should go on either way.
pub fn lock_process_memory() -> Result<(), MemoryLockError> {
    PROCESS_LOCK
        .get_or_init(|| {
            let result = lock_all();
            if let Err(e) = &result {
                eprintln!("{}: warning: {e} (code {})", program_name(), e.code());
            }
            result
        })
        .clone()
}

fn lock_all() -> Result<(), MemoryLockError> {
    let limit = memlock_limit();
    let exempt = has_ipc_lock();
    if !exempt && limit.is_some_and(|l| l < MIN_PROCESS_MEMLOCK) {
        return Err(MemoryLockError::ProcessLockFailed {
            reason: format!(
                "not attempted: without CAP_IPC_LOCK the limit must be at least {} MiB, or \
                 later allocations would fail once the locked address space reaches it",
                MIN_PROCESS_MEMLOCK >> 20
            ),
            limit: limit_text(limit),
            size: vm_size(),
        });
    }
    let flags = libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT;
    // SAFETY: mlockall takes only flags and changes no memory contents.
    if unsafe { libc::mlockall(flags) } == 0 {
        PROCESS_LOCKED.store(true, Ordering::SeqCst);
        return Ok(());
    }
    Err(MemoryLockError::ProcessLockFailed {
        reason: std::io::Error::last_os_error().to_string(),
        limit: limit_text(limit),
        size: vm_size(),
    })
}

/// True when every page of the process is locked ([`lock_process_memory`] succeeded).
pub fn process_memory_locked() -> bool {
    PROCESS_LOCKED.load(Ordering::SeqCst)
}

/// CAP_IPC_LOCK in the effective set, in the initial user namespace (only there does it lift
/// `RLIMIT_MEMLOCK`; a service with `PrivateUsers=yes` may show it for its own namespace).
fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let initial_ns = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(false);
    initial_ns && effective & (1 << CAP_IPC_LOCK) != 0
}

/// `RLIMIT_MEMLOCK` in bytes (None: unlimited or unknown).
fn memlock_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } != 0
        || rl.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(rl.rlim_cur)
}

fn limit_text(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_string(), |l| format!("{} KiB", l / 1024))
}

fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "skrd".to_string())
}

fn vm_size() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmSize:")
                    .map(|v| v.trim().replace(" kB", " KiB"))
            })
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Live secret buffers per locked page (page address → count), for the per-buffer locks.
static PAGE_LOCKS: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());
/// The first per-buffer lock failure is logged; later ones are not.
static BUFFER_LOCK_WARNING: Once = Once::new();

fn page_size() -> usize {
    static SIZE: OnceLock<usize> = OnceLock::new();
    *SIZE.get_or_init(|| {
        // SAFETY: sysconf only reads a system constant.
        let s = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(s)
            .ok()
            .filter(|s| s.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// The pages `bytes` touches: (first page address, number of pages).
fn pages_of(bytes: &[u8]) -> (usize, usize) {
    let page = page_size();
    let start = bytes.as_ptr() as usize & !(page - 1);
    let end = (bytes.as_ptr() as usize).saturating_add(bytes.len());
    (start, end.saturating_sub(start).div_ceil(page))
}

fn page_locks() -> std::sync::MutexGuard<'static, BTreeMap<usize, usize>> {
    // A panic while holding the lock cannot leave the map inconsistent with the kernel for
    // longer than that call; keep going with the data.
    PAGE_LOCKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Locks the pages of `bytes` and counts this buffer on each. False when `mlock` failed (the
/// pages are then not counted).
fn lock_pages(bytes: &[u8]) -> bool {
    let (start, count) = pages_of(bytes);
    let page = page_size();
    // The map's lock is held across the system call, so a concurrent drop cannot munlock a
    // page between our mlock and our count.
    let mut map = page_locks();
    // SAFETY: mlock only changes the locking of whole pages that contain `bytes`, which are
    // mapped (they hold a live allocation); it does not touch their contents.
    let ok = unsafe { libc::mlock(start as *const libc::c_void, count * page) } == 0;
    if ok {
        for i in 0..count {
            *map.entry(start + i * page).or_insert(0) += 1;
        }
    } else {
        let reason = std::io::Error::last_os_error().to_string();
        BUFFER_LOCK_WARNING.call_once(|| {
            let e = MemoryLockError::BufferLockFailed {
                len: bytes.len(),
                reason,
            };
            tracing::warn!(code = e.code(), "{e}");
        });
    }
    ok
}

/// Removes this buffer's count from each of its pages, and `munlock`s the pages no other live
/// buffer is on (never while the whole process is locked).
fn unlock_pages(bytes: &[u8]) {
    let (start, count) = pages_of(bytes);
    let page = page_size();
    let mut map = page_locks();
    for i in 0..count {
        let addr = start + i * page;
        let last = match map.get_mut(&addr) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                map.remove(&addr);
                true
            }
            None => false,
        };
        if last && !process_memory_locked() {
            // SAFETY: munlock of one whole page that no live secret buffer is on any more.
            unsafe {
                libc::munlock(addr as *const libc::c_void, page);
            }
        }
    }
}

/// Secret bytes, zeroized on drop and locked into memory.
pub struct Secret {
    bytes: Box<[u8]>,
    /// This buffer holds counts in the page table above (and must release them).
    page_locked: bool,
    /// The bytes are in locked memory (process-wide or page lock).
    locked: bool,
}

impl Secret {
    /// Takes ownership of `bytes`, wiping the source vector's spare capacity.
    pub fn new(mut bytes: Vec<u8>) -> Self {
        let boxed: Box<[u8]> = bytes.as_slice().into();
        bytes.zeroize();
        let (page_locked, locked) = if boxed.is_empty() || process_memory_locked() {
            (false, true)
        } else {
            let ok = lock_pages(&boxed);
            (ok, ok)
        };
        Self {
            bytes: boxed,
            page_locked,
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

    /// Whether the bytes are in locked memory: the whole process is locked
    /// ([`lock_process_memory`]) or this buffer's pages are.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.bytes.zeroize();
        if self.page_locked {
            unlock_pages(&self.bytes);
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[redacted {} bytes]", self.bytes.len())
    }
}

/// Whether the page holding `addr` is locked, from the kernel's view of this process: the
/// `VmFlags` of the `/proc/self/smaps` mapping that contains it carries `lo` (VM_LOCKED). The
/// kernel splits a mapping where locking changes, so the flag is exact for the page. `None`
/// when smaps cannot be read.
pub fn page_is_locked(addr: usize) -> Option<bool> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((lo, hi)) = range.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.split_whitespace().any(|f| f == "lo"));
            }
        }
    }
    None
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

    // This unit-test process never calls lock_process_memory (tests/flow_memlock.rs does, in
    // its own process), so these see the per-buffer locks alone.

    #[test]
    fn a_secret_is_locked() {
        let s = Secret::new(vec![7u8; 1 << 20]);
        assert!(s.is_locked());
        for offset in [0, 4096, (1 << 20) - 1] {
            let addr = s.expose().as_ptr() as usize + offset;
            assert_eq!(page_is_locked(addr), Some(true), "offset {offset}");
        }
    }

    #[test]
    fn dropping_one_of_two_secrets_on_a_page_keeps_the_other_locked() {
        // Small buffers come from the same heap pages: find two on one page.
        let page = page_size();
        let mut all: Vec<Secret> = Vec::new();
        let (a, b) = loop {
            let s = Secret::new(vec![0x5a; 24]);
            let p = s.expose().as_ptr() as usize / page;
            if let Some(i) = all
                .iter()
                .position(|o| o.expose().as_ptr() as usize / page == p)
            {
                break (all.swap_remove(i), s);
            }
            all.push(s);
            assert!(all.len() < 10_000, "no two small buffers on one page");
        };
        let addr = b.expose().as_ptr() as usize;
        assert!(a.is_locked() && b.is_locked());
        assert_eq!(page_is_locked(addr), Some(true));
        drop(a);
        // The kernel does not count locks: without the reference count, munlock of `a`'s page
        // would have unlocked `b` too.
        assert_eq!(page_is_locked(addr), Some(true), "b's page was unlocked");
        assert_eq!(b.expose(), &[0x5a; 24]);
        drop(all);
        drop(b);
    }

    #[test]
    fn the_last_buffer_on_a_page_unlocks_it() {
        // The page-lock mechanism on memory this test owns (and keeps mapped): three
        // page-aligned pages; two counted buffers on the middle page, one spanning into the last.
        let page = page_size();
        let region = vec![0u8; 5 * page];
        let base = (region.as_ptr() as usize).next_multiple_of(page);
        let offset = base - region.as_ptr() as usize;
        let first = &region[offset + page + 16..offset + page + 48];
        let second = &region[offset + 2 * page - 8..offset + 2 * page + 8];
        assert!(lock_pages(first) && lock_pages(second));
        let (middle, last) = (base + page, base + 2 * page);
        assert_eq!(page_is_locked(middle), Some(true));
        assert_eq!(page_is_locked(last), Some(true));
        assert_eq!(page_is_locked(base), Some(false), "a page no buffer is on");
        unlock_pages(second);
        assert_eq!(page_is_locked(middle), Some(true), "first is still on it");
        assert_eq!(page_is_locked(last), Some(false), "no buffer left on it");
        unlock_pages(first);
        assert_eq!(page_is_locked(middle), Some(false));
        drop(region);
    }
}

//! The daemon's resident memory after start-up.
//!
//! `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)` ([`crate::secret::lock_process_memory`])
//! pins every page the process ever touches, so the code and read-only data that only the
//! start-up used (configuration parsing, TLS handshakes, TPM sessions, X.509 and JOSE checks,
//! OpenSSL's initialisation inside tpm2-tss) would stay resident for the daemon's whole life:
//! about 10 MiB. Those mappings are read-only views of files on disk; no key can ever be in
//! them. Once the initial work is done, [`release_read_only_file_pages`] unlocks them and asks
//! the kernel to drop what this process alone maps (`MADV_PAGEOUT`); what the daemon runs
//! later is faulted back in from the page cache on first use. Anonymous and writable mappings
//! (heap, stacks, `.data`/`.bss`, where secrets can be) stay locked.

/// A mapping of `/proc/self/maps`: start and end address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// One line of `/proc/PID/maps`, or the header line of a mapping in `/proc/PID/smaps`
/// (proc(5): `start-end perms offset dev inode [path]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping<'a> {
    /// Its addresses.
    pub range: Range,
    /// `rwxp`-style permissions (`p` private, `s` shared).
    pub perms: &'a str,
    /// The file's inode; 0 for anonymous and pseudo-mappings.
    pub inode: u64,
    /// The path or pseudo-name (`[heap]`, `[vdso]`, ...); `None` for anonymous memory.
    pub path: Option<&'a str>,
    /// The file was deleted after it was mapped (`(deleted)`).
    pub deleted: bool,
}

impl Mapping<'_> {
    /// Bytes of address space.
    pub fn size(&self) -> usize {
        self.range.end - self.range.start
    }

    /// A read-only private mapping of a file on disk: permissions without `w`, private (`p`),
    /// a nonzero inode and an absolute path that is not a memfd, a device, System V shared
    /// memory or a deleted file. Pseudo-mappings (`[vdso]`, `[vvar]`, `[stack]`, ...) have
    /// inode 0 and never are; neither is any shared mapping (a memfd holding a key could be one).
    pub fn is_read_only_file(&self) -> bool {
        let read_only_private =
            self.perms.len() == 4 && !self.perms.contains('w') && self.perms.ends_with('p');
        let on_disk = self.path.is_some_and(|path| {
            path.starts_with('/')
                && !["/memfd:", "/dev/", "/SYSV"]
                    .iter()
                    .any(|p| path.starts_with(p))
        }) && !self.deleted;
        read_only_private && self.inode != 0 && on_disk
    }
}

/// `line` as a mapping, or `None` when it is not one (an smaps field line, garbage).
pub fn parse_mapping(line: &str) -> Option<Mapping<'_>> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let _dev = fields.next()?;
    let inode: u64 = fields.next()?.parse().ok()?;
    (start < end).then_some(Mapping {
        range: Range { start, end },
        perms,
        inode,
        path: fields.next(),
        deleted: line.ends_with("(deleted)"),
    })
}

/// The read-only private mappings of files on disk ([`Mapping::is_read_only_file`]) in a
/// `/proc/PID/maps` text. Lines that do not parse are skipped.
pub fn read_only_file_mappings(maps: &str) -> Vec<Range> {
    maps.lines()
        .filter_map(parse_mapping)
        .filter(Mapping::is_read_only_file)
        .map(|m| m.range)
        .collect()
}

/// Unlocks this process's read-only file mappings and lets the kernel reclaim their pages
/// (module docs). Returns how many bytes of address space it covered; errors are ignored
/// (an older kernel without `MADV_PAGEOUT` keeps the pages, unlocked).
pub fn release_read_only_file_pages() -> usize {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut covered = 0;
    for r in read_only_file_mappings(&maps) {
        let len = r.end - r.start;
        let addr = r.start as *mut libc::c_void;
        // SAFETY: the range is a whole mapping of this process as the kernel listed it; munlock
        // and MADV_PAGEOUT change neither its contents nor its protection (the pages of a
        // read-only file mapping are re-read from the file when touched again).
        unsafe {
            libc::munlock(addr, len);
            libc::madvise(addr, len, libc::MADV_PAGEOUT);
        }
        covered += len;
    }
    covered
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as proc(5) shows them (a real skrd's /proc/PID/maps, shortened).
    const MAPS: &str = "\
55d0c0a00000-55d0c0b2c000 r--p 00000000 fd:01 1311 /usr/sbin/skrd
55d0c0b2c000-55d0c1100000 r-xp 0012c000 fd:01 1311 /usr/sbin/skrd
55d0c1100000-55d0c1200000 r--p 00700000 fd:01 1311 /usr/sbin/skrd
55d0c1200000-55d0c1210000 rw-p 00800000 fd:01 1311 /usr/sbin/skrd
55d0c1210000-55d0c1230000 rw-p 00000000 00:00 0
55d0c2000000-55d0c2100000 rw-p 00000000 00:00 0                          [heap]
7f1e2a000000-7f1e2a028000 r--p 00000000 fd:01 2048 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1e2a028000-7f1e2a1bd000 r-xp 00028000 fd:01 2048 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1e2a1bd000-7f1e2a215000 r--p 001bd000 fd:01 2048 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1e2a215000-7f1e2a219000 r--p 00214000 fd:01 2048 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1e2a219000-7f1e2a21b000 rw-p 00218000 fd:01 2048 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1e2a300000-7f1e2a301000 ---p 00000000 fd:01 3000 /usr/lib/x86_64-linux-gnu/libguard.so
7f1e2a400000-7f1e2a401000 rw-s 00000000 00:01 4096 /memfd:skrd-key-disk (deleted)
7f1e2a500000-7f1e2a501000 r--s 00000000 00:01 4097 /memfd:skrd-key-other (deleted)
7f1e2a600000-7f1e2a601000 r--p 00000000 00:01 4098 /memfd:skrd-key-third (deleted)
7f1e2a700000-7f1e2a701000 r--p 00000000 fd:01 4099 /var/tmp/replaced.so (deleted)
7f1e2a800000-7f1e2a801000 r--p 00000000 00:05 4100 /dev/zero
7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0                          [stack]
7ffd1c1f0000-7ffd1c1f4000 r--p 00000000 00:00 0                          [vvar]
7ffd1c1f4000-7ffd1c1f6000 r-xp 00000000 00:00 0                          [vdso]
garbage line
";

    #[test]
    fn only_read_only_file_mappings_are_listed() {
        let got = read_only_file_mappings(MAPS);
        let want: Vec<Range> = [
            (0x55d0_c0a0_0000, 0x55d0_c0b2_c000),
            (0x55d0_c0b2_c000, 0x55d0_c110_0000),
            (0x55d0_c110_0000, 0x55d0_c120_0000),
            (0x7f1e_2a00_0000, 0x7f1e_2a02_8000),
            (0x7f1e_2a02_8000, 0x7f1e_2a1b_d000),
            (0x7f1e_2a1b_d000, 0x7f1e_2a21_5000),
            (0x7f1e_2a21_5000, 0x7f1e_2a21_9000),
            (0x7f1e_2a30_0000, 0x7f1e_2a30_1000),
        ]
        .into_iter()
        .map(|(start, end)| Range { start, end })
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn writable_anonymous_and_pseudo_mappings_are_never_listed() {
        let got = read_only_file_mappings(MAPS);
        for line in MAPS.lines() {
            let start = line.split('-').next().unwrap_or("");
            let Ok(start) = usize::from_str_radix(start, 16) else {
                continue;
            };
            let listed = got.iter().any(|r| r.start == start);
            let writable = line
                .split_whitespace()
                .nth(1)
                .is_some_and(|p| p.contains('w'));
            let excluded = writable
                || line.contains(" 0 ")
                || line.ends_with(']')
                || line.contains("/memfd:")
                || line.contains("/dev/")
                || line.ends_with("(deleted)")
                || line
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|p| p.ends_with('s'));
            if excluded {
                assert!(!listed, "{line}");
            }
        }
    }
}

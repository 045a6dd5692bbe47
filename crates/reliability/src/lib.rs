//! Reliability suite for the whole greenfd toolkit: faults, bad input and soak.
//!
//! An event loop is trusted only if it survives what production throws at it: fds closed
//! under it, peers that reset, floods of connections, malformed bytes, exhausted fd tables,
//! signal storms, `fork`, a FUSE connection aborted under a live vpoll fd. The tests in
//! `tests/` provoke each of these against the real crates (real sockets, pipes, processes,
//! namespaces) and check that the affected party gets a clear error while nothing else is
//! lost. `RELIABILITY.md` at the repository root maps every fault to the test that proves
//! it:
//!
//! - `tests/fuzz.rs`: seeded random and corpus-driven input for every `Framing`, the RESP
//!   parser and server, and the vpoll C ABI argument space (stable Rust, bounded time;
//!   no nightly is needed, so no libFuzzer);
//! - `tests/faults.rs`: EMFILE, EINTR storms, resets, half-closes, a closed vpoll fd under
//!   a waiter, `fork` with live registrations, a vanished TAP device or FUSE mount;
//! - `tests/soak.rs`: 1 000 connections with checksummed payloads, RSS and fd counts;
//! - `tests/sanitizers.rs`: the C ABI under valgrind and AddressSanitizer.
//!
//! This library holds the small tools those tests share: a seeded RNG (so every failure
//! reproduces from the printed seed), a checksum, `/proc` readers for fds and RSS, fd
//! limit helpers and corpus loading. The helpers every test crate of the workspace shares
//! (child processes that never hang, bounded waits, epoll, namespaces, C compilation,
//! the backend list) come from the dev-only `greenfd-test-support` crate.
//!
//! ```
//! use greenfd_reliability::{Rng, fnv1a};
//!
//! let mut a = Rng::new(7);
//! let mut b = Rng::new(7);
//! let bytes = a.bytes(32);
//! assert_eq!(bytes, b.bytes(32)); // same seed, same input
//! assert_ne!(fnv1a(&bytes), fnv1a(b"something else"));
//! assert!(greenfd_reliability::open_fds()? >= 3);
//! # Ok::<(), std::io::Error>(())
//! ```

#![forbid(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the seed of every random harness.
pub const SEED_ENV: &str = "GREENFD_FUZZ_SEED";

/// A small deterministic random generator (SplitMix64): fast, seedable, dependency-free.
#[derive(Clone, Debug)]
pub struct Rng {
    /// The generator's state.
    state: u64,
}

impl Rng {
    /// A generator that yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A `usize` in `0..n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            let word = self.next_u64().to_le_bytes();
            let take = (len - v.len()).min(8);
            v.extend_from_slice(&word[..take]);
        }
        v
    }

    /// `input` changed the way a fuzzer mutates a seed: bit flips, byte replacements with
    /// protocol-significant characters, insertions, deletions, truncation, duplication.
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        /// Bytes that mean something to the framings (delimiters, RESP type bytes, digits).
        const INTERESTING: &[u8] = b"\r\n*$:+-0123456789 \t\0\xff";
        let mut v = input.to_vec();
        for _ in 0..1 + self.index(4) {
            match self.below(7) {
                0 if !v.is_empty() => {
                    let i = self.index(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                1 if !v.is_empty() => {
                    let i = self.index(v.len());
                    v[i] = *self.pick(INTERESTING);
                }
                2 => {
                    let i = self.index(v.len() + 1);
                    let b = *self.pick(INTERESTING);
                    v.insert(i, b);
                }
                3 if !v.is_empty() => {
                    let i = self.index(v.len());
                    let n = 1 + self.index((v.len() - i).min(8));
                    v.drain(i..i + n);
                }
                4 => {
                    let n = self.index(v.len() + 1);
                    v.truncate(n);
                }
                5 if !v.is_empty() => {
                    let i = self.index(v.len());
                    let tail = v[i..].to_vec();
                    v.extend_from_slice(&tail);
                }
                _ => {
                    let i = self.index(v.len() + 1);
                    let n = 1 + self.index(16);
                    let extra = self.bytes(n);
                    v.splice(i..i, extra);
                }
            }
        }
        v
    }
}

/// The seed of a harness: `GREENFD_FUZZ_SEED` if set, else `default`. Printed, so a
/// failure can be replayed.
pub fn seed(harness: &str, default: u64) -> u64 {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default);
    eprintln!("{harness}: seed {seed} (replay with {SEED_ENV}={seed})");
    seed
}

/// 64-bit FNV-1a: the payload checksum of the soak and fault tests.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How many file descriptors this process has open (entries of `/proc/self/fd`, minus
/// the one the listing itself uses).
pub fn open_fds() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1))
}

/// This process's resident set size in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/self/status"))
}

/// Sets the soft `RLIMIT_NOFILE` to `want`, capped at the hard limit; returns the new
/// soft limit.
pub fn set_nofile(want: u64) -> io::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let old = getrlimit(Resource::Nofile);
    let soft = old.maximum.map_or(want, |max| want.min(max));
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: old.maximum,
        },
    )?;
    Ok(soft)
}

/// Whether this process runs as root (FUSE, TUN/TAP and namespace tests need it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The files of corpus `name` (`crates/reliability/corpus/NAME/*`), sorted by file name.
pub fn corpus(name: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
    let dir = corpus_dir().join(name);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.push((name, std::fs::read(entry.path())?));
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("corpus {} is empty", dir.display()),
        ));
    }
    Ok(files)
}

/// Where the seed corpora live.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_spreads() {
        let mut a = Rng::new(1);
        let mut b = Rng::new(1);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[a.index(10)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn mutate_changes_input() {
        let mut r = Rng::new(3);
        let changed = (0..100)
            .filter(|_| r.mutate(b"*1\r\n$4\r\nPING\r\n") != b"*1\r\n$4\r\nPING\r\n")
            .count();
        assert!(changed > 90, "{changed}");
    }

    #[test]
    fn fnv_matches_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn proc_readers_see_this_process() {
        let before = open_fds().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(open_fds().unwrap(), before + 1);
        drop(f);
        assert!(rss_kib().unwrap() > 0);
    }
}

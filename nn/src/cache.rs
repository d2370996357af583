//! The evaluation cache: a fixed-size table of evaluator answers in shared memory, so that every
//! worker process sees every other worker's results and a hit costs no socket round trip.
//!
//! The table lives in a memfd (outside Linux: POSIX shared memory, unlinked at once), created
//! without close-on-exec and mapped shared: forked workers inherit the mapping, spawned ones map
//! it again from the inherited descriptor ([`EvalCache::from_fd`]). Entries are 256 bytes: a
//! sequence word, the key, W/D/L as `f32`, the move count and up to [`MAX_CACHED_MOVES`] priors
//! in 16 bits each. Each entry is guarded by a seqlock made of atomics only, so a reader in one
//! process never takes an entry half-written by another, and no process ever waits on another (a
//! writer that finds the entry busy skips it). The hit and lookup counters live in the shared
//! header, so [`EvalCache::hit_rate`] covers all workers.
//!
//! Keys ([`cache_key`]) hash the network input (position and history) and the legal moves. The
//! priors depend on the policy temperature and the network: whoever changes either calls
//! [`EvalCache::clear`] while no search runs.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering, fence};

use memmap2::MmapMut;

use crate::encode::InputPlanes;
use crate::protocol::Eval;

/// Most priors one entry holds; positions with more legal moves are not cached.
pub const MAX_CACHED_MOVES: usize = (ENTRY_WORDS - DATA_WORD) * 4;

/// 64-bit words per entry (256 bytes).
const ENTRY_WORDS: usize = 32;
/// Word offsets inside an entry.
const SEQ_WORD: usize = 0;
const KEY_WORD: usize = 1;
const WD_WORD: usize = 2;
const L_N_WORD: usize = 3;
const DATA_WORD: usize = 4;
/// Word offsets inside the header (the first entry-sized block of the mapping).
const MAGIC_WORD: usize = 0;
const ENTRIES_WORD: usize = 1;
const LOOKUPS_WORD: usize = 8;
const HITS_WORD: usize = 16;
/// Identifies a mapping as an evaluation cache of this layout.
const MAGIC: u64 = u64::from_le_bytes(*b"BNYNEC01");

/// Lookup and hit counts summed over every process using the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub lookups: u64,
    pub hits: u64,
}

/// A shared-memory evaluation cache. Cheap to share between threads (`&self` methods only).
pub struct EvalCache {
    map: MmapMut,
    file: File,
    entries: usize,
}

impl EvalCache {
    /// Creates a cache of about `megabytes` MiB (at least one entry) in fresh shared memory.
    pub fn create(megabytes: usize) -> io::Result<EvalCache> {
        let file = File::from(shared_memory()?);
        let bytes = megabytes.max(1) << 20;
        let entries = (bytes / (ENTRY_WORDS * 8)).saturating_sub(1).max(1);
        file.set_len(((entries + 1) * ENTRY_WORDS * 8) as u64)?;
        let cache = EvalCache::map(file, entries)?;
        // Relaxed: published to other processes by the fork/exec that hands them the fd.
        cache.header()[MAGIC_WORD].store(MAGIC, Ordering::Relaxed);
        cache.header()[ENTRIES_WORD].store(entries as u64, Ordering::Relaxed);
        Ok(cache)
    }

    /// Maps a cache created by [`EvalCache::create`] in another process from its descriptor.
    pub fn from_fd(fd: OwnedFd) -> io::Result<EvalCache> {
        let file = File::from(fd);
        let len = file.metadata()?.len() as usize;
        let words = len / 8;
        if !len.is_multiple_of(ENTRY_WORDS * 8) || words < 2 * ENTRY_WORDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an evaluation cache",
            ));
        }
        let entries = words / ENTRY_WORDS - 1;
        let cache = EvalCache::map(file, entries)?;
        // Relaxed: written once before the descriptor was handed over.
        let header = cache.header();
        if header[MAGIC_WORD].load(Ordering::Relaxed) != MAGIC
            || header[ENTRIES_WORD].load(Ordering::Relaxed) != entries as u64
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an evaluation cache",
            ));
        }
        Ok(cache)
    }

    fn map(file: File, entries: usize) -> io::Result<EvalCache> {
        // SAFETY: the memfd is only ever accessed through this mapping's atomics, by design in
        // every process that maps it; nobody truncates it.
        let map = unsafe { MmapMut::map_mut(&file)? };
        Ok(EvalCache { map, file, entries })
    }

    /// The shared-memory descriptor, to hand to a spawned process (it is not close-on-exec).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Number of entries.
    pub fn capacity(&self) -> usize {
        self.entries
    }

    /// The cached answer for `key` if it is there with exactly `n_moves` priors.
    pub fn lookup(&self, key: u64, n_moves: usize) -> Option<Eval> {
        // Relaxed: statistics only.
        self.header()[LOOKUPS_WORD].fetch_add(1, Ordering::Relaxed);
        let entry = self.entry(key);
        // Acquire: the data reads below must not move before this read of the sequence.
        let seq = entry[SEQ_WORD].load(Ordering::Acquire);
        // Relaxed (all data reads): validated by the sequence check after the fence.
        if seq & 1 != 0 || entry[KEY_WORD].load(Ordering::Relaxed) != key {
            return None;
        }
        let wd = entry[WD_WORD].load(Ordering::Relaxed);
        let l_n = entry[L_N_WORD].load(Ordering::Relaxed);
        if (l_n >> 32) as usize != n_moves {
            return None;
        }
        let mut priors = Vec::with_capacity(n_moves);
        for i in 0..n_moves {
            let word = entry[DATA_WORD + i / 4].load(Ordering::Relaxed);
            priors.push(unpack_prior((word >> (16 * (i % 4))) as u16));
        }
        // Acquire fence: orders the data reads above before the sequence re-read below.
        fence(Ordering::Acquire);
        if entry[SEQ_WORD].load(Ordering::Relaxed) != seq {
            return None;
        }
        // Relaxed: statistics only.
        self.header()[HITS_WORD].fetch_add(1, Ordering::Relaxed);
        Some(Eval {
            wdl: [
                f32::from_bits(wd as u32),
                f32::from_bits((wd >> 32) as u32),
                f32::from_bits(l_n as u32),
            ],
            priors,
        })
    }

    /// Stores `eval` under `key`, replacing whatever shared its slot. Skipped when the position
    /// has more than [`MAX_CACHED_MOVES`] moves or another writer holds the slot right now.
    pub fn insert(&self, key: u64, eval: &Eval) {
        if eval.priors.len() > MAX_CACHED_MOVES {
            return;
        }
        let entry = self.entry(key);
        let Some(seq) = lock_entry(entry) else {
            return;
        };
        // Relaxed (data stores): ordered after the odd sequence by the fence in lock_entry.
        entry[KEY_WORD].store(key, Ordering::Relaxed);
        let [w, d, l] = eval.wdl.map(f32::to_bits);
        entry[WD_WORD].store(u64::from(w) | u64::from(d) << 32, Ordering::Relaxed);
        entry[L_N_WORD].store(
            u64::from(l) | (eval.priors.len() as u64) << 32,
            Ordering::Relaxed,
        );
        for (i, chunk) in eval.priors.chunks(4).enumerate() {
            let word = chunk
                .iter()
                .enumerate()
                .fold(0u64, |w, (j, &p)| w | u64::from(pack_prior(p)) << (16 * j));
            entry[DATA_WORD + i].store(word, Ordering::Relaxed);
        }
        // Release: publishes the data stores above together with the even sequence.
        entry[SEQ_WORD].store(seq + 2, Ordering::Release);
    }

    /// Empties every entry and resets the counters. Call only while no search runs (a busy
    /// entry is skipped).
    pub fn clear(&self) {
        for i in 0..self.entries {
            let entry = self.entry_at(i);
            if let Some(seq) = lock_entry(entry) {
                // Relaxed: published by the Release store of the sequence.
                entry[KEY_WORD].store(0, Ordering::Relaxed);
                // Release: publishes the cleared key.
                entry[SEQ_WORD].store(seq + 2, Ordering::Release);
            }
        }
        // Relaxed: statistics only.
        self.header()[LOOKUPS_WORD].store(0, Ordering::Relaxed);
        self.header()[HITS_WORD].store(0, Ordering::Relaxed);
    }

    /// Lookup and hit counts over all processes since creation or the last clear.
    pub fn stats(&self) -> CacheStats {
        // Relaxed: statistics only.
        CacheStats {
            lookups: self.header()[LOOKUPS_WORD].load(Ordering::Relaxed),
            hits: self.header()[HITS_WORD].load(Ordering::Relaxed),
        }
    }

    /// Fraction of lookups that hit, over all processes (0 before any lookup).
    pub fn hit_rate(&self) -> f64 {
        let stats = self.stats();
        if stats.lookups == 0 {
            0.0
        } else {
            stats.hits as f64 / stats.lookups as f64
        }
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned, a whole number of words long, lives as long as
        // `self`, and is only accessed atomically.
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU64>(), self.map.len() / 8)
        }
    }

    fn header(&self) -> &[AtomicU64] {
        &self.words()[..ENTRY_WORDS]
    }

    fn entry(&self, key: u64) -> &[AtomicU64] {
        // Multiply-shift maps the key uniformly onto 0..entries.
        self.entry_at(((u128::from(key) * self.entries as u128) >> 64) as usize)
    }

    fn entry_at(&self, index: usize) -> &[AtomicU64] {
        let start = (index + 1) * ENTRY_WORDS;
        &self.words()[start..start + ENTRY_WORDS]
    }
}

/// The cache key of a network input and its legal moves (never 0, the empty-entry key).
pub fn cache_key(planes: &InputPlanes, moves: &[u16]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = u64::from(planes.rule50) ^ (moves.len() as u64) << 8;
    for &mask in &planes.masks {
        h = (h.rotate_left(23) ^ mask).wrapping_mul(K);
    }
    for pair in moves.chunks(4) {
        let word = pair
            .iter()
            .enumerate()
            .fold(0u64, |w, (j, &m)| w | u64::from(m) << (16 * j));
        h = (h.rotate_left(23) ^ word).wrapping_mul(K);
    }
    // splitmix64 finaliser: spreads the bits so the slot index uses them all.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h.max(1)
}

/// Takes an entry's seqlock: returns the (even) sequence it had, now odd in memory, or `None`
/// if another writer holds it.
fn lock_entry(entry: &[AtomicU64]) -> Option<u64> {
    // Relaxed: only a hint; the compare-exchange decides.
    let seq = entry[SEQ_WORD].load(Ordering::Relaxed);
    if seq & 1 != 0 {
        return None;
    }
    // Relaxed: the Release fence below orders the data stores after the odd sequence.
    entry[SEQ_WORD]
        .compare_exchange(seq, seq + 1, Ordering::Relaxed, Ordering::Relaxed)
        .ok()?;
    // Release fence: readers that see any following data store also see the odd sequence.
    fence(Ordering::Release);
    Some(seq)
}

/// Packs a prior in [0, 1] into 16 bits: the `f32` bits shifted right by 12 with rounding,
/// with an exponent offset (relative precision about 2^-12, as Lc0 stores priors).
fn pack_prior(p: f32) -> u16 {
    const ROUNDING: i32 = (1 << 11) - (3 << 28);
    let bits = (p.clamp(0.0, 1.0).to_bits() as i32).wrapping_add(ROUNDING);
    if bits < 0 { 0 } else { (bits >> 12) as u16 }
}

/// Inverse of [`pack_prior`].
fn unpack_prior(q: u16) -> f32 {
    f32::from_bits(u32::from(q) << 12 | 3 << 28)
}

/// A new shared-memory object that children inherit.
#[cfg(target_os = "linux")]
fn shared_memory() -> io::Result<OwnedFd> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    // No MFD_CLOEXEC: a re-executed child must inherit the descriptor.
    Ok(memfd_create(c"banyan-nncache", MFdFlags::empty())?)
}

/// A new shared-memory object that children inherit (POSIX shm, unlinked at once).
#[cfg(not(target_os = "linux"))]
fn shared_memory() -> io::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use std::sync::atomic::AtomicU32;
    // Unique within the process too: tests create several caches (macOS names: 31 bytes at most).
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "/banyan-nnc-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let fd = nix::sys::mman::shm_open(
        name.as_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )?;
    nix::sys::mman::shm_unlink(name.as_str())?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn planes(seed: u64) -> InputPlanes {
        let mut p = InputPlanes {
            masks: [0; 112],
            rule50: (seed % 100) as u8,
        };
        for (i, m) in p.masks.iter_mut().enumerate() {
            *m = seed.wrapping_mul(i as u64 + 1).rotate_left(i as u32);
        }
        p
    }

    fn eval_for(key: u64, n: usize) -> Eval {
        // Every field is a function of the key, so a torn read shows as a mismatch.
        let x = (key % 1000) as f32 / 1000.0;
        Eval {
            wdl: [x, 1.0 - x, x / 2.0],
            priors: (0..n)
                .map(|i| ((key as usize + i) % 97) as f32 / 97.0)
                .collect(),
        }
    }

    #[test]
    fn pack_prior_is_precise_to_about_2e_minus_4() {
        for i in 0..=10_000 {
            let p = i as f32 / 10_000.0;
            let q = unpack_prior(pack_prior(p));
            assert!((q - p).abs() <= p * 2.5e-4 + 1e-9, "{p} -> {q}");
        }
        assert_eq!(unpack_prior(pack_prior(1.0)), 1.0);
    }

    #[test]
    fn insert_then_lookup_round_trips() {
        let cache = EvalCache::create(1).unwrap();
        let p = planes(7);
        let moves = [1u16, 2, 3, 322];
        let key = cache_key(&p, &moves);
        assert_eq!(cache.lookup(key, 4), None);
        let eval = Eval {
            wdl: [0.5, 0.25, 0.25],
            priors: vec![0.1, 0.2, 0.3, 0.4],
        };
        cache.insert(key, &eval);
        let got = cache.lookup(key, 4).unwrap();
        assert_eq!(got.wdl, eval.wdl);
        for (a, b) in got.priors.iter().zip(&eval.priors) {
            assert!((a - b).abs() < 1e-4);
        }
        assert_eq!(cache.lookup(key, 3), None, "move count must match");
        assert_eq!(
            cache.stats(),
            CacheStats {
                lookups: 3,
                hits: 1
            }
        );
        cache.clear();
        assert_eq!(cache.lookup(key, 4), None);
    }

    #[test]
    fn keys_depend_on_planes_rule50_and_moves() {
        let p = planes(3);
        let mut q = p;
        q.rule50 += 1;
        let mut r = p;
        r.masks[111] ^= 1;
        let k = cache_key(&p, &[5, 6]);
        assert_ne!(k, cache_key(&q, &[5, 6]));
        assert_ne!(k, cache_key(&r, &[5, 6]));
        assert_ne!(k, cache_key(&p, &[6, 5]));
        assert_ne!(k, cache_key(&p, &[5]));
    }

    #[test]
    fn too_many_moves_are_not_cached() {
        let cache = EvalCache::create(1).unwrap();
        let eval = eval_for(9, MAX_CACHED_MOVES + 1);
        cache.insert(9, &eval);
        assert_eq!(cache.lookup(9, MAX_CACHED_MOVES + 1), None);
        let eval = eval_for(9, MAX_CACHED_MOVES);
        cache.insert(9, &eval);
        assert!(cache.lookup(9, MAX_CACHED_MOVES).is_some());
    }

    #[test]
    fn a_second_mapping_of_the_fd_shares_entries_and_counters() {
        let cache = EvalCache::create(1).unwrap();
        let other = EvalCache::from_fd(cache.fd().try_clone_to_owned().unwrap()).unwrap();
        cache.insert(42, &eval_for(42, 10));
        assert_eq!(other.lookup(42, 10).unwrap().wdl, eval_for(42, 10).wdl);
        assert_eq!(cache.stats().hits, 1);
    }

    #[test]
    fn concurrent_writers_and_readers_never_see_torn_entries() {
        // Keys that differ only in their low bits all land in the same slot and fight over it.
        let cache = Arc::new(EvalCache::create(1).unwrap());
        let keys: Vec<u64> = (1..=8u64).map(|k| (0xabcd << 48) | (k * 1009)).collect();
        let keys = Arc::new(keys);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = Arc::clone(&cache);
                let keys = Arc::clone(&keys);
                std::thread::spawn(move || {
                    let mut hits = 0;
                    for round in 0..20_000usize {
                        let key = keys[(round * 7 + t) % keys.len()];
                        let n = (key % 40) as usize + 1;
                        if t % 2 == 0 {
                            cache.insert(key, &eval_for(key, n));
                        }
                        if let Some(got) = cache.lookup(key, n) {
                            let want = eval_for(key, n);
                            assert_eq!(got.wdl, want.wdl, "torn wdl");
                            for (a, b) in got.priors.iter().zip(&want.priors) {
                                assert!((a - b).abs() <= b * 2.5e-4 + 1e-9, "torn priors");
                            }
                            hits += 1;
                        }
                    }
                    hits
                })
            })
            .collect();
        let hits: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(hits > 0);
    }
}

//! The shared-memory arena: mapping, header, worker slots and the block region.
//!
//! Layout (all offsets from the start of the mapping):
//! ```text
//! Header | WorkerSlot × workers | padding to 4096 | region: 2 halves of `half_blocks` 32-byte blocks
//! ```
//! The search grows the tree in the active half; [`Arena::reroot`] copies the kept subtree into
//! the other half and switches. Block 0 of each half is never handed out, so index 0 means
//! "none". Nodes are addressed by block index, child arrays by 4-byte word index, both counted
//! from the start of the region.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::MmapMut;

use crate::TreeError;
use crate::journal::JOURNAL_WORDS;
use crate::node::Node;

const MAGIC: u64 = u64::from_le_bytes(*b"BANYAN01");
/// The most worker processes an arena has slots for.
pub const MAX_WORKERS: u32 = 64;
/// Blocks per allocation chunk (Monty's 1024-node chunks).
pub(crate) const CHUNK_BLOCKS: u32 = 1024;
/// The smallest chunk: it still holds the largest child array (`1 + MAX_MOVES` words).
const MIN_CHUNK_BLOCKS: u32 = 64;
const _: () = assert!(MIN_CHUNK_BLOCKS * BLOCK_WORDS > crate::slot::MAX_MOVES as u32);
/// Words per block.
pub(crate) const BLOCK_WORDS: u32 = 8;
const BLOCK_BYTES: u64 = 32;
/// Word indices are u32, so the region is at most 16 GiB.
const MAX_REGION_BYTES: u64 = (u32::MAX as u64 + 1) * 4;

/// The largest `Hash` (MiB of tree) an arena can hold.
pub const MAX_HASH_MB: u64 = MAX_REGION_BYTES >> 20;

/// The arena header, at offset 0 of the mapping.
#[repr(C)]
pub(crate) struct Header {
    magic: AtomicU64,
    total_bytes: AtomicU64,
    region_offset: AtomicU64,
    workers: AtomicU32,
    half_blocks: AtomicU32,
    /// Which half (0 or 1) the tree lives in.
    pub active: AtomicU32,
    /// Bumped by every reset and re-root; workers drop their chunks when it changes.
    pub generation: AtomicU32,
    /// The root node's block index.
    pub root: AtomicU32,
    /// Set once an allocation failed since the last reset: the tree stopped growing somewhere.
    pub overflowed: AtomicU32,
    /// Next free block of each half.
    pub cursor: [AtomicU32; 2],
    /// Nodes copied by the last re-root (the node count before any worker adds to it).
    pub base_nodes: AtomicU64,
}

/// One worker process's slot in the arena.
#[repr(C)]
pub(crate) struct WorkerSlot {
    /// Process id of the last process that opened this worker (diagnostics).
    pub pid: AtomicU32,
    /// End of the journal's last record (see `journal`).
    pub journal_len: AtomicU32,
    /// Nodes materialised by this worker since the last reset or re-root.
    pub nodes: AtomicU64,
    /// Descents that ended in a collision.
    pub collisions: AtomicU64,
    /// The in-flight journal.
    pub journal: [AtomicU32; JOURNAL_WORDS],
}

/// A process's handle on the shared arena.
///
/// Create it once with [`Arena::create`]; fork children keep using the inherited handle, a
/// spawned process re-opens the inherited descriptor with [`Arena::open_fd`].
pub struct Arena {
    _map: MmapMut,
    file: File,
    base: *mut u8,
    region: *mut u8,
    half_blocks: u32,
    workers: u32,
}

// SAFETY: every shared field behind the raw pointers is an atomic; the pointers themselves
// are fixed for the life of the mapping, which the handle owns.
unsafe impl Send for Arena {}
// SAFETY: as above.
unsafe impl Sync for Arena {}

impl Arena {
    /// Creates an arena of `bytes` bytes (the `Hash` option, in bytes) with slots for
    /// `workers` worker processes, in a memfd (Linux; an unlinked POSIX shm object
    /// elsewhere) whose descriptor is inherited by children. Half of the region holds the tree;
    /// the other half is the target of [`Arena::reroot`].
    pub fn create(bytes: u64, workers: u32) -> Result<Arena, TreeError> {
        if workers == 0 || workers > MAX_WORKERS {
            return Err(TreeError::BadWorker(workers));
        }
        let region_offset = region_offset(workers);
        let min = region_offset + 2 * 2 * CHUNK_BLOCKS as u64 * BLOCK_BYTES;
        if bytes < min || bytes - region_offset > MAX_REGION_BYTES {
            return Err(TreeError::BadSize(bytes));
        }
        let fd = shared_memory()?;
        nix::unistd::ftruncate(&fd, bytes as i64)?;
        let file = File::from(fd);
        // SAFETY: the memfd is ours and nothing truncates it while mapped.
        let map = unsafe { MmapMut::map_mut(&file)? };
        let half_blocks = ((bytes - region_offset) / BLOCK_BYTES / 2) as u32;
        let arena = Arena::from_map(map, file, region_offset, half_blocks, workers);
        let h = arena.header();
        // Relaxed: nobody else can see the arena before this function returns.
        h.total_bytes.store(bytes, Ordering::Relaxed);
        h.region_offset.store(region_offset, Ordering::Relaxed);
        h.workers.store(workers, Ordering::Relaxed);
        h.half_blocks.store(half_blocks, Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Relaxed);
        arena.reset();
        tracing::debug!(bytes, workers, half_blocks, "arena created");
        Ok(arena)
    }

    /// [`Arena::create`] sized by the UCI `Hash` option: `hash_mb` MiB of tree (both halves),
    /// plus the header and the workers' journals on top, so that any `Hash` from 1 to
    /// [`MAX_HASH_MB`] works with any number of workers.
    pub fn create_hash_mb(hash_mb: u64, workers: u32) -> Result<Arena, TreeError> {
        let tree = hash_mb.saturating_mul(1 << 20);
        Arena::create(tree.saturating_add(region_offset(workers)), workers)
    }

    /// Maps an arena created by another process from an inherited descriptor (for example one
    /// passed to a re-executed child, or `/proc/<pid>/fd/N` opened by path).
    pub fn open_fd(fd: OwnedFd) -> Result<Arena, TreeError> {
        let file = File::from(fd);
        let len = file.metadata()?.len();
        if len < 4096 {
            return Err(TreeError::BadArena("too small"));
        }
        // SAFETY: the creator never truncates the memfd while mapped.
        let map = unsafe { MmapMut::map_mut(&file)? };
        // SAFETY: the mapping is at least one page; the header is at its start.
        let h = unsafe { &*(map.as_ptr() as *const Header) };
        // Acquire: pairs with nothing stronger than the creator's stores being complete before
        // it handed out the descriptor; acquire is free here and documents the intent.
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(TreeError::BadArena("bad magic"));
        }
        let region_offset = h.region_offset.load(Ordering::Relaxed);
        let workers = h.workers.load(Ordering::Relaxed);
        let half_blocks = h.half_blocks.load(Ordering::Relaxed);
        if h.total_bytes.load(Ordering::Relaxed) != len
            || region_offset != self::region_offset(workers)
            || region_offset + 2 * half_blocks as u64 * BLOCK_BYTES > len
        {
            return Err(TreeError::BadArena("inconsistent header"));
        }
        Ok(Arena::from_map(
            map,
            file,
            region_offset,
            half_blocks,
            workers,
        ))
    }

    fn from_map(
        mut map: MmapMut,
        file: File,
        region_offset: u64,
        half_blocks: u32,
        workers: u32,
    ) -> Arena {
        let base = map.as_mut_ptr();
        // SAFETY: region_offset is inside the mapping (checked by both constructors).
        let region = unsafe { base.add(region_offset as usize) };
        Arena {
            _map: map,
            file,
            base,
            region,
            half_blocks,
            workers,
        }
    }

    /// The shared-memory descriptor, to hand to a spawned child (it is not close-on-exec).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Total size of the mapping in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.header().total_bytes.load(Ordering::Relaxed)
    }

    /// How many worker slots the arena has.
    pub fn workers(&self) -> u32 {
        self.workers
    }

    /// The current root node.
    pub fn root(&self) -> u32 {
        // Acquire: pairs with the release store in `reset`/`reroot`, so the root node's
        // contents are visible.
        self.header().root.load(Ordering::Acquire)
    }

    /// Throws the whole tree away and starts again with a fresh root (between searches only:
    /// no worker may be descending).
    pub fn reset(&self) {
        self.start_half(0);
        let h = self.header();
        let root = h.cursor[0].fetch_add(1, Ordering::Relaxed);
        self.node(root).init(0, 0, 0);
        h.overflowed.store(0, Ordering::Relaxed);
        h.base_nodes.store(1, Ordering::Relaxed);
        self.switch_to(0, root);
    }

    /// Empties half `half` so a tree can be built in it.
    pub(crate) fn start_half(&self, half: u32) {
        // Relaxed: between searches, nothing else runs.
        self.header().cursor[half as usize].store(self.half_start(half) + 1, Ordering::Relaxed);
    }

    /// Makes `half` the active half with `root` as root, invalidating workers' chunks and
    /// clearing their journals and counters.
    pub(crate) fn switch_to(&self, half: u32, root: u32) {
        let h = self.header();
        for w in 0..self.workers {
            let slot = self.worker_slot(w);
            slot.journal_len.store(0, Ordering::Relaxed);
            slot.nodes.store(0, Ordering::Relaxed);
        }
        h.active.store(half, Ordering::Relaxed);
        h.generation.fetch_add(1, Ordering::Relaxed);
        // Release: publishes the new root and everything above to whoever loads it.
        h.root.store(root, Ordering::Release);
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the header is at the start of the mapping, which outlives `self`.
        unsafe { &*(self.base as *const Header) }
    }

    pub(crate) fn worker_slot(&self, w: u32) -> &WorkerSlot {
        assert!(w < self.workers, "worker {w} out of range");
        let offset = size_of::<Header>() + w as usize * size_of::<WorkerSlot>();
        // SAFETY: in range of the header area sized for `workers` slots.
        unsafe { &*(self.base.add(offset) as *const WorkerSlot) }
    }

    /// Blocks per half.
    pub(crate) fn half_blocks(&self) -> u32 {
        self.half_blocks
    }

    /// Blocks per allocation chunk: [`CHUNK_BLOCKS`], less in a small arena shared by many
    /// workers, so that their chunks take at most about 1/16 of a half at once.
    pub(crate) fn chunk_blocks(&self) -> u32 {
        (self.half_blocks / (16 * self.workers)).clamp(MIN_CHUNK_BLOCKS, CHUNK_BLOCKS)
    }

    /// First block of `half`.
    pub(crate) fn half_start(&self, half: u32) -> u32 {
        half * self.half_blocks
    }

    /// The active half.
    pub(crate) fn active(&self) -> u32 {
        // Relaxed: changes only between searches.
        self.header().active.load(Ordering::Relaxed)
    }

    /// The node at block `index`. Panics on an index outside the region.
    pub(crate) fn node(&self, index: u32) -> &Node {
        assert!(index < 2 * self.half_blocks, "node {index} out of range");
        // SAFETY: in range; blocks are 32-byte aligned because the region starts on a page.
        unsafe { &*(self.region.add(index as usize * BLOCK_BYTES as usize) as *const Node) }
    }

    /// The word at index `word` of the region. Panics outside the region.
    pub(crate) fn word(&self, word: u32) -> &AtomicU32 {
        assert!(
            (word as u64) < 2 * self.half_blocks as u64 * BLOCK_WORDS as u64,
            "word {word} out of range"
        );
        // SAFETY: in range and 4-byte aligned.
        unsafe { &*(self.region.add(word as usize * 4) as *const AtomicU32) }
    }
}

/// Offset of the region: the header and worker slots, rounded up to a page.
fn region_offset(workers: u32) -> u64 {
    let bytes = size_of::<Header>() + workers as usize * size_of::<WorkerSlot>();
    (bytes as u64).div_ceil(4096) * 4096
}

/// A new shared-memory object that children inherit.
#[cfg(target_os = "linux")]
fn shared_memory() -> Result<OwnedFd, TreeError> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    // No MFD_CLOEXEC: a re-executed child must inherit the descriptor.
    Ok(memfd_create(c"banyan-arena", MFdFlags::empty())?)
}

/// A new shared-memory object that children inherit (POSIX shm, unlinked at once).
#[cfg(not(target_os = "linux"))]
fn shared_memory() -> Result<OwnedFd, TreeError> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let name = format!("/banyan-{}", std::process::id());
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

    #[test]
    fn reopening_the_descriptor_sees_the_same_tree() {
        let a = Arena::create(1 << 20, 2).unwrap();
        let dup = a.fd().try_clone_to_owned().unwrap();
        let b = Arena::open_fd(dup).unwrap();
        assert_eq!(a.root(), b.root());
        a.node(a.root()).wl.store(42, Ordering::Relaxed);
        assert_eq!(b.node(b.root()).wl.load(Ordering::Relaxed), 42);
    }

    #[test]
    fn the_descriptor_survives_exec() {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        let a = Arena::create(1 << 20, 1).unwrap();
        let flags = FdFlag::from_bits_truncate(fcntl(a.fd(), FcntlArg::F_GETFD).unwrap());
        assert!(!flags.contains(FdFlag::FD_CLOEXEC));
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        assert!(matches!(Arena::create(1000, 1), Err(TreeError::BadSize(_))));
        assert!(matches!(
            Arena::create(1 << 20, 0),
            Err(TreeError::BadWorker(_))
        ));
    }

    #[test]
    fn every_hash_size_works_with_every_worker_count() {
        for (mb, workers) in [
            (1, MAX_WORKERS),
            (1, 1),
            (3, 17),
            (MAX_HASH_MB, MAX_WORKERS),
        ] {
            let a = Arena::create_hash_mb(mb, workers)
                .unwrap_or_else(|e| panic!("{mb} {workers}: {e}"));
            assert!(a.check().is_empty());
        }
        assert!(Arena::create_hash_mb(MAX_HASH_MB + 1, 1).is_err());
    }

    #[test]
    fn a_sparse_16_gib_arena_maps() {
        let a = Arena::create(16 << 30, MAX_WORKERS).unwrap();
        assert!(a.half_blocks() > 250_000_000);
    }
}

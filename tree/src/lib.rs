//! The one search tree that all Banyan worker processes grow together.
//!
//! The tree lives in an [`Arena`]: a shared-memory mapping (a memfd on Linux) holding a header,
//! one slot per worker process and a region of 32-byte blocks. Nodes are addressed by 32-bit
//! block index, never by pointer, because each process maps the arena at its own address.
//! Every piece of cross-process state is an atomic in the arena; there are no locks.
//!
//! There are no chess rules here: a move is an opaque 16-bit code, a prior is a number in
//! `[0, 1]`, a value is a (W−L, D) pair seen from a stated side.
//!
//! A worker process drives the search through a [`Worker`] handle:
//! [`Worker::descend`] walks from the root with PUCT and virtual loss until it reaches a leaf
//! to evaluate (claimed for expansion), a node with an exact value, or a collision; the worker
//! then calls [`Worker::expand`], [`Worker::terminal`] or [`Worker::backup`]. The lower-level
//! steps ([`Worker::begin`], [`Worker::select_child`], [`Worker::try_begin_expand`],
//! [`Worker::finish_expand`], [`Worker::cancel`]) are public too.
//!
//! Between searches the coordinator re-roots the tree with [`Arena::reroot`], which copies the
//! kept subtree into the other half of the region and so reclaims everything else.
//!
//! # Packed layouts
//! - Node: 32 bytes (checked at compile time): a count word (visits u32 | in-flight u16 |
//!   prior u15), W−L and D sums (i64, fixed point 2^-20), the child-array word index (or a
//!   terminal's exact value), the move (u16) and a state word (expansion state, proven result,
//!   mate plies or the claiming worker).
//! - Child slot: 4 bytes, either an edge (move u16 + prior u15) or, once the child is first
//!   selected, the child's node index (tag bit 31). A child array is a count word plus one slot
//!   per legal move, sorted by prior; only selected children get a node.
//! - Allocation: workers take 1024-block (32 KiB) chunks with one CAS and carve nodes from the
//!   front and child arrays from the back. Half of the arena holds the tree; the other half is
//!   the target of the re-root copy.
//!
//! # Crashes
//! Each worker keeps a journal of its outstanding descents in its arena slot.
//! [`Arena::recover_worker`] removes a dead worker's in-flight counts and claims and finishes
//! its half-done backup while the others search on; [`Arena::repair`] (search stopped) mends
//! the at most one node a kill at an unlucky instant leaves off by one. [`Arena::check`] is
//! the consistency checker.

mod alloc;
mod arena;
mod backup;
mod check;
mod journal;
mod node;
mod puct;
mod reuse;
mod slot;
mod solver;
mod stats;
mod worker;

pub use arena::{Arena, MAX_HASH_MB, MAX_WORKERS};
pub use check::Problem;
pub use node::{ExpansionState, FAR_PLIES, NodeStats, Outcome, Proven};
pub use puct::PuctParams;
pub use slot::MAX_MOVES;
pub use stats::ChildStats;
pub use worker::{Leaf, Path, Worker};

/// What can go wrong in the tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The arena has no room for another node or child array; the search should stop growing.
    #[error("the arena is full")]
    ArenaFull,
    /// This worker's in-flight journal is full: back up or cancel outstanding paths first.
    #[error("the worker's in-flight journal is full")]
    JournalFull,
    /// A path is deeper than the journal can record.
    #[error("path deeper than {0} plies")]
    TooDeep(usize),
    /// An expansion was given more moves than a child array can hold.
    #[error("{0} moves exceed the limit of {MAX_MOVES}")]
    TooManyMoves(usize),
    /// An expansion was given no moves (the position should be marked terminal instead).
    #[error("expansion with no moves")]
    NoMoves,
    /// The requested arena size is out of range.
    #[error("arena size {0} bytes is out of range")]
    BadSize(u64),
    /// The worker id is not below the arena's worker count.
    #[error("worker id {0} is out of range")]
    BadWorker(u32),
    /// The mapped file is not a Banyan arena.
    #[error("not a banyan arena: {0}")]
    BadArena(&'static str),
    /// A system call failed.
    #[error("system call failed: {0}")]
    Sys(#[from] nix::Error),
    /// Mapping the shared memory failed.
    #[error("mapping the arena failed: {0}")]
    Map(#[from] std::io::Error),
}

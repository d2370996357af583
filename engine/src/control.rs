//! The search's shared control block: one small shared-memory page through which the
//! coordinator steers the worker processes (search number, stop, playout budget) and reads
//! their progress. Atomics only; no locks across processes.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::MmapMut;

/// Most worker processes a search can have: as many as the tree has worker slots.
pub const MAX_WORKERS: usize = banyan_tree::MAX_WORKERS as usize;

/// Bytes of the shared block (a whole number of pages).
const BYTES: usize = 8192;

const MAGIC: u64 = 0x4241_4e59_4354_4c31; // "BANYCTL1"

/// What one worker reports.
#[repr(C, align(64))] // one cache line per worker: its counters are written on every playout
pub struct WorkerStatus {
    /// The search number this worker has finished (stopped and idle).
    pub done: AtomicU32,
    /// Nonzero when the worker could not reach the evaluator in its last search.
    pub eval_error: AtomicU32,
    /// Playouts this worker claimed and has not finished or given back; returned to the
    /// budget if the worker dies.
    pub outstanding: AtomicU64,
}

/// The block's layout in shared memory.
#[repr(C)]
pub struct ControlBlock {
    magic: u64,
    /// Number of the search in progress (or last run).
    pub search: AtomicU32,
    /// Nonzero: workers finish what is in flight and go idle.
    pub stop: AtomicU32,
    /// Playouts this search may start (`go nodes`); `u64::MAX` when unlimited.
    pub budget: AtomicU64,
    /// Playouts started (claimed against the budget) and not given back.
    pub claimed: AtomicU64,
    /// Playouts backed up.
    pub done: AtomicU64,
    /// Playouts that ended at a position new to the tree (evaluated, or found to be a game
    /// end): those that say how deep the search reaches.
    pub new_leaves: AtomicU64,
    /// Sum of the depths of those playouts, for the average depth.
    pub depth_sum: AtomicU64,
    /// Deepest playout so far.
    pub seldepth: AtomicU32,
    /// Minibatches sent to the evaluator, and the leaves in them.
    pub minibatches: AtomicU64,
    pub minibatch_leaves: AtomicU64,
    /// Tablebase probes that gave a result (the root's and the workers').
    pub tbhits: AtomicU64,
    pub workers: [WorkerStatus; MAX_WORKERS],
}

const _: () = assert!(std::mem::size_of::<WorkerStatus>() == 64);
const _: () = assert!(std::mem::size_of::<ControlBlock>() <= BYTES);

/// A mapping of the control block, in the coordinator or in a worker.
pub struct Control {
    map: MmapMut,
    file: File,
}

impl Control {
    /// Creates a fresh block in a memfd that children inherit.
    pub fn create() -> std::io::Result<Control> {
        let fd = crate::shm::memfd(c"banyan-control", BYTES as u64)?;
        let control = Control::map(fd)?;
        // SAFETY: the block is freshly zeroed memory of sufficient size, owned by us.
        unsafe { (control.map.as_ptr() as *mut u64).write(MAGIC) };
        Ok(control)
    }

    /// Maps a block created by [`Control::create`] in another process.
    pub fn open(fd: OwnedFd) -> std::io::Result<Control> {
        let control = Control::map(fd)?;
        if control.block().magic != MAGIC {
            return Err(std::io::Error::other("not a banyan control block"));
        }
        Ok(control)
    }

    fn map(fd: OwnedFd) -> std::io::Result<Control> {
        let file = File::from(fd);
        // SAFETY: the memfd is never truncated while mapped.
        let map = unsafe { MmapMut::map_mut(&file)? };
        if map.len() < std::mem::size_of::<ControlBlock>() {
            return Err(std::io::Error::other("control block too small"));
        }
        Ok(Control { map, file })
    }

    /// The fd to hand to a spawned worker.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The shared block.
    pub fn block(&self) -> &ControlBlock {
        // SAFETY: the mapping is page-aligned, large enough, and only ever accessed through
        // atomics (plus the magic, written once before any other process maps it).
        unsafe { &*(self.map.as_ptr() as *const ControlBlock) }
    }
}

impl ControlBlock {
    /// Resets the counters for search number `search`, with a playout budget.
    pub fn begin(&self, search: u32, budget: u64) {
        for counter in [
            &self.claimed,
            &self.done,
            &self.new_leaves,
            &self.depth_sum,
            &self.minibatches,
            &self.minibatch_leaves,
            &self.tbhits,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        for worker in &self.workers {
            worker.outstanding.store(0, Ordering::Relaxed);
            // Cleared here, before the order goes out, so that the coordinator never reads
            // the last search's error as this one's.
            worker.eval_error.store(0, Ordering::Relaxed);
        }
        self.seldepth.store(0, Ordering::Relaxed);
        self.budget.store(budget, Ordering::Relaxed);
        self.stop.store(0, Ordering::Relaxed);
        // Release: a worker that sees the new search number sees the reset counters too.
        self.search.store(search, Ordering::Release);
    }

    /// Claims one playout for worker `id` against the budget; false when it is spent.
    pub fn claim(&self, id: usize) -> bool {
        // A compare-exchange, not an add then a take-back: a failed claim must never raise the
        // count even for a moment, or a concurrent claim could fail while a playout is free.
        // Relaxed: the counter alone decides; no other memory is published through it.
        let budget = self.budget.load(Ordering::Relaxed);
        let claimed = self
            .claimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < budget).then_some(n + 1)
            });
        if claimed.is_err() {
            return false;
        }
        self.workers[id].outstanding.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Gives back a claimed playout that did not happen (a collision, a lost evaluator).
    pub fn unclaim(&self, id: usize) {
        self.workers[id].outstanding.fetch_sub(1, Ordering::Relaxed);
        self.claimed.fetch_sub(1, Ordering::Relaxed);
    }

    /// Returns a dead worker's outstanding claims to the budget.
    pub fn forget_worker(&self, id: usize) {
        let left = self.workers[id].outstanding.swap(0, Ordering::Relaxed);
        self.claimed.fetch_sub(left, Ordering::Relaxed);
    }

    /// Records worker `id`'s finished playout of `depth` plies, which ended at a position new
    /// to the tree or (`new` false) at a known exact value.
    pub fn record(&self, id: usize, depth: u32, new: bool) {
        self.workers[id].outstanding.fetch_sub(1, Ordering::Relaxed);
        // Relaxed: statistics, read approximately while the search runs and exactly after
        // every worker has reported done (which is a Release/Acquire pair).
        self.done.fetch_add(1, Ordering::Relaxed);
        if new {
            self.new_leaves.fetch_add(1, Ordering::Relaxed);
            self.depth_sum.fetch_add(depth as u64, Ordering::Relaxed);
        }
        self.seldepth.fetch_max(depth, Ordering::Relaxed);
    }

    /// Records a minibatch of `leaves` sent to the evaluator.
    pub fn record_minibatch(&self, leaves: usize) {
        // Relaxed: statistics.
        self.minibatches.fetch_add(1, Ordering::Relaxed);
        self.minibatch_leaves
            .fetch_add(leaves as u64, Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        // Relaxed: a late-seen stop only costs one more minibatch.
        self.stop.load(Ordering::Relaxed) != 0
    }

    pub fn request_stop(&self) {
        self.stop.store(1, Ordering::Relaxed);
    }

    /// Marks worker `id` idle after search `search`.
    pub fn report_done(&self, id: usize, search: u32) {
        // Release: the coordinator that sees it done sees all of this worker's tree writes.
        self.workers[id].done.store(search, Ordering::Release);
    }

    pub fn is_done(&self, id: usize, search: u32) -> bool {
        self.workers[id].done.load(Ordering::Acquire) == search
    }
}

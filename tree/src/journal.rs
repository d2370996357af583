//! The per-worker in-flight journal, and recovery of a dead worker from it.
//!
//! Every descent a worker has started and not yet backed up or cancelled is a record in the
//! worker's journal in the arena:
//! ```text
//! head | W−L | D | node 0 (root) | node 1 | … | node depth-1 (leaf)
//! head = depth (bits 0..12) | done (bits 12..24) | phase (bits 24..26)
//! ```
//! Orderings chosen so that a crash at any instant can only LEAK (leave one in-flight count
//! or one visit undone on one node), never undo something twice: a node's in-flight count is
//! added before the node is appended to the record, and a backup step is recorded as started
//! (`done` + 1) before it lands. [`Arena::recover_worker`] therefore removes everything the
//! journal lists without ever driving a counter below zero, and [`Arena::repair`] (all workers
//! stopped) mends the at most one node a crash can leave off by one.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::TreeError;
use crate::arena::{Arena, WorkerSlot};
use crate::backup::{land, lift, wl_at};
use crate::node::{UNEXPANDED, expanding_by};

/// Words per worker journal (256 KiB): room for thousands of outstanding descents, so a
/// worker that keeps two minibatches in flight rarely has to drain it to empty.
pub(crate) const JOURNAL_WORDS: usize = 65536;
/// The deepest path a record can hold.
pub(crate) const MAX_DEPTH: u32 = 4095;
const HEAD_WORDS: u32 = 3;

/// Phases of a record.
pub(crate) const PENDING: u32 = 0;
pub(crate) const BACKUP: u32 = 1;
pub(crate) const CANCEL: u32 = 2;
pub(crate) const DEAD: u32 = 3;

fn head(depth: u32, done: u32, phase: u32) -> u32 {
    depth | (done << 12) | (phase << 24)
}

fn parse(head: u32) -> (u32, u32, u32) {
    (head & 0xFFF, (head >> 12) & 0xFFF, (head >> 24) & 0b11)
}

/// A worker's view of its own journal.
pub(crate) struct Journal<'a> {
    words: &'a [AtomicU32; JOURNAL_WORDS],
    len: &'a AtomicU32,
}

impl<'a> Journal<'a> {
    pub fn new(slot: &'a WorkerSlot) -> Journal<'a> {
        Journal {
            words: &slot.journal,
            len: &slot.journal_len,
        }
    }

    /// Opens a record at the end of the journal; returns its position.
    pub fn open(&self) -> Result<u32, TreeError> {
        // Relaxed: only this worker writes its journal length.
        let pos = self.len.load(Ordering::Relaxed);
        if (pos + HEAD_WORDS + 1) as usize > JOURNAL_WORDS {
            return Err(TreeError::JournalFull);
        }
        // Relaxed stores, then a release store of the length: a recovering reader that
        // acquires the length sees the record's words.
        self.words[pos as usize].store(head(0, 0, PENDING), Ordering::Relaxed);
        self.words[pos as usize + 1].store(0, Ordering::Relaxed);
        self.words[pos as usize + 2].store(0, Ordering::Relaxed);
        self.len.store(pos + HEAD_WORDS, Ordering::Release);
        Ok(pos)
    }

    /// Whether the record at `rec` of depth `depth` can take one more node.
    pub fn has_room(&self, rec: u32, depth: u32) -> Result<(), TreeError> {
        if depth + 1 > MAX_DEPTH {
            return Err(TreeError::TooDeep(MAX_DEPTH as usize));
        }
        if (rec + HEAD_WORDS + depth + 1) as usize > JOURNAL_WORDS {
            return Err(TreeError::JournalFull);
        }
        Ok(())
    }

    /// Appends `node` (whose in-flight count was already added) to the open record at `rec`,
    /// which must be the newest: a descent is walked to its leaf (and resumed there after a
    /// deferred expansion) before the next one opens its record.
    pub fn push(&self, rec: u32, depth: u32, node: u32) {
        let at = rec + HEAD_WORDS + depth;
        // Relaxed: only this worker writes its journal length.
        assert_eq!(
            at,
            self.len.load(Ordering::Relaxed),
            "only the newest journal record may grow"
        );
        // Relaxed, then release on the head: the head never claims a node word not yet written.
        self.words[at as usize].store(node, Ordering::Relaxed);
        self.words[rec as usize].store(head(depth + 1, 0, PENDING), Ordering::Release);
        self.len.store(at + 1, Ordering::Release);
    }

    /// Records the value a backup is about to add and enters the backup phase.
    pub fn begin_backup(&self, rec: u32, depth: u32, wl: i64, d: i64) {
        // Relaxed value words, ordered before the head by its release store.
        self.words[rec as usize + 1].store(wl as i32 as u32, Ordering::Relaxed);
        self.words[rec as usize + 2].store(d as i32 as u32, Ordering::Relaxed);
        self.words[rec as usize].store(head(depth, 0, BACKUP), Ordering::Release);
    }

    /// Records that `done` nodes (from the leaf up) are started in `phase`.
    pub fn progress(&self, rec: u32, depth: u32, done: u32, phase: u32) {
        // Release: keeps the journal in program order for a recovering reader.
        self.words[rec as usize].store(head(depth, done, phase), Ordering::Release);
    }

    /// Closes a record; `last` says it was the last live one, which empties the journal.
    pub fn close(&self, rec: u32, depth: u32, last: bool) {
        self.words[rec as usize].store(head(depth, depth, DEAD), Ordering::Release);
        if last {
            self.len.store(0, Ordering::Release);
        }
    }
}

impl Arena {
    /// Removes everything a dead worker left in the tree: its in-flight counts, its
    /// expansion claims, and the rest of a backup it had started. Call only once worker `w`'s
    /// process has exited (for example after `waitpid` reported it); the other workers may keep
    /// searching meanwhile. Returns how many outstanding descents were found.
    ///
    /// A crash can leave at most one node off by one (see the module docs); [`Arena::repair`]
    /// mends that once the search is stopped.
    pub fn recover_worker(&self, w: u32) -> usize {
        let slot = self.worker_slot(w);
        // Acquire: pairs with the release stores of the journal length and heads.
        let len = slot
            .journal_len
            .load(Ordering::Acquire)
            .min(JOURNAL_WORDS as u32);
        let words = &slot.journal;
        let mut pos = 0;
        let mut found = 0;
        while pos + HEAD_WORDS <= len {
            let (depth, done, phase) = parse(words[pos as usize].load(Ordering::Acquire));
            let first = (pos + HEAD_WORDS) as usize;
            let Some(nodes) = words.get(first..first + depth as usize) else {
                break;
            };
            let nodes: Vec<u32> = nodes.iter().map(|n| n.load(Ordering::Relaxed)).collect();
            pos += HEAD_WORDS + depth;
            if phase == DEAD || depth == 0 {
                continue;
            }
            found += 1;
            let released = self.release_claim(nodes[depth as usize - 1], w);
            let remaining = (depth - done) as usize;
            if phase == BACKUP && !released {
                let wl = words[first - 2].load(Ordering::Relaxed) as i32 as i64;
                let d = words[first - 1].load(Ordering::Relaxed) as i32 as i64;
                for i in (0..remaining).rev() {
                    land(self.node(nodes[i]), wl_at(wl, depth as usize, i), d);
                }
            } else {
                for &n in nodes[..remaining].iter().rev() {
                    lift(self.node(n));
                }
            }
        }
        slot.journal_len.store(0, Ordering::Release);
        tracing::info!(worker = w, descents = found, "recovered a dead worker");
        found
    }

    /// Returns a node claimed for expansion by worker `w` to the unexpanded state.
    pub(crate) fn release_claim(&self, index: u32, w: u32) -> bool {
        let node = self.node(index);
        // AcqRel: a release makes the node claimable again; whatever a half-done expansion
        // left in `children` is ignored in the unexpanded state and overwritten by the next
        // claimer before it publishes.
        node.state
            .compare_exchange(
                expanding_by(w),
                UNEXPANDED,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip() {
        assert_eq!(parse(head(4095, 17, CANCEL)), (4095, 17, CANCEL));
    }
}

//! The read side for UCI output: node and child statistics, best move, PV, memory use.

use std::cmp::Ordering as Order;
use std::sync::atomic::Ordering;

use crate::arena::{Arena, BLOCK_WORDS};
use crate::node::{
    ExpansionState, NodeStats, Outcome, Proven, exact_value, prior_value, proven, split_count,
};
use crate::slot::Slot;

/// Statistics of one child, from the view of the PARENT's side to move (the side choosing).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChildStats {
    /// The move.
    pub mv: u16,
    /// The child's node, once materialised.
    pub node: Option<u32>,
    /// Completed visits.
    pub visits: u32,
    /// Descents in flight through the child.
    pub in_flight: u32,
    /// Average W−L for the parent's side to move (exact if the child is proven).
    pub wl: f32,
    /// Average draw probability.
    pub d: f32,
    /// The policy prior (quantised to 15 bits).
    pub prior: f32,
    /// The child's proven result, for the side to move AT THE CHILD (a `Loss` there is a
    /// winning move for the parent).
    pub proven: Option<Proven>,
}

impl Arena {
    /// A snapshot of node `index`, values from the view of its own side to move.
    pub fn node_stats(&self, index: u32) -> NodeStats {
        let node = self.node(index);
        // Acquire: pairs with the release stores of states (exact values, proofs).
        let state = node.state.load(Ordering::Acquire);
        // Relaxed: statistics.
        let (visits, in_flight, prior) = split_count(node.count.load(Ordering::Relaxed));
        let (wl, d) = match exact_value(node, state) {
            Some(v) => v,
            None => {
                let (wl, d) = node.averages(visits);
                (-wl, d)
            }
        };
        NodeStats {
            visits,
            in_flight,
            prior: prior_value(prior),
            wl,
            d,
            state: ExpansionState::of(state),
            proven: proven(state),
        }
    }

    /// The proven result of node `index` for its side to move, if any. A root proven `Win`
    /// in `plies` plies is `score mate (plies + 1) / 2`; a `Loss` is `score mate -plies / 2`.
    pub fn proven(&self, index: u32) -> Option<Proven> {
        // Acquire: pairs with the release store of a proof.
        proven(self.node(index).state.load(Ordering::Acquire))
    }

    /// The move into node `index` (0 for the root).
    pub fn node_move(&self, index: u32) -> u16 {
        // Relaxed: immutable once the node is published.
        self.node(index).mv.load(Ordering::Relaxed)
    }

    /// Statistics of every child of node `index`, highest prior first (empty unless expanded).
    pub fn children(&self, index: u32) -> Vec<ChildStats> {
        self.slots(index).map(|s| self.child_stats(s)).collect()
    }

    fn child_stats(&self, slot: Slot) -> ChildStats {
        match slot {
            Slot::Edge { mv, prior } => ChildStats {
                mv,
                node: None,
                visits: 0,
                in_flight: 0,
                wl: 0.0,
                d: 0.0,
                prior: prior_value(prior),
                proven: None,
            },
            Slot::Node(child) => {
                let stats = self.node_stats(child);
                // Relaxed: immutable once published.
                let (_, _, prior) = split_count(self.node(child).count.load(Ordering::Relaxed));
                ChildStats {
                    mv: self.node_move(child),
                    node: Some(child),
                    visits: stats.visits,
                    in_flight: stats.in_flight,
                    wl: -stats.wl,
                    d: stats.d,
                    prior: prior_value(prior),
                    proven: stats.proven,
                }
            }
        }
    }

    /// The move to play from node `index`: a proven win (shortest mate) if there is one,
    /// otherwise the most visited child not proven lost (ties by Q), otherwise the proven loss
    /// that lasts longest.
    pub fn best_child(&self, index: u32) -> Option<ChildStats> {
        self.children(index).into_iter().max_by(choice_rank)
    }

    /// The principal variation from node `index`: best children while they have visits.
    pub fn pv(&self, index: u32, max_len: usize) -> Vec<u16> {
        let mut pv = Vec::new();
        let mut at = index;
        while pv.len() < max_len {
            let Some(best) = self.best_child(at) else {
                break;
            };
            let Some(node) = best.node.filter(|_| best.visits > 0) else {
                break;
            };
            pv.push(best.mv);
            at = node;
        }
        pv
    }

    /// Permille of the active half in use (UCI `hashfull`).
    pub fn hashfull(&self) -> u32 {
        (self.used_blocks() * 1000 / self.half_blocks() as u64).min(1000) as u32
    }

    /// Bytes of the arena's active half in use (taken by chunks).
    pub fn bytes_used(&self) -> u64 {
        self.used_blocks() * BLOCK_WORDS as u64 * 4
    }

    /// Nodes in the tree: those kept by the last re-root plus those materialised since.
    pub fn node_count(&self) -> u64 {
        // Relaxed: statistics.
        let base = self.header().base_nodes.load(Ordering::Relaxed);
        (0..self.workers()).fold(base, |n, w| {
            n + self.worker_slot(w).nodes.load(Ordering::Relaxed)
        })
    }

    /// Descents that ended in a collision, over all workers since the arena was created.
    pub fn collisions(&self) -> u64 {
        (0..self.workers()).fold(0, |n, w| {
            // Relaxed: statistics.
            n + self.worker_slot(w).collisions.load(Ordering::Relaxed)
        })
    }

    fn used_blocks(&self) -> u64 {
        let half = self.active();
        // Relaxed: statistics.
        let cursor = self.header().cursor[half as usize].load(Ordering::Relaxed);
        (cursor - self.half_start(half)) as u64
    }
}

/// Orders children for the move choice (greater is better).
fn choice_rank(a: &ChildStats, b: &ChildStats) -> Order {
    fn class(c: &ChildStats) -> (u8, i32) {
        match c.proven.map(|p| (p.outcome, p.plies as i32)) {
            Some((Outcome::Loss, plies)) => (2, -plies),
            Some((Outcome::Win, plies)) => (0, plies),
            _ => (1, 0),
        }
    }
    class(a)
        .cmp(&class(b))
        .then(a.visits.cmp(&b.visits))
        .then(a.wl.total_cmp(&b.wl))
        .then(a.prior.total_cmp(&b.prior))
}

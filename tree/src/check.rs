//! The arena's own consistency checker, and the stop-the-world repair.

use std::fmt;
use std::sync::atomic::Ordering;

use crate::arena::{Arena, BLOCK_WORDS};
use crate::node::{
    EXPANDED, EXPANDING, TERMINAL, UNEXPANDED, VALUE_SCALE, expansion, proven, split_count,
    with_in_flight, with_visits,
};
use crate::slot::{MAX_MOVES, Slot};

/// One inconsistency found by [`Arena::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The node where it was found.
    pub node: u32,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}: {}", self.node, self.what)
    }
}

impl Arena {
    /// Checks the tree while no worker is descending: every index in range, every node
    /// reachable once, states valid (an unexpanded node has at most the one visit of a
    /// deferred expansion), no in-flight counts or claims left, and every expanded
    /// node's visits equal to 1 + the sum of its children's visits (at least that for proven
    /// nodes, which end descents, and after the arena overflowed). Returns what is wrong.
    pub fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut report = |node: u32, what: String| problems.push(Problem { node, what });
        // Relaxed throughout: the checker runs while the tree is quiet.
        let lenient = self.header().overflowed.load(Ordering::Relaxed) != 0;
        let half = self.active();
        let start = self.half_start(half);
        let cursor = self.header().cursor[half as usize].load(Ordering::Relaxed);
        let in_use = |i: u32| i > start && i < cursor;
        let root = self.root();
        if !in_use(root) {
            report(root, "root out of range".into());
            return problems;
        }
        let mut seen = vec![0u64; self.half_blocks() as usize / 64 + 1];
        let mut mark = |i: u32| {
            let (word, bit) = ((i - start) as usize / 64, (i - start) % 64);
            let first = seen[word] & (1 << bit) == 0;
            seen[word] |= 1 << bit;
            first
        };
        mark(root);
        let mut stack = vec![root];
        while let Some(i) = stack.pop() {
            let node = self.node(i);
            let state = node.state.load(Ordering::Relaxed);
            let (visits, in_flight, _) = split_count(node.count.load(Ordering::Relaxed));
            let exp = expansion(state);
            if in_flight != 0 {
                report(i, format!("{in_flight} descents still in flight"));
            }
            if proven(state).is_some() && exp != EXPANDED && exp != TERMINAL {
                report(i, format!("proven but in expansion state {exp}"));
            }
            match exp {
                // One visit without children is a deferred expansion (`visit_unexpanded`).
                UNEXPANDED if visits > 1 && !lenient => {
                    report(i, format!("unexpanded with {visits} visits"));
                }
                EXPANDING => report(i, "still claimed for expansion".into()),
                EXPANDED => {
                    let array = node.children.load(Ordering::Relaxed);
                    let count =
                        if array >= (start + 1) * BLOCK_WORDS && array < cursor * BLOCK_WORDS {
                            self.word(array).load(Ordering::Relaxed)
                        } else {
                            report(i, format!("child array {array} out of range"));
                            continue;
                        };
                    if count == 0
                        || count as usize > MAX_MOVES
                        || array as u64 + 1 + count as u64 > cursor as u64 * BLOCK_WORDS as u64
                    {
                        report(i, format!("child array of bad length {count}"));
                        continue;
                    }
                    let mut sum = 0u64;
                    for w in array + 1..=array + count {
                        let Slot::Node(c) = Slot::decode(self.word(w).load(Ordering::Relaxed))
                        else {
                            continue;
                        };
                        if !in_use(c) {
                            report(i, format!("child {c} out of range"));
                        } else if !mark(c) {
                            report(i, format!("child {c} reachable twice"));
                        } else {
                            sum += split_count(self.node(c).count.load(Ordering::Relaxed)).0 as u64;
                            stack.push(c);
                        }
                    }
                    let expect = 1 + sum;
                    let visits = visits as u64;
                    if proven(state).is_some() || lenient {
                        if visits < expect {
                            report(i, format!("{visits} visits < 1 + {sum} below"));
                        }
                    } else if visits != expect {
                        report(i, format!("{visits} visits != 1 + {sum} below"));
                    }
                }
                _ => {}
            }
        }
        problems
    }

    /// Stop-the-world repair, with every worker stopped: clears all in-flight counts and
    /// expansion claims, empties the journals, and restores each expanded node's visits to
    /// 1 + its children's (keeping its average value). Mends what a crash mid-descent or
    /// mid-backup can leave behind. Returns how many nodes were changed.
    pub fn repair(&self) -> usize {
        let mut changed = 0;
        // Relaxed throughout: nothing else runs.
        let lenient = self.header().overflowed.load(Ordering::Relaxed) != 0;
        let mut stack = vec![(self.root(), false)];
        while let Some((i, children_done)) = stack.pop() {
            let node = self.node(i);
            if !children_done {
                let count = node.count.load(Ordering::Relaxed);
                let state = node.state.load(Ordering::Relaxed);
                if split_count(count).1 != 0 || expansion(state) == EXPANDING {
                    changed += 1;
                }
                node.count
                    .store(with_in_flight(count, 0), Ordering::Relaxed);
                if expansion(state) == EXPANDING {
                    node.state.store(UNEXPANDED, Ordering::Relaxed);
                }
                stack.push((i, true));
                stack.extend(self.slots(i).filter_map(|s| match s {
                    Slot::Node(c) => Some((c, false)),
                    Slot::Edge { .. } => None,
                }));
                continue;
            }
            let state = node.state.load(Ordering::Relaxed);
            if expansion(state) != EXPANDED {
                continue;
            }
            let (mut sum, mut wl_sum, mut d_sum) = (0u64, 0i64, 0i64);
            for slot in self.slots(i) {
                if let Slot::Node(c) = slot {
                    let child = self.node(c);
                    sum += split_count(child.count.load(Ordering::Relaxed)).0 as u64;
                    wl_sum += child.wl.load(Ordering::Relaxed);
                    d_sum += child.d.load(Ordering::Relaxed);
                }
            }
            let count = node.count.load(Ordering::Relaxed);
            let visits = split_count(count).0 as u64;
            let expect = 1 + sum;
            let at_least = proven(state).is_some() || lenient;
            if visits == expect || (at_least && visits > expect) {
                continue;
            }
            changed += 1;
            if visits > 0 {
                let scale = expect as f64 / visits as f64;
                let rescale = |v: i64| (v as f64 * scale).round() as i64;
                node.wl
                    .store(rescale(node.wl.load(Ordering::Relaxed)), Ordering::Relaxed);
                node.d
                    .store(rescale(node.d.load(Ordering::Relaxed)), Ordering::Relaxed);
            } else {
                // No value of its own: the children's, seen from this node's mover, plus a
                // neutral visit for the lost evaluation.
                node.wl.store(-wl_sum, Ordering::Relaxed);
                node.d
                    .store(d_sum + (VALUE_SCALE / 2.0) as i64, Ordering::Relaxed);
            }
            node.count
                .store(with_visits(count, expect as u32), Ordering::Relaxed);
        }
        for w in 0..self.workers() {
            self.worker_slot(w).journal_len.store(0, Ordering::Relaxed);
        }
        if changed > 0 {
            tracing::info!(changed, "repaired the tree");
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Leaf, Path, PuctParams};

    #[test]
    fn check_finds_and_repair_mends_a_dead_descent() {
        let arena = Arena::create(1 << 20, 2).unwrap();
        let params = PuctParams::default();
        let mut w = arena.worker(0).unwrap();
        let mut path = Path::new();
        for _ in 0..50 {
            match w.descend(&mut path, &params).unwrap() {
                Leaf::Expand(_) => {
                    w.expand(&mut path, &[(1, 0.5), (2, 0.5)], 0.3, 0.1)
                        .unwrap();
                }
                Leaf::Exact { wl, d } => w.backup(&mut path, wl, d),
                Leaf::Collision => w.cancel(&mut path),
            }
        }
        // Worker 1 "dies" holding a claimed leaf and a half-done descent.
        let mut dead = arena.worker(1).unwrap();
        let mut a = Path::new();
        assert!(matches!(dead.descend(&mut a, &params), Ok(Leaf::Expand(_))));
        let mut c = Path::new();
        dead.begin(&mut c).unwrap();
        dead.select_child(&mut c, &params).unwrap();
        drop(dead);
        assert!(!arena.check().is_empty());
        assert_eq!(arena.recover_worker(1), 2);
        assert!(arena.check().is_empty(), "{:?}", arena.check());

        // A node whose counts are off is found and mended.
        let root = arena.node(arena.root());
        root.count.fetch_add(3, Ordering::Relaxed);
        root.count.fetch_add(1 << 32, Ordering::Relaxed);
        assert_eq!(arena.check().len(), 2);
        assert_eq!(arena.repair(), 2);
        assert!(arena.check().is_empty(), "{:?}", arena.check());
    }
}

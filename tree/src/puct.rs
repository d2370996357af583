//! PUCT child selection, as Lc0 does it: descents in flight lower a child's exploration term
//! (they count in U's visit denominator) but leave its Q alone, so a batch of leaves gathered
//! at once is spread over the moves that are close to best without pretending that the leaves
//! still waiting for the network were losses.

use std::sync::atomic::Ordering;

use crate::arena::Arena;
use crate::node::{Outcome, exact_value, prior_value, proven, split_count};
use crate::slot::Slot;

/// Search parameters of the selection formula; the defaults are Lc0's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PuctParams {
    /// `CPuct`: the exploration constant at small visit counts.
    pub cpuct: f32,
    /// `CPuctFactor`: growth of the constant with the parent's visits.
    pub cpuct_factor: f32,
    /// `CPuctBase`: visit scale of that growth.
    pub cpuct_base: f32,
    /// `FpuValue` in reduction mode: Q of an unvisited child is the parent's Q minus this times
    /// the square root of the policy mass already visited.
    pub fpu_reduction: f32,
}

impl Default for PuctParams {
    fn default() -> Self {
        PuctParams {
            cpuct: 1.745,
            cpuct_factor: 3.894,
            cpuct_base: 38739.0,
            fpu_reduction: 0.330,
        }
    }
}

impl PuctParams {
    /// The exploration constant at a parent with `visits` visits:
    /// `cpuct + factor · ln((N + base) / base)`.
    pub fn cpuct_at(&self, visits: u32) -> f32 {
        self.cpuct + self.cpuct_factor * ((visits as f32 + self.cpuct_base) / self.cpuct_base).ln()
    }
}

/// The chosen child: its slot's word index and the slot's raw contents when read.
pub(crate) struct Choice {
    pub word: u32,
    pub raw: u32,
}

impl Arena {
    /// Picks the child of `parent` with the highest PUCT score `Q + U`, where
    /// `U = cpuct · sqrt(N − 1) · P / (1 + n + in-flight)`. `None` if the parent has no child
    /// array.
    pub(crate) fn choose(&self, parent: u32, params: &PuctParams) -> Option<Choice> {
        let (first, count) = self.child_array(parent)?;
        let node = self.node(parent);
        // Relaxed: statistics.
        let (n_parent, _, _) = split_count(node.count.load(Ordering::Relaxed));
        // The parent stores Q from its mover's view; its own side to move sees the negation.
        let parent_q = -node.averages(n_parent).0;
        let explore = params.cpuct_at(n_parent) * (n_parent.saturating_sub(1).max(1) as f32).sqrt();

        let mut best: Option<(f32, Choice)> = None;
        // Unvisited children all get the FPU value as Q, known only once the visited policy
        // mass is summed, so the best of them is the one with the largest `P / (1 + in-flight)`.
        // Unmaterialised slots are sorted by prior: only the first of them can be that one.
        let mut best_unvisited: Option<(f32, Choice)> = None;
        let mut fresh_seen = false;
        let mut visited_policy = 0.0f32;
        for word in first..first + count {
            // Acquire: pairs with the release CAS that published a materialised child.
            let raw = self.word(word).load(Ordering::Acquire);
            let (n, f, prior, child) = match Slot::decode(raw) {
                Slot::Edge { prior, .. } => {
                    if fresh_seen {
                        continue;
                    }
                    fresh_seen = true;
                    (0, 0, prior, None)
                }
                Slot::Node(child) => {
                    let child = self.node(child);
                    // Relaxed: statistics; visits and in-flight come from one word, so they agree.
                    let (n, f, prior) = split_count(child.count.load(Ordering::Relaxed));
                    (n, f, prior, Some(child))
                }
            };
            let p = prior_value(prior);
            let child = match child {
                Some(child) if n > 0 => child,
                _ => {
                    let u = p / (1 + f) as f32;
                    if best_unvisited.as_ref().is_none_or(|(b, _)| u > *b) {
                        best_unvisited = Some((u, Choice { word, raw }));
                    }
                    continue;
                }
            };
            // Acquire: an exact value is published with release by `set_terminal` or a proof.
            let state = child.state.load(Ordering::Acquire);
            // A move proven lost (the child's side to move wins) has no uncertainty left to
            // explore: like Lc0, its policy counts as zero, in U and in the visited policy
            // mass, so that every other move is tried before it is visited again.
            let lost = proven(state).is_some_and(|r| r.outcome == Outcome::Win);
            let (q, p) = match exact_value(child, state) {
                _ if lost => (-1.0, 0.0),
                Some((wl, _)) => (-wl, p),
                None => (child.averages(n).0, p),
            };
            visited_policy += p;
            let score = q + explore * p / (1 + n + f) as f32;
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, Choice { word, raw }));
            }
        }
        if let Some((u, choice)) = best_unvisited {
            let fpu = parent_q - params.fpu_reduction * visited_policy.sqrt();
            let score = fpu + explore * u;
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, choice));
            }
        }
        best.map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{VALUE_SCALE, split_count};
    use crate::{Leaf, Path};

    /// A root with two children, moves 1 and 2 with Q `qs` (root's view), ten visits each,
    /// equal priors. Returns the arena and the two children.
    fn two_children(qs: [f32; 2]) -> (Arena, u32, u32) {
        let arena = Arena::create(1 << 20, 1).unwrap();
        let mut w = arena.worker(0).unwrap();
        let params = PuctParams::default();
        let mut path = Path::new();
        assert!(matches!(w.descend(&mut path, &params), Ok(Leaf::Expand(_))));
        w.expand(&mut path, &[(1, 0.5), (2, 0.5)], 0.0, 0.0)
            .unwrap();
        let mut children = [0; 2];
        for slot in &mut children {
            let Ok(Leaf::Expand(child)) = w.descend(&mut path, &params) else {
                panic!("expected a fresh child");
            };
            w.expand(&mut path, &[(7, 1.0)], 0.0, 0.0).unwrap();
            *slot = child;
        }
        for (child, q) in children.into_iter().zip(qs) {
            let node = arena.node(child);
            let prior = split_count(node.count.load(Ordering::Relaxed)).2;
            node.count
                .store(10 | ((prior as u64) << 48), Ordering::Relaxed);
            node.wl
                .store((q as f64 * 10.0 * VALUE_SCALE) as i64, Ordering::Relaxed);
        }
        arena.node(arena.root()).count.store(21, Ordering::Relaxed);
        let by_move = |mv| {
            children
                .into_iter()
                .find(|&c| arena.node_move(c) == mv)
                .unwrap()
        };
        let (a, b) = (by_move(1), by_move(2));
        (arena, a, b)
    }

    #[test]
    fn in_flight_descents_lower_exploration_but_not_q() {
        let (arena, good, _) = two_children([0.5, -0.2]);
        // Ten descents in flight through the good child: counted as losses they would turn
        // the choice to the bad one; in U's denominator they do not.
        arena
            .node(good)
            .count
            .fetch_add(10 << 32, Ordering::Relaxed);
        let choice = arena.choose(arena.root(), &PuctParams::default()).unwrap();
        assert_eq!(Slot::decode(choice.raw), Slot::Node(good));
    }

    #[test]
    fn descents_in_flight_turn_a_close_choice_through_u() {
        let (arena, better, other) = two_children([0.1, 0.0]);
        let params = PuctParams::default();
        let chosen = |arena: &Arena| Slot::decode(arena.choose(arena.root(), &params).unwrap().raw);
        assert_eq!(chosen(&arena), Slot::Node(better));
        arena
            .node(better)
            .count
            .fetch_add(10 << 32, Ordering::Relaxed);
        assert_eq!(chosen(&arena), Slot::Node(other));
    }

    #[test]
    fn a_move_proven_lost_gets_no_visits_from_its_prior() {
        let (arena, lost, open) = two_children([0.0, -0.9]);
        // One visit to `lost` so far: its prior alone would make it the choice by far.
        let node = arena.node(lost);
        let prior = split_count(node.count.load(Ordering::Relaxed)).2;
        node.count
            .store(1 | ((prior as u64) << 48), Ordering::Relaxed);
        let params = PuctParams::default();
        let chosen = |arena: &Arena| Slot::decode(arena.choose(arena.root(), &params).unwrap().raw);
        assert_eq!(chosen(&arena), Slot::Node(lost));
        // Proven: the side to move after it mates in one.
        arena.set_terminal(lost, 1.0, 0.0, Some(1));
        assert_eq!(chosen(&arena), Slot::Node(open));
    }

    #[test]
    fn cpuct_grows_from_lc0_default() {
        let p = PuctParams::default();
        assert!((p.cpuct_at(0) - 1.745).abs() < 1e-6);
        assert!(p.cpuct_at(38739) > 1.745 + 3.894 * 0.69);
    }
}

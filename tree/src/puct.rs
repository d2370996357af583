//! PUCT child selection with virtual loss, as Lc0 does it.

use std::sync::atomic::Ordering;

use crate::arena::Arena;
use crate::node::{exact_value, prior_value, split_count};
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
    /// Value charged per in-flight descent of a child (virtual loss; 1 = a loss).
    pub virtual_loss: f32,
}

impl Default for PuctParams {
    fn default() -> Self {
        PuctParams {
            cpuct: 1.745,
            cpuct_factor: 3.894,
            cpuct_base: 38739.0,
            fpu_reduction: 0.330,
            virtual_loss: 1.0,
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
    /// Picks the child of `parent` with the highest PUCT score, counting in-flight descents as
    /// virtual losses. `None` if the parent has no child array.
    pub(crate) fn choose(&self, parent: u32, params: &PuctParams) -> Option<Choice> {
        let (first, count) = self.child_array(parent)?;
        let node = self.node(parent);
        // Relaxed: statistics.
        let (n_parent, _, _) = split_count(node.count.load(Ordering::Relaxed));
        // The parent stores Q from its mover's view; its own side to move sees the negation.
        let parent_q = -node.averages(n_parent).0;
        let explore = params.cpuct_at(n_parent) * (n_parent.saturating_sub(1).max(1) as f32).sqrt();

        let mut best: Option<(f32, Choice)> = None;
        // The first unvisited, unmaterialised slot: slots are sorted by prior, so it beats all
        // later ones and only its prior matters (its Q is the FPU value, known at the end).
        let mut first_fresh: Option<(u16, Choice)> = None;
        let mut visited_policy = 0.0f32;
        for word in first..first + count {
            // Acquire: pairs with the release CAS that published a materialised child.
            let raw = self.word(word).load(Ordering::Acquire);
            let child = match Slot::decode(raw) {
                Slot::Edge { prior, .. } => {
                    if first_fresh.is_none() {
                        first_fresh = Some((prior, Choice { word, raw }));
                    }
                    continue;
                }
                Slot::Node(child) => self.node(child),
            };
            // Relaxed: statistics; visits and in-flight come from one word, so they agree.
            let (n, f, prior) = split_count(child.count.load(Ordering::Relaxed));
            if n == 0 && f == 0 {
                let better = first_fresh.as_ref().is_none_or(|(p, _)| prior > *p);
                if better {
                    first_fresh = Some((prior, Choice { word, raw }));
                }
                continue;
            }
            let p = prior_value(prior);
            if n > 0 {
                visited_policy += p;
            }
            // Acquire: an exact value is published with release by `set_terminal` or a proof.
            let state = child.state.load(Ordering::Acquire);
            let q = match exact_value(child, state) {
                Some((wl, _)) => -wl,
                None => child.averages(n).0,
            };
            let (n, f) = (n as f32, f as f32);
            let q_vl = (q * n - params.virtual_loss * f) / (n + f);
            let score = q_vl + explore * p / (1.0 + n + f);
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, Choice { word, raw }));
            }
        }
        if let Some((prior, choice)) = first_fresh {
            let fpu = parent_q - params.fpu_reduction * visited_policy.sqrt();
            let score = fpu + explore * prior_value(prior);
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

    #[test]
    fn cpuct_grows_from_lc0_default() {
        let p = PuctParams::default();
        assert!((p.cpuct_at(0) - 1.745).abs() < 1e-6);
        assert!(p.cpuct_at(38739) > 1.745 + 3.894 * 0.69);
    }
}

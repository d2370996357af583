//! Proven-result propagation (MCTS-solver).
//!
//! A node whose side to move has a child proven lost (for the side to move there) is a proven
//! win, one ply longer than the shortest such child. A node whose children are all materialised
//! and proven is a proven loss if all are wins for the opponent (one ply longer than the
//! longest), else a proven draw.

use std::sync::atomic::Ordering;

use crate::arena::Arena;
use crate::node::{EXPANDED, Outcome, Proven, expansion, proven, proven_state};
use crate::slot::Slot;

impl Arena {
    /// Tries to prove node `index` from its children; returns whether it is proven now.
    pub(crate) fn try_prove(&self, index: u32) -> bool {
        let node = self.node(index);
        // Acquire: pairs with the release publication of the child array.
        let state = node.state.load(Ordering::Acquire);
        if proven(state).is_some() {
            return true;
        }
        if expansion(state) != EXPANDED {
            return false;
        }
        let Some(result) = self.prove_from_children(index) else {
            return false;
        };
        let proof = proven_state(EXPANDED, result);
        // AcqRel: the proof is published with release for readers of the state; the update
        // only applies to an unproven expanded node.
        let _ = node
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s == state).then_some(proof)
            });
        true
    }

    fn prove_from_children(&self, index: u32) -> Option<Proven> {
        let mut win: Option<u8> = None;
        let mut loss = 0u8;
        let mut unknown = false;
        let mut draw = false;
        for slot in self.slots(index) {
            let Slot::Node(child) = slot else {
                unknown = true;
                continue;
            };
            // Acquire: a child's proof is published with release.
            match proven(self.node(child).state.load(Ordering::Acquire)) {
                Some(Proven {
                    outcome: Outcome::Loss,
                    plies,
                }) => {
                    let p = plies.saturating_add(1);
                    win = Some(win.map_or(p, |w| w.min(p)));
                }
                Some(Proven {
                    outcome: Outcome::Win,
                    plies,
                }) => loss = loss.max(plies.saturating_add(1)),
                Some(Proven {
                    outcome: Outcome::Draw,
                    ..
                }) => draw = true,
                None => unknown = true,
            }
        }
        if let Some(plies) = win {
            Some(Proven {
                outcome: Outcome::Win,
                plies,
            })
        } else if unknown {
            None
        } else if draw {
            Some(Proven {
                outcome: Outcome::Draw,
                plies: 0,
            })
        } else {
            Some(Proven {
                outcome: Outcome::Loss,
                plies: loss,
            })
        }
    }
}

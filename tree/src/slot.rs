//! Child slots: 4-byte words that hold either an unvisited edge or a materialised child.
//!
//! A child array is `1 + n` words: a count word, then `n` slots sorted by prior (highest
//! first). A slot is EITHER an edge `prior (15 bits) << 16 | move (16 bits)` with bit 31 clear,
//! OR `NODE_TAG | node index` once the child has a node of its own, which then stores the move
//! and prior itself. A slot only ever changes once, edge → node, by compare-and-swap.

use std::sync::atomic::Ordering;

use crate::arena::Arena;
use crate::node::{EXPANDED, expansion};

/// The most moves one child array holds (chess needs 218): an array then fits in 32 blocks,
/// far inside the smallest allocation chunk.
pub const MAX_MOVES: usize = 255;

/// Bit 31 marks a slot holding a node index.
pub(crate) const NODE_TAG: u32 = 1 << 31;

/// A decoded slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Not materialised: the move and its quantised prior.
    Edge { mv: u16, prior: u16 },
    /// Materialised: the child's node index.
    Node(u32),
}

impl Slot {
    pub fn decode(raw: u32) -> Slot {
        if raw & NODE_TAG != 0 {
            Slot::Node(raw & !NODE_TAG)
        } else {
            Slot::Edge {
                mv: raw as u16,
                prior: (raw >> 16) as u16,
            }
        }
    }
}

/// Encodes an edge; `prior` is 15 bits.
pub(crate) fn edge(mv: u16, prior: u16) -> u32 {
    debug_assert!(prior < 0x8000);
    ((prior as u32) << 16) | mv as u32
}

/// Encodes a materialised child.
pub(crate) fn node(index: u32) -> u32 {
    debug_assert!(index & NODE_TAG == 0);
    NODE_TAG | index
}

impl Arena {
    /// The child array of node `index` as (word index of the first slot, slot count), or `None`
    /// unless the node is expanded.
    pub(crate) fn child_array(&self, index: u32) -> Option<(u32, u32)> {
        let node = self.node(index);
        // Acquire: pairs with the release store of EXPANDED in `finish_expand`, making the
        // `children` word and the array it points to visible.
        if expansion(node.state.load(Ordering::Acquire)) != EXPANDED {
            return None;
        }
        // Relaxed: ordered by the acquire above.
        let array = node.children.load(Ordering::Relaxed);
        let count = self.word(array).load(Ordering::Relaxed);
        Some((array + 1, count))
    }

    /// The slots of node `index` (none unless expanded).
    pub(crate) fn slots(&self, index: u32) -> impl Iterator<Item = Slot> + '_ {
        let (first, count) = self.child_array(index).unwrap_or((0, 0));
        // Acquire: a slot holding a node index was published by a release CAS after the
        // child node was initialised.
        (first..first + count).map(|w| Slot::decode(self.word(w).load(Ordering::Acquire)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip() {
        assert_eq!(
            Slot::decode(edge(0xFFFF, 0x7FFF)),
            Slot::Edge {
                mv: 0xFFFF,
                prior: 0x7FFF
            }
        );
        assert_eq!(Slot::decode(node(12345)), Slot::Node(12345));
    }
}

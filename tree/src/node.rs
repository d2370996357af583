//! The 32-byte node record and the encodings of its packed fields.

use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU32, AtomicU64, Ordering};

/// Fixed-point scale of the value sums: a value of 1.0 adds `VALUE_SCALE` to a sum.
pub(crate) const VALUE_SCALE: f64 = (1u64 << 20) as f64;

/// One visit in [`Node::count`].
pub(crate) const VISIT_ONE: u64 = 1;
/// One in-flight descent in [`Node::count`].
pub(crate) const INFLIGHT_ONE: u64 = 1 << 32;
/// Above this many in-flight descents a node refuses more (the field has 16 bits).
pub(crate) const INFLIGHT_LIMIT: u32 = 0xF000;
/// Adding this to [`Node::count`] adds a visit and removes an in-flight descent at once.
pub(crate) const VISIT_AND_LAND: u64 = VISIT_ONE.wrapping_sub(INFLIGHT_ONE);
const PRIOR_SHIFT: u32 = 48;

/// Expansion state, bits 0..2 of [`Node::state`].
pub(crate) const UNEXPANDED: u16 = 0;
pub(crate) const EXPANDING: u16 = 1;
pub(crate) const EXPANDED: u16 = 2;
pub(crate) const TERMINAL: u16 = 3;
const EXPANSION_MASK: u16 = 0b11;
/// Proven outcome for the side to move at the node, bits 2..4 of [`Node::state`].
const PROVEN_SHIFT: u16 = 2;
const PROVEN_MASK: u16 = 0b11 << PROVEN_SHIFT;
/// The high byte of [`Node::state`]: mate plies once proven, the owner (worker id + 1) while
/// expanding.
const AUX_SHIFT: u16 = 8;

/// A node of the tree, stored in one 32-byte block of the arena.
///
/// A node stores its statistics from the view of the side that made the move into it (the
/// parent's side to move), so a parent picks the child with the highest Q.
#[repr(C, align(32))]
pub(crate) struct Node {
    /// Visits (bits 0..32) | in-flight descents (bits 32..48) | quantised prior (bits 48..64,
    /// immutable). Visits and in-flight share a word so a backup moves one descent from
    /// in-flight to visited in one atomic step.
    pub count: AtomicU64,
    /// Sum of W−L over visits, fixed point (`VALUE_SCALE`).
    pub wl: AtomicI64,
    /// Sum of D over visits, fixed point (`VALUE_SCALE`).
    pub d: AtomicI64,
    /// Expanded: word index of the child slot array. Terminal: the exact value
    /// (W−L as i16 in the low half, D as u16 in the high half). Otherwise 0.
    pub children: AtomicU32,
    /// The move into this node (immutable once published).
    pub mv: AtomicU16,
    /// Expansion state | proven outcome | aux byte (see the constants above).
    pub state: AtomicU16,
}

const _: () = assert!(size_of::<Node>() == 32);

impl Node {
    /// Initialises a freshly allocated node holding one in-flight descent. Plain relaxed stores:
    /// the node is published later by a release store of its index into a slot.
    pub fn init(&self, mv: u16, prior: u16, in_flight: u64) {
        self.count.store(
            ((prior as u64) << PRIOR_SHIFT) | in_flight,
            Ordering::Relaxed,
        );
        self.wl.store(0, Ordering::Relaxed);
        self.d.store(0, Ordering::Relaxed);
        self.children.store(0, Ordering::Relaxed);
        self.mv.store(mv, Ordering::Relaxed);
        self.state.store(UNEXPANDED, Ordering::Relaxed);
    }

    /// Adds `w` and `d` (fixed point) to the value sums. Relaxed: statistics, read without any
    /// promise of being consistent with the visit count to the last visit.
    pub fn add_value(&self, wl: i64, d: i64) {
        self.wl.fetch_add(wl, Ordering::Relaxed);
        self.d.fetch_add(d, Ordering::Relaxed);
    }

    /// (W−L, D) averages from the view of the side that moved into this node.
    pub fn averages(&self, visits: u32) -> (f32, f32) {
        if visits == 0 {
            return (0.0, 0.0);
        }
        // Relaxed: statistics (see `add_value`).
        let scale = VALUE_SCALE * visits as f64;
        let wl = self.wl.load(Ordering::Relaxed) as f64 / scale;
        let d = self.d.load(Ordering::Relaxed) as f64 / scale;
        (wl as f32, d as f32)
    }
}

/// Splits a [`Node::count`] word into (visits, in-flight, prior).
pub(crate) fn split_count(count: u64) -> (u32, u32, u16) {
    (
        count as u32,
        ((count >> 32) & 0xFFFF) as u32,
        (count >> PRIOR_SHIFT) as u16,
    )
}

/// Replaces the in-flight field of a count word.
pub(crate) fn with_in_flight(count: u64, in_flight: u32) -> u64 {
    (count & !(0xFFFF << 32)) | ((in_flight as u64 & 0xFFFF) << 32)
}

/// Replaces the visits field of a count word.
pub(crate) fn with_visits(count: u64, visits: u32) -> u64 {
    (count & !0xFFFF_FFFF) | visits as u64
}

pub(crate) fn expansion(state: u16) -> u16 {
    state & EXPANSION_MASK
}

pub(crate) fn aux(state: u16) -> u8 {
    (state >> AUX_SHIFT) as u8
}

/// The state word of a node claimed for expansion by `worker`.
pub(crate) fn expanding_by(worker: u32) -> u16 {
    EXPANDING | (((worker + 1) as u16) << AUX_SHIFT)
}

/// The state word of a proven node.
pub(crate) fn proven_state(expansion: u16, proven: Proven) -> u16 {
    let class = match proven.outcome {
        Outcome::Win => 1,
        Outcome::Draw => 2,
        Outcome::Loss => 3,
    };
    expansion | (class << PROVEN_SHIFT) | ((proven.plies as u16) << AUX_SHIFT)
}

/// The proven outcome recorded in a state word.
pub(crate) fn proven(state: u16) -> Option<Proven> {
    let outcome = match (state & PROVEN_MASK) >> PROVEN_SHIFT {
        1 => Outcome::Win,
        2 => Outcome::Draw,
        3 => Outcome::Loss,
        _ => return None,
    };
    Some(Proven {
        outcome,
        plies: aux(state),
    })
}

/// Quantises a prior in `[0, 1]` to 15 bits.
pub(crate) fn quantise_prior(p: f32) -> u16 {
    (p.clamp(0.0, 1.0) * 32767.0).round() as u16
}

pub(crate) fn prior_value(q: u16) -> f32 {
    q as f32 / 32767.0
}

/// Converts a value in `[-1, 1]` (or `[0, 1]`) to the fixed point of the sums.
pub(crate) fn fixed(v: f32) -> i64 {
    (v as f64 * VALUE_SCALE).round() as i64
}

/// Packs a terminal's exact value into the `children` field.
pub(crate) fn pack_exact(wl: f32, d: f32) -> u32 {
    let wl = (wl.clamp(-1.0, 1.0) * 32767.0).round() as i16 as u16;
    let d = (d.clamp(0.0, 1.0) * 65535.0).round() as u16;
    wl as u32 | ((d as u32) << 16)
}

pub(crate) fn unpack_exact(packed: u32) -> (f32, f32) {
    let wl = (packed as u16) as i16 as f32 / 32767.0;
    let d = (packed >> 16) as f32 / 65535.0;
    (wl, d)
}

/// The exact value of a node from its own side to move's view: a terminal's stored value, or
/// the value of a proven outcome.
pub(crate) fn exact_value(node: &Node, state: u16) -> Option<(f32, f32)> {
    if expansion(state) == TERMINAL {
        // Relaxed: the caller loaded `state` with acquire, which ordered this field after it.
        return Some(unpack_exact(node.children.load(Ordering::Relaxed)));
    }
    proven(state).map(|p| p.outcome.value())
}

/// A game-theoretic result for the side to move at a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The side to move wins.
    Win,
    /// The game is drawn.
    Draw,
    /// The side to move loses.
    Loss,
}

impl Outcome {
    /// (W−L, D) of the outcome for the side to move.
    pub fn value(self) -> (f32, f32) {
        match self {
            Outcome::Win => (1.0, 0.0),
            Outcome::Draw => (0.0, 1.0),
            Outcome::Loss => (-1.0, 0.0),
        }
    }

    /// The outcome classified from an exact value, if it is a clean win, draw or loss.
    pub fn from_value(wl: f32, d: f32) -> Option<Outcome> {
        if wl >= 0.999 {
            Some(Outcome::Win)
        } else if wl <= -0.999 {
            Some(Outcome::Loss)
        } else if wl.abs() <= 0.001 && d >= 0.999 {
            Some(Outcome::Draw)
        } else {
            None
        }
    }
}

/// The plies of a proven win or loss whose distance to mate is unknown (a tablebase result)
/// or beyond 254 plies: reported without a mate distance.
pub const FAR_PLIES: u8 = u8::MAX;

/// A proven result: the outcome for the side to move and, for a win or loss, the distance to
/// mate in plies (saturating at 255).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proven {
    /// The result for the side to move at the node.
    pub outcome: Outcome,
    /// Plies to the end of the game with best play (0 at a checkmate).
    pub plies: u8,
}

/// A node's expansion state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpansionState {
    /// Not evaluated yet.
    Unexpanded,
    /// Claimed by a worker that is evaluating it.
    Expanding,
    /// Has children.
    Expanded,
    /// A game end with an exact value.
    Terminal,
}

impl ExpansionState {
    pub(crate) fn of(state: u16) -> ExpansionState {
        match expansion(state) {
            UNEXPANDED => ExpansionState::Unexpanded,
            EXPANDING => ExpansionState::Expanding,
            EXPANDED => ExpansionState::Expanded,
            _ => ExpansionState::Terminal,
        }
    }
}

/// A snapshot of one node's statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeStats {
    /// Completed visits.
    pub visits: u32,
    /// Descents through the node that have not backed up yet.
    pub in_flight: u32,
    /// The policy prior of the move into the node (0 for a fresh root).
    pub prior: f32,
    /// Average W−L from the view of the side to move at the node.
    pub wl: f32,
    /// Average draw probability.
    pub d: f32,
    /// The expansion state.
    pub state: ExpansionState,
    /// The proven result, if any.
    pub proven: Option<Proven>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_word_moves_a_descent_from_in_flight_to_visits() {
        let n = Node {
            count: AtomicU64::new(0),
            wl: AtomicI64::new(0),
            d: AtomicI64::new(0),
            children: AtomicU32::new(0),
            mv: AtomicU16::new(0),
            state: AtomicU16::new(0),
        };
        n.init(7, 32767, INFLIGHT_ONE);
        n.count.fetch_add(INFLIGHT_ONE, Ordering::Relaxed);
        n.count.fetch_add(VISIT_AND_LAND, Ordering::Relaxed);
        assert_eq!(split_count(n.count.load(Ordering::Relaxed)), (1, 1, 32767));
        n.count.fetch_add(VISIT_AND_LAND, Ordering::Relaxed);
        assert_eq!(split_count(n.count.load(Ordering::Relaxed)), (2, 0, 32767));
    }

    #[test]
    fn exact_values_round_trip() {
        for (wl, d) in [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.25, 0.5)] {
            let (w2, d2) = unpack_exact(pack_exact(wl, d));
            assert!((w2 - wl).abs() < 1e-4 && (d2 - d).abs() < 1e-4);
        }
    }

    #[test]
    fn proven_state_round_trips() {
        let p = Proven {
            outcome: Outcome::Loss,
            plies: 9,
        };
        let s = proven_state(EXPANDED, p);
        assert_eq!(proven(s), Some(p));
        assert_eq!(expansion(s), EXPANDED);
        assert_eq!(proven(EXPANDED), None);
    }
}

//! The per-node steps of a backup and of a cancellation.

use std::sync::atomic::Ordering;

use crate::node::{INFLIGHT_ONE, Node, VISIT_AND_LAND};

/// One descent lands on `node`: a visit is added and an in-flight count removed in one atomic
/// step, then the value is added to the sums.
pub(crate) fn land(node: &Node, wl: i64, d: i64) {
    // Relaxed: a statistic; the visit and in-flight move together because they share a word.
    node.count.fetch_add(VISIT_AND_LAND, Ordering::Relaxed);
    node.add_value(wl, d);
}

/// One descent leaves `node` without a visit (a collision or a recovered dead descent).
pub(crate) fn lift(node: &Node) {
    // Relaxed: a statistic; nothing is published through in-flight counts.
    node.count.fetch_sub(INFLIGHT_ONE, Ordering::Relaxed);
}

/// The W−L to add at position `i` of a path of `depth` nodes, for a leaf value `wl` seen from
/// the side to move at the leaf. Nodes store values from the view of the side that moved into
/// them, so the leaf gets `-wl`, its parent `+wl`, and so on.
pub(crate) fn wl_at(wl: i64, depth: usize, i: usize) -> i64 {
    if (depth - 1 - i).is_multiple_of(2) {
        -wl
    } else {
        wl
    }
}

//! Tree reuse between moves: re-root at a descendant and reclaim everything else by copying
//! the kept subtree into the other half of the region (runs between searches only).

use std::sync::atomic::Ordering;

use crate::TreeError;
use crate::alloc::ChunkAlloc;
use crate::arena::Arena;
use crate::node::{EXPANDED, EXPANDING, TERMINAL, UNEXPANDED, expansion, with_in_flight};
use crate::slot::{self, Slot};

impl Arena {
    /// Moves the root down along `moves` (from the current root, e.g. our move and the
    /// opponent's reply), keeping the statistics of that subtree and reclaiming the rest.
    /// Returns whether statistics were kept; if a move is not in the tree (or the copy does not
    /// fit) the tree is reset to a fresh root instead. Call only when no worker is descending.
    pub fn reroot(&self, moves: &[u16]) -> bool {
        let mut at = self.root();
        for &mv in moves {
            let child = self.slots(at).find_map(|s| match s {
                Slot::Node(c) if self.node_move(c) == mv => Some(c),
                _ => None,
            });
            match child {
                Some(c) => at = c,
                None => {
                    self.reset();
                    return false;
                }
            }
        }
        if moves.is_empty() {
            return true;
        }
        let other = 1 - self.active();
        self.start_half(other);
        match self.copy_subtree(at, other) {
            Ok((root, nodes)) => {
                self.open_root(root);
                // Relaxed: published with the root by `switch_to`'s release store.
                self.header().base_nodes.store(nodes, Ordering::Relaxed);
                self.switch_to(other, root);
                tracing::debug!(nodes, "re-rooted");
                true
            }
            Err(e) => {
                tracing::warn!("re-root copy failed ({e}); starting a fresh tree");
                self.reset();
                false
            }
        }
    }

    /// Copies the subtree under `src` into `half`; returns the copy's root and node count.
    fn copy_subtree(&self, src: u32, half: u32) -> Result<(u32, u64), TreeError> {
        let mut alloc = ChunkAlloc::new(self, half);
        let root = alloc.node(self)?;
        self.copy_node(src, root);
        let mut nodes = 1;
        let mut stack = vec![(src, root)];
        while let Some((from, to)) = stack.pop() {
            let Some((first, count)) = self.child_array(from) else {
                continue;
            };
            let array = alloc.words(self, 1 + count)?;
            // Relaxed throughout: nothing else runs; the new root is published by release.
            self.word(array).store(count, Ordering::Relaxed);
            for i in 0..count {
                let raw = self.word(first + i).load(Ordering::Relaxed);
                let copied = match Slot::decode(raw) {
                    Slot::Edge { .. } => raw,
                    Slot::Node(child) => {
                        let copy = alloc.node(self)?;
                        self.copy_node(child, copy);
                        stack.push((child, copy));
                        nodes += 1;
                        slot::node(copy)
                    }
                };
                self.word(array + 1 + i).store(copied, Ordering::Relaxed);
            }
            self.node(to).children.store(array, Ordering::Relaxed);
        }
        Ok((root, nodes))
    }

    /// A root is never terminal nor proven by an earlier search (as in Lc0): a game end
    /// marked below the old root (a mate in one, a draw rule) is now a position to play from,
    /// so a terminal root starts afresh, and a proven one is proven again from its children.
    fn open_root(&self, root: u32) {
        let node = self.node(root);
        // Relaxed throughout: between searches, single-threaded.
        let state = node.state.load(Ordering::Relaxed);
        if expansion(state) == TERMINAL {
            node.init(node.mv.load(Ordering::Relaxed), 0, 0);
        } else {
            node.state.store(expansion(state), Ordering::Relaxed);
        }
    }

    /// Copies one node's fields (children fixed up by the caller for expanded nodes).
    fn copy_node(&self, from: u32, to: u32) {
        let (a, b) = (self.node(from), self.node(to));
        // Relaxed throughout: between searches, single-threaded.
        let count = a.count.load(Ordering::Relaxed);
        b.count.store(with_in_flight(count, 0), Ordering::Relaxed);
        b.wl.store(a.wl.load(Ordering::Relaxed), Ordering::Relaxed);
        b.d.store(a.d.load(Ordering::Relaxed), Ordering::Relaxed);
        b.mv.store(a.mv.load(Ordering::Relaxed), Ordering::Relaxed);
        let state = a.state.load(Ordering::Relaxed);
        let (state, children) = match expansion(state) {
            EXPANDING => (UNEXPANDED, 0),
            UNEXPANDED | EXPANDED => (state, 0),
            _ => (state, a.children.load(Ordering::Relaxed)),
        };
        debug_assert!(expansion(state) != EXPANDED || children == 0);
        b.children.store(children, Ordering::Relaxed);
        b.state.store(state, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use crate::{Arena, ExpansionState, Leaf, Path, PuctParams};

    fn search(arena: &Arena, playouts: usize) {
        let mut w = arena.worker(0).unwrap();
        let params = PuctParams::default();
        let mut path = Path::new();
        for i in 0..playouts {
            match w.descend(&mut path, &params).unwrap() {
                Leaf::Expand(_) => {
                    let moves: Vec<_> = (0..5).map(|m| (m, 0.2)).collect();
                    let v = ((i * 7919) % 200) as f32 / 100.0 - 1.0;
                    w.expand(&mut path, &moves, v, 0.1).unwrap();
                }
                Leaf::Exact { wl, d } => w.backup(&mut path, wl, d),
                Leaf::Collision => w.cancel(&mut path),
            }
        }
    }

    #[test]
    fn rerooting_keeps_the_subtree_and_reclaims_the_rest_over_a_whole_game() {
        let arena = Arena::create(4 << 20, 1).unwrap();
        for _ in 0..60 {
            search(&arena, 3000);
            assert!(arena.check().is_empty(), "{:?}", arena.check());
            let best = arena.best_child(arena.root()).unwrap();
            let node = best.node.unwrap();
            let reply = arena.best_child(node).unwrap();
            let kept = reply.visits;
            let used = arena.bytes_used();
            let fresh = reply.node.is_none();
            assert_eq!(arena.reroot(&[best.mv, reply.mv]), !fresh);
            assert_eq!(arena.node_stats(arena.root()).visits, kept);
            assert!(arena.bytes_used() <= used);
            assert!(arena.check().is_empty(), "{:?}", arena.check());
            assert!(arena.hashfull() < 900);
        }
    }

    #[test]
    fn a_terminal_or_proven_node_becomes_an_open_root() {
        let arena = Arena::create(1 << 20, 1).unwrap();
        let mut w = arena.worker(0).unwrap();
        let params = PuctParams::default();
        let mut path = Path::new();
        w.descend(&mut path, &params).unwrap();
        w.expand(&mut path, &[(1, 0.5), (2, 0.5)], 0.0, 0.0)
            .unwrap();
        // Move 1 ends the game (a mate in one for its side to move, say); move 2 is open and
        // its only child is a loss for the side to move there, so move 2 is a proven win.
        for _ in 0..2 {
            let Leaf::Expand(leaf) = w.descend(&mut path, &params).unwrap() else {
                panic!("expected a leaf");
            };
            if arena.node_move(leaf) == 1 {
                w.terminal(&mut path, 1.0, 0.0, Some(1));
            } else {
                w.expand(&mut path, &[(3, 1.0)], 0.0, 0.0).unwrap();
            }
        }
        let Leaf::Expand(_) = w.descend(&mut path, &params).unwrap() else {
            panic!("expected the grandchild");
        };
        w.terminal(&mut path, -1.0, 0.0, Some(0));
        assert!(arena.proven(arena.root()).is_some());

        assert!(arena.reroot(&[1]));
        let root = arena.node_stats(arena.root());
        assert_eq!(
            (root.state, root.visits, root.proven),
            (ExpansionState::Unexpanded, 0, None)
        );
        assert!(matches!(w.descend(&mut path, &params), Ok(Leaf::Expand(_))));
        w.cancel(&mut path);
        assert!(arena.check().is_empty(), "{:?}", arena.check());
    }

    #[test]
    fn a_proven_child_loses_its_proof_as_the_root() {
        let arena = Arena::create(1 << 20, 1).unwrap();
        let mut w = arena.worker(0).unwrap();
        let params = PuctParams::default();
        let mut path = Path::new();
        w.descend(&mut path, &params).unwrap();
        w.expand(&mut path, &[(1, 1.0)], 0.0, 0.0).unwrap();
        w.descend(&mut path, &params).unwrap();
        w.expand(&mut path, &[(2, 1.0)], 0.0, 0.0).unwrap();
        let Leaf::Expand(_) = w.descend(&mut path, &params).unwrap() else {
            panic!("expected the grandchild");
        };
        w.terminal(&mut path, -1.0, 0.0, Some(0));
        let child = arena.children(arena.root())[0].node.unwrap();
        assert!(arena.proven(child).is_some());
        assert!(arena.reroot(&[1]));
        let root = arena.node_stats(arena.root());
        assert_eq!((root.state, root.proven), (ExpansionState::Expanded, None));
        // The proof comes back from the proven child at the next backup.
        let Ok(Leaf::Exact { wl, d }) = w.descend(&mut path, &params) else {
            panic!("expected the proven child");
        };
        w.backup(&mut path, wl, d);
        assert!(arena.proven(arena.root()).is_some());
        assert!(arena.check().is_empty(), "{:?}", arena.check());
    }

    #[test]
    fn an_unknown_move_resets_the_tree() {
        let arena = Arena::create(1 << 20, 1).unwrap();
        search(&arena, 100);
        assert!(!arena.reroot(&[999]));
        assert_eq!(arena.node_stats(arena.root()).visits, 0);
        assert!(arena.check().is_empty());
    }
}

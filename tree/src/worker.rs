//! A worker process's handle: descent, expansion, backup and cancellation.

use std::sync::atomic::Ordering;

use crate::TreeError;
use crate::alloc::ChunkAlloc;
use crate::arena::Arena;
use crate::backup::{land, lift, wl_at};
use crate::journal::{BACKUP, CANCEL, Journal};
use crate::node::{
    EXPANDED, EXPANDING, INFLIGHT_LIMIT, INFLIGHT_ONE, UNEXPANDED, exact_value, expanding_by,
    expansion, fixed, quantise_prior, split_count,
};
use crate::puct::PuctParams;
use crate::slot::{self, MAX_MOVES, Slot};

/// The nodes of one descent, root first, with the journal record that tracks its in-flight
/// counts. Reuse one `Path` per outstanding descent to avoid allocating.
#[derive(Debug, Default)]
pub struct Path {
    nodes: Vec<u32>,
    record: u32,
    claimed: bool,
}

impl Path {
    /// An empty path.
    pub fn new() -> Path {
        Path::default()
    }

    /// The nodes from the root to the leaf (empty once backed up or cancelled).
    pub fn nodes(&self) -> &[u32] {
        &self.nodes
    }

    /// The last node. Panics on an empty path.
    pub fn leaf(&self) -> u32 {
        *self.nodes.last().expect("empty path")
    }
}

/// Where a descent ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Leaf {
    /// A node this worker claimed for expansion: evaluate it, then call [`Worker::expand`] (or
    /// [`Worker::terminal`] if the position is a game end).
    Expand(u32),
    /// A node with an exact value (terminal or proven), from the view of its side to move:
    /// call [`Worker::backup`] with it.
    Exact {
        /// W−L for the side to move at the leaf.
        wl: f32,
        /// Draw probability.
        d: f32,
    },
    /// The descent met a node another descent is expanding (or a saturated one). The path
    /// still holds its in-flight counts: [`Worker::cancel`] it once the minibatch being
    /// gathered is complete, so that later descents of the same gather see them and turn
    /// elsewhere (Lc0 keeps its collisions until then too).
    Collision,
}

/// One worker process's handle on the tree. Each live worker process uses its own id.
pub struct Worker<'a> {
    arena: &'a Arena,
    id: u32,
    alloc: ChunkAlloc,
    journal: Journal<'a>,
    /// Records open in the journal.
    live: u32,
    /// (prior, move) of an expansion being sorted.
    scratch: Vec<(u16, u16)>,
}

impl Arena {
    /// The handle for worker `id` (below [`Arena::workers`]); one process per id at a time.
    pub fn worker(&self, id: u32) -> Result<Worker<'_>, TreeError> {
        if id >= self.workers() {
            return Err(TreeError::BadWorker(id));
        }
        let slot = self.worker_slot(id);
        // Relaxed: diagnostics only.
        slot.pid.store(std::process::id(), Ordering::Relaxed);
        Ok(Worker {
            arena: self,
            id,
            alloc: ChunkAlloc::new(self, self.active()),
            journal: Journal::new(slot),
            live: 0,
            scratch: Vec::new(),
        })
    }

    /// Marks node `index` as a game end with the exact value (`wl`, `d`) for its side to move
    /// and, for a mate, the plies to it (0 at a checkmate). A clean win, draw or loss is also
    /// recorded as proven, which the solver propagates. Call while holding the expansion claim.
    pub fn set_terminal(&self, index: u32, wl: f32, d: f32, mate_plies: Option<u8>) {
        let node = self.node(index);
        // Relaxed: published by the release store of the state below.
        node.children
            .store(crate::node::pack_exact(wl, d), Ordering::Relaxed);
        let state = match crate::node::Outcome::from_value(wl, d) {
            Some(outcome) => crate::node::proven_state(
                crate::node::TERMINAL,
                crate::node::Proven {
                    outcome,
                    plies: mate_plies.unwrap_or(0),
                },
            ),
            None => crate::node::TERMINAL,
        };
        // Release: publishes the exact value stored above.
        node.state.store(state, Ordering::Release);
    }
}

impl Worker<'_> {
    /// This worker's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Walks from the root to a leaf with PUCT and virtual loss. Every node on the path holds
    /// one more in-flight count until the path is backed up or cancelled. On an error the
    /// path is cancelled already.
    pub fn descend(&mut self, path: &mut Path, params: &PuctParams) -> Result<Leaf, TreeError> {
        if !self.begin(path)? {
            return Ok(Leaf::Collision);
        }
        self.resume(path, params)
    }

    /// Goes on descending from the path's leaf: after [`Worker::finish_expand`] of a leaf
    /// that was claimed by [`Worker::descend`], this walks on into its children (deferred
    /// expansion: see [`Worker::visit_unexpanded`]). Same results as `descend`.
    pub fn resume(&mut self, path: &mut Path, params: &PuctParams) -> Result<Leaf, TreeError> {
        path.claimed = false;
        loop {
            let index = path.leaf();
            let node = self.arena.node(index);
            // Acquire: pairs with the release stores of `finish_expand` and `set_terminal`.
            let state = node.state.load(Ordering::Acquire);
            if let Some((wl, d)) = exact_value(node, state) {
                return Ok(Leaf::Exact { wl, d });
            }
            let step = match expansion(state) {
                UNEXPANDED if self.try_begin_expand(path) => return Ok(Leaf::Expand(index)),
                EXPANDED => self.select_child(path, params),
                EXPANDING => {
                    self.count_collision();
                    Ok(None)
                }
                _ => Ok(None),
            };
            match step {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(Leaf::Collision),
                Err(e) => {
                    self.cancel(path);
                    return Err(e);
                }
            }
        }
    }

    /// Starts a descent at the root: opens a journal record and adds an in-flight count to
    /// the root. `Ok(false)` if the root is saturated with in-flight descents.
    pub fn begin(&mut self, path: &mut Path) -> Result<bool, TreeError> {
        debug_assert!(
            path.nodes.is_empty(),
            "a path must be finished before reuse"
        );
        self.alloc.follow(self.arena);
        path.nodes.clear();
        path.claimed = false;
        path.record = self.journal.open()?;
        self.live += 1;
        let root = self.arena.root();
        if !self.enter(root) {
            self.close(path);
            return Ok(false);
        }
        self.journal.push(path.record, 0, root);
        path.nodes.push(root);
        Ok(true)
    }

    /// Selects the best child of the path's leaf by PUCT, materialises its node if this is
    /// its first selection, adds an in-flight count to it and appends it to the path.
    /// `Ok(None)` when the leaf has no children or the child is saturated with in-flight
    /// descents. On an error the path is unchanged (still holding its counts).
    pub fn select_child(
        &mut self,
        path: &mut Path,
        params: &PuctParams,
    ) -> Result<Option<u32>, TreeError> {
        let depth = path.nodes.len() as u32;
        self.journal.has_room(path.record, depth)?;
        let Some(choice) = self.arena.choose(path.leaf(), params) else {
            return Ok(None);
        };
        let child = match Slot::decode(choice.raw) {
            Slot::Node(child) => self.enter(child).then_some(child),
            Slot::Edge { mv, prior } => self.materialise(choice.word, choice.raw, mv, prior)?,
        };
        if let Some(child) = child {
            self.journal.push(path.record, depth, child);
            path.nodes.push(child);
        }
        Ok(child)
    }

    /// Claims the path's leaf for expansion (unexpanded → expanding). A loser counts a
    /// collision and should cancel the path.
    pub fn try_begin_expand(&mut self, path: &mut Path) -> bool {
        let node = self.arena.node(path.leaf());
        // Acquire on success: pairs with the release store of `visit_unexpanded`, so a claimer
        // sees the node's first visit. The claim itself publishes nothing.
        let won = node
            .state
            .compare_exchange(
                UNEXPANDED,
                expanding_by(self.id),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok();
        if won {
            path.claimed = true;
        } else {
            self.count_collision();
        }
        won
    }

    /// Gives a claimed node its children (move, prior), sorted by prior, and publishes them.
    /// On an error (arena full, no moves, too many moves) the node returns to unexpanded.
    pub fn finish_expand(&mut self, index: u32, moves: &[(u16, f32)]) -> Result<(), TreeError> {
        let node = self.arena.node(index);
        let array = if moves.is_empty() {
            Err(TreeError::NoMoves)
        } else if moves.len() > MAX_MOVES {
            Err(TreeError::TooManyMoves(moves.len()))
        } else {
            self.alloc.words(self.arena, 1 + moves.len() as u32)
        };
        let array = match array {
            Ok(array) => array,
            Err(e) => {
                // Release: hands the node back to the next claimer.
                node.state.store(UNEXPANDED, Ordering::Release);
                return Err(e);
            }
        };
        self.scratch.clear();
        self.scratch
            .extend(moves.iter().map(|&(mv, p)| (quantise_prior(p), mv)));
        self.scratch
            .sort_by_key(|&(prior, _)| std::cmp::Reverse(prior));
        // Relaxed stores, all published by the release store of the state below.
        self.arena
            .word(array)
            .store(moves.len() as u32, Ordering::Relaxed);
        for (i, &(prior, mv)) in self.scratch.iter().enumerate() {
            self.arena
                .word(array + 1 + i as u32)
                .store(slot::edge(mv, prior), Ordering::Relaxed);
        }
        node.children.store(array, Ordering::Relaxed);
        // Release: publishes the child array and `children` to every acquire load of the state.
        node.state.store(EXPANDED, Ordering::Release);
        Ok(())
    }

    /// Expands the claimed leaf of `path` with `moves` and backs up its evaluation (`wl`, `d`
    /// from the leaf's side to move). `Ok(false)` when the arena is full: the value is backed
    /// up but the leaf stays unexpanded. Other errors cancel the path.
    pub fn expand(
        &mut self,
        path: &mut Path,
        moves: &[(u16, f32)],
        wl: f32,
        d: f32,
    ) -> Result<bool, TreeError> {
        let (wl, d) = (fixed(wl.clamp(-1.0, 1.0)), fixed(d.clamp(0.0, 1.0)));
        // The value goes into the journal first, so recovery can finish this backup.
        self.journal
            .begin_backup(path.record, path.nodes.len() as u32, wl, d);
        let expanded = match self.finish_expand(path.leaf(), moves) {
            Ok(()) => true,
            Err(TreeError::ArenaFull) => false,
            Err(e) => {
                path.claimed = false;
                self.cancel(path);
                return Err(e);
            }
        };
        path.claimed = false;
        self.land_path(path, wl, d);
        Ok(expanded)
    }

    /// Backs up the claimed leaf's evaluation (`wl`, `d` from its side to move) WITHOUT
    /// giving it children, and hands it back unexpanded. A leaf visited once needs no child
    /// array; the engine expands it on its second visit (from the evaluation cache) and
    /// [`Worker::resume`]s the descent, so most leaves never spend arena bytes on children.
    /// The visits invariant holds: such a node has one visit and no children.
    pub fn visit_unexpanded(&mut self, path: &mut Path, wl: f32, d: f32) {
        let (wl, d) = (fixed(wl.clamp(-1.0, 1.0)), fixed(d.clamp(0.0, 1.0)));
        // The value goes into the journal first, so recovery can finish this backup.
        self.journal
            .begin_backup(path.record, path.nodes.len() as u32, wl, d);
        // The claim is kept while the visit lands: the next claimer must see it, or it would
        // take this for the leaf's first visit too. It goes back before the record closes, so
        // a crash at any point leaves it to recovery.
        path.claimed = false;
        self.land_nodes(path, wl, d);
        // Release: hands the node back with its visit counted (the claimer's acquire CAS in
        // `try_begin_expand` pairs with it), children still absent.
        self.arena
            .node(path.leaf())
            .state
            .store(UNEXPANDED, Ordering::Release);
        self.finish_landing(path);
    }

    /// Gives the claimed leaf of `path`, visited before (a deferred expansion whose priors had
    /// to be fetched again), its children WITHOUT a visit, and cancels the descent: the leaf's
    /// value was backed up at its first visit and must not be backed up twice. The next
    /// descent through it walks on into its children. On an error the leaf returns to
    /// unexpanded and the descent is cancelled all the same.
    pub fn expand_without_visit(
        &mut self,
        path: &mut Path,
        moves: &[(u16, f32)],
    ) -> Result<(), TreeError> {
        let result = self.finish_expand(path.leaf(), moves);
        // Either way the claim is settled: expanded, or handed back by `finish_expand`.
        path.claimed = false;
        self.cancel(path);
        result
    }

    /// Marks the claimed leaf of `path` terminal (see [`Arena::set_terminal`]) and backs up its
    /// exact value.
    pub fn terminal(&mut self, path: &mut Path, wl: f32, d: f32, mate_plies: Option<u8>) {
        self.arena.set_terminal(path.leaf(), wl, d, mate_plies);
        path.claimed = false;
        self.backup(path, wl, d);
    }

    /// Backs up a value (`wl`, `d` from the view of the side to move at the leaf) along the
    /// path: each node gains a visit, loses its in-flight count and adds the value with the
    /// sign of its ply. If the leaf has an exact value, proofs are propagated upward.
    pub fn backup(&mut self, path: &mut Path, wl: f32, d: f32) {
        if path.nodes.is_empty() {
            debug_assert!(false, "backup of a finished path");
            return;
        }
        let (wl, d) = (fixed(wl.clamp(-1.0, 1.0)), fixed(d.clamp(0.0, 1.0)));
        self.journal
            .begin_backup(path.record, path.nodes.len() as u32, wl, d);
        self.land_path(path, wl, d);
    }

    /// Removes the path's in-flight counts without a visit (after a collision), releasing its
    /// expansion claim if it holds one.
    pub fn cancel(&mut self, path: &mut Path) {
        if path.nodes.is_empty() {
            return;
        }
        if path.claimed {
            self.arena.release_claim(path.leaf(), self.id);
            path.claimed = false;
        }
        let depth = path.nodes.len();
        for i in (0..depth).rev() {
            self.journal
                .progress(path.record, depth as u32, (depth - i) as u32, CANCEL);
            lift(self.arena.node(path.nodes[i]));
        }
        self.close(path);
    }

    /// Lands a recorded backup on every node of the path, leaf first, then propagates proofs.
    fn land_path(&mut self, path: &mut Path, wl: i64, d: i64) {
        self.land_nodes(path, wl, d);
        self.finish_landing(path);
    }

    /// The landing steps of a recorded backup: every node of the path, leaf first.
    fn land_nodes(&mut self, path: &Path, wl: i64, d: i64) {
        let depth = path.nodes.len();
        for i in (0..depth).rev() {
            // Recorded before it lands: a crash in between leaks rather than repeats.
            self.journal
                .progress(path.record, depth as u32, (depth - i) as u32, BACKUP);
            land(self.arena.node(path.nodes[i]), wl_at(wl, depth, i), d);
        }
    }

    /// After the landing: propagates proofs from an exact leaf and closes the record.
    fn finish_landing(&mut self, path: &mut Path) {
        let depth = path.nodes.len();
        let leaf = self.arena.node(path.leaf());
        // Acquire: pairs with the release store of a terminal or proven state.
        if exact_value(leaf, leaf.state.load(Ordering::Acquire)).is_some() {
            for &ancestor in path.nodes[..depth - 1].iter().rev() {
                if !self.arena.try_prove(ancestor) {
                    break;
                }
            }
        }
        self.close(path);
    }

    /// Closes the path's journal record and empties the path.
    fn close(&mut self, path: &mut Path) {
        self.live -= 1;
        self.journal
            .close(path.record, path.nodes.len() as u32, self.live == 0);
        path.nodes.clear();
    }

    /// Adds an in-flight count to `index`; refuses (and undoes it) if the node is saturated.
    fn enter(&self, index: u32) -> bool {
        let node = self.arena.node(index);
        // Relaxed: a statistic; nothing is published through in-flight counts.
        let before = node.count.fetch_add(INFLIGHT_ONE, Ordering::Relaxed);
        if split_count(before).1 >= INFLIGHT_LIMIT {
            node.count.fetch_sub(INFLIGHT_ONE, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives the edge in slot `word` a node of its own holding one in-flight count. If another
    /// worker materialised it first, enters that node instead.
    fn materialise(
        &mut self,
        word: u32,
        raw: u32,
        mv: u16,
        prior: u16,
    ) -> Result<Option<u32>, TreeError> {
        let index = self.alloc.node(self.arena)?;
        self.arena.node(index).init(mv, prior, INFLIGHT_ONE);
        // Release on success: publishes the initialised node with its index. Acquire on
        // failure: makes the winner's node visible before we use it.
        match self.arena.word(word).compare_exchange(
            raw,
            slot::node(index),
            Ordering::Release,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                // Relaxed: a statistic written by this worker only.
                self.arena
                    .worker_slot(self.id)
                    .nodes
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Some(index))
            }
            Err(now) => {
                self.alloc.give_back(index);
                match Slot::decode(now) {
                    Slot::Node(winner) => Ok(self.enter(winner).then_some(winner)),
                    Slot::Edge { .. } => Ok(None),
                }
            }
        }
    }

    fn count_collision(&self) {
        // Relaxed: a statistic.
        self.arena
            .worker_slot(self.id)
            .collisions
            .fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moves(n: u16) -> Vec<(u16, f32)> {
        (0..n).map(|m| (m, 1.0 / n as f32)).collect()
    }

    #[test]
    fn first_descent_claims_the_root_then_grows_one_child_per_descent() {
        let arena = Arena::create(1 << 20, 1).unwrap();
        let mut w = arena.worker(0).unwrap();
        let params = PuctParams::default();
        let mut path = Path::new();
        assert_eq!(
            w.descend(&mut path, &params).unwrap(),
            Leaf::Expand(arena.root())
        );
        assert!(w.expand(&mut path, &moves(3), 0.5, 0.2).unwrap());
        for i in 0..3 {
            let Leaf::Expand(leaf) = w.descend(&mut path, &params).unwrap() else {
                panic!("expected a leaf");
            };
            assert_eq!(path.nodes().len(), 2);
            assert_eq!(path.leaf(), leaf);
            w.expand(&mut path, &moves(2), -0.1 * i as f32, 0.1)
                .unwrap();
        }
        assert!(arena.check().is_empty(), "{:?}", arena.check());
        assert_eq!(arena.node_stats(arena.root()).visits, 4);
        // Root value: +0.5 once, and the children's values (−0, −(−0.1), −(−0.2)) negated
        // twice on the way up: the root's own view is 0.5 + 0 + 0.1 + 0.2.
        let root = arena.node_stats(arena.root());
        assert!((root.wl - 0.8 / 4.0).abs() < 1e-4, "{}", root.wl);
    }

    #[test]
    fn a_second_descent_to_a_claimed_leaf_collides_and_leaves_nothing_behind() {
        let arena = Arena::create(1 << 20, 1).unwrap();
        let mut w = arena.worker(0).unwrap();
        let params = PuctParams::default();
        let (mut a, mut b) = (Path::new(), Path::new());
        assert!(matches!(w.descend(&mut a, &params), Ok(Leaf::Expand(_))));
        assert_eq!(w.descend(&mut b, &params).unwrap(), Leaf::Collision);
        w.cancel(&mut b);
        w.expand(&mut a, &moves(1), 0.0, 0.0).unwrap();
        assert!(arena.check().is_empty(), "{:?}", arena.check());
        assert_eq!(arena.collisions(), 1);
    }

    #[test]
    fn a_full_arena_stops_growth_without_corruption() {
        let arena = Arena::create(1 << 20, 1).unwrap();
        let mut w = arena.worker(0).unwrap();
        let params = PuctParams::default();
        let mut path = Path::new();
        let mut full = 0;
        for _ in 0..100_000 {
            match w.descend(&mut path, &params) {
                Ok(Leaf::Expand(_)) => {
                    if !w.expand(&mut path, &moves(30), 0.1, 0.3).unwrap() {
                        full += 1;
                    }
                }
                Ok(Leaf::Exact { wl, d }) => w.backup(&mut path, wl, d),
                Ok(Leaf::Collision) => w.cancel(&mut path),
                Err(TreeError::ArenaFull) => full += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(full > 0);
        assert!(arena.hashfull() > 950, "{}", arena.hashfull());
        assert!(arena.check().is_empty(), "{:?}", arena.check());
        assert!(arena.best_child(arena.root()).is_some());
    }

    #[test]
    fn a_mate_in_one_is_proven_and_preferred() {
        let arena = Arena::create(1 << 20, 1).unwrap();
        let mut w = arena.worker(0).unwrap();
        let params = PuctParams::default();
        let mut path = Path::new();
        w.descend(&mut path, &params).unwrap();
        // Move 9 has a tiny prior but mates.
        w.expand(&mut path, &[(1, 0.6), (2, 0.39), (9, 0.01)], 0.0, 0.0)
            .unwrap();
        for _ in 0..3000 {
            match w.descend(&mut path, &params).unwrap() {
                Leaf::Expand(leaf) => {
                    if arena.node_move(leaf) == 9 {
                        w.terminal(&mut path, -1.0, 0.0, Some(0));
                    } else {
                        w.expand(&mut path, &moves(2), 0.0, 0.5).unwrap();
                    }
                }
                Leaf::Exact { wl, d } => w.backup(&mut path, wl, d),
                Leaf::Collision => w.cancel(&mut path),
            }
        }
        let proven = arena.proven(arena.root()).unwrap();
        assert_eq!((proven.outcome, proven.plies), (crate::Outcome::Win, 1));
        assert_eq!(arena.best_child(arena.root()).unwrap().mv, 9);
        assert_eq!(arena.pv(arena.root(), 10), vec![9]);
        assert!(arena.check().is_empty(), "{:?}", arena.check());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

        /// Any mix of branching, values, terminals and minibatch sizes leaves a clean tree
        /// whose root counts every non-colliding descent.
        #[test]
        fn random_searches_keep_the_tree_consistent(
            seed in 0u64..u64::MAX,
            batch in 1usize..16,
            rounds in 1usize..60,
        ) {
            let arena = Arena::create(4 << 20, 1).unwrap();
            let mut w = arena.worker(0).unwrap();
            let params = PuctParams::default();
            let mut paths: Vec<Path> = (0..batch).map(|_| Path::new()).collect();
            let mut landed = 0u32;
            let mut rng = seed;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            for _ in 0..rounds {
                let leaves: Vec<Leaf> = paths
                    .iter_mut()
                    .map(|p| w.descend(p, &params).unwrap())
                    .collect();
                for (path, leaf) in paths.iter_mut().zip(leaves) {
                    let r = next();
                    match leaf {
                        Leaf::Expand(_) if r % 10 == 0 => {
                            w.terminal(path, -1.0, 0.0, Some(0));
                            landed += 1;
                        }
                        Leaf::Expand(_) if r % 10 == 1 => w.cancel(path),
                        Leaf::Expand(_) => {
                            let n = 1 + (r >> 8) % 30;
                            let moves: Vec<_> =
                                (0..n).map(|m| (m as u16, ((r >> m) % 7) as f32 / 7.0)).collect();
                            let wl = ((r >> 40) % 200) as f32 / 100.0 - 1.0;
                            w.expand(path, &moves, wl, 0.2).unwrap();
                            landed += 1;
                        }
                        Leaf::Exact { wl, d } => {
                            w.backup(path, wl, d);
                            landed += 1;
                        }
                        Leaf::Collision => w.cancel(path),
                    }
                }
            }
            let problems = arena.check();
            proptest::prop_assert!(problems.is_empty(), "{:?}", problems);
            proptest::prop_assert_eq!(arena.node_stats(arena.root()).visits, landed);
        }
    }
}

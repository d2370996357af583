//! The worker process: takes search orders from the coordinator, grows the shared tree with
//! PUCT and virtual loss, sends its leaves to the evaluator in minibatches (two in flight),
//! expands and backs up their answers. Game ends are scored without the network.

use std::collections::VecDeque;
use std::io::BufReader;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use banyan_nn::backend::EvalInput;
use banyan_nn::cache::EvalCache;
use banyan_nn::client::{EvalClient, Ticket};
use banyan_nn::encode::{InputPlanes, PositionHistory};
use banyan_tree::{Arena, Leaf, Path, PuctParams, Worker};
use cozy_chess::{Board, Move};

use crate::control::Control;
use crate::moves;
use crate::order::{Order, SearchOrder};
use crate::tablebase;

/// An evaluator that has not answered a minibatch within this time is taken for dead.
const EVALUATOR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A search ends once the root has this many visits, far below where the 32-bit visit
/// counters could wrap (descents that end at exact values cost no evaluation and can add
/// millions of visits a second).
const MAX_ROOT_VISITS: usize = 1 << 31;

/// Leaves in flight may be at most this fraction (1/n) of the root's visits (see `gather`).
/// Measured at 800 playouts, `Threads 2`, maia-1900, on 614 positions of games against Lc0:
/// the best move agrees with Lc0's sequential search (one thread, minibatch 1) on 88.3% of
/// them at 8, 93.3% at 64, 94.6% at 128 (one leaf per batch: 94.1%), while game nodes/s on
/// two cores stays within the noise (5,200 at 8, 5,100 at 64) until batches of one.
const STALE_DIVISOR: usize = 64;

/// Everything a worker process holds: its id, the shared memory, and its command pipe.
pub struct WorkerProcess {
    pub id: u32,
    pub arena: Arena,
    pub control: Control,
    pub cache: Option<Arc<EvalCache>>,
    pub orders: BufReader<std::fs::File>,
}

impl WorkerProcess {
    /// Serves search orders until `quit` or the coordinator goes away.
    pub fn run(mut self) {
        let mut client: Option<(PathBuf, EvalClient)> = None;
        loop {
            match Order::read(&mut self.orders) {
                Ok(Order::Search(order)) => {
                    let block = self.control.block();
                    if let Err(e) = self.search(&order, &mut client) {
                        tracing::warn!("worker {}: {e}", self.id);
                        client = None;
                        block.workers[self.id as usize]
                            .eval_error
                            .store(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    block.report_done(self.id as usize, order.search);
                }
                Ok(Order::Quit) => return,
                Err(e) => {
                    tracing::error!("worker {}: {e}", self.id);
                    return;
                }
            }
        }
    }

    fn search(
        &self,
        order: &SearchOrder,
        client: &mut Option<(PathBuf, EvalClient)>,
    ) -> Result<(), String> {
        if client
            .as_ref()
            .is_none_or(|(socket, _)| socket != &order.socket)
        {
            *client = Some((
                order.socket.clone(),
                connect(&order.socket, self.cache.clone())?,
            ));
        }
        let (_, client) = client.as_mut().expect("connected above");
        tablebase::ensure(&order.syzygy);
        let start =
            Board::from_fen(&order.start_fen, true).map_err(|e| format!("bad start FEN: {e:?}"))?;
        let mut history = PositionHistory::new(start);
        for &code in &order.moves {
            history.push(moves::decode(code));
        }
        let tree = self.arena.worker(self.id).map_err(|e| e.to_string())?;
        let mut search = Search {
            order,
            params: order.puct,
            arena: &self.arena,
            tree,
            root_len: history.len(),
            history,
            id: self.id as usize,
            block: self.control.block(),
            cache: self.cache.as_deref(),
            in_flight: VecDeque::new(),
            legal: Vec::with_capacity(64),
            collided: Vec::new(),
        };
        let result = search.run(client);
        search.abandon();
        result
    }
}

fn connect(socket: &FsPath, cache: Option<Arc<EvalCache>>) -> Result<EvalClient, String> {
    let mut client =
        EvalClient::connect(socket).map_err(|e| format!("cannot reach the evaluator: {e}"))?;
    client
        .set_timeout(Some(EVALUATOR_TIMEOUT))
        .map_err(|e| format!("evaluator socket: {e}"))?;
    Ok(match cache {
        Some(cache) => client.with_cache(cache),
        None => client,
    })
}

/// A leaf sent to the evaluator, waiting for its answer.
struct Pending {
    path: Path,
    planes: InputPlanes,
    /// Legal moves as tree codes, and the same moves as policy indices.
    codes: Vec<u16>,
    policy: Vec<u16>,
    /// What the answer is for (see `open_leaf`).
    visit: Visit,
}

/// What a leaf's evaluation is used for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    /// Expand the leaf and back its value up (no cache to defer with, or the fresh root).
    Expand,
    /// Back the value up without children: the leaf's first visit, deferred.
    First,
    /// Expand without a visit: the leaf's value was backed up at its first visit, and its
    /// priors had to be fetched again (they had left the cache).
    Reopen,
}

/// What became of a leaf claimed for expansion.
enum Opened {
    /// Expanded from the cache; the descent goes on along this path.
    Resumed(Path),
    /// Backed up (a game end) or given up.
    Done,
    /// Needs the evaluator.
    Evaluate(Box<Pending>),
}

/// How a leaf position stands.
enum LeafKind {
    /// A game end: exact value for the side to move, and plies to mate (0 when mated now).
    End {
        wl: f32,
        d: f32,
        mate: Option<u8>,
    },
    Open,
}

/// One search of one worker.
struct Search<'a> {
    order: &'a SearchOrder,
    params: PuctParams,
    arena: &'a Arena,
    tree: Worker<'a>,
    /// The history from the game's start to the leaf being looked at; the first `root_len`
    /// positions lead to the root.
    history: PositionHistory,
    root_len: usize,
    id: usize,
    block: &'a crate::control::ControlBlock,
    /// The shared evaluation cache, which also holds the priors of deferred expansions.
    cache: Option<&'a EvalCache>,
    in_flight: VecDeque<(Ticket, Vec<Pending>)>,
    /// The leaf's legal moves, generated once per leaf (kept to reuse the allocation).
    legal: Vec<Move>,
    /// Descents that collided during the current gather (kept to reuse the allocation).
    collided: Vec<Path>,
}

impl Search<'_> {
    fn run(&mut self, client: &mut EvalClient) -> Result<(), String> {
        loop {
            let stopping = self.block.stopping();
            let (batch, more) = if stopping {
                (Vec::new(), false)
            } else {
                self.gather()
            };
            let sent = !batch.is_empty();
            if sent {
                let inputs: Vec<EvalInput> = batch
                    .iter()
                    .map(|p| EvalInput {
                        planes: &p.planes,
                        moves: &p.policy,
                    })
                    .collect();
                match client.send(&inputs) {
                    Ok(ticket) => {
                        self.block.record_minibatch(batch.len());
                        self.in_flight.push_back((ticket, batch));
                    }
                    Err(e) => {
                        self.cancel(batch);
                        return Err(format!("evaluator: {e}"));
                    }
                }
            }
            // Keep two minibatches in flight: answer the older one once a second is out, or
            // when nothing new could be gathered.
            let answer = self.in_flight.len() >= 2 || (!sent && !self.in_flight.is_empty());
            if answer {
                let (ticket, batch) = self.in_flight.pop_front().expect("non-empty");
                match client.recv(ticket) {
                    Ok(evals) => self.land(batch, evals),
                    Err(e) => {
                        self.cancel(batch);
                        return Err(format!("evaluator: {e}"));
                    }
                }
            }
            if !more && self.in_flight.is_empty() && (stopping || !sent) {
                return Ok(());
            }
            if !sent && !answer && more {
                // Only collisions: other workers are expanding our leaves. Sleep rather than
                // yield, so that a busy machine's cores go to the evaluator doing that work.
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
        }
    }

    /// Descends until a minibatch of leaves needs the evaluator. Returns the batch and whether
    /// the search can go on (budget left, tree not full).
    ///
    /// Leaves gathered while others are in flight are chosen with stale statistics, so the
    /// batch is sized to keep the leaves in flight over all workers (two minibatches each) to
    /// at most 1/`STALE_DIVISOR` of the root's visits: one leaf at the start, growing with the
    /// tree up to `MinibatchSize`. A gather also ends after as many collisions as the batch
    /// may hold.
    fn gather(&mut self) -> (Vec<Pending>, bool) {
        let visits = self.arena.node_stats(self.arena.root()).visits as usize;
        if visits >= MAX_ROOT_VISITS {
            return (Vec::new(), false);
        }
        let in_flight_per_batch = visits / (STALE_DIVISOR * 2 * self.arena.workers() as usize);
        let size = self.order.minibatch.min(1 + in_flight_per_batch);
        let mut batch = Vec::with_capacity(size);
        // Collided descents keep their in-flight counts until the gather ends, so that the
        // next descents see them and spread out (as Lc0 does).
        let mut collided = std::mem::take(&mut self.collided);
        // Descents that end at an exact value (a proven root ends every one of them there)
        // fill no batch: bound the attempts so the stop flag is seen between gathers.
        let mut attempts = 0;
        let mut more = true;
        while batch.len() < size && collided.len() < size && attempts < 4 * size {
            attempts += 1;
            if !self.block.claim(self.id) {
                // Spent, but a leaf of ours still out may give its playout back (a failed
                // expansion, a re-expansion): then it is played again, so that `go nodes N`
                // reaches N exactly.
                more = !batch.is_empty() || !self.in_flight.is_empty();
                break;
            }
            let mut path = Path::new();
            let mut step = self.tree.descend(&mut path, &self.params);
            // A deferred expansion answered from the cache walks on into the children.
            loop {
                step = match step {
                    Err(e) => {
                        tracing::debug!("descent: {e}");
                        self.block.unclaim(self.id);
                        more = !batch.is_empty() || !self.in_flight.is_empty();
                        break;
                    }
                    Ok(Leaf::Collision) => {
                        self.block.unclaim(self.id);
                        collided.push(path);
                        break;
                    }
                    Ok(Leaf::Exact { .. }) if path.nodes().len() == 1 => {
                        // A proven root: nothing is left to search. Counting more visits at
                        // the root would only spin (and wrap its counter) until `stop`.
                        self.tree.cancel(&mut path);
                        self.block.unclaim(self.id);
                        more = false;
                        break;
                    }
                    Ok(Leaf::Exact { wl, d }) => {
                        let depth = path.nodes().len() as u32 - 1;
                        self.tree.backup(&mut path, wl, d);
                        self.block.record(self.id, depth, false);
                        break;
                    }
                    Ok(Leaf::Expand(node)) => match self.open_leaf(path, node) {
                        Opened::Resumed(p) => {
                            path = p;
                            self.tree.resume(&mut path, &self.params)
                        }
                        Opened::Done => break,
                        Opened::Evaluate(pending) => {
                            batch.push(*pending);
                            break;
                        }
                    },
                };
            }
            if !more {
                break;
            }
        }
        for path in &mut collided {
            self.tree.cancel(path);
        }
        collided.clear();
        self.collided = collided;
        (batch, more)
    }

    /// Deals with a leaf claimed for expansion: a game end is backed up at once; a new leaf
    /// goes to the evaluator for its first visit (backed up without children, deferred; the
    /// fresh root is expanded at once); a leaf seen before is expanded from the evaluation
    /// cache and the descent walks on, or, when its priors have left the cache, they are
    /// fetched again and the leaf is expanded without a second backup of its value.
    fn open_leaf(&mut self, mut path: Path, node: u32) -> Opened {
        self.replay(&path);
        let at_root = path.nodes().len() == 1;
        let mut legal = std::mem::take(&mut self.legal);
        legal.clear();
        self.history.current().generate_moves(|moves| {
            legal.extend(moves);
            false
        });
        // A node visited before was classified open then, and its position has not changed.
        let visited = self.arena.node_stats(node).visits > 0;
        if !visited && let LeafKind::End { wl, d, mate } = self.classify(&legal, at_root) {
            self.legal = legal;
            let depth = path.nodes().len() as u32 - 1;
            self.tree.terminal(&mut path, wl, d, mate);
            self.block.record(self.id, depth, true);
            return Opened::Done;
        }
        let mut pending = self.pending(path, &legal, at_root);
        self.legal = legal;
        let Some(cache) = self.cache else {
            return Opened::Evaluate(Box::new(pending)); // no cache: expand at the first visit
        };
        if !visited {
            if !at_root {
                pending.visit = Visit::First;
            }
            return Opened::Evaluate(Box::new(pending));
        }
        let key = banyan_nn::cache::cache_key(&pending.planes, &pending.policy);
        let Some(eval) = cache.lookup(key, pending.policy.len()) else {
            pending.visit = Visit::Reopen;
            return Opened::Evaluate(Box::new(pending));
        };
        let edges: Vec<(u16, f32)> = pending
            .codes
            .iter()
            .copied()
            .zip(eval.priors.iter().copied())
            .collect();
        match self.tree.finish_expand(node, &edges) {
            Ok(()) => Opened::Resumed(pending.path),
            Err(e) => {
                // The claim went back with the error; give up this playout.
                tracing::debug!("deferred expansion: {e}");
                self.tree.cancel(&mut pending.path);
                self.block.unclaim(self.id);
                Opened::Done
            }
        }
    }

    /// Puts the history at the leaf of `path`.
    fn replay(&mut self, path: &Path) {
        self.history.truncate(self.root_len);
        for &node in &path.nodes()[1..] {
            self.history.push(moves::decode(self.arena.node_move(node)));
        }
    }

    /// Scores game ends: mate, stalemate, and (below the root) the 50-move rule, dead
    /// positions and repetitions, which Lc0 also scores as draws inside the tree, a mate in
    /// one for the side to move, and tablebase results.
    fn classify(&self, legal: &[Move], at_root: bool) -> LeafKind {
        let board = self.history.current();
        if legal.is_empty() {
            return if board.checkers().is_empty() {
                LeafKind::End {
                    wl: 0.0,
                    d: 1.0,
                    mate: None,
                }
            } else {
                LeafKind::End {
                    wl: -1.0,
                    d: 0.0,
                    mate: Some(0),
                }
            };
        }
        if !at_root
            && (board.halfmove_clock() >= 100
                || insufficient_material(board)
                || moves::repetition_draw(&self.history, self.root_len))
        {
            return LeafKind::End {
                wl: 0.0,
                d: 1.0,
                mate: None,
            };
        }
        // A mate in one is an exact win for the side to move. Knowing it at once keeps the
        // solver's mate distances shortest (a longer mate proven first would otherwise stand).
        if !at_root && has_mate_in_one(board, legal) {
            return LeafKind::End {
                wl: 1.0,
                d: 0.0,
                mate: Some(1),
            };
        }
        // Right after a capture or pawn move (the fifty-move counter at zero) the tables'
        // result is the game's; cursed wins and blessed losses are draws.
        if !at_root
            && board.halfmove_clock() == 0
            && let Some(wdl) = tablebase::probe_wdl(board)
        {
            self.block
                .tbhits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let far = Some(banyan_tree::FAR_PLIES);
            return match wdl.game_value() {
                1 => LeafKind::End {
                    wl: 1.0,
                    d: 0.0,
                    mate: far,
                },
                -1 => LeafKind::End {
                    wl: -1.0,
                    d: 0.0,
                    mate: far,
                },
                _ => LeafKind::End {
                    wl: 0.0,
                    d: 1.0,
                    mate: None,
                },
            };
        }
        LeafKind::Open
    }

    /// The evaluator request for the leaf at the end of `path` (the history's current
    /// position), over its `legal` moves (at the root, only `searchmoves` when given).
    fn pending(&self, path: Path, legal: &[Move], at_root: bool) -> Pending {
        let stm = self.history.current().side_to_move();
        let searchmoves = &self.order.searchmoves;
        let (codes, policy) = legal
            .iter()
            .map(|&mv| (moves::encode(mv), mv))
            .filter(|(code, _)| !at_root || searchmoves.is_empty() || searchmoves.contains(code))
            .map(|(code, mv)| (code, banyan_nn::policy::move_index(mv, stm)))
            .unzip();
        Pending {
            path,
            planes: self.history.planes(),
            codes,
            policy,
            visit: Visit::Expand,
        }
    }

    /// Expands and backs up a minibatch's answers.
    fn land(&mut self, batch: Vec<Pending>, evals: Vec<banyan_nn::protocol::Eval>) {
        let mut edges = Vec::new();
        for (mut pending, eval) in batch.into_iter().zip(evals) {
            edges.clear();
            edges.extend(
                pending
                    .codes
                    .iter()
                    .copied()
                    .zip(eval.priors.iter().copied()),
            );
            let [w, d, l] = eval.wdl;
            let depth = pending.path.nodes().len() as u32 - 1;
            match pending.visit {
                Visit::First => {
                    self.tree.visit_unexpanded(&mut pending.path, w - l, d);
                    self.block.record(self.id, depth, true);
                }
                Visit::Reopen => {
                    // No playout: the next descent through the leaf walks into its children.
                    if let Err(e) = self.tree.expand_without_visit(&mut pending.path, &edges) {
                        tracing::debug!("re-expansion: {e}");
                    }
                    self.block.unclaim(self.id);
                }
                Visit::Expand => match self.tree.expand(&mut pending.path, &edges, w - l, d) {
                    Ok(_) => self.block.record(self.id, depth, true),
                    Err(e) => {
                        tracing::debug!("expansion: {e}");
                        self.block.unclaim(self.id);
                    }
                },
            }
        }
    }

    /// Gives back the in-flight counts and playout claims of leaves that will not be answered.
    fn cancel(&mut self, batch: Vec<Pending>) {
        for mut pending in batch {
            self.tree.cancel(&mut pending.path);
            self.block.unclaim(self.id);
        }
    }

    /// Cancels everything still in flight (after an evaluator error).
    fn abandon(&mut self) {
        while let Some((_, batch)) = self.in_flight.pop_front() {
            self.cancel(batch);
        }
    }
}

/// Whether one of the side to move's `legal` moves mates at once.
fn has_mate_in_one(board: &Board, legal: &[Move]) -> bool {
    legal.iter().any(|&mv| {
        let mut after = board.clone();
        after.play_unchecked(mv);
        !after.checkers().is_empty() && !after.generate_moves(|_| true)
    })
}

/// Neither side can mate: bare kings, or one minor piece, or bishops all on one colour.
fn insufficient_material(board: &Board) -> bool {
    use cozy_chess::{BitBoard, Piece};
    let heavy = board.pieces(Piece::Pawn) | board.pieces(Piece::Rook) | board.pieces(Piece::Queen);
    if !heavy.is_empty() {
        return false;
    }
    let knights = board.pieces(Piece::Knight);
    let bishops = board.pieces(Piece::Bishop);
    let minors = (knights | bishops).len();
    if minors <= 1 {
        return true;
    }
    knights.is_empty()
        && ((bishops & BitBoard::DARK_SQUARES).is_empty()
            || (bishops & BitBoard::LIGHT_SQUARES).is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mate_in_one_cases() {
        let cases = [
            ("6k1/5ppp/8/8/8/8/5PPP/3R2K1 w - - 0 1", true),
            ("6k1/5ppp/8/8/8/8/5PPP/3R2K1 b - - 0 1", false),
            (
                "rnbqkbnr/pppp1ppp/8/4p3/6P1/5P2/PPPPP2P/RNBQKBNR b KQkq - 0 2",
                true,
            ),
            (
                "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
                false,
            ),
        ];
        for (fen, want) in cases {
            let board = Board::from_fen(fen, false).unwrap();
            let mut legal = Vec::new();
            board.generate_moves(|moves| {
                legal.extend(moves);
                false
            });
            assert_eq!(has_mate_in_one(&board, &legal), want, "{fen}");
        }
    }

    #[test]
    fn insufficient_material_cases() {
        let cases = [
            ("8/8/8/4k3/8/8/8/4K3 w - - 0 1", true),
            ("8/8/8/4k3/8/8/8/4KN2 w - - 0 1", true),
            ("8/8/8/4k3/8/8/8/4KB2 w - - 0 1", true),
            ("8/8/8/2b1k3/8/8/8/4KB2 w - - 0 1", false),
            ("8/8/8/3bk3/8/8/8/4KB2 w - - 0 1", true),
            ("8/8/8/4k3/8/8/8/3NKN2 w - - 0 1", false),
            ("8/8/8/4k3/8/8/4P3/4K3 w - - 0 1", false),
        ];
        for (fen, want) in cases {
            assert_eq!(
                insufficient_material(&Board::from_fen(fen, false).unwrap()),
                want,
                "{fen}"
            );
        }
    }
}

//! What a search tells the front-end: info snapshots, per-move statistics, the best move.
//! Values here are facts about the tree; the UCI text is written by the front-end.

use std::sync::atomic::Ordering;
use std::time::Duration;

use banyan_nn::cache::EvalCache;
use banyan_nn::encode::PositionHistory;
use banyan_tree::{Arena, ChildStats, FAR_PLIES, Outcome};
use cozy_chess::Move;

use crate::control::ControlBlock;
use crate::moves::{self, GamePosition};

/// Something the search reports.
#[derive(Clone, Debug)]
pub enum Event {
    Info(Info),
    /// Per root move statistics and the root's own (`VerboseMoveStats`).
    Verbose(Verbose),
    /// A problem the GUI should see as `info string error: …`.
    Error(String),
    /// The search's answer; `None` only when the side to move has no legal move.
    BestMove {
        best: Option<Move>,
        ponder: Option<Move>,
    },
}

/// A snapshot of the search.
#[derive(Clone, Debug)]
pub struct Info {
    pub time: Duration,
    /// Playouts of this search.
    pub nodes: u64,
    pub nps: u64,
    /// Average and deepest playout depth.
    pub depth: u32,
    pub seldepth: u32,
    /// Tree arena use, per mille.
    pub hashfull: u32,
    /// Share of leaves answered by the evaluation cache.
    pub cache_hit_rate: Option<f64>,
    /// Mean leaves per minibatch the workers sent to the evaluator in this search.
    pub mean_minibatch: Option<f64>,
    /// Best lines, best first (`MultiPV` of them).
    pub lines: Vec<Line>,
    /// Arena bytes the tree takes.
    pub tree_bytes: u64,
    /// Tablebase probes that gave a result.
    pub tbhits: u64,
}

impl Info {
    /// The line of a move chosen without a search: `best` (if any) with a neutral score.
    pub fn unsearched(best: Option<Move>) -> Info {
        Info {
            time: Duration::ZERO,
            nodes: 0,
            nps: 0,
            depth: 0,
            seldepth: 0,
            hashfull: 0,
            cache_hit_rate: None,
            mean_minibatch: None,
            lines: vec![Line {
                score: Score::Cp(0),
                wdl: [0, 1000, 0],
                pv: best.into_iter().collect(),
            }],
            tree_bytes: 0,
            tbhits: 0,
        }
    }

    /// Scores the lines with the root's tablebase result (the root filter keeps only moves
    /// that hold it), where the tree has no mate to show.
    pub fn apply_tablebase(&mut self, outcome: Outcome) {
        let (score, wdl) = match outcome {
            Outcome::Win => (Score::Cp(centipawns(1.0)), [1000, 0, 0]),
            Outcome::Draw => (Score::Cp(0), [0, 1000, 0]),
            Outcome::Loss => (Score::Cp(-centipawns(1.0)), [0, 0, 1000]),
        };
        for line in &mut self.lines {
            if let Score::Cp(_) = line.score {
                line.score = score;
                line.wdl = wdl;
            }
        }
    }
}

/// One principal variation.
#[derive(Clone, Debug)]
pub struct Line {
    pub score: Score,
    /// Win, draw, loss per mille for the side to move.
    pub wdl: [u32; 3],
    pub pv: Vec<Move>,
}

/// A score the UCI way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    /// Centipawns, from Q with Lc0's mapping.
    Cp(i32),
    /// Mate in this many moves (negative: getting mated).
    Mate(i32),
}

/// Statistics of one root move, in the shape of Lc0's `VerboseMoveStats`.
#[derive(Clone, Debug)]
pub struct MoveStat {
    pub mv: Move,
    /// The 1858-map policy index (side-to-move frame).
    pub policy_index: u16,
    pub visits: u32,
    pub in_flight: u32,
    pub prior: f32,
    /// W−L and D for the side to move at the root; `None` before the first visit.
    pub wl: Option<f32>,
    pub d: Option<f32>,
    /// Mate distance in moves when the move is proven (negative: it loses).
    pub mate: Option<i32>,
    /// The network's own value of the position after the move (root mover's view); the
    /// tree keeps only averages, so it is known while the move has exactly one visit.
    pub net_value: Option<f32>,
}

/// What `VerboseMoveStats` shows at the end of a search, in the shape of Lc0's lines.
#[derive(Clone, Debug)]
pub struct Verbose {
    /// One per root move, least visited first (Lc0's order).
    pub moves: Vec<MoveStat>,
    /// The root itself (Lc0's `info string node` line).
    pub node: MoveStat,
}

/// Lc0's centipawn mapping of Q: 90·tan(1.5637541897·Q).
pub fn centipawns(q: f32) -> i32 {
    let cp = 90.0 * (1.563_754_2 * q.clamp(-1.0, 1.0) as f64).tan();
    cp.round().clamp(-128_000.0, 128_000.0) as i32
}

/// The score of choosing `child` (a child of the root), from the root's side to move.
fn score(child: &ChildStats) -> Score {
    match child.proven {
        // A tablebase result: certain, without a mate distance.
        Some(p) if p.plies == FAR_PLIES && p.outcome == Outcome::Loss => Score::Cp(centipawns(1.0)),
        Some(p) if p.plies == FAR_PLIES && p.outcome == Outcome::Win => Score::Cp(-centipawns(1.0)),
        // The child's side to move loses: we mate in (plies + 1) moves' worth of plies.
        Some(p) if p.outcome == Outcome::Loss => Score::Mate((p.plies as i32 + 2) / 2),
        Some(p) if p.outcome == Outcome::Win => Score::Mate(-((p.plies as i32 + 1) / 2)),
        Some(_) => Score::Cp(0),
        _ => Score::Cp(centipawns(child.wl)),
    }
}

fn wdl(child: &ChildStats) -> [u32; 3] {
    match child.proven.map(|p| p.outcome) {
        Some(Outcome::Loss) => return [1000, 0, 0],
        Some(Outcome::Win) => return [0, 0, 1000],
        Some(Outcome::Draw) => return [0, 1000, 0],
        None => {}
    }
    let d = child.d.clamp(0.0, 1.0);
    let w = ((1.0 + child.wl - d) / 2.0).clamp(0.0, 1.0);
    let l = (1.0 - w - d).max(0.0);
    let permille = |x: f32| (x * 1000.0).round() as u32;
    let (w, d) = (permille(w), permille(d));
    [w, d, 1000u32.saturating_sub(w + d).min(permille(l) + 1)]
}

/// Root children ordered as the search would choose them: proven wins first (shortest),
/// proven losses last (longest), then by visits, then by Q.
fn ranked(arena: &Arena) -> Vec<ChildStats> {
    rank(arena.children(arena.root()))
}

/// [`ranked`] over `children`, keeping those worth a line of `info`: the visited and proven
/// ones, and the first in any case, so that the first line's PV starts with `bestmove` (an
/// unexplored move outranks proven losses: it may not lose).
fn rank(mut children: Vec<ChildStats>) -> Vec<ChildStats> {
    let key = |c: &ChildStats| -> (i32, i64, i64) {
        match c.proven.map(|p| (p.outcome, p.plies as i64)) {
            Some((Outcome::Loss, plies)) => (2, -plies, 0),
            Some((Outcome::Win, plies)) => (0, plies, 0),
            _ => (1, c.visits as i64, (c.wl * 1e6) as i64),
        }
    };
    children.sort_by_key(|c| std::cmp::Reverse(key(c)));
    let mut first = true;
    children.retain(|c| std::mem::take(&mut first) || c.visits > 0 || c.proven.is_some());
    children
}

/// The move to play in `position` and the expected reply (to ponder on).
pub fn best_move(arena: &Arena, position: &GamePosition) -> (Option<Move>, Option<Move>) {
    let history = position.history();
    let board = history.current();
    let ranked = ranked(arena);
    // The tree is shared memory: a GUI must never see an illegal move, whatever it holds.
    let best = ranked.iter().find(|c| board.is_legal(moves::decode(c.mv)));
    let Some(best) = best else {
        // The root was never expanded (no time at all, or no evaluator): the heuristic's
        // choice beats none.
        let mut legal = Vec::new();
        board.generate_moves(|m| {
            legal.extend(m);
            false
        });
        return (
            (!legal.is_empty()).then(|| fallback_move(position, &legal)),
            None,
        );
    };
    let ponder = best
        .node
        .and_then(|n| arena.pv(n, 1).first().map(|&c| moves::decode(c)));
    (Some(moves::decode(best.mv)), ponder)
}

/// The move to play when no search can run (the evaluator cannot start): the heuristic
/// evaluator's favourite, computed here without any child process.
pub fn fallback_move(position: &crate::moves::GamePosition, legal: &[Move]) -> Move {
    let history = position.history();
    let stm = history.current().side_to_move();
    let policy: Vec<u16> = legal
        .iter()
        .map(|&m| banyan_nn::policy::move_index(m, stm))
        .collect();
    let eval = banyan_nn::heuristic::evaluate(&history.planes(), &policy);
    let best = (0..legal.len()).max_by(|&a, &b| eval.logits[a].total_cmp(&eval.logits[b]));
    legal[best.unwrap_or(0)]
}

/// Average depth of this search's playouts that reached a new position (at least 1 once
/// anything was searched). Playouts ending at known game ends are left out: they cost
/// nothing, and a line drawn by repetition could otherwise hold the average near 1 forever.
pub fn average_depth(block: &ControlBlock) -> u32 {
    let new = block.new_leaves.load(Ordering::Relaxed);
    let sum = block.depth_sum.load(Ordering::Relaxed);
    if new == 0 {
        (block.done.load(Ordering::Relaxed) > 0) as u32
    } else {
        (sum as f64 / new as f64).round().max(1.0) as u32
    }
}

/// The info snapshot now.
pub fn info(
    arena: &Arena,
    block: &ControlBlock,
    history: &PositionHistory,
    time: Duration,
    multipv: usize,
    cache: Option<&EvalCache>,
) -> Info {
    let nodes = block.done.load(Ordering::Relaxed);
    let ms = time.as_millis().max(1) as u64;
    let lines = ranked(arena)
        .iter()
        .take(multipv.max(1))
        .map(|c| {
            let mut pv = vec![moves::decode(c.mv)];
            if let Some(node) = c.node {
                pv.extend(arena.pv(node, 63).into_iter().map(moves::decode));
            }
            Line {
                score: score(c),
                wdl: wdl(c),
                pv: shown_pv(history, pv),
            }
        })
        .collect();
    Info {
        time,
        nodes,
        nps: nodes * 1000 / ms,
        depth: average_depth(block),
        seldepth: block.seldepth.load(Ordering::Relaxed),
        hashfull: arena.hashfull(),
        cache_hit_rate: cache.map(|c| c.hit_rate()),
        mean_minibatch: {
            let batches = block.minibatches.load(Ordering::Relaxed);
            let leaves = block.minibatch_leaves.load(Ordering::Relaxed);
            (batches > 0).then(|| leaves as f64 / batches as f64)
        },
        lines,
        tree_bytes: arena.bytes_used(),
        tbhits: block.tbhits.load(Ordering::Relaxed),
    }
}

/// The PV a GUI sees after the game `history`: the longest legal prefix of `pv` (a guard:
/// the tree is shared memory, and a GUI must never see an illegal move), ending at the
/// move that draws by repetition. A node reused from an earlier search may hold a line on
/// past a position that the game since makes a repetition.
fn shown_pv(history: &PositionHistory, pv: Vec<Move>) -> Vec<Move> {
    let mut line = history.clone();
    let root_len = line.len();
    let mut out = Vec::with_capacity(pv.len());
    for mv in pv {
        if !line.current().is_legal(mv) {
            break;
        }
        line.push(mv);
        out.push(mv);
        if moves::repetition_draw(&line, root_len) {
            break;
        }
    }
    out
}

/// `VerboseMoveStats` for the root at the end of the search of `position`. The network's own
/// value (`V`) comes from the evaluation cache, when the position is still there.
pub fn verbose(arena: &Arena, position: &GamePosition, cache: Option<&EvalCache>) -> Verbose {
    let history = position.history();
    let board = history.current();
    let stm = board.side_to_move();
    let mut after = history.clone();
    let mut moves: Vec<MoveStat> = arena
        .children(arena.root())
        .iter()
        .map(|c| {
            let mv = moves::decode(c.mv);
            let visited = c.visits > 0 || c.proven.is_some();
            after.push(mv);
            let net_value = cache.and_then(|cache| net_value(&after, cache)).map(|v| -v);
            after.pop();
            MoveStat {
                mv,
                policy_index: banyan_nn::policy::move_index(mv, stm),
                visits: c.visits,
                in_flight: c.in_flight,
                prior: c.prior,
                wl: visited.then_some(c.wl),
                d: visited.then_some(c.d),
                mate: match score(c) {
                    Score::Mate(m) => Some(m),
                    Score::Cp(_) => None,
                },
                net_value: net_value.or((c.visits == 1).then_some(c.wl)),
            }
        })
        .collect();
    moves.sort_by(|a, b| {
        (a.visits, a.prior)
            .partial_cmp(&(b.visits, b.prior))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let root = arena.node_stats(arena.root());
    // The move into the root, in the frame of the side that played it.
    let mut before = history.clone();
    let last = position.moves.last().copied();
    let policy_index = match last {
        Some(mv) if before.pop() => {
            banyan_nn::policy::move_index(mv, before.current().side_to_move())
        }
        _ => 0,
    };
    let node = MoveStat {
        mv: last.unwrap_or(Move {
            from: cozy_chess::Square::A1,
            to: cozy_chess::Square::A1,
            promotion: None,
        }),
        policy_index,
        visits: root.visits,
        in_flight: root.in_flight,
        prior: root.prior,
        wl: (root.visits > 0).then_some(root.wl),
        d: (root.visits > 0).then_some(root.d),
        mate: root
            .proven
            .filter(|p| p.plies != FAR_PLIES)
            .and_then(|p| match p.outcome {
                Outcome::Win => Some((p.plies as i32 + 1) / 2),
                Outcome::Loss => Some(-(p.plies as i32) / 2),
                Outcome::Draw => None,
            }),
        net_value: cache.and_then(|cache| net_value(&history, cache)),
    };
    Verbose { moves, node }
}

/// The network's W−L for the side to move at the end of `history`, if the evaluation cache
/// holds it (keyed the way the workers ask: the input planes and every legal move).
fn net_value(history: &PositionHistory, cache: &EvalCache) -> Option<f32> {
    let board = history.current();
    let stm = board.side_to_move();
    let mut policy = Vec::new();
    board.generate_moves(|moves| {
        policy.extend(
            moves
                .into_iter()
                .map(|m| banyan_nn::policy::move_index(m, stm)),
        );
        false
    });
    if policy.is_empty() {
        return None;
    }
    let key = banyan_nn::cache::cache_key(&history.planes(), &policy);
    let [w, _, l] = cache.lookup(key, policy.len())?.wdl;
    Some(w - l)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root child with `visits` and the proven result at the child.
    fn child(mv: u16, visits: u32, prior: f32, proven: Option<Outcome>) -> ChildStats {
        ChildStats {
            mv,
            node: (visits > 0).then_some(mv as u32),
            visits,
            in_flight: 0,
            wl: match proven {
                Some(Outcome::Win) => -1.0,
                Some(Outcome::Loss) => 1.0,
                _ => 0.1,
            },
            d: 0.0,
            prior,
            proven: proven.map(|outcome| banyan_tree::Proven { outcome, plies: 1 }),
        }
    }

    #[test]
    fn the_first_line_starts_with_the_move_played() {
        use Outcome::{Loss, Win};
        // (children as (move, visits, proven at the child), the moves `info` lists in order)
        type Child = (u16, u32, Option<Outcome>);
        let cases: [(&[Child], &[u16]); 4] = [
            // Proven losses (the child wins) rank below a move not yet explored.
            (&[(1, 40, Some(Win)), (2, 0, None), (3, 0, None)], &[2, 1]),
            // Unexplored moves are left out when an explored one comes first.
            (&[(1, 0, None), (2, 30, None), (3, 10, None)], &[2, 3]),
            // A proven win comes first, however few its visits.
            (&[(1, 90, None), (2, 2, Some(Loss)), (3, 0, None)], &[2, 1]),
            // Nothing explored: the first still has its line.
            (&[(1, 0, None), (2, 0, None)], &[1]),
        ];
        for (children, shown) in cases {
            let children = children
                .iter()
                .map(|&(mv, visits, proven)| child(mv, visits, 0.1, proven))
                .collect();
            let got: Vec<u16> = rank(children).iter().map(|c| c.mv).collect();
            assert_eq!(got, shown);
        }
    }

    #[test]
    fn a_pv_ends_at_a_repetition_or_an_illegal_move() {
        // (game moves, tree PV, the PV shown)
        let cases: [(&[&str], &[&str], usize); 4] = [
            // The start position a third time, counting the game: a draw there.
            (
                &["g1f3", "g8f6", "f3g1", "f6g8"],
                &["g1f3", "g8f6", "f3g1", "f6g8", "e2e4"],
                4,
            ),
            // A second time, the cycle below the root: a draw (Lc0's rule).
            (&[], &["g1f3", "g8f6", "f3g1", "f6g8", "g1f3"], 4),
            // A second time, the first occurrence in the game: play goes on.
            (
                &["e2e4", "e7e5", "g1f3"],
                &["b8c6", "f3g1", "c6b8", "d2d4"],
                4,
            ),
            // An illegal move ends the line.
            (&[], &["e2e4", "e2e4", "e7e5"], 1),
        ];
        for (game, pv, shown) in cases {
            let position = GamePosition::parse(None, game, false).unwrap();
            let pv: Vec<Move> = pv.iter().map(|text| text.parse().unwrap()).collect();
            let got = shown_pv(&position.history(), pv.clone());
            assert_eq!(got, pv[..shown], "{game:?} then {pv:?}");
        }
    }

    #[test]
    fn centipawns_follow_lc0() {
        let cases = [
            (0.0, 0),
            (0.03373, 5),
            (0.5, 89),
            (-0.5, -89),
            (0.9, 546),
            (1.0, 12_780),
            (-1.0, -12_780),
        ];
        for (q, cp) in cases {
            let got = centipawns(q);
            assert!((got - cp).abs() <= 1, "q {q}: {got} vs {cp}");
        }
    }
}

//! A synthetic evaluator for tests and benchmarks: a deterministic pseudo-random "game" whose
//! positions are hashes of the move path (branching 1..=40, 1% terminals: half of them mates).

use banyan_tree::{Arena, Leaf, Path, PuctParams, TreeError, Worker};

/// Mixes a move into a position key (splitmix64 finaliser).
pub fn mix(key: u64, mv: u16) -> u64 {
    let mut z = key ^ (mv as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of the position at the end of `path`, from the root's key `seed`.
pub fn key(arena: &Arena, seed: u64, path: &Path) -> u64 {
    path.nodes()[1..]
        .iter()
        .fold(seed, |k, &n| mix(k, arena.node_move(n)))
}

/// What the synthetic evaluator says about a position.
pub enum Eval {
    /// A game end: (W−L, D, mate plies) for the side to move.
    Terminal(f32, f32, Option<u8>),
    /// A value for the side to move; the moves are in the buffer passed in.
    Value(f32, f32),
}

/// Evaluates the position with key `key`, filling `moves` with (move, prior).
pub fn evaluate(key: u64, moves: &mut Vec<(u16, f32)>) -> Eval {
    moves.clear();
    if key.is_multiple_of(100) {
        return if key.is_multiple_of(2) {
            Eval::Terminal(-1.0, 0.0, Some(0))
        } else {
            Eval::Terminal(0.0, 1.0, None)
        };
    }
    let branching = 1 + (key >> 8) % 40;
    let base = ((key >> 16) & 0x3F) as u16;
    let mut total = 0.0;
    for i in 0..branching {
        let weight = 0.05 + (mix(key, i as u16) % 1000) as f32 / 1000.0;
        moves.push((base + i as u16 * 97, weight));
        total += weight;
    }
    for m in moves.iter_mut() {
        m.1 /= total;
    }
    let wl = ((key >> 32) % 2001) as f32 / 1000.0 - 1.0;
    let d = ((key >> 44) % 1001) as f32 / 1000.0 * (1.0 - wl.abs());
    Eval::Value(wl, d)
}

/// Reusable buffers for [`minibatch`].
pub struct Batch {
    paths: Vec<Path>,
    leaves: Vec<Leaf>,
    moves: Vec<(u16, f32)>,
}

impl Batch {
    /// Buffers for minibatches of `size` descents.
    pub fn new(size: usize) -> Batch {
        Batch {
            paths: (0..size).map(|_| Path::new()).collect(),
            leaves: Vec::with_capacity(size),
            moves: Vec::new(),
        }
    }
}

/// One minibatch: descends every path (holding their in-flight counts), then evaluates,
/// expands and backs up each, the way the engine does with deferred expansion: a leaf's first
/// visit backs up its value without children; a leaf visited before is expanded at once from
/// the "cache" and the descent walks on into its children (before the next descent starts, as
/// the journal requires), except for one leaf in eight whose priors must be fetched again (a
/// cache miss): it is evaluated with the batch and expanded without a visit. Returns the number
/// of descents, or `ArenaFull` once the tree cannot grow (all paths are finished either way).
pub fn minibatch(
    worker: &mut Worker<'_>,
    arena: &Arena,
    params: &PuctParams,
    seed: u64,
    batch: &mut Batch,
) -> Result<usize, TreeError> {
    let mut full = false;
    batch.leaves.clear();
    for path in batch.paths.iter_mut() {
        let mut step = worker.descend(path, params);
        while let Ok(Leaf::Expand(node)) = step {
            let key = key(arena, seed, path);
            let cached = arena.node_stats(node).visits > 0 && key % 8 != 3;
            if !cached || !matches!(evaluate(key, &mut batch.moves), Eval::Value(..)) {
                break;
            }
            step = match worker.finish_expand(node, &batch.moves) {
                Ok(()) => worker.resume(path, params),
                Err(e) => {
                    worker.cancel(path);
                    Err(e)
                }
            };
        }
        match step {
            Ok(leaf) => batch.leaves.push(leaf),
            Err(TreeError::ArenaFull) => {
                full = true;
                batch.leaves.push(Leaf::Collision);
            }
            Err(e) => return Err(e),
        }
    }
    for (path, &leaf) in batch.paths.iter_mut().zip(&batch.leaves) {
        match leaf {
            Leaf::Expand(node) => match evaluate(key(arena, seed, path), &mut batch.moves) {
                Eval::Terminal(wl, d, mate) => worker.terminal(path, wl, d, mate),
                Eval::Value(wl, d) if arena.node_stats(node).visits == 0 => {
                    worker.visit_unexpanded(path, wl, d)
                }
                Eval::Value(..) => match worker.expand_without_visit(path, &batch.moves) {
                    Ok(()) => {}
                    Err(TreeError::ArenaFull) => full = true,
                    Err(e) => return Err(e),
                },
            },
            Leaf::Exact { wl, d } => worker.backup(path, wl, d),
            Leaf::Collision => worker.cancel(path),
        }
    }
    if full {
        Err(TreeError::ArenaFull)
    } else {
        Ok(batch.paths.len())
    }
}

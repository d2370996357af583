//! Training samples streamed from label chunks: the 112-plane input exactly as the evaluator
//! encodes it, the legal moves, a soft policy target from the MultiPV lines, Stockfish's best
//! move and the W/D/L target; batched into tensors for the trainer.
//!
//! Every [`VALIDATION_EVERY`]th game of each chunk is held out for validation (by its index in
//! the chunk, so the split never changes as chunks are added). Training samples come in a
//! seeded order: chunks shuffled, and the samples of a window of chunks shuffled together.

use std::path::{Path, PathBuf};

use cozy_chess::Move;
use tch::{Device, Kind, Tensor};

use super::record::{ChunkReader, FormatError, GameRecord, Label, MATE_SCORE, MAX_CP};
use crate::encode::{INPUT_PLANES, InputPlanes, PositionHistory};
use crate::policy::{POLICY_SIZE, for_each_legal_move, move_index};

/// One game in this many (per chunk) is held out for validation.
pub const VALIDATION_EVERY: usize = 20;
/// Temperature, in centipawns, of the softmax over the MultiPV scores.
pub const POLICY_TEMPERATURE_CP: f32 = 40.0;
/// Share of the policy target given to Stockfish's best move outright; the rest is the
/// softmax over the MultiPV lines (which gives the best move more again).
pub const BEST_MOVE_SHARE: f32 = 0.5;
/// Mate scores count as this many centipawns in the policy softmax.
const MATE_AS_CP: f32 = 2000.0;

/// Why the training data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The directory cannot be listed.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The directory holds no chunk file.
    #[error("no chunk files (chunk-*.bin.gz) in {0}")]
    NoChunks(PathBuf),
    /// A chunk is malformed.
    #[error("{path}: {source}")]
    Format { path: PathBuf, source: FormatError },
}

/// Which part of the data a game belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Games the network learns from.
    Train,
    /// Held-out games it is measured on.
    Validation,
}

impl Split {
    /// The split of the game at `index` within its chunk.
    pub fn of_game(index: usize) -> Split {
        if index % VALIDATION_EVERY == VALIDATION_EVERY - 1 {
            Split::Validation
        } else {
            Split::Train
        }
    }
}

/// One labelled position, ready to batch.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The network input, from the position's history.
    pub planes: InputPlanes,
    /// Policy indices of the legal moves (side-to-move frame).
    pub legal: Vec<u16>,
    /// The policy target: (policy index, probability), summing to 1, legal moves only.
    pub policy: Vec<(u16, f32)>,
    /// Policy index of Stockfish's best move.
    pub best: u16,
    /// Win/draw/loss probabilities for the side to move, summing to 1.
    pub wdl: [f32; 3],
}

impl Sample {
    /// The sample of the last position of `history`, labelled `label`.
    pub fn new(history: &PositionHistory, label: &Label) -> Sample {
        let board = history.current();
        let stm = board.side_to_move();
        let mut legal = Vec::new();
        for_each_legal_move(board, |mv| legal.push(move_index(mv, stm)));
        let index = |mv: Move| move_index(mv, stm);
        let wdl = label.wdl.map(|v| f32::from(v) / 1000.0);
        Sample {
            planes: history.planes(),
            legal,
            policy: policy_target(label)
                .into_iter()
                .map(|(mv, p)| (index(mv), p))
                .collect(),
            best: index(label.best_move()),
            wdl,
        }
    }
}

/// The soft policy target of a label: [`BEST_MOVE_SHARE`] on the best move plus the rest
/// spread by a softmax of the lines' scores at [`POLICY_TEMPERATURE_CP`] (mates count as
/// ±[`MATE_AS_CP`]). Probabilities sum to 1; a move listed twice is merged.
pub fn policy_target(label: &Label) -> Vec<(Move, f32)> {
    let centipawns = |score: i16| -> f32 {
        if score.abs() > MAX_CP {
            MATE_AS_CP * f32::from(score.signum()) + f32::from(score) / f32::from(MATE_SCORE)
        } else {
            f32::from(score).clamp(-MATE_AS_CP, MATE_AS_CP)
        }
    };
    let top = label
        .lines
        .iter()
        .map(|&(_, s)| centipawns(s))
        .fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f32> = label
        .lines
        .iter()
        .map(|&(_, s)| ((centipawns(s) - top) / POLICY_TEMPERATURE_CP).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let mut target: Vec<(Move, f32)> = Vec::with_capacity(label.lines.len());
    for (i, (&(mv, _), w)) in label.lines.iter().zip(&weights).enumerate() {
        let mut p = (1.0 - BEST_MOVE_SHARE) * w / total;
        if i == label.best {
            p += BEST_MOVE_SHARE;
        }
        match target.iter_mut().find(|(m, _)| *m == mv) {
            Some(entry) => entry.1 += p,
            None => target.push((mv, p)),
        }
    }
    target
}

/// The chunk files of a label directory, in name order.
pub struct Dataset {
    chunks: Vec<PathBuf>,
    positions: u64,
}

impl Dataset {
    /// Lists `dir`'s `chunk-*.bin.gz` files and reads their headers.
    pub fn open(dir: &Path) -> Result<Dataset, DataError> {
        let io = |source| DataError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut chunks: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("chunk-") && n.ends_with(".bin.gz"))
            })
            .collect();
        chunks.sort();
        if chunks.is_empty() {
            return Err(DataError::NoChunks(dir.to_path_buf()));
        }
        let mut positions = 0;
        for path in &chunks {
            let reader = ChunkReader::open(path).map_err(|source| DataError::Format {
                path: path.clone(),
                source,
            })?;
            positions += u64::from(reader.positions());
        }
        Ok(Dataset { chunks, positions })
    }

    /// The chunk files.
    pub fn chunks(&self) -> &[PathBuf] {
        &self.chunks
    }

    /// Labelled positions in all chunks (both splits), from their headers.
    pub fn positions(&self) -> u64 {
        self.positions
    }

    /// Calls `visit` with every sample of `split` in chunk `index`, in game order.
    pub fn for_each_sample(
        &self,
        index: usize,
        split: Split,
        mut visit: impl FnMut(Sample),
    ) -> Result<(), DataError> {
        self.for_each_game(index, |game_split, game| {
            if game_split == split {
                game.for_each_position(|history, label| visit(Sample::new(history, label)));
            }
        })
    }

    fn for_each_game(
        &self,
        index: usize,
        mut visit: impl FnMut(Split, &GameRecord),
    ) -> Result<(), DataError> {
        let path = &self.chunks[index];
        let error = |source| DataError::Format {
            path: path.clone(),
            source,
        };
        for (game_index, game) in ChunkReader::open(path).map_err(error)?.enumerate() {
            visit(Split::of_game(game_index), &game.map_err(error)?);
        }
        Ok(())
    }

    /// Reads every chunk once: the first `limit` validation samples and the size of each
    /// split.
    pub fn scan(&self, limit: usize) -> Result<Scan, DataError> {
        let mut scan = Scan {
            validation: Vec::new(),
            train_positions: 0,
            validation_positions: 0,
        };
        for index in 0..self.chunks.len() {
            self.for_each_game(index, |split, game| match split {
                Split::Train => scan.train_positions += game.labels.len() as u64,
                Split::Validation => {
                    scan.validation_positions += game.labels.len() as u64;
                    game.for_each_position(|history, label| {
                        if scan.validation.len() < limit {
                            scan.validation.push(Sample::new(history, label));
                        }
                    });
                }
            })?;
        }
        Ok(scan)
    }

    /// Streams the training samples in batches of `batch` (the last one may be smaller):
    /// chunks in an order drawn from `seed`, the samples of every `window` positions' worth
    /// of chunks shuffled together. `visit` returns `false` to stop early.
    pub fn train_batches(
        &self,
        seed: u64,
        batch: usize,
        window: usize,
        mut visit: impl FnMut(&[Sample]) -> bool,
    ) -> Result<(), DataError> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut order: Vec<usize> = (0..self.chunks.len()).collect();
        rng.shuffle(&mut order);
        let mut pool: Vec<Sample> = Vec::new();
        let mut chunks = order.into_iter().peekable();
        while chunks.peek().is_some() {
            while pool.len() < window.max(1) {
                let Some(index) = chunks.next() else { break };
                self.for_each_sample(index, Split::Train, |s| pool.push(s))?;
            }
            rng.shuffle(&mut pool);
            for group in pool.chunks(batch.max(1)) {
                if !visit(group) {
                    return Ok(());
                }
            }
            pool.clear();
        }
        Ok(())
    }
}

/// What one pass over the chunks found.
pub struct Scan {
    /// Validation samples (at most the limit asked for), in chunk and game order.
    pub validation: Vec<Sample>,
    /// Labelled positions of the training games.
    pub train_positions: u64,
    /// Labelled positions of the validation games (all of them, not just those kept).
    pub validation_positions: u64,
}

/// A batch on the device: inputs and targets.
pub struct Batch {
    /// `[B, 112, 8, 8]` input planes.
    pub input: Tensor,
    /// `[B, 1858]`: 1 for legal moves, 0 elsewhere.
    pub legal: Tensor,
    /// `[B, 1858]`: the policy target (zero off the legal moves).
    pub policy: Tensor,
    /// `[B]` (int64): the best move's policy index.
    pub best: Tensor,
    /// `[B, 3]`: the W/D/L target.
    pub wdl: Tensor,
}

impl Batch {
    /// The tensors of `samples` on `device`.
    pub fn new(samples: &[Sample], device: Device) -> Batch {
        let b = samples.len();
        let floats = INPUT_PLANES * 64;
        let mut input = vec![0f32; b * floats];
        let mut legal = vec![0f32; b * POLICY_SIZE];
        let mut policy = vec![0f32; b * POLICY_SIZE];
        let mut wdl = Vec::with_capacity(3 * b);
        for (i, sample) in samples.iter().enumerate() {
            sample.planes.write_f32(&mut input[i * floats..][..floats]);
            let row = i * POLICY_SIZE;
            for &m in &sample.legal {
                legal[row + m as usize] = 1.0;
            }
            for &(m, p) in &sample.policy {
                policy[row + m as usize] += p;
            }
            wdl.extend_from_slice(&sample.wdl);
        }
        let best: Vec<i64> = samples.iter().map(|s| i64::from(s.best)).collect();
        let tensor = |values: &[f32], shape: &[i64]| {
            Tensor::from_slice(values).view(shape).to_device(device)
        };
        let (b, p) = (b as i64, POLICY_SIZE as i64);
        Batch {
            input: tensor(&input, &[b, INPUT_PLANES as i64, 8, 8]),
            legal: tensor(&legal, &[b, p]),
            policy: tensor(&policy, &[b, p]),
            best: Tensor::from_slice(&best).to_device(device),
            wdl: tensor(&wdl, &[b, 3]),
        }
    }

    /// Positions in the batch.
    pub fn len(&self) -> usize {
        self.best.size()[0] as usize
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Policy logits with the illegal moves pushed far down (finite, so a zero target times
    /// their log-probability stays zero).
    pub fn mask(&self, logits: &Tensor) -> Tensor {
        logits + (&self.legal - 1.0) * 1.0e4
    }

    /// Mean policy cross-entropy of `logits` against the target, over the legal moves.
    pub fn policy_loss(&self, logits: &Tensor) -> Tensor {
        let log_p = self.mask(logits).log_softmax(1, Kind::Float);
        -(log_p * &self.policy)
            .sum_dim_intlist(1i64, false, Kind::Float)
            .mean(Kind::Float)
    }

    /// Mean W/D/L cross-entropy of the value head's logits against the target.
    pub fn value_loss(&self, value_logits: &Tensor) -> Tensor {
        -(value_logits.log_softmax(1, Kind::Float) * &self.wdl)
            .sum_dim_intlist(1i64, false, Kind::Float)
            .mean(Kind::Float)
    }

    /// Positions whose most likely legal move under `logits` is the best move.
    pub fn top1_hits(&self, logits: &Tensor) -> i64 {
        self.mask(logits)
            .argmax(1, false)
            .eq_tensor(&self.best)
            .sum(Kind::Int64)
            .int64_value(&[])
    }
}

#[cfg(test)]
pub(crate) mod synthetic {
    //! Labelled games made up by the tests: random legal games, every position labelled by a
    //! fixed rule (so a network can learn them), written with the record writer.

    use std::path::Path;

    use cozy_chess::{Board, Move, Piece};

    use crate::policy::for_each_legal_move;
    use crate::train::record::{ChunkWriter, GameRecord, Label, Outcome};

    /// The made-up label of `board`: lines are up to 4 legal moves (captures first), scored
    /// 30 cp apart, the first best; W/D/L leans with the material balance.
    fn label(board: &Board) -> Option<Label> {
        let mut moves = Vec::new();
        for_each_legal_move(board, |mv| moves.push(mv));
        if moves.is_empty() {
            return None;
        }
        let them = !board.side_to_move();
        moves.sort_by_key(|mv: &Move| (!board.colors(them).has(mv.to), mv.to as u8));
        let lines: Vec<(Move, i16)> = moves
            .iter()
            .take(4)
            .enumerate()
            .map(|(i, &mv)| (mv, 50 - 30 * i as i16))
            .collect();
        let material = |c| {
            [
                Piece::Pawn,
                Piece::Knight,
                Piece::Bishop,
                Piece::Rook,
                Piece::Queen,
            ]
            .iter()
            .zip([1i32, 3, 3, 5, 9])
            .map(|(&p, v)| v * (board.pieces(p) & board.colors(c)).len() as i32)
            .sum::<i32>()
        };
        let balance = (material(board.side_to_move()) - material(them)).clamp(-8, 8);
        let win = (300 + 60 * balance).clamp(20, 900) as u16;
        let loss = (300 - 60 * balance).clamp(20, 900) as u16;
        Some(Label {
            wdl: [win, 1000 - win - loss, loss],
            lines,
            best: 0,
        })
    }

    /// `games` random games of up to 40 plies from `seed`, all positions labelled.
    pub(crate) fn games(games: usize, seed: u64) -> Vec<GameRecord> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..games)
            .map(|_| {
                let mut board = Board::default();
                let mut moves = Vec::new();
                let mut labels = Vec::new();
                for ply in 0..40 {
                    let Some(l) = label(&board) else { break };
                    labels.push((ply, l));
                    let mut legal = Vec::new();
                    for_each_legal_move(&board, |mv| legal.push(mv));
                    let mv = legal[rng.usize(..legal.len())];
                    board.play(mv);
                    moves.push(mv);
                }
                GameRecord {
                    start: Board::default(),
                    moves,
                    labels,
                    outcome: Outcome::Unknown,
                }
            })
            .collect()
    }

    /// Writes `games` into `dir` as chunk files of `per_chunk` games.
    pub(crate) fn write_chunks(dir: &Path, games: &[GameRecord], per_chunk: usize) {
        std::fs::create_dir_all(dir).unwrap();
        for (i, group) in games.chunks(per_chunk).enumerate() {
            let mut writer = ChunkWriter::new();
            for game in group {
                writer.push(game).unwrap();
            }
            writer
                .write_atomic(&dir.join(format!("chunk-{i:06}.bin.gz")))
                .unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::record::cp_score;
    use crate::train::record::mate_score;
    use cozy_chess::Board;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("banyan-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn policy_targets_sum_to_one_and_favour_the_best_move() {
        let board = Board::default();
        let mut moves = Vec::new();
        for_each_legal_move(&board, |mv| moves.push(mv));
        let label = Label {
            wdl: [300, 400, 300],
            lines: vec![
                (moves[0], cp_score(10)),
                (moves[1], cp_score(40)),
                (moves[2], mate_score(-3)),
            ],
            best: 1,
        };
        let target = policy_target(&label);
        assert_eq!(target.len(), 3);
        let total: f32 = target.iter().map(|(_, p)| p).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!(target[1].1 > 0.5 + 0.25 && target[1].1 > target[0].1);
        assert!(target[0].1 > target[2].1 && target[2].1 < 1e-6);
    }

    #[test]
    fn samples_carry_masks_and_targets_that_sum_to_one() {
        let dir = temp_dir("dataset");
        let games = synthetic::games(40, 7);
        synthetic::write_chunks(&dir, &games, 20);
        let data = Dataset::open(&dir).unwrap();
        assert_eq!(data.chunks().len(), 2);
        let labelled: usize = games.iter().map(|g| g.labels.len()).sum();
        assert_eq!(data.positions(), labelled as u64);
        // Games 19 and 39 are held out.
        let held_out = games[19].labels.len() + games[39].labels.len();
        let scan = data.scan(usize::MAX).unwrap();
        let validation = scan.validation;
        assert_eq!(validation.len(), held_out);
        assert_eq!(scan.validation_positions, held_out as u64);
        assert_eq!(scan.train_positions, (labelled - held_out) as u64);
        assert_eq!(data.scan(3).unwrap().validation.len(), 3);
        let mut train = Vec::new();
        data.train_batches(1, 64, 1000, |batch| {
            assert!(batch.len() <= 64);
            train.extend_from_slice(batch);
            true
        })
        .unwrap();
        assert_eq!(train.len() + held_out, labelled);
        // The same seed gives the same order.
        let mut again = Vec::new();
        data.train_batches(1, 64, 1000, |batch| {
            again.extend(batch.iter().map(|s| s.planes));
            true
        })
        .unwrap();
        assert!(train.iter().map(|s| s.planes).eq(again));
        // The first position of game 0 is the start position: its sample as the evaluator
        // would encode it.
        let start = PositionHistory::new(Board::default());
        let first = games[0].labels[0].1.clone();
        let sample = Sample::new(&start, &first);
        assert_eq!(sample.planes, start.planes());
        assert_eq!(sample.legal.len(), 20);
        for s in train.iter().chain(&validation) {
            assert!((s.wdl.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!((s.policy.iter().map(|(_, p)| p).sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(s.policy.iter().all(|(m, _)| s.legal.contains(m)));
            assert!(s.legal.contains(&s.best));
        }
        let batch = Batch::new(&train[..8], Device::Cpu);
        assert_eq!(batch.len(), 8);
        assert_eq!(batch.input.size(), [8, 112, 8, 8]);
        let rows = batch.policy.sum_dim_intlist(1i64, false, Kind::Float);
        assert!((rows - 1.0).abs().max().double_value(&[]) < 1e-5);
        let illegal: Tensor = 1.0 - &batch.legal;
        let off_legal = (&batch.policy * illegal).abs().sum(Kind::Float);
        assert_eq!(off_legal.double_value(&[]), 0.0);
        let legal_counts = batch.legal.sum_dim_intlist(1i64, false, Kind::Float);
        for (i, s) in train[..8].iter().enumerate() {
            assert_eq!(legal_counts.double_value(&[i as i64]), s.legal.len() as f64);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_without_chunks_is_an_error() {
        let dir = temp_dir("dataset-empty");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(Dataset::open(&dir), Err(DataError::NoChunks(_))));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(Dataset::open(&dir), Err(DataError::Io { .. })));
    }
}

//! The labelling run: J jobs, each with its own Stockfish, play games and label positions;
//! the calling thread gathers the games into chunk files of a fixed number of positions.
//!
//! A chunk is written to a temporary name and renamed when complete, so killing the run loses
//! at most the chunk in progress. A restart resumes: it discards temporary files, counts the
//! existing chunks' positions, reloads their positions into the de-duplication set, continues
//! the numbering, and seeds its jobs from the first new chunk's number, so it does not replay
//! the games of an earlier run. A lock file keeps two runs out of one directory.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use cozy_chess::Board;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use parking_lot::Mutex;

use super::record::{ChunkReader, ChunkWriter, FormatError, GameRecord};
use super::selfplay::{Decision, PlaySettings, play_game};
use super::stockfish::{Stockfish, StockfishError};

/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Share of the games that start from the standard position even with a book, so that the
/// first moves of a game are in the data too.
const STARTPOS_FRACTION: f64 = 0.2;
/// A job gives up after this many Stockfish failures in a row.
const MAX_FAILURES: u32 = 3;

/// The labelling run could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// An existing chunk is unreadable (remove or repair it to resume).
    #[error("{path}: {source}")]
    Chunk {
        /// The chunk.
        path: PathBuf,
        /// What is wrong with it.
        source: FormatError,
    },
    /// Another labelling run holds the directory.
    #[error("{0}: another labelling run is writing there")]
    Busy(PathBuf),
    /// A job's Stockfish kept failing.
    #[error(transparent)]
    Stockfish(#[from] StockfishError),
}

/// What a labelling run does.
#[derive(Clone, Debug)]
pub struct LabelOptions {
    /// Directory of the chunk files (created if missing).
    pub out: PathBuf,
    /// Labelled positions wanted in `out` in all, counting those already there.
    pub positions: u64,
    /// Parallel jobs, each with one Stockfish.
    pub jobs: usize,
    /// Node counts, MultiPV and sampling of the games.
    pub play: PlaySettings,
    /// Start positions (a fifth of the games start from the standard position anyway);
    /// empty: the standard start position.
    pub book: Vec<Board>,
    /// Seed of the run (combined with the first new chunk's number and the job's index).
    pub seed: u64,
    /// The Stockfish binary.
    pub stockfish: PathBuf,
    /// Labelled positions per chunk file (a chunk holds whole games, so a few more).
    pub chunk_positions: u32,
    /// Hash of each Stockfish, in MB.
    pub hash_mb: u32,
}

/// Where a run stands, for progress lines.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Labelled positions in `out`, including the games gathered for the next chunk.
    pub done: u64,
    /// The target.
    pub target: u64,
    /// Positions labelled by this run.
    pub new: u64,
    /// Games played by this run.
    pub games: u64,
    /// Time since this run started.
    pub elapsed: Duration,
}

impl Progress {
    /// Positions per second of this run.
    pub fn rate(&self) -> f64 {
        self.new as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Time left at the current rate.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        (rate > 0.0)
            .then(|| Duration::from_secs_f64(self.target.saturating_sub(self.done) as f64 / rate))
    }
}

fn hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "label: {}/{} positions ({:.1}%), {:.1} positions/s, {} games, elapsed {}, ETA {}",
            self.done,
            self.target,
            100.0 * self.done as f64 / self.target.max(1) as f64,
            self.rate(),
            self.games,
            hms(self.elapsed),
            self.eta().map_or("?".into(), hms)
        )
    }
}

/// What a finished run did.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Positions labelled by this run.
    pub positions: u64,
    /// Positions in `out` now.
    pub total: u64,
    /// Games played by this run.
    pub games: u64,
    /// Chunk files written by this run.
    pub chunks: u32,
    /// Their compressed bytes.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "label: done: {} positions in {} games ({} in all), {} chunks, {} bytes \
             ({:.1} bytes/position), wall {:.1} s ({:.1} positions/s)",
            self.positions,
            self.games,
            self.total,
            self.chunks,
            self.bytes,
            self.bytes as f64 / self.positions.max(1) as f64,
            self.elapsed.as_secs_f64(),
            self.positions as f64 / self.elapsed.as_secs_f64().max(1e-9)
        )
    }
}

/// The chunks already in a directory.
#[derive(Debug, Default)]
pub struct Existing {
    /// Number of the next chunk to write.
    pub next_chunk: u32,
    /// Chunk files found.
    pub chunks: u32,
    /// Their labelled positions.
    pub positions: u64,
    /// Their games.
    pub games: u64,
    /// Hashes of their labelled positions.
    pub seen: HashSet<u64>,
}

/// The path of chunk number `index` in `dir`.
pub fn chunk_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("chunk-{index:06}.bin.gz"))
}

/// The complete chunk files in `dir` with their numbers, in order.
pub fn chunk_files(dir: &Path) -> Result<Vec<(u32, PathBuf)>, LabelError> {
    let io = |source| LabelError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut chunks = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let number = name
            .strip_prefix("chunk-")
            .and_then(|n| n.strip_suffix(".bin.gz"))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(number) = number {
            chunks.push((number, path));
        }
    }
    chunks.sort();
    Ok(chunks)
}

/// Prepares `dir` for a run: creates it, deletes unfinished chunks (`*.tmp`), and reads the
/// complete ones.
pub fn scan(dir: &Path) -> Result<Existing, LabelError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| LabelError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            tracing::info!("removing unfinished chunk {}", path.display());
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    let mut existing = Existing::default();
    for (number, path) in chunk_files(dir)? {
        let chunk_error = |source| LabelError::Chunk {
            path: path.clone(),
            source,
        };
        let reader = ChunkReader::open(&path).map_err(chunk_error)?;
        for game in reader {
            let game = game.map_err(chunk_error)?;
            existing.games += 1;
            existing.positions += game.labels.len() as u64;
            game.for_each_position(|history, _| {
                existing.seen.insert(history.current().hash());
            });
        }
        existing.chunks += 1;
        existing.next_chunk = existing.next_chunk.max(number + 1);
    }
    Ok(existing)
}

/// Name of the lock file that keeps two runs out of one directory.
pub const LOCK_FILE: &str = ".lock";

/// Creates `dir` and takes its lock for as long as the returned value lives (the kernel drops
/// it when the process dies, so a killed run never blocks its resume).
pub fn lock_dir(dir: &Path) -> Result<Flock<std::fs::File>, LabelError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| LabelError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        Errno::EWOULDBLOCK => LabelError::Busy(dir.to_owned()),
        errno => io(errno.into()),
    })
}

/// SplitMix64's finaliser: a well-spread seed from a structured one.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// State the jobs share.
struct Shared {
    options: LabelOptions,
    seen: Mutex<HashSet<u64>>,
    /// Positions the jobs have decided to label (corrected when a game is lost).
    claimed: AtomicU64,
    /// Positions this run needs.
    needed: u64,
    stop: AtomicBool,
}

/// Runs the labelling until `out` holds `positions` labelled positions, calling `progress`
/// every few seconds.
pub fn run(
    options: LabelOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<Summary, LabelError> {
    let started = Instant::now();
    let _lock = lock_dir(&options.out)?;
    let existing = scan(&options.out)?;
    let mut next_chunk = existing.next_chunk;
    let first_chunk = next_chunk;
    let shared = Arc::new(Shared {
        needed: options.positions.saturating_sub(existing.positions),
        seen: Mutex::new(existing.seen),
        claimed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        options,
    });
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for index in 0..shared.options.jobs.max(1) {
        let (shared, tx) = (Arc::clone(&shared), tx.clone());
        let seed = mix(mix(shared.options.seed ^ u64::from(first_chunk) << 32) ^ index as u64);
        handles.push(
            std::thread::Builder::new()
                .name(format!("label-job-{index}"))
                .spawn(move || job(&shared, seed, &tx))
                .map_err(|source| LabelError::Io {
                    path: "thread".into(),
                    source,
                })?,
        );
    }
    drop(tx);
    let options = &shared.options;
    let mut writer = ChunkWriter::new();
    let mut summary = Summary {
        positions: 0,
        total: existing.positions,
        games: 0,
        chunks: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
    };
    let mut failure = None;
    let mut last_report = Instant::now();
    let mut write_chunk = |writer: &mut ChunkWriter, summary: &mut Summary| {
        let path = chunk_path(&options.out, next_chunk);
        let bytes = writer
            .write_atomic(&path)
            .map_err(|source| LabelError::Chunk {
                path: path.clone(),
                source,
            })?;
        tracing::info!("wrote {} ({bytes} bytes)", path.display());
        next_chunk += 1;
        summary.chunks += 1;
        summary.bytes += bytes;
        *writer = ChunkWriter::new();
        Ok::<(), LabelError>(())
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Ok(game)) => match writer.push(&game) {
                Ok(()) => {
                    summary.games += 1;
                    summary.positions += game.labels.len() as u64;
                    summary.total += game.labels.len() as u64;
                    if writer.positions() >= options.chunk_positions
                        && let Err(e) = write_chunk(&mut writer, &mut summary)
                    {
                        shared.stop.store(true, Ordering::Relaxed);
                        failure = Some(e);
                    }
                }
                Err(e) => tracing::warn!("dropping a game that does not encode: {e}"),
            },
            Ok(Err(e)) => {
                shared.stop.store(true, Ordering::Relaxed);
                failure.get_or_insert(e);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            progress(&Progress {
                done: summary.total,
                target: options.positions,
                new: summary.positions,
                games: summary.games,
                elapsed: started.elapsed(),
            });
        }
    }
    for handle in handles {
        let _ = handle.join();
    }
    if writer.games() > 0 {
        write_chunk(&mut writer, &mut summary)?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// One job: plays games with its own Stockfish until the run has enough positions.
fn job(shared: &Shared, seed: u64, tx: &mpsc::Sender<Result<GameRecord, LabelError>>) {
    let options = &shared.options;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut slot: Option<Stockfish> = None;
    let mut failures = 0;
    while !shared.stop.load(Ordering::Relaxed)
        && shared.claimed.load(Ordering::Relaxed) < shared.needed
    {
        if slot.is_none() {
            match Stockfish::start(&options.stockfish, options.hash_mb) {
                Ok(started) => slot = Some(started),
                Err(e) => {
                    failures += 1;
                    if failures >= MAX_FAILURES {
                        let _ = tx.send(Err(e.into()));
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(engine) = slot.as_mut() else {
            continue;
        };
        let n = options.book.len();
        let start = if n == 0 || rng.f64() < STARTPOS_FRACTION {
            Board::default()
        } else {
            options.book[rng.usize(..n)].clone()
        };
        let mut claimed = 0u64;
        let decide = |board: &Board| {
            if shared.stop.load(Ordering::Relaxed) {
                return Decision::Stop;
            }
            if !shared.seen.lock().insert(board.hash()) {
                return Decision::Skip;
            }
            if shared.claimed.fetch_add(1, Ordering::Relaxed) >= shared.needed {
                shared.claimed.fetch_sub(1, Ordering::Relaxed);
                return Decision::Stop;
            }
            claimed += 1;
            Decision::Label
        };
        match play_game(engine, &mut rng, start, &options.play, decide) {
            Ok(game) => {
                failures = 0;
                let unused = claimed.saturating_sub(game.labels.len() as u64);
                shared.claimed.fetch_sub(unused, Ordering::Relaxed);
                if tx.send(Ok(game)).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("a game was lost: {e}");
                shared.claimed.fetch_sub(claimed, Ordering::Relaxed);
                failures += 1;
                if failures >= MAX_FAILURES {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
                // The next game starts a fresh Stockfish.
                slot = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::record::{Label, Outcome};
    use crate::train::stockfish;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("banyan-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Stockfish, or `None` after recording the skip (stderr and `BANYAN_SKIP_LOG`).
    fn stockfish_or_skip(test: &str) -> Option<PathBuf> {
        let found = stockfish::find();
        if found.is_none() {
            crate::skip_test(
                test,
                "no Stockfish binary (`stockfish` on PATH or /usr/games/stockfish)",
            );
        }
        found
    }

    fn read_all(dir: &Path) -> Vec<GameRecord> {
        chunk_files(dir)
            .unwrap()
            .iter()
            .flat_map(|(_, path)| ChunkReader::open(path).unwrap())
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn resume_discards_partial_chunks_and_continues_numbering() {
        let dir = temp_dir("resume");
        std::fs::create_dir_all(&dir).unwrap();
        let mv = |text: &str| text.parse().unwrap();
        let label = |best: &str| Label {
            wdl: [100, 800, 100],
            lines: vec![(mv(best), 12)],
            best: 0,
        };
        let game = GameRecord {
            start: Board::default(),
            moves: vec![mv("e2e4"), mv("e7e5")],
            labels: vec![(1, label("e7e5")), (2, label("g1f3"))],
            outcome: Outcome::Unknown,
        };
        for index in [0, 2] {
            let mut writer = ChunkWriter::new();
            writer.push(&game).unwrap();
            writer.write_atomic(&chunk_path(&dir, index)).unwrap();
        }
        let partial = dir.join("chunk-000003.bin.gz.tmp");
        std::fs::write(&partial, b"half a chunk").unwrap();
        let existing = scan(&dir).unwrap();
        assert!(!partial.exists());
        assert_eq!(existing.next_chunk, 3);
        assert_eq!(
            (existing.chunks, existing.games, existing.positions),
            (2, 2, 4)
        );
        assert_eq!(existing.seen.len(), 2);
        // A damaged complete chunk stops the resume with its name.
        std::fs::write(chunk_path(&dir, 1), b"junk").unwrap();
        let error = scan(&dir).unwrap_err().to_string();
        assert!(error.contains("chunk-000001.bin.gz"), "{error}");
        // One run per directory; the lock goes with its holder.
        let lock = lock_dir(&dir).unwrap();
        assert!(matches!(lock_dir(&dir), Err(LabelError::Busy(_))));
        drop(lock);
        lock_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn labels_ten_positions_through_stockfish_and_resumes() {
        let test = "train::label::tests::labels_ten_positions_through_stockfish_and_resumes";
        let Some(stockfish) = stockfish_or_skip(test) else {
            return;
        };
        let dir = temp_dir("label");
        let mut options = LabelOptions {
            out: dir.clone(),
            positions: 10,
            jobs: 1,
            play: PlaySettings {
                label_nodes: 2000,
                label_multipv: 3,
                play_nodes: 200,
                ..PlaySettings::default()
            },
            book: Vec::new(),
            seed: 7,
            stockfish,
            chunk_positions: 4,
            hash_mb: 4,
        };
        let summary = run(options.clone(), |_| {}).unwrap();
        assert_eq!((summary.positions, summary.total), (10, 10));
        let chunks = chunk_files(&dir).unwrap();
        assert_eq!(chunks.len() as u32, summary.chunks);
        assert_eq!(chunks[0].0, 0);

        options.positions = 13;
        let resumed = run(options, |_| {}).unwrap();
        assert_eq!((resumed.positions, resumed.total), (3, 13));
        let numbers: Vec<u32> = chunk_files(&dir).unwrap().iter().map(|c| c.0).collect();
        let expected: Vec<u32> = (0..numbers.len() as u32).collect();
        assert_eq!(numbers, expected);

        let mut hashes = HashSet::new();
        let mut count = 0;
        for game in read_all(&dir) {
            game.for_each_position(|history, label| {
                count += 1;
                let board = history.current();
                assert!(hashes.insert(board.hash()), "duplicate position {board}");
                assert!(board.is_legal(label.best_move()));
                assert!(!label.lines.is_empty() && label.lines.len() <= 3);
                assert_eq!(label.wdl.iter().sum::<u16>(), 1000);
            });
        }
        assert_eq!(count, 13);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn random_moves_are_played_and_the_positions_after_them_labelled() {
        let test =
            "train::label::tests::random_moves_are_played_and_the_positions_after_them_labelled";
        let Some(path) = stockfish_or_skip(test) else {
            return;
        };
        let mut engine = stockfish::Stockfish::start(&path, 4).unwrap();
        let settings = PlaySettings {
            label_nodes: 300,
            label_multipv: 2,
            play_nodes: 50,
            label_fraction: 0.0,
            random_move_rate: 1.0,
            max_plies: 16,
            ..PlaySettings::default()
        };
        let mut rng = fastrand::Rng::with_seed(3);
        let start = Board::default();
        let record = play_game(&mut engine, &mut rng, start.clone(), &settings, |_| {
            Decision::Label
        })
        .unwrap();
        // No position is labelled by chance; every one after a random move (all moves past
        // the first plies) is.
        let labelled: Vec<usize> = record.labels.iter().map(|(i, _)| *i).collect();
        let first = settings.skip_plies + 1;
        assert_eq!(labelled.first(), Some(&first), "{labelled:?}");
        assert!(
            labelled.windows(2).all(|w| w[1] == w[0] + 1),
            "{labelled:?}"
        );
        assert!(
            *labelled.last().unwrap() + 1 >= record.moves.len(),
            "{labelled:?}"
        );
        let mut board = start;
        for mv in &record.moves {
            assert!(board.is_legal(*mv), "{mv} in {board}");
            board.play_unchecked(*mv);
        }
    }
}

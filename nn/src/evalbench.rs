//! `banyan evalbench`: positions per second of the evaluator alone, per batch size, both through
//! the real evaluator process and its sockets and as the bare in-process backend, so that the
//! cost of the process and the protocol is visible.
//!
//! The bare figure loads the backend into the calling process (so call this only where
//! initialising libtorch is fine, as in the `evalbench` sub-command) and times
//! `Backend::evaluate` plus the policy softmax on full batches, one batch at a time over all the
//! threads. The process figure spawns the evaluator with that batch limit, serving in as many
//! lanes as threads, and keeps it busy from a client connection per lane (at least two), each with
//! several requests in flight, every request a quarter of a batch, so that the evaluator merges
//! requests into full batches as it does for a search.

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cozy_chess::Board;
use thiserror::Error;

use crate::backend::{Backend, EvalInput, RawEval};
use crate::builtin::Weights;
use crate::client::{ClientError, EvalClient};
use crate::encode::{InputPlanes, PositionHistory};
use crate::evaluator::{self, DeviceChoice, EvaluatorConfig, EvaluatorProcess, SpawnError};
use crate::network::Precision;
use crate::policy::{for_each_legal_move, move_index, parse_uci_move};
use crate::priors::softmax_priors;
use crate::triton::client::TritonTarget;

/// Fewest client connections driving the evaluator process (else one per lane).
const CLIENTS: usize = 2;
/// Requests each client keeps in flight.
const IN_FLIGHT: usize = 4;
/// Requests per batch (a request is this fraction of a batch, at least one position).
const REQUESTS_PER_BATCH: usize = 4;
/// Interleaved rounds per figure; each figure is the best round, so that load from other
/// processes, which only ever slows a round down, hits both paths alike and is filtered out.
const ROUNDS: u32 = 3;

/// The positions benchmarked: a start position or FEN and moves played from it, so that the
/// inputs carry real history.
const POSITIONS: [(&str, &str); 8] = [
    ("startpos", ""),
    ("startpos", "e2e4 e7e5 g1f3 b8c6 f1b5 a7a6"),
    ("startpos", "d2d4 g8f6 c2c4 e7e6 b1c3 f8b4 e2e3 e8h8"),
    (
        "r1bqkb1r/pppp1ppp/2n2n2/4p3/2B1P3/5N2/PPPP1PPP/RNBQK2R w KQkq - 4 4",
        "e1h1 f6e4",
    ),
    (
        "r2q1rk1/pp2bppp/2n1pn2/3p4/2PP4/2N2N2/PP2BPPP/R2Q1RK1 w - - 0 10",
        "c4d5 e6d5",
    ),
    ("8/5pk1/6p1/3R4/7P/6P1/r4PK1/8 b - - 3 45", "a2a3 d5d7"),
    (
        "4rrk1/1pq2ppp/p1n5/2b1p3/4P1n1/2N1BN2/PPQ1BPPP/R4RK1 b - - 5 15",
        "c5e3 f2e3",
    ),
    ("8/8/4k3/3p4/3P4/4K3/8/8 w - - 0 60", "e3d3 e6d6"),
];

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The evaluator to measure: the built-in network, the heuristic or a file.
    pub weights: Weights,
    /// Batch sizes to measure, each on its own.
    pub batches: Vec<usize>,
    /// CPU threads: libtorch's in this process, the evaluator's lanes in the process.
    pub threads: usize,
    /// Where the network runs.
    pub device: DeviceChoice,
    /// What the network computes in.
    pub precision: Precision,
    /// Triton server(s) to measure instead of a local network.
    pub triton: Option<TritonTarget>,
    /// Measuring time per batch size and path, split into rounds (each after a short warm-up).
    pub duration: Duration,
}

impl BenchOptions {
    /// The evaluator these options measure, for batches of up to `max_batch`.
    fn evaluator(&self, max_batch: usize) -> EvaluatorConfig {
        let mut config = EvaluatorConfig::new(self.weights.clone());
        config.threads = self.threads;
        config.device = self.device;
        config.precision = self.precision;
        config.triton = self.triton.clone();
        config.max_batch = max_batch;
        config
    }
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            weights: Weights::default(),
            batches: vec![1, 8, 32, 64, 256],
            threads: 2,
            device: DeviceChoice::Auto,
            precision: Precision::Auto,
            triton: None,
            duration: Duration::from_secs(3),
        }
    }
}

/// Positions per second at one batch size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchRow {
    pub batch: usize,
    /// The backend in-process: evaluate plus softmax, no process or socket.
    pub bare: f64,
    /// Through the evaluator process, the protocol and client connections.
    pub process: f64,
}

/// The measurements, printable as a table.
#[derive(Clone, Debug)]
pub struct Report {
    /// The backend's description.
    pub backend: String,
    pub threads: usize,
    pub rows: Vec<BenchRow>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "evalbench: {} ({} threads; the process serves them as lanes)",
            self.backend, self.threads
        )?;
        writeln!(
            f,
            "{:>6} {:>14} {:>16} {:>9}",
            "batch", "bare pos/s", "process pos/s", "ratio"
        )?;
        for row in &self.rows {
            writeln!(
                f,
                "{:>6} {:>14.1} {:>16.1} {:>8.1}%",
                row.batch,
                row.bare,
                row.process,
                100.0 * row.process / row.bare
            )?;
        }
        if let Some(best) = self
            .rows
            .iter()
            .max_by(|a, b| a.process.total_cmp(&b.process))
        {
            writeln!(
                f,
                "best: {:.1} pos/s through the evaluator process at batch {}",
                best.process, best.batch
            )?;
        }
        Ok(())
    }
}

/// Why the benchmark could not run.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error("loading the backend: {0}")]
    Load(String),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("talking to the evaluator: {0}")]
    Client(#[from] ClientError),
    #[error("batch sizes must be positive")]
    BadBatch,
    #[error("evaluating: {0}")]
    Evaluate(String),
}

/// Measures every batch size of `options`, spawning `exe` (the `banyan` binary) as the
/// evaluator.
pub fn run(exe: &Path, options: &BenchOptions) -> Result<Report, BenchError> {
    if options.batches.contains(&0) {
        return Err(BenchError::BadBatch);
    }
    let positions = bench_positions();
    let clients = CLIENTS.max(options.threads);
    let max_batch = options.batches.iter().copied().max().unwrap_or(1);
    // The backend the evaluator would serve, in this process.
    let mut backend =
        evaluator::open_backend(&options.evaluator(max_batch)).map_err(BenchError::Load)?;
    let mut rows = Vec::new();
    for &batch in &options.batches {
        let process = evaluator::spawn(exe, &options.evaluator(batch))?;
        let slice = options.duration / ROUNDS;
        let mut row = BenchRow {
            batch,
            bare: 0.0,
            process: 0.0,
        };
        for _ in 0..ROUNDS {
            row.bare = row
                .bare
                .max(time_bare(backend.as_mut(), &positions, batch, slice)?);
            row.process = row
                .process
                .max(time_process(&process, &positions, batch, clients, slice)?);
        }
        rows.push(row);
    }
    Ok(Report {
        backend: backend.describe(),
        threads: options.threads,
        rows,
    })
}

/// The benchmark positions' network inputs and legal-move indices.
fn bench_positions() -> Vec<(InputPlanes, Vec<u16>)> {
    POSITIONS
        .iter()
        .map(|(start, moves)| {
            let board = if *start == "startpos" {
                Board::default()
            } else {
                Board::from_fen(start, false).expect("benchmark FEN")
            };
            let mut history = PositionHistory::new(board);
            for text in moves.split_whitespace() {
                let mv = parse_uci_move(history.current(), text, false).expect("benchmark move");
                history.push(mv);
            }
            let board = history.current();
            let mut indices = Vec::new();
            for_each_legal_move(board, |mv| {
                indices.push(move_index(mv, board.side_to_move()))
            });
            (history.planes(), indices)
        })
        .collect()
}

/// A batch of `size` inputs cycling through `positions`.
fn batch_of<'a>(positions: &'a [(InputPlanes, Vec<u16>)], size: usize) -> Vec<EvalInput<'a>> {
    positions
        .iter()
        .cycle()
        .take(size)
        .map(|(planes, moves)| EvalInput { planes, moves })
        .collect()
}

/// Positions per second of `backend.evaluate` plus softmax on full batches of `batch`.
fn time_bare(
    backend: &mut dyn Backend,
    positions: &[(InputPlanes, Vec<u16>)],
    batch: usize,
    duration: Duration,
) -> Result<f64, BenchError> {
    let inputs = batch_of(positions, batch);
    let mut out: Vec<RawEval> = Vec::new();
    let mut priors = Vec::new();
    let mut step = |backend: &mut dyn Backend| {
        backend
            .evaluate(&inputs, &mut out)
            .map_err(BenchError::Evaluate)?;
        for raw in &out {
            softmax_priors(&raw.logits, 1.359, &mut priors);
        }
        Ok::<(), BenchError>(())
    };
    step(backend)?; // Warm-up: first-call allocations and kernel selection.
    let start = Instant::now();
    let mut done = 0;
    while start.elapsed() < duration {
        step(backend)?;
        done += batch;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Positions per second through `process` (whose batch limit is `batch`) from `clients`
/// connections.
fn time_process(
    process: &EvaluatorProcess,
    positions: &[(InputPlanes, Vec<u16>)],
    batch: usize,
    clients: usize,
    duration: Duration,
) -> Result<f64, BenchError> {
    let request = batch.div_ceil(REQUESTS_PER_BATCH);
    let positions = Arc::new(positions.to_vec());
    let clients: Vec<EvalClient> = (0..clients)
        .map(|_| process.connect())
        .collect::<Result<_, _>>()?;
    // Warm-up, then the timed window; answers are counted when they arrive inside it.
    let counting_from = Instant::now() + duration / 5;
    let deadline = counting_from + duration;
    let workers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let positions = Arc::clone(&positions);
            thread::spawn(move || -> Result<usize, ClientError> {
                // Each client starts at another position so that batches stay varied.
                let mut rotated = positions.to_vec();
                rotated.rotate_left(i * 3 % positions.len());
                let inputs = batch_of(&rotated, request);
                let mut tickets = VecDeque::new();
                let mut counted = 0;
                loop {
                    while tickets.len() < IN_FLIGHT {
                        tickets.push_back(client.send(&inputs)?);
                    }
                    let answers = client.recv(tickets.pop_front().expect("in flight"))?;
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(counted);
                    }
                    if now >= counting_from {
                        counted += answers.len();
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.join().expect("bench client thread")?;
    }
    Ok(total as f64 / duration.as_secs_f64())
}

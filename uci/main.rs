//! `banyan`: the UCI chess engine binary.
//!
//! With no arguments it speaks UCI on stdin/stdout. Sub-commands measure it (`bench`,
//! `evalbench`), make training data (`label`), train a network (`train`) or serve it from Triton
//! (`export-triton`); the hidden
//! `__evaluator` and `__worker` roles are how the engine re-executes itself to start its child
//! processes, and `__torchscript` runs an exported model for a Triton server's Python model.

mod bench;
mod command;
mod format;
mod label;
mod logging;
mod options;
mod output;
mod session;
mod train;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use banyan_nn::builtin::Weights;
use banyan_nn::network::Precision;
use banyan_nn::triton::client::TritonTarget;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "banyan",
    version,
    about = "A UCI chess engine: multi-process MCTS guided by a neural network"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand)]
enum Sub {
    /// Search a fixed set of positions and print nodes, time and nodes per second.
    Bench {
        /// An Lc0 network file, `<builtin>` (the built-in network) or `<heuristic>`.
        #[arg(long, default_value_t)]
        weights: Weights,
        /// Playouts per position.
        #[arg(long, default_value_t = 2000)]
        nodes: u64,
        /// Worker processes.
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// Replay fixed real games ply by ply with tree reuse (game speed) instead.
        #[arg(long)]
        game: bool,
        /// What the network computes in: auto (bf16 where the CPU has AMX-BF16), fp32 or
        /// bf16.
        #[arg(long, default_value_t)]
        precision: Precision,
    },
    /// Positions per second of the evaluator alone, per batch size, through the real process
    /// and sockets and as a bare forward pass.
    Evalbench {
        /// An Lc0 network file, `<builtin>` (the built-in network) or `<heuristic>`.
        #[arg(long, default_value_t)]
        weights: Weights,
        /// Batch sizes to measure.
        #[arg(long = "batch", num_args = 1.., default_values_t = [1usize, 8, 32, 64, 256])]
        batches: Vec<usize>,
        /// CPU threads: libtorch's for the bare pass, the evaluator's lanes for the process
        /// figure (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Seconds of measuring per batch size and path.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// What the network computes in: auto (bf16 where the CPU has AMX-BF16), fp32 or
        /// bf16.
        #[arg(long, default_value_t)]
        precision: Precision,
        /// Measure Triton server(s) at these gRPC addresses (host:port, separated by commas)
        /// instead of a local network.
        #[arg(long)]
        triton_url: Option<String>,
        /// The Triton model's name.
        #[arg(long, default_value = banyan_nn::triton::export::DEFAULT_MODEL)]
        triton_model: String,
    },
    /// Training data: Stockfish self-play positions labelled by deeper Stockfish searches
    /// (W/D/L, best move, MultiPV scores), written as compressed chunk files; resumable.
    Label(label::LabelArgs),
    /// Trains a network on label chunks (policy over the MultiPV lines, W/D/L value) and
    /// exports it as an Lc0 .pb.gz; resumable, or incremental from an existing net.
    Train(train::TrainArgs),
    /// Writes a Triton Inference Server model repository for a network: TorchScript traced
    /// from the network (platform pytorch_libtorch) and its config.pbtxt.
    ExportTriton {
        /// An Lc0 network file or `<builtin>`.
        #[arg(long, default_value = Weights::BUILTIN)]
        weights: Weights,
        /// The model repository directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The model's name: its directory in the repository.
        #[arg(long, default_value = banyan_nn::triton::export::DEFAULT_MODEL)]
        model: String,
        /// The largest batch the server may form.
        #[arg(long, default_value_t = banyan_nn::triton::export::DEFAULT_MAX_BATCH)]
        max_batch: usize,
    },
}

fn main() -> ExitCode {
    // libgomp (libtorch's thread pool, in the evaluator) spins while waiting for work by
    // default, stealing the cores the workers need; passive waiting is read from the
    // environment when the library loads, so it is set here, before any child starts.
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        // SAFETY: the process is still single-threaded.
        unsafe { std::env::set_var("OMP_WAIT_POLICY", "PASSIVE") };
    }
    let raw: Vec<String> = std::env::args().skip(1).collect();
    // Child roles first: they parse their own arguments and set up their own logging.
    match raw.first().map(String::as_str) {
        Some(banyan_nn::evaluator::ROLE_ARG) => {
            let _log = logging::init();
            return banyan_nn::evaluator::main_from_args(std::env::args_os().skip(2));
        }
        Some(banyan_engine::WORKER_ROLE) => {
            let _log = logging::init();
            return banyan_engine::worker_main(&raw[1..]);
        }
        Some(banyan_nn::triton::pipe::ROLE_ARG) => {
            let _log = logging::init();
            let model = PathBuf::from(raw.get(1).map_or("", String::as_str));
            let result = banyan_nn::triton::pipe::serve(
                &model,
                &mut std::io::stdin().lock(),
                &mut std::io::stdout().lock(),
            );
            return match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("banyan: error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let log = logging::init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        None => {
            uci_loop(log);
            Ok(())
        }
        Some(Sub::Bench {
            weights,
            nodes,
            threads,
            game,
            precision,
        }) => match game {
            true => bench::run_games(weights, nodes, threads.max(1), precision),
            false => bench::run(weights, nodes, threads.max(1), precision),
        },
        Some(Sub::Evalbench {
            weights,
            batches,
            threads,
            seconds,
            precision,
            triton_url,
            triton_model,
        }) => {
            let triton = triton_url.map(|urls| TritonTarget {
                urls,
                model: triton_model,
            });
            evalbench(weights, batches, threads, seconds, precision, triton)
        }
        Some(Sub::Label(args)) => label::run(args),
        Some(Sub::Train(args)) => train::run(args),
        Some(Sub::ExportTriton {
            weights,
            out,
            model,
            max_batch,
        }) => export_triton(&weights, &out, &model, max_batch),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("banyan: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn export_triton(
    weights: &Weights,
    out: &std::path::Path,
    model: &str,
    max_batch: usize,
) -> Result<(), String> {
    let exported = banyan_nn::triton::export::write_repository(weights, out, model, max_batch)?;
    println!(
        "wrote {} ({}; max batch {max_batch})",
        exported.model_dir.display(),
        exported.network
    );
    Ok(())
}

fn evalbench(
    weights: Weights,
    batches: Vec<usize>,
    threads: usize,
    seconds: f64,
    precision: Precision,
    triton: Option<TritonTarget>,
) -> Result<(), String> {
    let exe = crate::own_exe();
    let options = banyan_nn::evalbench::BenchOptions {
        weights,
        batches,
        threads: if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        },
        device: banyan_nn::evaluator::DeviceChoice::Auto,
        precision,
        triton,
        duration: std::time::Duration::from_secs_f64(seconds.clamp(0.1, 600.0)),
    };
    let report = banyan_nn::evalbench::run(&exe, &options).map_err(|e| e.to_string())?;
    print!("{report}");
    Ok(())
}

/// The binary to re-execute for child processes. On Linux `/proc/self/exe` names the very
/// file this process runs, even after a rebuild or upgrade replaced it on disk.
pub fn own_exe() -> PathBuf {
    let proc_exe = PathBuf::from("/proc/self/exe");
    if cfg!(target_os = "linux") && proc_exe.exists() {
        return proc_exe;
    }
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("banyan"))
}

/// Reads UCI commands until `quit` or end of input. Lines are decoded lossily, so bytes that
/// are not UTF-8 never stop the engine.
fn uci_loop(log: logging::LogTarget) {
    let out = output::Output::stdout();
    let mut session = session::Session::new(out, log);
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading stdin: {e}");
                break;
            }
        }
        let line = String::from_utf8_lossy(&buf);
        tracing::debug!(target: "uci::in", "< {}", line.trim_end());
        if session.handle(&line).is_break() {
            break;
        }
    }
    session.shutdown();
}

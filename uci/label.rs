//! `banyan label`: Stockfish self-play positions with Stockfish labels, written as chunk files
//! (format: `banyan_nn::train::record`).

use std::path::PathBuf;

use banyan_nn::train::label::{self, LabelOptions};
use banyan_nn::train::selfplay::{self, PlaySettings};
use banyan_nn::train::stockfish;

/// The project's own opening book, used when `--book` is not given and it exists.
const DEFAULT_BOOK: &str = "data/openings/banyan.epd";

/// The command line of `banyan label`.
#[derive(clap::Args)]
pub struct LabelArgs {
    /// Directory of the chunk files (created; an existing run there is resumed).
    #[arg(long)]
    out: PathBuf,
    /// Labelled positions wanted in the directory in all, counting those already there.
    #[arg(long)]
    positions: u64,
    /// Parallel jobs, each with its own Stockfish.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Nodes of each labelling search.
    #[arg(long, default_value_t = 8000)]
    label_nodes: u64,
    /// Nodes of the searches that choose the moves of unlabelled positions.
    #[arg(long, default_value_t = 600)]
    play_nodes: u64,
    /// MultiPV lines of the labelling search (the soft policy target).
    #[arg(long, default_value_t = 4)]
    multipv: usize,
    /// Share of the positions (past the first plies) that are labelled.
    #[arg(long, default_value_t = 0.3)]
    label_fraction: f64,
    /// Share of the moves (past the first plies) that are uniformly random legal moves; the
    /// position after each is labelled (what punishes a bad move).
    #[arg(long, default_value_t = 0.03)]
    random_moves: f64,
    /// Start positions (EPD or FEN lines); default: data/openings/banyan.epd if it exists,
    /// else the start position.
    #[arg(long)]
    book: Option<PathBuf>,
    /// Seed of the run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The Stockfish binary (default: `stockfish` on PATH, else /usr/games/stockfish).
    #[arg(long)]
    stockfish: Option<PathBuf>,
    /// Labelled positions per chunk file.
    #[arg(long, default_value_t = 10_000)]
    chunk_positions: u32,
    /// Hash of each Stockfish, in MB.
    #[arg(long, default_value_t = 16)]
    hash: u32,
}

/// Runs the labelling, progress on stderr, the summary on stdout.
pub fn run(args: LabelArgs) -> Result<(), String> {
    if args.jobs == 0 || args.jobs > 256 {
        return Err(format!("--jobs {} is not in 1..=256", args.jobs));
    }
    if !(1..=64).contains(&args.multipv) {
        return Err(format!("--multipv {} is not in 1..=64", args.multipv));
    }
    if args.label_nodes == 0 || args.play_nodes == 0 {
        return Err("--label-nodes and --play-nodes must be at least 1".into());
    }
    if !(args.label_fraction > 0.0 && args.label_fraction <= 1.0) {
        return Err(format!(
            "--label-fraction {} is not in (0, 1]",
            args.label_fraction
        ));
    }
    if !(0.0..=1.0).contains(&args.random_moves) {
        return Err(format!(
            "--random-moves {} is not in [0, 1]",
            args.random_moves
        ));
    }
    if args.chunk_positions == 0 {
        return Err("--chunk-positions must be at least 1".into());
    }
    let stockfish = match args.stockfish {
        Some(path) => path,
        None => stockfish::find().ok_or(
            "no Stockfish found (`stockfish` on PATH or /usr/games/stockfish); \
             install it (apt-get install stockfish) or pass --stockfish",
        )?,
    };
    let book_path = args.book.or_else(|| {
        let default = PathBuf::from(DEFAULT_BOOK);
        default.is_file().then_some(default)
    });
    let book = match &book_path {
        Some(path) => selfplay::load_book(path)?,
        None => Vec::new(),
    };
    eprintln!(
        "label: {} -> {} positions, {} job(s), stockfish {}, label {} nodes MultiPV {}, play {} \
         nodes, book {}",
        args.out.display(),
        args.positions,
        args.jobs,
        stockfish.display(),
        args.label_nodes,
        args.multipv,
        args.play_nodes,
        book_path
            .as_ref()
            .map_or("<start position>".into(), |p| format!(
                "{} ({} positions)",
                p.display(),
                book.len()
            ))
    );
    let options = LabelOptions {
        out: args.out,
        positions: args.positions,
        jobs: args.jobs,
        play: PlaySettings {
            label_nodes: args.label_nodes,
            label_multipv: args.multipv,
            play_nodes: args.play_nodes,
            label_fraction: args.label_fraction,
            random_move_rate: args.random_moves,
            ..PlaySettings::default()
        },
        book,
        seed: args.seed,
        stockfish,
        chunk_positions: args.chunk_positions,
        hash_mb: args.hash.max(1),
    };
    let summary =
        label::run(options, |progress| eprintln!("{progress}")).map_err(|e| e.to_string())?;
    println!("{summary}");
    Ok(())
}

//! `banyan train`: trains a network on label chunks and exports it as an Lc0 `.pb.gz`
//! (`banyan_nn::train::trainer`).

use std::path::PathBuf;

use banyan_nn::network::Precision;
use banyan_nn::train::trainer::{self, EpochReport, Event, Losses, TrainOptions};
use banyan_nn::weights::{Architecture, Encoding};

/// The command line of `banyan train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Directory of label chunks (chunk-*.bin.gz, as `banyan label` writes them).
    #[arg(long)]
    data: PathBuf,
    /// The network to write (Lc0 .pb.gz), rewritten after every epoch; its checkpoint
    /// (NAME.ckpt.safetensors, NAME.ckpt.state) goes beside it.
    #[arg(long)]
    out: PathBuf,
    /// Start from this network (conv policy, W/D/L value) instead of fresh weights; the size
    /// flags are then ignored.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Continue from the checkpoint beside --out, if there is one.
    #[arg(long)]
    resume: bool,
    /// Residual blocks of a fresh network.
    #[arg(long, default_value_t = 6)]
    blocks: usize,
    /// Filters of a fresh network.
    #[arg(long, default_value_t = 64)]
    filters: usize,
    /// Squeeze-excitation ratio (SE width = filters / ratio); 0: no SE.
    #[arg(long, default_value_t = 8)]
    se_ratio: usize,
    /// Passes over the training positions.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Positions per step.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Peak learning rate (AdamW; warm-up, then cosine down to 1%).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// libtorch CPU threads (0: libtorch's default, one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// What the passes compute in: auto (bf16 where the CPU has AMX-BF16), fp32 or bf16.
    /// The weights stay fp32 either way (mixed precision).
    #[arg(long, default_value_t)]
    precision: Precision,
    /// Seed of the initial weights and of the sample order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most validation positions measured each epoch.
    #[arg(long, default_value_t = 20_000)]
    validation: usize,
    /// Training positions shuffled together (memory: about 1.2 kB each).
    #[arg(long, default_value_t = 100_000)]
    shuffle_window: usize,
    /// Weight encoding of the exported file: float16 or linear16.
    #[arg(long, default_value = "float16")]
    encoding: String,
    /// Train on the CPU even when CUDA is available.
    #[arg(long)]
    cpu: bool,
}

fn losses(l: &Losses) -> String {
    if l.positions == 0 {
        return "none (no positions)".into();
    }
    format!(
        "policy {:.4} value {:.4} top-1 {:.1}%",
        l.policy,
        l.value,
        100.0 * l.top1
    )
}

fn epoch_line(e: &EpochReport) -> String {
    format!(
        "train: epoch {}: train loss {:.4} ({}), validation {}, lr {:.2e}, {:.0} s",
        e.epoch,
        e.train.total(),
        losses(&e.train),
        losses(&e.validation),
        e.lr,
        e.seconds
    )
}

/// Runs the training; progress within epochs on stderr, one line per epoch and a summary on
/// stdout.
pub fn run(args: TrainArgs) -> Result<(), String> {
    if args.blocks == 0 || args.blocks > 64 || args.filters == 0 || args.filters > 1024 {
        return Err(format!(
            "--blocks {} --filters {}: blocks must be in 1..=64, filters in 1..=1024",
            args.blocks, args.filters
        ));
    }
    if args.se_ratio > args.filters {
        return Err(format!(
            "--se-ratio {} is larger than --filters {}",
            args.se_ratio, args.filters
        ));
    }
    if args.threads > 256 {
        return Err(format!("--threads {} is not in 0..=256", args.threads));
    }
    let encoding = match args.encoding.to_ascii_lowercase().as_str() {
        "float16" => Encoding::Float16,
        "linear16" => Encoding::Linear16,
        other => return Err(format!("--encoding {other}: use float16 or linear16")),
    };
    let mut architecture = Architecture::new(args.blocks, args.filters);
    architecture.se_channels = (args.se_ratio > 0).then(|| (args.filters / args.se_ratio).max(1));
    let options = TrainOptions {
        data: args.data,
        out: args.out,
        init: args.init,
        architecture,
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        weight_decay: args.weight_decay,
        seed: args.seed,
        validation_positions: args.validation,
        shuffle_window: args.shuffle_window,
        encoding,
        resume: args.resume,
        cuda: !args.cpu,
        threads: args.threads,
        precision: args.precision,
    };
    let start = match &options.init {
        Some(path) => format!("from {}", path.display()),
        None => format!(
            "fresh {}x{}{}",
            args.blocks,
            args.filters,
            architecture
                .se_channels
                .map_or(String::new(), |s| format!(" SE {s}"))
        ),
    };
    println!(
        "train: {} -> {}, {start}, {} epoch(s), batch {}, lr {}",
        options.data.display(),
        options.out.display(),
        options.epochs,
        options.batch,
        options.lr,
    );
    let report = trainer::train(&options, |event| match event {
        Event::Epoch(e) => println!("{}", epoch_line(e)),
        Event::Progress {
            epoch,
            positions,
            of,
            train,
            seconds,
        } => eprintln!(
            "train: epoch {epoch}: {positions}/{of} positions ({:.0}/s), loss so far {:.4} ({})",
            positions as f64 / seconds.max(1e-9),
            train.total(),
            losses(&train)
        ),
    })
    .map_err(|e| e.to_string())?;
    println!(
        "train: {} on {} — {} training + {} validation positions ({} measured), {} epoch(s) \
         after {} resumed, {} steps, {:.0} s",
        report.network,
        report.device,
        report.train_positions,
        report.validation_positions,
        report.validation_measured,
        report.epochs.len(),
        report.resumed_epochs,
        report.steps,
        report.seconds
    );
    println!(
        "train: validation before {}; after {}",
        losses(&report.initial_validation),
        report
            .epochs
            .last()
            .map_or("(no epoch run)".into(), |e| losses(&e.validation))
    );
    if report.epochs.is_empty() {
        println!(
            "train: the checkpoint already has {} epoch(s); nothing written",
            report.resumed_epochs
        );
    } else {
        println!("train: wrote {} ({encoding:?})", options.out.display());
    }
    Ok(())
}

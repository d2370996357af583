//! The training loop: a [`Network`] (the evaluator's own definition) optimised by AdamW with
//! a warm-up then cosine learning-rate schedule on policy cross-entropy over the legal moves
//! plus W/D/L cross-entropy (weight decay is AdamW's, decoupled); validation each epoch;
//! checkpoints that let a run resume; export to an Lc0 `.pb.gz` through the weights writer.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::Device;
use tch::nn::{Optimizer, OptimizerConfig};

use super::dataset::{Batch, DataError, Dataset, Sample};
use crate::encode::RULE50_PLANE;
use crate::network::{Network, Precision};
use crate::weights::{self, Architecture, Encoding, LoadError, NetWeights, PolicyHead};

/// Why training could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The label chunks cannot be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The `--init` network cannot be loaded.
    #[error("{0}")]
    Network(#[from] LoadError),
    /// The exported network cannot be written.
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    /// The checkpoint cannot be written or read.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// libtorch failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The options or the data do not allow training.
    #[error("{0}")]
    Invalid(String),
}

/// The learning-rate schedule and optimiser settings.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Steps of linear warm-up from zero.
    pub warmup_steps: usize,
    /// Steps of the whole run; the rate follows a cosine from the peak down to 1% of it.
    pub total_steps: usize,
}

impl Schedule {
    /// The learning rate of step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        let warm = ((step + 1) as f64 / self.warmup_steps.max(1) as f64).min(1.0);
        let progress = (step as f64 / self.total_steps.max(1) as f64).min(1.0);
        let floor = 0.01;
        let cosine = floor + (1.0 - floor) * 0.5 * (1.0 + (PI * progress).cos());
        self.lr * warm * cosine
    }
}

/// Losses of one step or one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Losses {
    /// Policy cross-entropy (nats per position).
    pub policy: f64,
    /// W/D/L cross-entropy (nats per position).
    pub value: f64,
    /// Share of positions whose top legal move is the label's best move.
    pub top1: f64,
    /// Positions measured.
    pub positions: usize,
}

impl Losses {
    /// Policy plus value loss.
    pub fn total(&self) -> f64 {
        self.policy + self.value
    }

    /// Folds `other` in, weighting by positions.
    fn add(&mut self, other: &Losses) {
        let n = (self.positions + other.positions).max(1) as f64;
        let (a, b) = (self.positions as f64 / n, other.positions as f64 / n);
        self.policy = a * self.policy + b * other.policy;
        self.value = a * self.value + b * other.value;
        self.top1 = a * self.top1 + b * other.top1;
        self.positions += other.positions;
    }
}

/// A network with its optimiser and schedule.
pub struct Trainer {
    network: Network,
    optimizer: Optimizer,
    schedule: Schedule,
    step: usize,
}

impl Trainer {
    /// Trains `network` (which must have a conv policy head and a WDL value head).
    pub fn new(network: Network, schedule: Schedule) -> Result<Trainer, TrainError> {
        if !network.has_wdl_head() {
            return Err(TrainError::Invalid(
                "the trainer needs a W/D/L value head".into(),
            ));
        }
        let optimizer = tch::nn::AdamW::default()
            .wd(schedule.weight_decay)
            .build(network.var_store(), schedule.lr_at(0))?;
        Ok(Trainer {
            network,
            optimizer,
            schedule,
            step: 0,
        })
    }

    /// The network being trained.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// Continues the schedule from `step` (after loading a checkpoint).
    pub fn set_steps(&mut self, step: usize) {
        self.step = step;
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.schedule.lr_at(self.step)
    }

    /// One optimisation step on `batch`; the losses before the step.
    pub fn step(&mut self, batch: &Batch) -> Losses {
        self.optimizer.set_lr(self.schedule.lr_at(self.step));
        let (logits, value) = self.network.logits(&batch.input);
        let policy = batch.policy_loss(&logits);
        let value_loss = batch.value_loss(&value);
        let loss = &policy + &value_loss;
        self.optimizer.backward_step_clip_norm(&loss, 10.0);
        self.step += 1;
        Losses {
            policy: policy.double_value(&[]),
            value: value_loss.double_value(&[]),
            top1: batch.top1_hits(&logits.detach()) as f64 / batch.len().max(1) as f64,
            positions: batch.len(),
        }
    }

    /// Losses and top-1 agreement of the network on `samples`, without training.
    pub fn evaluate(&self, samples: &[Sample], batch_size: usize) -> Losses {
        evaluate(&self.network, samples, batch_size)
    }
}

/// Losses and top-1 agreement of `network` on `samples`, in batches of `batch_size`.
pub fn evaluate(network: &Network, samples: &[Sample], batch_size: usize) -> Losses {
    let mut total = Losses::default();
    tch::no_grad(|| {
        for group in samples.chunks(batch_size.max(1)) {
            let batch = Batch::new(group, network.device());
            let (logits, value) = network.logits(&batch.input);
            total.add(&Losses {
                policy: batch.policy_loss(&logits).double_value(&[]),
                value: batch.value_loss(&value).double_value(&[]),
                top1: batch.top1_hits(&logits) as f64 / batch.len() as f64,
                positions: batch.len(),
            });
        }
    });
    total
}

/// Initial weights of a fresh network for training: the seeded He initialisation, with the
/// unscaled rule-50 input plane's weights divided by 100, each block's second convolution
/// scaled by 1/√(2·blocks) (so the residual stream starts near identity, there being no
/// batch-norm), and the output layers of both heads scaled by 0.1 (near-uniform first
/// guesses).
pub fn fresh_weights(arch: &Architecture, seed: u64) -> NetWeights {
    let mut weights = NetWeights::random(arch, seed);
    let input = &mut weights.input;
    let k2 = input.kernel * input.kernel;
    for o in 0..input.outputs {
        let start = (o * input.inputs + RULE50_PLANE) * k2;
        input.weights[start..start + k2]
            .iter_mut()
            .for_each(|w| *w /= 100.0);
    }
    let residual_scale = 1.0 / (2.0 * arch.blocks.max(1) as f32).sqrt();
    for block in &mut weights.residual {
        block
            .conv2
            .weights
            .iter_mut()
            .for_each(|w| *w *= residual_scale);
    }
    let head = match &mut weights.policy {
        PolicyHead::Convolution { conv2, .. } => &mut conv2.weights,
        PolicyHead::Classical { fc, .. } => &mut fc.weights,
    };
    head.iter_mut().for_each(|w| *w *= 0.1);
    weights.value.fc2.weights.iter_mut().for_each(|w| *w *= 0.1);
    weights
}

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Directory of label chunks.
    pub data: PathBuf,
    /// The exported network (`.pb.gz`), rewritten after every epoch.
    pub out: PathBuf,
    /// Start from this network instead of fresh weights.
    pub init: Option<PathBuf>,
    /// Shape of a fresh network (ignored with `init`).
    pub architecture: Architecture,
    /// Passes over the training positions (in all, counting resumed ones).
    pub epochs: usize,
    /// Positions per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Seed of fresh weights and of the sample order.
    pub seed: u64,
    /// Most validation positions measured each epoch.
    pub validation_positions: usize,
    /// Training positions shuffled together.
    pub shuffle_window: usize,
    /// Encoding of the exported file.
    pub encoding: Encoding,
    /// Continue from the checkpoint beside `out` when there is one.
    pub resume: bool,
    /// Use CUDA when libtorch has it (else the CPU).
    pub cuda: bool,
    /// libtorch CPU threads (0: libtorch's default). Process-wide.
    pub threads: usize,
    /// What the passes compute in (the variables and the exported file are fp32 or its
    /// encoding either way): `Auto` trains in bfloat16 on CPUs that have it, about twice as
    /// fast.
    pub precision: Precision,
}

/// What one epoch did.
#[derive(Clone, Debug)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// Mean training losses over the epoch's steps (before each step).
    pub train: Losses,
    /// Losses on the validation samples after the epoch.
    pub validation: Losses,
    /// Learning rate at the epoch's end.
    pub lr: f64,
    /// Seconds the epoch took (training and validation).
    pub seconds: f64,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct TrainReport {
    /// The network's description.
    pub network: String,
    /// Where it trained, e.g. "CPU, 1 thread(s)" or "Cuda(0)".
    pub device: String,
    /// Labelled positions of the training games.
    pub train_positions: u64,
    /// Labelled positions of the held-out games.
    pub validation_positions: u64,
    /// Validation positions measured each epoch.
    pub validation_measured: usize,
    /// Epochs done before this run (resumed from the checkpoint).
    pub resumed_epochs: usize,
    /// The validation losses before training.
    pub initial_validation: Losses,
    /// The epochs this run trained.
    pub epochs: Vec<EpochReport>,
    /// Optimisation steps in all (resumed ones included).
    pub steps: usize,
    /// Wall time of the run.
    pub seconds: f64,
}

/// The checkpoint files beside `out`: (weights in full precision, run state).
pub fn checkpoint_paths(out: &Path) -> (PathBuf, PathBuf) {
    let name = out.file_name().map_or_else(
        || "net".to_string(),
        |n| {
            n.to_string_lossy()
                .trim_end_matches(".gz")
                .trim_end_matches(".pb")
                .to_string()
        },
    );
    let dir = out.parent().unwrap_or(Path::new("."));
    (
        dir.join(format!("{name}.ckpt.safetensors")),
        dir.join(format!("{name}.ckpt.state")),
    )
}

/// Writes `network` as an Lc0 file at `path` (through a temporary file, renamed when whole).
pub fn export(network: &Network, path: &Path, encoding: Encoding) -> Result<(), TrainError> {
    let write_error = |message: String| TrainError::Write {
        path: path.to_path_buf(),
        message,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    weights::save(&network.to_weights(), &tmp, encoding).map_err(|e| write_error(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| write_error(e.to_string()))
}

fn save_checkpoint(trainer: &Trainer, out: &Path, epochs: usize) -> Result<(), TrainError> {
    let (weights_path, state_path) = checkpoint_paths(out);
    let error = |path: &Path, message: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    // Both through temporary files renamed when whole, the state last: a run killed while
    // writing leaves the previous checkpoint intact.
    let weights_tmp = weights_path.with_extension("tmp.safetensors");
    trainer
        .network()
        .var_store()
        .save(&weights_tmp)
        .and_then(|()| Ok(std::fs::rename(&weights_tmp, &weights_path)?))
        .map_err(|e| error(&weights_path, e.to_string()))?;
    let state_tmp = state_path.with_extension("state.tmp");
    std::fs::write(
        &state_tmp,
        format!("epochs {epochs}\nsteps {}\n", trainer.steps()),
    )
    .and_then(|()| std::fs::rename(&state_tmp, &state_path))
    .map_err(|e| error(&state_path, e.to_string()))
}

/// Loads the checkpoint beside `out` into `network`: the epochs and steps done, or `None`
/// when there is no checkpoint.
fn load_checkpoint(
    network: &mut Network,
    out: &Path,
) -> Result<Option<(usize, usize)>, TrainError> {
    let (weights_path, state_path) = checkpoint_paths(out);
    if !state_path.exists() {
        return Ok(None);
    }
    let error = |path: &Path, message: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let text =
        std::fs::read_to_string(&state_path).map_err(|e| error(&state_path, e.to_string()))?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<usize>().ok())
            .ok_or_else(|| error(&state_path, format!("no '{key}' line")))
    };
    let (epochs, steps) = (field("epochs")?, field("steps")?);
    network.var_store_mut().load(&weights_path).map_err(|e| {
        error(
            &weights_path,
            format!("{e} (was it made with other network sizes?)"),
        )
    })?;
    Ok(Some((epochs, steps)))
}

/// Seconds between two [`Event::Progress`] reports within an epoch.
pub const PROGRESS_SECONDS: f64 = 30.0;

/// What a run reports while it trains.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// Within an epoch, every [`PROGRESS_SECONDS`]: positions trained so far of the epoch's,
    /// and the mean training losses so far.
    Progress {
        epoch: usize,
        positions: u64,
        of: u64,
        train: Losses,
        seconds: f64,
    },
    /// An epoch is done (and the net and checkpoint written).
    Epoch(&'a EpochReport),
}

/// Runs training as `options` say, calling `on_event` with progress and after each epoch.
pub fn train(
    options: &TrainOptions,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<TrainReport, TrainError> {
    if options.epochs == 0 || options.batch == 0 {
        return Err(TrainError::Invalid(
            "epochs and batch size must be at least 1".into(),
        ));
    }
    if !(options.lr > 0.0 && options.lr.is_finite()) {
        return Err(TrainError::Invalid(format!(
            "learning rate {} is not positive",
            options.lr
        )));
    }
    let parent = options.out.parent().filter(|p| !p.as_os_str().is_empty());
    if parent.is_some_and(|p| !p.is_dir()) {
        return Err(TrainError::Write {
            path: options.out.clone(),
            message: "its directory does not exist".into(),
        });
    }
    let started = Instant::now();
    tch::manual_seed(options.seed as i64);
    if options.threads > 0 {
        tch::set_num_threads(options.threads as i32);
    }
    let device = if options.cuda {
        Device::cuda_if_available()
    } else {
        Device::Cpu
    };
    let data = Dataset::open(&options.data)?;
    let scan = data.scan(options.validation_positions)?;
    if scan.train_positions == 0 {
        return Err(TrainError::Invalid(format!(
            "no training positions in {}",
            options.data.display()
        )));
    }
    let weights = match &options.init {
        Some(path) => {
            let w = weights::load(path)?;
            if !matches!(w.policy, PolicyHead::Convolution { .. }) || !w.value.is_wdl() {
                return Err(TrainError::Invalid(format!(
                    "{}: the trainer needs a conv policy head and a W/D/L value head ({})",
                    path.display(),
                    w.describe()
                )));
            }
            w
        }
        None => fresh_weights(&options.architecture, options.seed),
    };
    let mut network = Network::from_weights(&weights, "", device)?;
    network.set_precision(options.precision);
    let resumed = if options.resume {
        load_checkpoint(&mut network, &options.out)?
    } else {
        None
    };
    let (done_epochs, done_steps) = resumed.unwrap_or((0, 0));
    let steps_per_epoch = (scan.train_positions as usize).div_ceil(options.batch);
    let total_steps = steps_per_epoch * options.epochs;
    let schedule = Schedule {
        lr: options.lr,
        weight_decay: options.weight_decay,
        warmup_steps: (total_steps / 50).clamp(1, 500),
        total_steps,
    };
    let mut trainer = Trainer::new(network, schedule)?;
    trainer.set_steps(done_steps);
    let initial_validation = trainer.evaluate(&scan.validation, 256);
    let mut report = TrainReport {
        network: weights.describe(),
        device: {
            let precision = options.precision.resolve(device);
            match device {
                Device::Cpu => format!("CPU, {} thread(s), {precision}", tch::get_num_threads()),
                other => format!("{other:?}, {precision}"),
            }
        },
        train_positions: scan.train_positions,
        validation_positions: scan.validation_positions,
        validation_measured: scan.validation.len(),
        resumed_epochs: done_epochs,
        initial_validation,
        epochs: Vec::new(),
        steps: 0,
        seconds: 0.0,
    };
    for epoch in done_epochs..options.epochs {
        let epoch_start = Instant::now();
        let mut train = Losses::default();
        let seed = options
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(epoch as u64);
        let mut reported = Instant::now();
        data.train_batches(seed, options.batch, options.shuffle_window, |samples| {
            let batch = Batch::new(samples, device);
            train.add(&trainer.step(&batch));
            if reported.elapsed().as_secs_f64() >= PROGRESS_SECONDS {
                reported = Instant::now();
                on_event(Event::Progress {
                    epoch: epoch + 1,
                    positions: train.positions as u64,
                    of: scan.train_positions,
                    train,
                    seconds: epoch_start.elapsed().as_secs_f64(),
                });
            }
            true
        })?;
        let validation = trainer.evaluate(&scan.validation, 256);
        export(trainer.network(), &options.out, options.encoding)?;
        save_checkpoint(&trainer, &options.out, epoch + 1)?;
        let epoch_report = EpochReport {
            epoch: epoch + 1,
            train,
            validation,
            lr: trainer.lr(),
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        tracing::info!(?epoch_report, "epoch done");
        on_event(Event::Epoch(&epoch_report));
        report.epochs.push(epoch_report);
    }
    report.steps = trainer.steps();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::dataset::{Split, synthetic};
    use tch::Tensor;

    fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("banyan-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// 256 positions of made-up labels: the loss falls within a few seconds.
    fn samples_256() -> Vec<Sample> {
        let dir = temp_dir("trainer-samples");
        synthetic::write_chunks(&dir, &synthetic::games(8, 11), 8);
        let data = Dataset::open(&dir).unwrap();
        let mut samples = Vec::new();
        for index in 0..data.chunks().len() {
            data.for_each_sample(index, Split::Train, |s| samples.push(s))
                .unwrap();
            data.for_each_sample(index, Split::Validation, |s| samples.push(s))
                .unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
        samples.truncate(256);
        assert_eq!(samples.len(), 256);
        samples
    }

    fn small_trainer(steps: usize) -> Trainer {
        // One libtorch thread: on a shared machine a second one waits on busy cores.
        tch::set_num_threads(1);
        let arch = Architecture::new(2, 16);
        let network = Network::from_weights(&fresh_weights(&arch, 1), "", Device::Cpu).unwrap();
        let schedule = Schedule {
            lr: 3e-3,
            weight_decay: 1e-4,
            warmup_steps: 5,
            total_steps: steps,
        };
        Trainer::new(network, schedule).unwrap()
    }

    #[test]
    fn the_loss_falls_on_256_positions() {
        tch::manual_seed(1);
        let samples = samples_256();
        let started = Instant::now();
        let mut trainer = small_trainer(60);
        let before = trainer.evaluate(&samples, 256);
        for step in 0..60 {
            let group = &samples[(step % 4) * 64..][..64];
            trainer.step(&Batch::new(group, Device::Cpu));
        }
        let after = trainer.evaluate(&samples, 256);
        let seconds = started.elapsed().as_secs_f64();
        assert!(
            after.total() < 0.8 * before.total(),
            "loss {:.3} -> {:.3}",
            before.total(),
            after.total()
        );
        assert!(after.policy < before.policy && after.value < before.value);
        assert!(after.top1 > before.top1);
        assert!(seconds < 30.0, "took {seconds:.1} s");
    }

    /// A net trained a few steps, exported and loaded by the evaluator's loader, gives the
    /// trainer's own outputs within the encoding's rounding.
    #[test]
    fn exported_nets_reproduce_the_trainers_outputs() {
        let samples = samples_256();
        let mut trainer = small_trainer(5);
        for step in 0..5 {
            trainer.step(&Batch::new(&samples[step * 32..][..32], Device::Cpu));
        }
        let batch = Batch::new(&samples[..64], Device::Cpu);
        let (logits, value) = tch::no_grad(|| trainer.network().logits(&batch.input));
        let wdl = trainer.network().value_probabilities(&value);
        let dir = temp_dir("trainer-export");
        std::fs::create_dir_all(&dir).unwrap();
        for (encoding, max_policy, max_wdl) in [
            // The loader's own tolerances for written nets (network.rs); measured here:
            // FLOAT16 1.5e-4 / 2.6e-5, LINEAR16 2.7e-5 / 5.0e-6.
            (Encoding::Float16, 5e-3, 2e-3),
            (Encoding::Linear16, 1e-3, 1e-4),
        ] {
            let path = dir.join(format!("net-{encoding:?}.pb.gz"));
            export(trainer.network(), &path, encoding).unwrap();
            let loaded = Network::load(&path, Device::Cpu).unwrap();
            let (policy2, wdl2) = loaded.forward(&batch.input);
            let policy_gap = max_difference(&logits, &policy2);
            let wdl_gap = max_difference(&wdl, &wdl2);
            assert!(
                policy_gap < max_policy,
                "{encoding:?}: policy differs by {policy_gap}"
            );
            assert!(wdl_gap < max_wdl, "{encoding:?}: wdl differs by {wdl_gap}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_run_trains_exports_and_resumes() {
        tch::set_num_threads(1);
        let dir = temp_dir("trainer-run");
        let games = synthetic::games(40, 3);
        let positions = |g: &[crate::train::record::GameRecord]| -> u64 {
            g.iter().map(|g| g.labels.len() as u64).sum()
        };
        let held_out = positions(&games[19..20]) + positions(&games[39..40]);
        let all = positions(&games);
        synthetic::write_chunks(&dir.join("data"), &games, 20);
        let mut options = TrainOptions {
            data: dir.join("data"),
            out: dir.join("net.pb.gz"),
            init: None,
            architecture: Architecture::new(1, 8),
            epochs: 2,
            batch: 64,
            lr: 2e-3,
            weight_decay: 1e-4,
            seed: 5,
            validation_positions: 1000,
            shuffle_window: 500,
            encoding: Encoding::Float16,
            resume: false,
            cuda: false,
            threads: 1,
            precision: Precision::Fp32,
        };
        let mut seen = Vec::new();
        let report = train(&options, |e| {
            if let Event::Epoch(e) = e {
                seen.push(e.epoch)
            }
        })
        .unwrap();
        assert_eq!(seen, [1, 2]);
        assert_eq!(report.validation_positions, held_out);
        assert_eq!(report.train_positions, all - held_out);
        assert_eq!(report.steps, 2 * ((all - held_out) as usize).div_ceil(64));
        assert!(report.epochs[1].validation.total() < report.initial_validation.total());
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
        assert!(names.contains(&"net.ckpt.safetensors".to_string()));
        assert!(names.contains(&"net.ckpt.state".to_string()));
        assert_eq!(
            weights::load(&options.out).unwrap().describe(),
            "1x8 SE, conv policy, WDL"
        );
        // Resuming with more epochs continues after the second.
        options.resume = true;
        options.epochs = 3;
        let resumed = train(&options, |_| {}).unwrap();
        assert_eq!(resumed.resumed_epochs, 2);
        assert_eq!(resumed.epochs.len(), 1);
        assert_eq!(resumed.epochs[0].epoch, 3);
        // Starting from the exported net.
        options.resume = false;
        options.epochs = 1;
        options.init = Some(dir.join("net.pb.gz"));
        options.out = dir.join("next.pb.gz");
        let next = train(&options, |_| {}).unwrap();
        assert!(next.initial_validation.total() < report.initial_validation.total());
        // Bad input is an error.
        options.data = dir.join("nowhere");
        assert!(train(&options, |_| {}).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

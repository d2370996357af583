//! The evaluator process: its configuration, how the engine starts it, and its `main`.
//!
//! The engine re-executes its own binary with [`ROLE_ARG`] followed by
//! [`EvaluatorConfig::to_args`]; that process calls [`main_from_args`], the only place where
//! libtorch is initialised. The child loads the network (or the heuristic), binds the socket,
//! and reports one line on its stdout: `ready <description>` or `error <message>` (then exits
//! non-zero). It exits when its parent dies: `PR_SET_PDEATHSIG` on Linux, and in any case when
//! its stdin (a pipe from the parent) reaches end of file; it removes its socket as it goes.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::backend::Backend;
use crate::builtin::{self, Weights};
use crate::client::{ClientError, EvalClient};
use crate::heuristic::Heuristic;
use crate::hostnet::HostLane;
use crate::network::{self, Network, Precision};
use crate::server::{self, ServerConfig};
use crate::triton::backend::TritonBackend;
use crate::triton::client::TritonTarget;
use crate::weights;

/// The first argument that makes the `banyan` binary (or a test binary) the evaluator.
pub const ROLE_ARG: &str = "__evaluator";

/// Where the network runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CPU threads.
    Cpu,
    /// The first CUDA device (an error if libtorch has none).
    Cuda,
    /// CUDA when libtorch has it, else the CPU.
    #[default]
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            "auto" => Ok(DeviceChoice::Auto),
            _ => Err(format!("unknown backend device {s:?} (cpu, cuda or auto)")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Auto => "auto",
        })
    }
}

/// Everything the evaluator process needs to know.
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluatorConfig {
    /// The built-in network, the heuristic or an Lc0 weights file.
    pub weights: Weights,
    /// CPU threads: the evaluator's lanes on the CPU (each evaluates its own batches on one
    /// core), libtorch's threads for a GPU's host-side work.
    pub threads: usize,
    /// Where the network runs.
    pub device: DeviceChoice,
    /// What the network computes in.
    pub precision: Precision,
    /// Most positions per forward pass.
    pub max_batch: usize,
    /// Policy softmax temperature; `None`: the weights' own ([`Weights::policy_temperature`]).
    pub policy_temperature: Option<f32>,
    /// A Triton server (or several) to forward the batches to, instead of evaluating here.
    pub triton: Option<TritonTarget>,
    /// The Unix-domain socket path the evaluator listens on. [`spawn`] creates its directory
    /// (mode 0700) and removes both again.
    pub socket: PathBuf,
    /// How long [`spawn`] waits for the process to report ready (not passed to the child).
    pub ready_timeout: Duration,
}

impl EvaluatorConfig {
    /// Defaults (2 threads, automatic device, batches of up to 256, the weights' own policy
    /// temperature, 60 s to start) with a fresh socket path in a private temporary directory.
    pub fn new(weights: Weights) -> EvaluatorConfig {
        EvaluatorConfig {
            weights,
            threads: 2,
            device: DeviceChoice::Auto,
            precision: Precision::Auto,
            max_batch: 256,
            policy_temperature: None,
            triton: None,
            socket: fresh_socket_path(),
            ready_timeout: Duration::from_secs(60),
        }
    }

    /// The command-line arguments (after [`ROLE_ARG`]) that [`EvaluatorConfig::from_args`]
    /// turns back into this configuration (all but `ready_timeout`).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |name: &str, value: &OsStr| {
            args.push(name.into());
            args.push(value.into());
        };
        push("--weights", &self.weights.to_os_string());
        push("--threads", self.threads.to_string().as_ref());
        push("--device", self.device.to_string().as_ref());
        push("--precision", self.precision.to_string().as_ref());
        push("--max-batch", self.max_batch.to_string().as_ref());
        if let Some(t) = self.policy_temperature {
            push("--policy-temperature", t.to_string().as_ref());
        }
        if let Some(target) = &self.triton {
            push("--triton-url", target.urls.as_ref());
            push("--triton-model", target.model.as_ref());
        }
        push("--socket", self.socket.as_os_str());
        args
    }

    /// Parses arguments written by [`EvaluatorConfig::to_args`]; unknown or malformed ones are
    /// an error naming them. `--socket` is required.
    pub fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<EvaluatorConfig, String> {
        let mut config = EvaluatorConfig::new(Weights::default());
        let mut socket = None;
        let mut args = args.into_iter();
        while let Some(name) = args.next() {
            let name = name.to_string_lossy().into_owned();
            let value = args
                .next()
                .ok_or_else(|| format!("evaluator argument {name} needs a value"))?;
            let text = || value.to_str().ok_or_else(|| format!("{name}: not UTF-8"));
            let number = |s: &str| {
                s.parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{name}: expected a positive integer, got {s:?}"))
            };
            match name.as_str() {
                "--weights" => config.weights = Weights::from(value.as_os_str()),
                "--threads" => config.threads = number(text()?)?,
                "--device" => config.device = text()?.parse()?,
                "--precision" => config.precision = text()?.parse()?,
                "--max-batch" => config.max_batch = number(text()?)?,
                "--policy-temperature" => {
                    let t = text()?
                        .parse::<f32>()
                        .ok()
                        .filter(|t| t.is_finite() && *t > 0.0)
                        .ok_or_else(|| format!("{name}: expected a positive number"))?;
                    config.policy_temperature = Some(t);
                }
                "--triton-url" => {
                    config.triton.get_or_insert_with(TritonTarget::default).urls = text()?.into();
                }
                "--triton-model" => {
                    config
                        .triton
                        .get_or_insert_with(TritonTarget::default)
                        .model = text()?.into();
                }
                "--socket" => socket = Some(PathBuf::from(value)),
                _ => return Err(format!("unknown evaluator argument {name}")),
            }
        }
        config.socket = socket.ok_or("evaluator needs --socket")?;
        Ok(config)
    }
}

/// A fresh socket path `<tmp>/banyan-<pid>-<n>-<nanos>/evaluator.sock`.
fn fresh_socket_path() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Relaxed: only uniqueness matters.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir()
        .join(format!("banyan-{}-{n}-{nanos:08x}", std::process::id()))
        .join("evaluator.sock")
}

/// libgomp's spin-before-sleep setting, and the value [`spawn`] gives the evaluator.
const SPIN_COUNT_VAR: &str = "GOMP_SPINCOUNT";
const SPIN_COUNT: &str = "10000";

/// Why the evaluator could not be started.
#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("starting the evaluator: {0}")]
    Io(#[from] io::Error),
    /// The process started but reported an error (e.g. a bad weights file) and exited.
    #[error("evaluator failed: {0}")]
    Failed(String),
    #[error("evaluator not ready after {0:?}")]
    Timeout(Duration),
}

/// A running evaluator process. Dropping it kills and reaps the process and removes its
/// socket (and the directory [`spawn`] made for it).
pub struct EvaluatorProcess {
    child: Child,
    /// The write end of the child's stdin; closing it tells the child to exit.
    stdin: Option<ChildStdin>,
    socket: PathBuf,
    created_dir: Option<PathBuf>,
    description: String,
}

/// Starts `exe ROLE_ARG <config args>` and waits until it reports ready (or an error, or
/// `config.ready_timeout` passes, in which case it is killed).
///
/// Unless the environment sets it, the child gets `GOMP_SPINCOUNT=10000`: libtorch's OpenMP
/// threads spin about 0.1 ms before sleeping, which keeps the back-to-back parallel regions of a
/// forward pass fast (fully passive waiting cost 35-50 % of maia-1900's throughput on 2 cores)
/// without burning the workers' cores between batches (the default spins about 3 ms). An
/// explicit spin count also overrides `OMP_WAIT_POLICY`.
///
/// On Linux the child dies with the thread that spawned it (`PR_SET_PDEATHSIG` follows the
/// parent thread), so call this from a thread that lives as long as the evaluator should.
pub fn spawn(exe: &Path, config: &EvaluatorConfig) -> Result<EvaluatorProcess, SpawnError> {
    let dir = config.socket.parent().unwrap_or(Path::new("."));
    let created_dir = match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Some(dir.to_path_buf()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
        Err(e) => return Err(e.into()),
    };
    let mut command = Command::new(exe);
    command
        .arg(ROLE_ARG)
        .args(config.to_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if std::env::var_os(SPIN_COUNT_VAR).is_none() {
        command.env(SPIN_COUNT_VAR, SPIN_COUNT);
    }
    let child = command.spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            if let Some(dir) = &created_dir {
                let _ = std::fs::remove_dir(dir); // Best effort: it is empty.
            }
            return Err(e.into());
        }
    };
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut process = EvaluatorProcess {
        child,
        stdin,
        socket: config.socket.clone(),
        created_dir,
        description: String::new(),
    };
    // A thread reads the status line so that the wait can time out.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let result = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(result); // The receiver may have given up waiting.
    });
    let line = match rx.recv_timeout(config.ready_timeout) {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(SpawnError::Timeout(config.ready_timeout)),
    };
    let line = line.trim_end();
    if let Some(description) = line.strip_prefix("ready ") {
        process.description = description.to_string();
        return Ok(process);
    }
    let status = process.wait()?;
    Err(SpawnError::Failed(match line.strip_prefix("error ") {
        Some(message) => message.to_string(),
        None => format!("exited ({status}) before reporting ready"),
    }))
}

impl EvaluatorProcess {
    /// The socket to connect workers to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What it evaluates with (network name and shape, or "heuristic").
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Opens a new connection to it.
    pub fn connect(&self) -> Result<EvalClient, ClientError> {
        EvalClient::connect(&self.socket)
    }

    /// Whether it is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills it (SIGKILL); reap it with [`EvaluatorProcess::wait`].
    pub fn kill(&mut self) -> io::Result<()> {
        self.child.kill()
    }

    /// Closes its stdin, which asks it to exit (once no forked copy of this process holds the
    /// pipe either), and waits until it has.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.stdin = None;
        self.child.wait()
    }
}

impl Drop for EvaluatorProcess {
    fn drop(&mut self) {
        // Best effort throughout: the process may already be gone.
        let _ = self.kill();
        let _ = self.wait();
        let _ = std::fs::remove_file(&self.socket);
        if let Some(dir) = &self.created_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The evaluator process's `main`: `args` are those after [`ROLE_ARG`]. Returns only on
/// failure (it exits when its parent goes away).
pub fn main_from_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let mut status = io::stdout();
    let result = run(args, &mut status);
    let err = result.unwrap_err();
    tracing::error!("evaluator: {err}");
    // Ignored: if the parent is gone there is nobody to tell.
    let _ = writeln!(status, "error {}", err.replace('\n', " "));
    let _ = status.flush();
    ExitCode::FAILURE
}

/// Sets up and serves; returns only with an error message.
fn run(args: impl IntoIterator<Item = OsString>, status: &mut impl Write) -> Result<(), String> {
    let config = EvaluatorConfig::from_args(args)?;
    watch_parent(config.socket.clone())?;
    // SAFETY: installs SIG_IGN, no handler code. A client that hangs up must surface as EPIPE
    // on the write to it, never kill the evaluator.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
    }
    .map_err(|e| format!("ignoring SIGPIPE: {e}"))?;
    let lanes = open_lanes(&config)?;
    let backend = &lanes[0];
    let listener = UnixListener::bind(&config.socket)
        .map_err(|e| format!("binding {}: {e}", config.socket.display()))?;
    let policy_temperature = config
        .policy_temperature
        .unwrap_or_else(|| config.weights.policy_temperature());
    let description = match lanes.len() {
        1 => backend.describe(),
        n => format!("{} ({n} lanes)", backend.describe()),
    }
    .replace('\n', " ");
    // The temperature is named because `<auto>` leaves it to the weights.
    let description = format!("{description}, policy temperature {policy_temperature}");
    tracing::info!("evaluator ready: {description}");
    writeln!(status, "ready {description}")
        .and_then(|()| status.flush())
        .map_err(|e| format!("reporting ready: {e}"))?;
    let server_config = ServerConfig {
        max_batch: config.max_batch,
        policy_temperature,
    };
    let err = server::serve(listener, lanes, server_config);
    Err(format!("serving: {err}"))
}

/// The backends of `config`'s evaluator, one per lane: as many as its threads for a network
/// or the heuristic on the CPU (see [`crate::server`]), a network in fp32 on the host pass
/// alone ([`HostLane`], no libtorch network), else each computing on one libtorch thread;
/// one for a GPU (its host-side work on the threads) or Triton.
fn open_lanes(config: &EvaluatorConfig) -> Result<Vec<Box<dyn Backend>>, String> {
    let on_cpu = config.triton.is_none()
        && (config.weights == Weights::Heuristic
            || torch_device(config.device)? == tch::Device::Cpu);
    if !on_cpu {
        return Ok(vec![open_backend(config)?]);
    }
    let lanes = config.threads.max(1);
    if config.weights == Weights::Heuristic {
        return Ok((0..lanes)
            .map(|_| Box::new(Heuristic::new(config.max_batch)) as Box<dyn Backend>)
            .collect());
    }
    if config.precision.resolve(tch::Device::Cpu) == Precision::Fp32 {
        let (weights, name) = match &config.weights {
            Weights::File(path) => (weights::load(path), network::file_name(path)),
            _ => (
                weights::from_gzip_bytes(builtin::NETWORK),
                builtin::NETWORK_NAME.to_string(),
            ),
        };
        let weights = weights.map_err(|e| format!("loading {}: {e}", config.weights))?;
        let description = network::describe(&weights, &name);
        if let Some(lanes) = HostLane::open(&weights, &description, config.max_batch, lanes) {
            return Ok(lanes.into_iter().map(|l| Box::new(l) as _).collect());
        }
    }
    set_torch_threads(1);
    let network = load_network(config, tch::Device::Cpu)?;
    let mut backends: Vec<Box<dyn Backend>> =
        (1..lanes).map(|_| Box::new(network.share()) as _).collect();
    backends.push(Box::new(network));
    Ok(backends)
}

/// What `config`'s evaluator serves: its Triton server(s) when it has them (checked live and
/// ready), else the heuristic or the network of its weights on its device, in its precision,
/// with its libtorch CPU threads (process-wide), for batches of up to its `max_batch`.
pub(crate) fn open_backend(config: &EvaluatorConfig) -> Result<Box<dyn Backend>, String> {
    if let Some(target) = &config.triton {
        let backend =
            TritonBackend::connect(target, config.max_batch).map_err(|e| e.to_string())?;
        return Ok(Box::new(backend));
    }
    let weights = &config.weights;
    if *weights == Weights::Heuristic {
        return Ok(Box::new(Heuristic::new(config.max_batch)));
    }
    set_torch_threads(config.threads);
    Ok(Box::new(load_network(
        config,
        torch_device(config.device)?,
    )?))
}

/// Sets libtorch's process-wide threads (once per process: libtorch refuses a second time).
fn set_torch_threads(threads: usize) {
    tch::set_num_threads(threads as i32);
    tch::set_num_interop_threads(1);
}

/// `config`'s network on `device`, in its precision, for batches of up to its `max_batch`.
fn load_network(config: &EvaluatorConfig, device: tch::Device) -> Result<Network, String> {
    let weights = &config.weights;
    let mut network = match weights {
        Weights::File(path) => Network::load(path, device),
        _ => Network::load_builtin(device),
    }
    .map_err(|e| format!("loading {weights}: {e}"))?;
    network.set_precision(config.precision);
    network.set_max_batch(config.max_batch);
    Ok(network)
}

/// The libtorch device for `choice` (initialises libtorch).
pub(crate) fn torch_device(choice: DeviceChoice) -> Result<tch::Device, String> {
    match choice {
        DeviceChoice::Cpu => Ok(tch::Device::Cpu),
        DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
        DeviceChoice::Cuda => Err("CUDA requested but libtorch has no CUDA device".into()),
    }
}

/// Makes this process exit when its parent does: the parent-death signal (SIGTERM) on Linux,
/// and a thread that waits for end of file on stdin (the parent's pipe) everywhere. Either way,
/// and on any SIGTERM, the socket file and its directory (when empty) are removed first.
fn watch_parent(socket: PathBuf) -> Result<(), String> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let file = CString::new(socket.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let dir = CString::new(
        socket
            .parent()
            .unwrap_or(Path::new(""))
            .as_os_str()
            .as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    // Only set here, before the handler is installed; the handler only reads.
    let _ = CLEANUP.set((file, dir));
    let action = SigAction::new(
        SigHandler::Handler(on_sigterm),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only calls async-signal-safe functions (unlink, rmdir, _exit).
    unsafe { sigaction(Signal::SIGTERM, &action) }.map_err(|e| format!("SIGTERM handler: {e}"))?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    thread::Builder::new()
        .name("eval-parent-watch".into())
        .spawn(|| {
            let mut sink = [0u8; 64];
            let mut stdin = io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            cleanup_and_exit();
        })
        .map_err(|e| format!("parent watcher: {e}"))?;
    Ok(())
}

/// The socket file and its directory, removed when the evaluator is told to go.
static CLEANUP: OnceLock<(CString, CString)> = OnceLock::new();

extern "C" fn on_sigterm(_: libc::c_int) {
    cleanup_and_exit();
}

/// Removes the socket (and its directory if empty) and ends the process at once. Async-signal
/// safe; `_exit` skips atexit handlers and static destructors, which could block on locks held
/// by libtorch's threads.
fn cleanup_and_exit() -> ! {
    if let Some((file, dir)) = CLEANUP.get() {
        // SAFETY: plain system calls on NUL-terminated paths; failures are irrelevant here.
        unsafe {
            libc::unlink(file.as_ptr());
            libc::rmdir(dir.as_ptr());
        }
    }
    // SAFETY: terminates the process immediately.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_args() {
        let mut config = EvaluatorConfig::new(Weights::File("/nets/a b.pb.gz".into()));
        config.threads = 3;
        config.device = DeviceChoice::Cpu;
        config.max_batch = 64;
        config.policy_temperature = Some(2.2);
        assert_eq!(
            EvaluatorConfig::from_args(config.to_args()),
            Ok(config.clone())
        );
        config.weights = Weights::Heuristic;
        config.device = DeviceChoice::Cuda;
        config.precision = Precision::Bf16;
        assert_eq!(
            EvaluatorConfig::from_args(config.to_args()),
            Ok(config.clone())
        );
        config.weights = Weights::Builtin;
        assert_eq!(
            EvaluatorConfig::from_args(config.to_args()),
            Ok(config.clone())
        );
        config.triton = Some(TritonTarget {
            urls: "gpu1:8001,gpu2:8001".into(),
            model: "banyan".into(),
        });
        assert_eq!(EvaluatorConfig::from_args(config.to_args()), Ok(config));
    }

    #[test]
    fn bad_args_are_named() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let err = |list: &[&str]| EvaluatorConfig::from_args(args(list)).unwrap_err();
        assert!(err(&["--threads", "0", "--socket", "s"]).contains("--threads"));
        assert!(err(&["--device", "tpu", "--socket", "s"]).contains("tpu"));
        assert!(err(&["--precision", "fp8", "--socket", "s"]).contains("fp8"));
        assert!(err(&["--policy-temperature", "-1", "--socket", "s"]).contains("temperature"));
        assert!(err(&["--socket"]).contains("needs a value"));
        assert!(err(&["--frobnicate", "1"]).contains("--frobnicate"));
        assert!(err(&["--threads", "2"]).contains("--socket"));
    }

    #[test]
    fn fresh_socket_paths_differ_and_fit_sun_path() {
        let a = fresh_socket_path();
        let b = fresh_socket_path();
        assert_ne!(a, b);
        assert!(a.as_os_str().len() < 100);
    }
}

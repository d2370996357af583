//! Drives the real `banyan` binary over stdin/stdout, the way a GUI does; the networks tests use
//! (written by the project, or third-party ones in ../shared/nets) and reporting a skipped test.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use banyan_nn::weights::{Architecture, Encoding, NetWeights};

/// How long any single expected line may take before a test fails instead of hanging.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Engine {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Engine {
    /// Starts the engine in the crate's directory with the test's environment.
    pub fn start() -> Engine {
        Engine::start_in(env!("CARGO_MANIFEST_DIR"), false)
    }

    /// Starts the engine on the heuristic evaluator, whatever the default: for tests of the
    /// search machinery that run many thousands of playouts (the networks have their own).
    pub fn start_heuristic() -> Engine {
        let mut engine = Engine::start();
        engine.send("setoption name WeightsFile value <heuristic>");
        engine
    }

    /// Starts the engine in `dir`; with `empty_env`, as `env -i` would.
    pub fn start_in(dir: impl AsRef<Path>, empty_env: bool) -> Engine {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_banyan"));
        cmd.current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if empty_env {
            cmd.env_clear();
        }
        let mut child = cmd.spawn().expect("start banyan");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Engine {
            child,
            stdin,
            lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .expect("write to banyan");
    }

    /// Reads lines until one starts with `prefix`; returns them all, that one last.
    pub fn read_until(&mut self, prefix: &str) -> Vec<String> {
        self.read_until_within(prefix, LINE_TIMEOUT)
    }

    pub fn read_until_within(&mut self, prefix: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with(prefix);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no '{prefix}' within {timeout:?}; saw {seen:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("engine closed stdout before '{prefix}'; saw {seen:?}")
                }
            }
        }
    }

    /// Lines already printed, without waiting.
    pub fn drain(&mut self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Closes stdin (as a GUI that dies would) without sending `quit`.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `quit` and checks the engine exits promptly and cleanly.
    pub fn quit(mut self) {
        self.send("quit");
        let status = self
            .wait(Duration::from_secs(5))
            .expect("banyan exits after quit");
        assert!(status.success(), "exit status {status}");
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The arguments of the `bestmove` line.
pub fn bestmove_of(lines: &[String]) -> (String, Option<String>) {
    let last = lines.last().expect("lines");
    let mut t = last.split_whitespace();
    assert_eq!(t.next(), Some("bestmove"), "{last}");
    let best = t.next().expect("a move").to_string();
    let ponder = match (t.next(), t.next()) {
        (Some("ponder"), Some(p)) => Some(p.to_string()),
        _ => None,
    };
    (best, ponder)
}

/// Whether `mv` (UCI text) is legal after `moves` from the start position or `fen`.
pub fn is_legal(fen: Option<&str>, moves: &[&str], mv: &str) -> bool {
    let mut board = match fen {
        Some(f) => cozy_chess::Board::from_fen(f, false).expect("test FEN"),
        None => cozy_chess::Board::default(),
    };
    for m in moves {
        let m = banyan_nn::policy::parse_uci_move(&board, m, false).expect("test move");
        board.play(m);
    }
    banyan_nn::policy::parse_uci_move(&board, mv, false).is_some()
}

/// The last `info depth …` line in `lines` (the search's final report).
pub fn last_search_info(lines: &[String]) -> &String {
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("info depth"))
        .unwrap_or_else(|| panic!("no info depth line: {lines:?}"))
}

/// The prior (percent) of each root move in the `VerboseMoveStats` lines after `go nodes 1`
/// (`VerboseMoveStats` set by the caller); the `bestmove` must be one of those moves.
pub fn priors(engine: &mut Engine, position: &str) -> BTreeMap<String, f32> {
    engine.send("ucinewgame");
    engine.send(position);
    engine.send("go nodes 1");
    let lines = engine.read_until("bestmove");
    let priors: BTreeMap<String, f32> = lines
        .iter()
        .filter_map(|l| {
            // The root's own `node` line is not a move.
            let rest = l.strip_prefix("info string ")?;
            if rest.starts_with("node ") {
                return None;
            }
            let p = rest.find("(P:")? + 3;
            let prior = rest[p..p + rest[p..].find('%')?].trim().parse().ok()?;
            Some((rest.split_whitespace().next()?.to_string(), prior))
        })
        .collect();
    let (best, _) = bestmove_of(&lines);
    assert!(
        priors.contains_key(&best),
        "{best} is no root move: {lines:?}"
    );
    priors
}

/// A field of `mv`'s `VerboseMoveStats` line in a search's output: the number after `label`
/// (`"N:"`, `"(D:"`, `"(P:"` …), without its closing parenthesis or percent sign.
pub fn move_stat(lines: &[String], mv: &str, label: &str) -> Option<f32> {
    let line = lines
        .iter()
        .find(|l| l.starts_with(&format!("info string {mv} ")))?;
    let mut words = line.split_whitespace();
    words.find(|&w| w == label)?;
    words.next()?.trim_end_matches([')', '%']).parse().ok()
}

/// The largest difference between two sets of priors of the same moves.
pub fn prior_difference(a: &BTreeMap<String, f32>, b: &BTreeMap<String, f32>) -> f32 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .map(|(mv, p)| (p - b[mv]).abs())
        .fold(0.0, f32::max)
}

/// The value after `name` in an info line.
pub fn info_field(line: &str, name: &str) -> Option<String> {
    let mut t = line.split_whitespace();
    t.find(|&w| w == name)?;
    t.next().map(str::to_string)
}

/// The path of a third-party network in ../shared/nets.
pub fn net(name: &str) -> String {
    format!("{}/../shared/nets/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Reports `test` as skipped for `reason`: one line `<test>: <reason>` to stderr and to the file
/// named by `BANYAN_SKIP_LOG` (which `scripts/test` counts and names). The test then returns.
pub fn skip(test: &str, reason: &str) {
    let line = format!("{test}: {reason}\n");
    eprint!("{line}");
    if let Some(log) = std::env::var_os("BANYAN_SKIP_LOG") {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .expect("append to BANYAN_SKIP_LOG");
    }
}

/// Whether the third-party networks `names` are in ../shared/nets; if not, reports `test` as
/// skipped.
pub fn shared_nets_or_skip(test: &str, names: &[&str]) -> bool {
    match names.iter().find(|name| !Path::new(&net(name)).is_file()) {
        None => true,
        Some(missing) => {
            skip(
                test,
                &format!("no ../shared/nets/{missing} (third-party network)"),
            );
            false
        }
    }
}

/// A small network of the given kind (2 blocks × 8 filters, small heads).
pub fn tiny(se: bool, conv_policy: bool, wdl: bool) -> Architecture {
    Architecture {
        se_channels: se.then_some(2),
        conv_policy,
        policy_channels: 4,
        wdl,
        value_channels: 4,
        value_hidden: 32,
        ..Architecture::new(2, 8)
    }
}

/// A network the project writes for a test (seeded random weights) in a temporary directory of
/// its own, removed on drop. Its name (the engine's description starts with it) is `name`.
pub struct TestNet {
    dir: PathBuf,
    path: PathBuf,
}

impl TestNet {
    pub fn new(name: &str, arch: &Architecture, seed: u64) -> TestNet {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "banyan-testnet-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("{name}.pb.gz"));
        let weights = NetWeights::random(arch, seed);
        banyan_nn::weights::save(&weights, &path, Encoding::Float16).expect("write the test net");
        TestNet { dir, path }
    }

    /// The file's path, as a `setoption` value.
    pub fn path(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A small deterministic generator (xorshift), so that a failure can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

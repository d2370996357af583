//! Triton Inference Server support through the real binary: `banyan export-triton` writes a
//! model repository whose TorchScript computes what the network computes, and a real
//! `tritonserver` (pytriton's CPU build, installed into the test venv by scripts/test) serves
//! it to `Backend triton`: the same priors and values as the local evaluator, a whole game,
//! and a server killed mid-search.
//!
//! The server runs the exported TorchScript through a Python-backend model
//! (`tests/triton/model.py`), as pytriton's server has no PyTorch backend.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Engine, bestmove_of, info_field, is_legal, prior_difference, priors, skip};

use banyan_nn::encode::PositionHistory;
use banyan_nn::network::Network;
use banyan_nn::triton::export::run_module;
use cozy_chess::Board;
use tch::{CModule, Device};

fn export(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_banyan"))
        .arg("export-triton")
        .args(args)
        .output()
        .expect("run banyan export-triton")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("banyan-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The built-in net exported under a chosen model name: the configuration and a TorchScript
/// file that, loaded back through tch, gives the built-in network's outputs.
#[test]
fn export_triton_writes_a_repository_that_computes_the_network() {
    let dir = temp_dir("export-triton");
    let out = export(&[
        "--out",
        dir.to_str().unwrap(),
        "--model",
        "net",
        "--max-batch",
        "128",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("6x64 SE"));
    let config = std::fs::read_to_string(dir.join("net/config.pbtxt")).unwrap();
    assert!(
        config.contains("name: \"net\"") && config.contains("max_batch_size: 128"),
        "{config}"
    );

    let module = CModule::load(dir.join("net/1/model.pt")).unwrap();
    let planes = [PositionHistory::new(Board::default()).planes()];
    let (policy, wdl) = run_module(&module, &planes).unwrap();
    let mut network = Network::load_builtin(Device::Cpu).unwrap();
    let input = network.input_tensor(planes.iter());
    let (expected_policy, expected_wdl) = network.forward(&input);
    let difference = |a: &tch::Tensor, b: &tch::Tensor| (a - b).abs().max().double_value(&[]);
    assert!(difference(&policy, &expected_policy) < 1e-4);
    assert!(difference(&wdl, &expected_wdl) < 1e-5);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// No network or a bad path: a clear error and a non-zero exit, nothing written.
#[test]
fn export_triton_refuses_what_it_cannot_export() {
    let dir = temp_dir("export-triton-bad");
    for (args, expected) in [
        (vec!["--weights", "<heuristic>"], "not a network"),
        (vec!["--weights", "/nonexistent/net.pb.gz"], "loading"),
        (vec!["--model", "../escape"], "not a model name"),
    ] {
        let out = export(&[args.as_slice(), &["--out", dir.to_str().unwrap()]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
    assert!(!dir.join("banyan").exists());
}

/// pytriton's server directory in the test venv, or a skip.
fn pytriton_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    let Some(python) = std::env::var_os("BANYAN_TEST_PYTHON") else {
        skip(test, "BANYAN_TEST_PYTHON is not set (scripts/test sets it)");
        return None;
    };
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, sys, pytriton; print(os.path.dirname(pytriton.__file__)); \
             print('%d.%d' % sys.version_info[:2])",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success());
    let Some(out) = out else {
        skip(test, "nvidia-pytriton is not installed in the test venv");
        return None;
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let server = PathBuf::from(lines.next().unwrap()).join("tritonserver");
    let stub = server
        .join("python_backend_stubs")
        .join(lines.next().unwrap());
    let backends = temp_dir(&format!("{test}-backends"));
    let python_backend = backends.join("python");
    std::fs::create_dir_all(&python_backend).unwrap();
    for file in [
        server.join("backends/python/libtriton_python.so"),
        server.join("backends/python/triton_python_backend_utils.py"),
        stub.join("triton_python_backend_stub"),
    ] {
        std::os::unix::fs::symlink(&file, python_backend.join(file.file_name().unwrap())).unwrap();
    }
    Some((server, backends))
}

/// A tritonserver on 127.0.0.1 serving the built-in net as model `banyan`; killed when dropped.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
    server: PathBuf,
    backends: PathBuf,
}

impl Server {
    fn start(test: &str) -> Option<Server> {
        let (server, backends) = pytriton_or_skip(test)?;
        let dir = temp_dir(&format!("{test}-models"));
        let out = export(&["--out", dir.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let model = dir.join("banyan");
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/triton/model.py"),
            model.join("1/model.py"),
        )
        .unwrap();
        let config = std::fs::read_to_string(model.join("config.pbtxt")).unwrap().replace(
            "platform: \"pytorch_libtorch\"",
            &format!(
                "backend: \"python\"\nparameters {{ key: \"banyan\" value {{ string_value: \"{}\" }} }}",
                env!("CARGO_BIN_EXE_banyan")
            ),
        );
        std::fs::write(model.join("config.pbtxt"), config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Server {
            child: Self::spawn(&server, &backends, &dir, port),
            port,
            dir,
            server,
            backends,
        };
        server.wait_ready();
        Some(server)
    }

    fn spawn(server: &Path, backends: &Path, models: &Path, port: u16) -> Child {
        let python = std::env::var_os("BANYAN_TEST_PYTHON").unwrap();
        let venv_bin = Path::new(&python).parent().unwrap();
        // The Python backend's stub finds the venv (numpy) through the `python3` on PATH.
        let path = format!(
            "{}:{}",
            venv_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(server.join("bin/tritonserver"))
            .arg("--model-repository")
            .arg(models)
            .arg("--backend-directory")
            .arg(backends)
            .args(["--allow-http", "false", "--allow-metrics", "false"])
            .args([
                "--grpc-address",
                "127.0.0.1",
                "--grpc-port",
                &port.to_string(),
            ])
            .env("PATH", path)
            // Its own process group: killing the group takes the Python backend's stub and the
            // model's helper with it, as a crashed server machine would.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tritonserver")
    }

    /// Waits for the server's "Started GRPCInferenceService" line (it logs to stderr).
    fn wait_ready(&mut self) {
        let stderr = self.child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Started GRPCInferenceService") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(120))
            .expect("tritonserver ready within 120 s");
    }

    fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server and everything it started with SIGKILL.
    fn kill(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// Starts it again on the same port.
    fn restart(&mut self) {
        self.child = Self::spawn(&self.server, &self.backends, &self.dir, self.port);
        self.wait_ready();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.backends);
    }
}

/// The processes running the exported model of `dir` (the model's `__torchscript` helper
/// and the Python backend's stub).
fn model_processes(dir: &Path) -> Vec<PathBuf> {
    let needle = dir.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let cmdline = std::fs::read(path.join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then_some(path)
        })
        .collect()
}

/// CPU time (clock ticks) of the `__torchscript` helper serving `dir`'s model.
fn model_cpu_ticks(dir: &Path) -> u64 {
    model_processes(dir)
        .iter()
        .filter(|proc| {
            std::fs::read(proc.join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("__torchscript"))
        })
        .filter_map(|proc| std::fs::read_to_string(proc.join("stat")).ok())
        .map(|stat| {
            // Fields after the command name's closing parenthesis; utime and stime are the
            // 12th and 13th of them.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let fields: Vec<u64> = rest
                .split_whitespace()
                .skip(11)
                .take(2)
                .map(|f| f.parse().unwrap())
                .collect();
            fields.iter().sum::<u64>()
        })
        .sum()
}

fn triton_engine(urls: &str) -> Engine {
    let mut engine = Engine::start();
    engine.send("uci");
    engine.read_until("uciok");
    engine.send("setoption name VerboseMoveStats value true");
    // Either order works: `Backend triton` first waits for the address.
    engine.send("setoption name Backend value triton");
    engine.send(&format!("setoption name TritonUrl value {urls}"));
    engine.send("isready");
    let lines = engine.read_until("readyok");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("info string evaluator: triton")),
        "{lines:?}"
    );
    engine
}

/// The nodes of a search's last `info depth` line.
fn searched_nodes(lines: &[String]) -> u64 {
    info_field(common::last_search_info(lines), "nodes")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no nodes: {lines:?}"))
}

/// `go nodes 200` in `position` searches all 200 nodes: the evaluator (Triton, the only one
/// configured) answers again.
fn assert_searches_fully(engine: &mut Engine, position: &str) {
    engine.send(position);
    engine.send("go nodes 200");
    let lines = engine.read_until("bestmove");
    assert_eq!(
        searched_nodes(&lines),
        200,
        "searched with Triton again: {lines:?}"
    );
}

/// The root's raw network value (`V:`) of the `info string node` line.
fn root_value(engine: &mut Engine, position: &str) -> f32 {
    engine.send(position);
    engine.send("go nodes 1");
    let lines = engine.read_until("bestmove");
    let node = lines
        .iter()
        .find(|l| l.starts_with("info string node "))
        .unwrap_or_else(|| panic!("no node line: {lines:?}"));
    let v = node.split("(V:").nth(1).unwrap();
    v[..v.find(')').unwrap()].trim().parse().unwrap()
}

/// Priors and value through Triton are the local evaluator's (fp32, the precision of the
/// exported model) on Lc0's reference positions, to the precision the engine prints them.
#[test]
fn triton_answers_like_the_local_evaluator() {
    let Some(server) = Server::start("triton_answers_like_the_local_evaluator") else {
        return;
    };
    let mut local = Engine::start();
    local.send("uci");
    local.read_until("uciok");
    for option in [
        "WeightsFile value <builtin>",
        "Precision value fp32",
        "VerboseMoveStats value true",
    ] {
        local.send(&format!("setoption name {option}"));
    }
    local.send("isready");
    local.read_until("readyok");
    let mut remote = triton_engine(&server.url());
    for position in [
        "position startpos",
        "position startpos moves e2e4 e7e5 g1f3",
    ] {
        let difference = prior_difference(
            &priors(&mut local, position),
            &priors(&mut remote, position),
        );
        assert!(
            difference <= 0.011,
            "{position}: priors differ by {difference} points"
        );
        let (a, b) = (
            root_value(&mut local, position),
            root_value(&mut remote, position),
        );
        assert!((a - b).abs() <= 1.1e-4, "{position}: V {a} against {b}");
    }
    local.quit();
    remote.quit();
}

/// A whole game through `Backend triton`, to its end by the rules (mate, stalemate, threefold
/// repetition, the fifty-move rule, bare kings or a lone minor piece): every move legal and
/// searched (nodes reported).
#[test]
fn a_game_through_triton() {
    use cozy_chess::{Board, GameStatus, Piece};
    let Some(server) = Server::start("a_game_through_triton") else {
        return;
    };
    let mut engine = triton_engine(&server.url());
    engine.send("setoption name VerboseMoveStats value false");
    let mut moves: Vec<String> = Vec::new();
    let mut board = Board::default();
    let mut seen = std::collections::HashMap::new();
    let over = |board: &Board, seen: &std::collections::HashMap<u64, u32>| {
        let heavy =
            board.pieces(Piece::Pawn) | board.pieces(Piece::Rook) | board.pieces(Piece::Queen);
        board.status() != GameStatus::Ongoing
            || board.halfmove_clock() >= 100
            || seen.get(&board.hash()).is_some_and(|&n| n >= 3)
            || (heavy.is_empty() && board.occupied().len() <= 3)
    };
    while !over(&board, &seen) {
        assert!(moves.len() < 1000, "no end after 1000 plies");
        engine.send(&format!("position startpos moves {}", moves.join(" ")));
        engine.send("go nodes 40");
        let lines = engine.read_until("bestmove");
        let (best, _) = bestmove_of(&lines);
        let refs: Vec<&str> = moves.iter().map(String::as_str).collect();
        assert!(is_legal(None, &refs, &best), "{best} after {refs:?}");
        assert!(searched_nodes(&lines) > 0, "{lines:?}");
        board.play(banyan_nn::policy::parse_uci_move(&board, &best, false).unwrap());
        *seen.entry(board.hash()).or_insert(0) += 1;
        moves.push(best);
    }
    eprintln!("game over after {} plies: {}", moves.len(), moves.join(" "));
    engine.quit();
}

/// The server killed (SIGKILL) during `go infinite`: `stop` still gets one legal `bestmove`
/// within a second; once the server is back, the next search is evaluated by it again; and
/// no model process outlives its server.
#[test]
fn a_killed_server_costs_one_move_not_the_game() {
    let Some(mut server) = Server::start("a_killed_server_costs_one_move_not_the_game") else {
        return;
    };
    let mut engine = triton_engine(&server.url());
    engine.send("setoption name VerboseMoveStats value false");
    engine.send("position startpos moves e2e4");
    engine.send("go infinite");
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    std::thread::sleep(Duration::from_millis(300));
    let stopped = Instant::now();
    engine.send("stop");
    let lines = engine.read_until_within("bestmove", Duration::from_secs(5));
    assert!(
        stopped.elapsed() < Duration::from_secs(1),
        "bestmove after {:?}",
        stopped.elapsed()
    );
    let (best, _) = bestmove_of(&lines);
    assert!(is_legal(None, &["e2e4"], &best), "{best}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !model_processes(&server.dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        model_processes(&server.dir).is_empty(),
        "a model process outlived its server"
    );

    server.restart();
    assert_searches_fully(&mut engine, "position startpos moves e2e4 e7e5");
    engine.quit();
}

/// The server stopped (SIGSTOP) mid-search: a timed search still answers on time; once it
/// runs again, the next search is evaluated by it. Only `tritonserver` itself stops: the test
/// model's Python stub and its network process stay running, as Triton's own health check
/// expects of them (stopping them too makes Triton restart the stub, another failure).
#[test]
fn a_stalled_server_costs_one_move_not_the_game() {
    let Some(server) = Server::start("a_stalled_server_costs_one_move_not_the_game") else {
        return;
    };
    let mut engine = triton_engine(&server.url());
    engine.send("setoption name VerboseMoveStats value false");
    engine.send("position startpos moves d2d4");
    let tritonserver = nix::unistd::Pid::from_raw(server.child.id() as i32);
    let started = Instant::now();
    engine.send("go movetime 2000");
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(tritonserver, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let lines = engine.read_until_within("bestmove", Duration::from_secs(10));
    let took = started.elapsed();
    nix::sys::signal::kill(tritonserver, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(
        took < Duration::from_millis(3000),
        "bestmove after {took:?}"
    );
    let (best, _) = bestmove_of(&lines);
    assert!(is_legal(None, &["d2d4"], &best), "{best}");

    assert_searches_fully(&mut engine, "position startpos moves d2d4 d7d5");
    engine.quit();
}

/// `TritonUrl` with two servers: one search's batches are evaluated by both.
#[test]
fn batches_spread_over_the_servers() {
    const TEST: &str = "batches_spread_over_the_servers";
    let Some(first) = Server::start(&format!("{TEST}-1")) else {
        return;
    };
    let Some(second) = Server::start(&format!("{TEST}-2")) else {
        return;
    };
    let mut engine = triton_engine(&format!("{},{}", first.url(), second.url()));
    engine.send("setoption name VerboseMoveStats value false");
    let before = [model_cpu_ticks(&first.dir), model_cpu_ticks(&second.dir)];
    engine.send("position startpos");
    engine.send("go nodes 3000");
    engine.read_until("bestmove");
    let after = [model_cpu_ticks(&first.dir), model_cpu_ticks(&second.dir)];
    for (server, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            a > b,
            "server {server} did no work: {before:?} -> {after:?}"
        );
    }
    engine.quit();
}

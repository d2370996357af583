//! End-to-end tests of the evaluator process through its real socket and protocol.
//!
//! This binary has its own `main` (`harness = false`): started with `__evaluator` it becomes the
//! evaluator (as the `banyan` binary does), with `__engine` a stand-in engine that spawns one and
//! waits to be killed; otherwise it runs the tests, each spawning itself as needed.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use banyan_nn::backend::{Backend, EvalInput, RawEval};
use banyan_nn::builtin::Weights;
use banyan_nn::cache::EvalCache;
use banyan_nn::client::ClientError;
use banyan_nn::encode::{InputPlanes, PositionHistory};
use banyan_nn::evaluator::{self, DeviceChoice, EvaluatorConfig, ROLE_ARG, SpawnError};
use banyan_nn::heuristic::Heuristic;
use banyan_nn::network::{Network, Precision};
use banyan_nn::policy::{for_each_legal_move, move_index, parse_uci_move};
use banyan_nn::priors::softmax_priors;
use banyan_nn::weights::{Architecture, Encoding, NetWeights, save};
use cozy_chess::Board;

/// Role of the stand-in engine process (see `engine_main`).
const ENGINE_ROLE: &str = "__engine";
const TEMPERATURE: f32 = 1.359;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(role) if role == ROLE_ARG => return evaluator::main_from_args(args),
        Some(role) if role == ENGINE_ROLE => return engine_main(),
        _ => {}
    }
    // Like libtest: the first argument that is not a flag filters tests by name.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let tests: [(&str, fn()); 8] = [
        (
            "heuristic_answers_match_in_process",
            heuristic_answers_match_in_process,
        ),
        (
            "network_answers_match_in_process",
            network_answers_match_in_process,
        ),
        (
            "bad_weights_are_a_clear_error",
            bad_weights_are_a_clear_error,
        ),
        (
            "malformed_message_closes_only_that_connection",
            malformed_message_closes_only_that_connection,
        ),
        (
            "killed_evaluator_makes_clients_fail_not_hang",
            killed_evaluator_makes_clients_fail_not_hang,
        ),
        (
            "drop_kills_reaps_and_removes_the_socket",
            drop_kills_reaps_and_removes_the_socket,
        ),
        (
            "evaluator_exits_when_its_engine_is_killed",
            evaluator_exits_when_its_engine_is_killed,
        ),
        (
            "cache_answers_repeats_without_the_evaluator",
            cache_answers_repeats_without_the_evaluator,
        ),
    ];
    let mut failed = 0;
    let mut ran = 0;
    for (name, test) in tests {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let start = Instant::now();
        let ok = std::panic::catch_unwind(test).is_ok();
        eprintln!(
            "test {name} ... {} ({:.2?})",
            if ok { "ok" } else { "FAILED" },
            start.elapsed()
        );
        failed += usize::from(!ok);
    }
    eprintln!("test result: {} passed; {failed} failed", ran - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Stand-in engine: spawns a heuristic evaluator, reports its pid and socket, and waits.
fn engine_main() -> ExitCode {
    let process =
        evaluator::spawn(&exe(), &EvaluatorConfig::new(Weights::Heuristic)).expect("spawn");
    println!("{} {}", process.pid(), process.socket().display());
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn exe() -> PathBuf {
    std::env::current_exe().expect("current exe")
}

/// Network inputs with real history, and their legal moves.
fn positions() -> Vec<(InputPlanes, Vec<u16>)> {
    let games: [(&str, &str); 6] = [
        ("startpos", ""),
        ("startpos", "e2e4 e7e5 g1f3"),
        (
            "startpos",
            "d2d4 g8f6 c2c4 e7e6 b1c3 f8b4 e2e3 e8h8 f1d3 d7d5",
        ),
        (
            "r1bqkb1r/pppp1ppp/2n2n2/4p3/2B1P3/5N2/PPPP1PPP/RNBQK2R w KQkq - 4 4",
            "e1h1",
        ),
        ("8/5pk1/6p1/3R4/7P/6P1/r4PK1/8 b - - 3 45", "a2a3"),
        ("4k3/1P6/8/8/8/8/6p1/4K3 w - - 0 70", ""),
    ];
    games
        .iter()
        .map(|(start, moves)| {
            let board = if *start == "startpos" {
                Board::default()
            } else {
                Board::from_fen(start, false).unwrap()
            };
            let mut history = PositionHistory::new(board);
            for text in moves.split_whitespace() {
                history.push(parse_uci_move(history.current(), text, false).unwrap());
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

fn inputs(positions: &[(InputPlanes, Vec<u16>)]) -> Vec<EvalInput<'_>> {
    positions
        .iter()
        .map(|(planes, moves)| EvalInput { planes, moves })
        .collect()
}

fn heuristic_config() -> EvaluatorConfig {
    EvaluatorConfig::new(Weights::Heuristic)
}

/// Asserts that the process's answers are bit for bit the in-process backend's plus softmax.
fn assert_same_numbers(backend: &mut dyn Backend, config: &EvaluatorConfig) {
    let positions = positions();
    let batch = inputs(&positions);
    let process = evaluator::spawn(&exe(), config).expect("spawn");
    let mut client = process.connect().unwrap();
    // One request, one batch: the same batch composition as the in-process call.
    let answers = client.evaluate(&batch).unwrap();
    let mut expected: Vec<RawEval> = Vec::new();
    backend.evaluate(&batch, &mut expected).unwrap();
    let mut priors = Vec::new();
    assert_eq!(answers.len(), expected.len());
    for (i, (answer, raw)) in answers.iter().zip(&expected).enumerate() {
        softmax_priors(&raw.logits, TEMPERATURE, &mut priors);
        assert_eq!(answer.wdl, raw.wdl, "position {i}: W/D/L");
        assert_eq!(answer.priors, priors, "position {i}: priors");
    }
    // And again, mixed with other requests, in flight together.
    let first = client.send(&batch[..2]).unwrap();
    let second = client.send(&batch[2..]).unwrap();
    let mut again = client.recv(first).unwrap();
    again.extend(client.recv(second).unwrap());
    // Batched differently: within fp32 rounding, or bf16's when small batches run in fp32.
    let tolerance = match config.precision {
        Precision::Bf16 => 0.01,
        _ => 1e-4,
    };
    for (a, b) in again.iter().zip(&answers) {
        assert!((a.wdl[0] - b.wdl[0]).abs() < tolerance && a.priors.len() == b.priors.len());
    }
}

fn heuristic_answers_match_in_process() {
    assert_same_numbers(&mut Heuristic::new(256), &heuristic_config());
}

/// Project-written nets (an SE tower with conv policy and WDL, a plain one with classical
/// heads) answer the same through the evaluator process as in this process, in fp32 and bf16.
fn network_answers_match_in_process() {
    tch::set_num_threads(2);
    let dir = std::env::temp_dir().join(format!("banyan-evalnets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = Architecture {
        se_channels: None,
        conv_policy: false,
        wdl: false,
        policy_channels: 8,
        ..Architecture::new(2, 16)
    };
    for (name, arch) in [("se", Architecture::new(2, 16)), ("plain", plain)] {
        let weights = dir.join(format!("{name}.pb.gz"));
        save(&NetWeights::random(&arch, 1), &weights, Encoding::Float16).unwrap();
        for precision in [Precision::Fp32, Precision::Bf16] {
            let mut network = Network::load(&weights, tch::Device::Cpu).unwrap();
            network.set_precision(precision);
            let mut config = EvaluatorConfig::new(Weights::File(weights.clone()));
            config.device = DeviceChoice::Cpu;
            config.precision = precision;
            config.threads = 2;
            assert_same_numbers(&mut network, &config);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn bad_weights_are_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("banyan-badweights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.pb.gz");
    std::fs::write(&garbage, b"this is not a network").unwrap();
    for weights in [garbage.clone(), dir.join("missing.pb.gz")] {
        let config = EvaluatorConfig::new(Weights::File(weights.clone()));
        match evaluator::spawn(&exe(), &config) {
            Err(SpawnError::Failed(message)) => {
                assert!(message.contains(&*weights.to_string_lossy()), "{message}");
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("{} loaded", weights.display()),
        }
        assert!(!config.socket.exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn malformed_message_closes_only_that_connection() {
    let mut process = evaluator::spawn(&exe(), &heuristic_config()).expect("spawn");
    let positions = positions();
    let batch = inputs(&positions);
    let mut good = process.connect().unwrap();
    assert_eq!(good.evaluate(&batch).unwrap().len(), batch.len());
    // Bad magic, then a valid header with an absurd count: each connection is closed.
    let mut absurd = Vec::new();
    absurd.extend_from_slice(b"BNYN");
    absurd.extend_from_slice(&1u16.to_le_bytes());
    absurd.extend_from_slice(&1u16.to_le_bytes());
    absurd.extend_from_slice(&u32::MAX.to_le_bytes());
    absurd.extend_from_slice(&0u32.to_le_bytes());
    for garbage in [&b"GET / HTTP/1.1\r\n\r\n"[..], &absurd] {
        let mut bad = UnixStream::connect(process.socket()).unwrap();
        bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        bad.write_all(garbage).unwrap();
        // Closed without an answer: end of stream, or a reset when bytes were left unread.
        let mut rest = Vec::new();
        match bad.read_to_end(&mut rest) {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
    }
    assert!(process.is_alive());
    assert_eq!(good.evaluate(&batch).unwrap().len(), batch.len());
    let mut fresh = process.connect().unwrap();
    assert_eq!(fresh.evaluate(&batch).unwrap().len(), batch.len());
}

fn killed_evaluator_makes_clients_fail_not_hang() {
    let mut process = evaluator::spawn(&exe(), &heuristic_config()).expect("spawn");
    let positions = positions();
    let batch = inputs(&positions);
    let mut waiting = process.connect().unwrap();
    let mut idle = process.connect().unwrap();
    // A safety net only: the errors below must come from end of stream, not this timeout.
    for client in [&mut waiting, &mut idle] {
        client.set_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    assert!(waiting.evaluate(&batch).is_ok());
    process.kill().unwrap();
    process.wait().unwrap();
    let start = Instant::now();
    let ticket = waiting.send(&batch);
    let result = ticket
        .map_err(|e| e.to_string())
        .and_then(|t| waiting.recv(t).map_err(|e| e.to_string()));
    assert!(result.is_err());
    let err = idle.evaluate(&batch).unwrap_err();
    assert!(
        matches!(err, ClientError::Closed | ClientError::Io(_)),
        "{err}"
    );
    if let ClientError::Io(e) = &err {
        assert_ne!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "timed out instead of failing"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(matches!(idle.evaluate(&batch), Err(ClientError::Broken)));
}

fn drop_kills_reaps_and_removes_the_socket() {
    let config = heuristic_config();
    let process = evaluator::spawn(&exe(), &config).expect("spawn");
    let pid = process.pid();
    assert!(config.socket.exists());
    drop(process);
    assert!(!config.socket.exists());
    assert!(!config.socket.parent().unwrap().exists());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "evaluator {pid} still there"
    );
}

fn evaluator_exits_when_its_engine_is_killed() {
    let mut engine = Command::new(exe())
        .arg(ENGINE_ROLE)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(engine.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (pid, socket) = line.trim().split_once(' ').expect("pid and socket");
    let socket = PathBuf::from(socket);
    assert!(socket.exists());
    engine.kill().unwrap(); // SIGKILL: no clean-up by the engine itself.
    engine.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "evaluator {pid} outlived its engine");
    assert!(!socket.exists(), "socket left behind");
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

fn cache_answers_repeats_without_the_evaluator() {
    let mut process = evaluator::spawn(&exe(), &heuristic_config()).expect("spawn");
    let cache = Arc::new(EvalCache::create(1).unwrap());
    let positions = positions();
    let batch = inputs(&positions);
    let mut client = process.connect().unwrap().with_cache(Arc::clone(&cache));
    let fresh = client.evaluate(&batch).unwrap();
    assert_eq!(cache.stats().hits, 0);
    // Another process's connection (a worker) sees the same shared entries.
    let mut other = process.connect().unwrap().with_cache(Arc::new(
        EvalCache::from_fd(cache.fd().try_clone_to_owned().unwrap()).unwrap(),
    ));
    process.kill().unwrap();
    process.wait().unwrap();
    let cached = other
        .evaluate(&batch)
        .expect("answered from the cache, no socket needed");
    assert_eq!(cache.stats().hits, batch.len() as u64);
    assert!((cache.hit_rate() - 0.5).abs() < 1e-9);
    for (a, b) in cached.iter().zip(&fresh) {
        assert_eq!(a.wdl, b.wdl);
        for (p, q) in a.priors.iter().zip(&b.priors) {
            assert!((p - q).abs() <= q * 2.5e-4 + 1e-9);
        }
    }
}

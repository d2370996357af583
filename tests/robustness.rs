//! What GUIs and tournament runners rely on beyond single searches: nasty input, prompt
//! answers, a network file that goes bad between games, no leaked descriptors or processes.
//! Timing checks are generous behaviour checks, not benchmarks; measured figures are printed
//! (run with `--nocapture` to see them).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use banyan_nn::weights::Architecture;
use common::{Engine, TestNet, bestmove_of, is_legal, prior_difference, priors, tiny};

/// Lines that must each leave the engine working. Before `uci` on purpose.
fn nasty_lines() -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = [
        "stop",
        "ponderhit",
        "go",
        "stop",
        "",
        "   ",
        "\t\r",
        "uci uci uci",
        "isready extra tokens",
        "xyzzy plugh",
        "go nodes 99999999999999999999999999999999999999 depth -5 movetime 18446744073709551616",
        "go wtime -1 btime -99999999999999999999 winc 1e9 binc NaN",
        "go searchmoves",
        "go searchmoves a1a1 z9z9",
        "stop",
        "go movestogo 0 wtime 10 btime 10",
        "position",
        "position fen",
        "position fen 8/8/8/8/8/8/8/8 w - - 0 1",
        "position fen 4k3/8/8/8/8/8/8/8 w - - 0 1",
        "position fen rnbq1bnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
        "position fen 4k3/8/8/8/8/8/8/4K3 w KQkq - 0 1",
        "position fen rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq",
        "position fen rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq e3 -1 -1",
        "position fen 4k3/8/8/8/8/8/8/4K2R b K - 0 1",
        "position fen K6k/8/8/8/8/8/8/8 w - - 999999999999 99999999999999999999",
        "position fen 8/8/8/8/8/8/8/K6k/8 w - - 0 1",
        "position startpos moves e2e4 e7e5 e1e3",
        "position startpos moves e2e4 xxxx",
        "position startpos moves",
        "position startpos fen 8/8/8/8/8/8/8/K6k w - - 0 1",
        "setoption",
        "setoption name",
        "setoption name Threads",
        "setoption name Threads value",
        "setoption name Threads value -1",
        "setoption name Threads value 99999999999999999999999999",
        "setoption name Hash value 0",
        "setoption name Hash value 1e12",
        "setoption name MultiPV value 100000",
        "setoption name CPuct value inf",
        "setoption name PolicyTemperature value -0",
        "setoption name MoveOverhead value NaN",
        "setoption name Backend value quantum",
        "setoption name WeightsFile value /nonexistent/net.pb.gz",
        "setoption name WeightsFile value /dev/null",
        "setoption name WeightsFile value /",
        "setoption name LogFile value /nonexistent/dir/log.txt",
        "setoption name UCI_ShowWDL value maybe",
        "setoption value 3 name Threads",
        "debug on",
        "debug banana",
        "ucinewgame",
        "stop",
        "ponderhit",
    ]
    .iter()
    .map(|l| l.as_bytes().to_vec())
    .collect();
    lines.push(b"\xff\xfe\xfd\x00\x01".to_vec());
    lines.push(b"go \xc3\x28 nodes \xa0\xa1".to_vec());
    lines.push(b"position startpos moves e2e4 \xe2\x82".to_vec());
    lines.push(b"setoption name Thr\x00eads value 2".to_vec());
    lines.push(vec![b'x'; 1 << 20]);
    lines.push(format!("go {}", "nodes 1 ".repeat(100_000)).into_bytes());
    lines.push(
        format!(
            "position startpos moves {}",
            "g1f3 g8f6 f3g1 f6g8 ".repeat(20_000)
        )
        .into_bytes(),
    );
    lines.push(b"isready".to_vec());
    lines
}

#[test]
fn nasty_input_leaves_a_working_engine() {
    let mut engine = Engine::start();
    let lines = nasty_lines();
    for line in &lines {
        let mut bytes = line.clone();
        bytes.push(b'\n');
        engine.send_bytes(&bytes);
        // A `go` may start a search; the next line (often `stop`) ends it. Either way one
        // bestmove per `go` comes; nothing is awaited here but the final answers.
    }
    let seen = engine.read_until("readyok");
    let mut seen = seen;
    // Stop whatever search is still running, then a normal game start.
    engine.send("stop");
    engine.send("uci");
    seen.extend(engine.read_until("uciok"));
    engine.send("isready");
    seen.extend(engine.read_until("readyok"));
    engine.send("ucinewgame");
    engine.send("position startpos moves e2e4");
    engine.send("go nodes 100");
    let last = engine.read_until("bestmove");
    let (best, _) = bestmove_of(&last);
    assert!(is_legal(None, &["e2e4"], &best), "{best}: {last:?}");
    seen.extend(last);
    let gos = lines.iter().filter(|l| l.starts_with(b"go")).count();
    let bestmoves = seen.iter().filter(|l| l.starts_with("bestmove")).count();
    assert!(
        bestmoves <= gos + 1,
        "{bestmoves} bestmoves for {gos} go: {seen:?}"
    );
    let errors = seen
        .iter()
        .filter(|l| l.starts_with("info string error"))
        .count();
    assert!(errors >= 30, "only {errors} errors for the bad lines");
    assert!(
        seen.iter().all(|l| l.len() < 10_000),
        "an echo of a long line: {}",
        seen.iter().map(|l| l.len()).max().unwrap()
    );
    engine.quit();
}

#[test]
fn uciok_at_once_and_readyok_soon_after_a_network_change() {
    let mut engine = Engine::start();
    let sent = Instant::now();
    engine.send("uci");
    engine.read_until_within("uciok", Duration::from_secs(2));
    let uciok = sent.elapsed();
    // A GUI sets the network right after `uciok` and then waits for `readyok`. Nets of Maia's
    // size (6x64 SE), written by the project.
    let first = TestNet::new("first", &Architecture::new(6, 64), 1);
    let second = TestNet::new("second", &Architecture::new(6, 64), 2);
    engine.send(&format!(
        "setoption name WeightsFile value {}",
        first.path()
    ));
    let sent = Instant::now();
    engine.send("isready");
    let lines = engine.read_until_within("readyok", Duration::from_secs(5));
    let first_ready = sent.elapsed();
    assert!(!lines.iter().any(|l| l.contains("error")), "{lines:?}");
    engine.send(&format!(
        "setoption name WeightsFile value {}",
        second.path()
    ));
    let sent = Instant::now();
    engine.send("isready");
    let lines = engine.read_until_within("readyok", Duration::from_secs(5));
    let change_ready = sent.elapsed();
    assert!(!lines.iter().any(|l| l.contains("error")), "{lines:?}");
    eprintln!(
        "timing: uciok {uciok:?}, first readyok with a net {first_ready:?}, readyok after a net change {change_ready:?}"
    );
    assert!(uciok < Duration::from_secs(1), "uciok took {uciok:?}");
    assert!(
        change_ready < Duration::from_secs(2),
        "readyok after a net change took {change_ready:?}"
    );
    engine.quit();
}

#[test]
fn stop_answers_promptly_and_the_engine_exits_on_quit_or_eof() {
    let mut engine = Engine::start();
    engine.send("isready");
    engine.read_until("readyok");
    let mut stops = Vec::new();
    for (position, moves) in [
        ("position startpos", vec![]),
        ("position startpos moves e2e4 c7c5", vec!["e2e4", "c7c5"]),
    ] {
        engine.send(position);
        engine.send("go infinite");
        engine.read_until("info depth");
        std::thread::sleep(Duration::from_millis(300));
        let sent = Instant::now();
        engine.send("stop");
        let lines = engine.read_until("bestmove");
        stops.push(sent.elapsed());
        assert!(is_legal(None, &moves, &bestmove_of(&lines).0), "{lines:?}");
    }
    let sent = Instant::now();
    engine.send("quit");
    let status = engine
        .wait(Duration::from_secs(5))
        .expect("exit after quit");
    let quit = sent.elapsed();
    assert!(status.success(), "{status}");

    let mut engine = Engine::start();
    engine.send("position startpos");
    engine.send("go infinite");
    engine.read_until("info depth");
    let sent = Instant::now();
    engine.close_stdin();
    engine
        .wait(Duration::from_secs(5))
        .expect("exit on stdin EOF during a search");
    let eof = sent.elapsed();
    eprintln!("timing: stop->bestmove {stops:?}, quit->exit {quit:?}, EOF->exit {eof:?}");
    for s in &stops {
        assert!(*s < Duration::from_millis(500), "stop->bestmove took {s:?}");
    }
    assert!(quit < Duration::from_secs(1), "quit->exit took {quit:?}");
    assert!(eof < Duration::from_secs(1), "EOF->exit took {eof:?}");
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("banyan-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn game(engine: &mut Engine, moves: &[&str]) -> Vec<String> {
    engine.send("ucinewgame");
    engine.send("isready");
    let mut lines = engine.read_until("readyok");
    engine.send(&format!("position startpos moves {}", moves.join(" ")));
    engine.send("go nodes 60");
    let search = engine.read_until("bestmove");
    let (best, _) = bestmove_of(&search);
    assert!(is_legal(None, moves, &best), "{best}: {search:?}");
    lines.extend(search);
    lines
}

#[test]
fn a_weights_file_that_disappears_or_turns_to_garbage_between_games() {
    let tmp = TempDir::new("weights");
    let path = tmp.0.join("net.pb.gz");
    let first = TestNet::new("first", &tiny(true, true, true), 3);
    std::fs::copy(first.path(), &path).expect("copy the test net");
    let set = format!("setoption name WeightsFile value {}", path.display());
    let errors = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.starts_with("info string error"))
            .cloned()
            .collect::<Vec<_>>()
    };

    let mut engine = Engine::start();
    engine.send(&set);
    let lines = game(&mut engine, &["e2e4"]);
    assert!(errors(&lines).is_empty(), "a good net: {lines:?}");

    // Between games the file is replaced by garbage, and the GUI sets the option again (as
    // cutechess does at each game start): the loaded net stays in use, the games go on.
    std::fs::write(&path, b"\x1f\x8b garbage, not a network").unwrap();
    engine.send(&set);
    let lines = game(&mut engine, &["d2d4"]);
    eprintln!("same path, now garbage: errors {:?}", errors(&lines));

    // A garbage file under a new name is refused with a clear error; the engine goes on.
    let garbage = tmp.0.join("garbage.pb.gz");
    std::fs::write(&garbage, vec![0x1f, 0x8b, 0x08, 0x00, 1, 2, 3]).unwrap();
    engine.send(&format!(
        "setoption name WeightsFile value {}",
        garbage.display()
    ));
    let lines = game(&mut engine, &["c2c4"]);
    let e = errors(&lines);
    assert!(
        e.iter().any(|l| l.contains("WeightsFile")),
        "garbage net: {lines:?}"
    );

    // The file disappears: a clear error, the engine goes on.
    std::fs::remove_file(&path).unwrap();
    engine.send(&format!(
        "setoption name WeightsFile value {}",
        tmp.0.join("gone.pb.gz").display()
    ));
    let lines = game(&mut engine, &["g1f3"]);
    let e = errors(&lines);
    assert!(
        e.iter().any(|l| l.contains("no such file")),
        "missing net: {lines:?}"
    );

    // A good net again, under a new name.
    let again = tmp.0.join("again.pb.gz");
    let second = TestNet::new("second", &tiny(false, false, false), 4);
    std::fs::copy(second.path(), &again).unwrap();
    engine.send(&format!(
        "setoption name WeightsFile value {}",
        again.display()
    ));
    let lines = game(&mut engine, &["e2e4", "e7e5"]);
    assert!(errors(&lines).is_empty(), "a good net again: {lines:?}");
    engine.quit();
}

#[test]
fn bad_weights_keep_the_previous_evaluator() {
    let good = TestNet::new("keep-me", &tiny(true, false, true), 21);
    let tmp = TempDir::new("bad-weights");
    let garbage = tmp.0.join("garbage.pb.gz");
    std::fs::write(&garbage, b"this is not a network").unwrap();
    let mut engine = Engine::start();
    engine.send("setoption name Threads value 1");
    engine.send("setoption name VerboseMoveStats value true");
    engine.send(&format!("setoption name WeightsFile value {}", good.path()));
    engine.send("isready");
    let lines = engine.read_until("readyok");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("info string evaluator: keep-me: 2x8 SE, classical policy")),
        "{lines:?}"
    );
    let position = "position startpos moves e2e4 e7e5 g1f3";
    let before = priors(&mut engine, position);
    assert_eq!(before.len(), 29, "{before:?}");
    for bad in [
        garbage.display().to_string(),
        tmp.0.join("missing.pb.gz").display().to_string(),
    ] {
        engine.send(&format!("setoption name WeightsFile value {bad}"));
        engine.send("isready");
        let lines = engine.read_until("readyok");
        assert!(
            lines.iter().any(|l| l.starts_with("info string error: ")),
            "{bad}: {lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("evaluator:")),
            "{bad}: {lines:?}"
        );
    }
    // Still the net: the same priors (but for the last digit), which are not the heuristic's.
    let after = priors(&mut engine, position);
    assert!(
        prior_difference(&before, &after) < 0.05,
        "{before:?} then {after:?}"
    );
    engine.send("setoption name WeightsFile value <heuristic>");
    let heuristic = priors(&mut engine, position);
    assert!(
        prior_difference(&before, &heuristic) > 1.0,
        "{before:?}, heuristic {heuristic:?}"
    );
    engine.quit();
}

/// Open descriptors of `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// All descendants of `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in list
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

/// (descendant count, fds of the main process, fds of all processes together)
fn census(engine: &Engine) -> (usize, usize, usize) {
    let kids = descendants(engine.pid());
    let all = fds(engine.pid()) + kids.iter().map(|&k| fds(k)).sum::<usize>();
    (kids.len(), fds(engine.pid()), all)
}

#[test]
fn no_descriptors_or_processes_leak_over_many_games_and_thread_changes() {
    let mut engine = Engine::start();
    engine.send("isready");
    engine.read_until("readyok");
    engine.send("go nodes 100");
    engine.read_until("bestmove");
    let before = census(&engine);
    for i in 0..500 {
        engine.send("ucinewgame");
        engine.send(if i % 2 == 0 {
            "position startpos"
        } else {
            "position startpos moves e2e4"
        });
        engine.send("go nodes 100");
        engine.read_until("bestmove");
    }
    engine.send("isready");
    engine.read_until("readyok");
    let after_games = census(&engine);
    for i in 0..50 {
        engine.send(&format!("setoption name Threads value {}", 1 + i % 4));
        engine.send("go nodes 50");
        engine.read_until("bestmove");
    }
    engine.send("setoption name Threads value 2");
    engine.send("isready");
    engine.read_until("readyok");
    engine.send("go nodes 100");
    engine.read_until("bestmove");
    std::thread::sleep(Duration::from_millis(200)); // let replaced children be reaped
    let after_threads = census(&engine);
    eprintln!(
        "census (children, main fds, all fds): start {before:?}, after 500 games {after_games:?}, after 50 Threads changes {after_threads:?}"
    );
    assert_eq!(after_games, before, "after 500 ucinewgame + go nodes 100");
    assert_eq!(after_threads, before, "after 50 Threads changes");
    engine.quit();
}

/// Resident memory (kB) of the engine and its children: (sum of VmRSS, sum of Pss).
fn memory(engine: &Engine) -> (u64, u64) {
    let kb = |path: String, key: &str| -> u64 {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    let mut pids = descendants(engine.pid());
    pids.push(engine.pid());
    let rss = pids
        .iter()
        .map(|p| kb(format!("/proc/{p}/status"), "VmRSS:"))
        .sum();
    let pss = pids
        .iter()
        .map(|p| kb(format!("/proc/{p}/smaps_rollup"), "Pss:"))
        .sum();
    (rss, pss)
}

/// A report figure, not an assertion: memory after a 20000-node search per Hash size.
#[test]
fn report_memory_by_hash_size() {
    for hash in [64, 256, 1024] {
        let mut engine = Engine::start();
        engine.send(&format!("setoption name Hash value {hash}"));
        engine.send("position startpos");
        engine.send("go nodes 20000");
        let lines = engine.read_until("bestmove");
        assert!(is_legal(None, &[], &bestmove_of(&lines).0));
        let (rss, pss) = memory(&engine);
        eprintln!(
            "memory: Hash {hash} MB, {} processes: VmRSS sum {} MB, PSS sum {} MB",
            descendants(engine.pid()).len() + 1,
            rss / 1024,
            pss / 1024
        );
        engine.quit();
    }
}

/// A root whose result is proven (a forced mate for either side) still ends at its time limit
/// and on `stop`. Found by the games against stockfish: the search ran on past its clock.
#[test]
fn proven_mates_still_end_on_time_and_on_stop() {
    let cases = [
        // White mates in 2 (found by the games against stockfish).
        (
            "5k2/2p4b/p1P2B2/3PN3/7R/8/P6K/8 w - - 7 48",
            "go movetime 300",
        ),
        (
            "5k2/2p4b/p1P2B2/3PN3/7R/8/P6K/8 w - - 7 48",
            "go wtime 497 btime 319 winc 100 binc 100",
        ),
        // White mates in 1.
        ("6k1/5ppp/8/8/8/8/5PPP/3R2K1 w - - 0 1", "go movetime 300"),
        ("6k1/5ppp/8/8/8/8/5PPP/3R2K1 w - - 0 1", "go infinite"),
    ];
    let mut engine = Engine::start();
    for (fen, go) in cases {
        engine.send(&format!("position fen {fen}"));
        let sent = Instant::now();
        engine.send(go);
        if go == "go infinite" {
            std::thread::sleep(Duration::from_millis(300));
            engine.send("stop");
        }
        let lines = engine.read_until_within("bestmove", Duration::from_secs(10));
        let took = sent.elapsed();
        assert!(
            is_legal(Some(fen), &[], &bestmove_of(&lines).0),
            "{fen}: {lines:?}"
        );
        assert!(
            took < Duration::from_millis(1500),
            "{fen} / {go}: bestmove after {took:?}"
        );
    }
    engine.quit();
}

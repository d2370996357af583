//! The engine's child processes: they never outlive it, and losing one never loses a game.

mod common;

use std::time::{Duration, Instant};

use common::{Engine, bestmove_of, is_legal, last_search_info};

/// Child processes of `pid` (all threads), with their command lines.
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in list
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            out.push((child, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    out
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

fn all_gone(pids: &[u32], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn started(mode: &str) -> (Engine, Vec<(u32, String)>) {
    let mut engine = Engine::start();
    engine.send(&format!("setoption name ProcessMode value {mode}"));
    engine.send("setoption name Threads value 2");
    engine.send("isready");
    engine.read_until("readyok");
    let kids = children(engine.pid());
    assert_eq!(kids.len(), 3, "evaluator + 2 workers: {kids:?}");
    (engine, kids)
}

fn pid_of(kids: &[(u32, String)], role: &str) -> u32 {
    kids.iter()
        .find(|(_, cmd)| cmd.contains(role) == (role == "__evaluator"))
        .map(|k| k.0)
        .expect(role)
}

#[test]
fn children_end_with_quit_stdin_eof_and_sigkill() {
    for (mode, ending) in [
        ("fork", "quit"),
        ("spawn", "quit"),
        ("fork", "eof"),
        ("spawn", "kill"),
        ("fork", "kill"),
    ] {
        let (mut engine, kids) = started(mode);
        match ending {
            "quit" => engine.send("quit"),
            "eof" => engine.close_stdin(),
            _ => {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(engine.pid() as i32),
                    nix::sys::signal::SIGKILL,
                )
                .unwrap();
            }
        }
        assert!(
            engine.wait(Duration::from_secs(1)).is_some(),
            "{mode}/{ending}: engine still running"
        );
        let pids: Vec<u32> = kids.iter().map(|k| k.0).collect();
        assert!(
            all_gone(&pids, Duration::from_secs(1)),
            "{mode}/{ending}: children left: {kids:?}"
        );
    }
}

#[test]
fn a_killed_evaluator_still_gives_a_bestmove_and_is_restarted() {
    // A timed search ends within a second of losing its evaluator; an infinite one (as when
    // pondering) still waits for `stop`, as the protocol demands, then answers at once.
    for (go, needs_stop) in [("go movetime 20000", false), ("go infinite", true)] {
        let (mut engine, kids) = started("fork");
        let evaluator = pid_of(&kids, "__evaluator");
        engine.send("position startpos");
        engine.send(go);
        std::thread::sleep(Duration::from_millis(300));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(evaluator as i32),
            nix::sys::signal::SIGKILL,
        )
        .unwrap();
        if needs_stop {
            std::thread::sleep(Duration::from_millis(500));
            let early = engine.drain();
            assert!(
                !early.iter().any(|l| l.starts_with("bestmove")),
                "{go}: {early:?}"
            );
            engine.send("stop");
        }
        let lines = engine.read_until_within("bestmove", Duration::from_secs(1));
        assert!(
            is_legal(None, &[], &bestmove_of(&lines).0),
            "{go}: {lines:?}"
        );
        engine.send("go nodes 300");
        let lines = engine.read_until("bestmove");
        assert!(
            !lines.iter().any(|l| l.starts_with("info string error")),
            "{go}: {lines:?}"
        );
        assert!(is_legal(None, &[], &bestmove_of(&lines).0));
        engine.quit();
    }
}

#[test]
fn a_stalled_evaluator_still_gives_a_bestmove_on_time_and_is_replaced() {
    let (mut engine, kids) = started("fork");
    let evaluator = nix::unistd::Pid::from_raw(pid_of(&kids, "__evaluator") as i32);
    engine.send("position startpos");
    let go = Instant::now();
    engine.send("go movetime 1000");
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(evaluator, nix::sys::signal::SIGSTOP).unwrap();
    let lines = engine.read_until_within("bestmove", Duration::from_secs(3));
    let took = go.elapsed();
    assert!(
        took < Duration::from_millis(1200),
        "bestmove after {took:?}: {lines:?}"
    );
    assert!(is_legal(None, &[], &bestmove_of(&lines).0), "{lines:?}");
    // The next search runs on a new evaluator, in full.
    engine.send("go nodes 300");
    let lines = engine.read_until_within("bestmove", Duration::from_secs(20));
    assert!(
        !lines.iter().any(|l| l.starts_with("info string error")),
        "{lines:?}"
    );
    // A full search (exact node counts are tested elsewhere; once, on a heavily loaded
    // machine, this search ended one playout short).
    let nodes = lines
        .iter()
        .filter_map(|l| common::info_field(l, "nodes")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    assert!(nodes >= 250, "the next search was cut short: {lines:?}");
    assert!(is_legal(None, &[], &bestmove_of(&lines).0));
    assert!(
        !alive(evaluator.as_raw() as u32),
        "the stalled evaluator was left behind"
    );
    engine.quit();
}

#[test]
fn a_killed_worker_is_replaced_and_its_virtual_loss_removed() {
    for mode in ["fork", "spawn"] {
        let (mut engine, kids) = started(mode);
        let worker = kids
            .iter()
            .find(|(_, cmd)| !cmd.contains("__evaluator"))
            .unwrap()
            .0;
        engine.send("position startpos moves e2e4");
        engine.send("go infinite");
        std::thread::sleep(Duration::from_millis(300));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(worker as i32),
            nix::sys::signal::SIGKILL,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !engine.drain().iter().any(|l| l.starts_with("bestmove")),
            "{mode}: the search ended early"
        );
        engine.send("stop");
        let lines = engine.read_until_within("bestmove", Duration::from_secs(1));
        assert!(
            is_legal(None, &["e2e4"], &bestmove_of(&lines).0),
            "{mode}: {lines:?}"
        );
        // The next search runs on a healed pool and reaches its exact node count.
        engine.send("go nodes 500");
        let lines = engine.read_until("bestmove");
        let last = last_search_info(&lines);
        assert_eq!(
            common::info_field(last, "nodes").as_deref(),
            Some("500"),
            "{mode}: {last}"
        );
        let kids = children(engine.pid());
        assert_eq!(kids.len(), 3, "{mode}: pool not healed: {kids:?}");
        engine.quit();
    }
}

//! Whole games through a real UCI client: python-chess drives Banyan against Debian's stockfish
//! (UCI_LimitStrength, UCI_Elo 1350, Threads 1, Hash 16) and against itself, from the project's
//! opening book (data/openings/banyan.epd). The driver is tests/play_games.py; it prints a JSON
//! summary that the tests check: every game reached a result (the rules of chess, or a draw
//! adjudicated at 160 plies), and Banyan made no illegal move, lost no game on time, never
//! crashed, answered every `go` with a `bestmove` and printed no `info string error`.
//!
//! Needs BANYAN_TEST_PYTHON (a Python with python-chess) and stockfish (on PATH or Debian's
//! /usr/games/stockfish): run scripts/test, which installs both and sets the variable.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{TestNet, tiny};

const OPENINGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/openings/banyan.epd");
const MAX_PLIES: u32 = 160;

fn python() -> String {
    let python = std::env::var("BANYAN_TEST_PYTHON").unwrap_or_default();
    assert!(
        !python.is_empty(),
        "BANYAN_TEST_PYTHON is not set: run scripts/test (it creates .venv with python-chess and sets it)"
    );
    let ok = Command::new(&python)
        .args(["-c", "import chess.engine"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "BANYAN_TEST_PYTHON={python} cannot import chess.engine: run scripts/test"
    );
    python
}

/// Stockfish on PATH, else Debian's (/usr/games is not on every PATH).
fn stockfish() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("stockfish"))
        .chain([PathBuf::from("/usr/games/stockfish")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("stockfish is missing: run scripts/test (it installs Debian's stockfish)")
        })
        .display()
        .to_string()
}

/// One number (or string) field of the driver's JSON summary; the format is flat and ours.
fn field(json: &str, name: &str) -> String {
    let key = format!("\n \"{name}\": ");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json}"));
    let rest = &json[at + key.len()..];
    rest[..rest.find([',', '\n']).unwrap_or(rest.len())]
        .trim_matches('"')
        .to_string()
}

fn count(json: &str, name: &str) -> u64 {
    field(json, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a count in {json}"))
}

/// Plays `games` games with the driver's extra `args`; returns the JSON summary after checking it.
fn play(what: &str, games: u32, args: &[&str]) -> String {
    let mut cmd = Command::new(python());
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/play_games.py"))
        .args(["--banyan", env!("CARGO_BIN_EXE_banyan")])
        .args(["--openings", OPENINGS])
        .args(["--games", &games.to_string()])
        .args(["--max-plies", &MAX_PLIES.to_string()])
        .args(args);
    if args.contains(&"stockfish") {
        cmd.args(["--stockfish", &stockfish()]);
    }
    let out = cmd.output().expect("run tests/play_games.py");
    let log = String::from_utf8_lossy(&out.stderr);
    let json = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{what}:\n{log}");
    assert!(
        out.status.success(),
        "{what}: driver failed ({}):\n{log}\n{json}",
        out.status
    );
    let summary = || format!("{what}: {json}");
    assert_eq!(count(&json, "games"), games as u64, "{}", summary());
    assert_eq!(
        count(&json, "finished"),
        games as u64,
        "every game has a result: {}",
        summary()
    );
    for problem in [
        "illegal_moves",
        "time_losses",
        "crashes",
        "missing_bestmove",
        "engine_errors",
    ] {
        assert_eq!(count(&json, problem), 0, "{problem}: {}", summary());
    }
    eprintln!(
        "{what}: {} games, +{} ={} -{}, {} adjudicated at {MAX_PLIES} plies, {} Banyan moves, longest {} s",
        count(&json, "games"),
        count(&json, "wins"),
        count(&json, "draws"),
        count(&json, "losses"),
        count(&json, "adjudicated"),
        count(&json, "banyan_moves"),
        field(&json, "banyan_max_move_seconds"),
    );
    json
}

#[test]
fn games_against_stockfish_at_1s_plus_100ms() {
    play(
        "vs stockfish 1350, 1s+0.1s",
        2,
        &[
            "--opponent",
            "stockfish",
            "--elo",
            "1350",
            "--tc",
            "1+0.1",
            "--first-opening",
            "3",
        ],
    );
}

#[test]
fn game_against_stockfish_at_fixed_nodes() {
    play(
        "vs stockfish 1350, nodes 400",
        1,
        &[
            "--opponent",
            "stockfish",
            "--elo",
            "1350",
            "--nodes",
            "400",
            "--first-opening",
            "7",
        ],
    );
}

#[test]
fn self_play_at_fixed_nodes_in_both_process_modes() {
    for (mode, opening) in [("fork", "11"), ("spawn", "17")] {
        play(
            &format!("self-play, nodes 200, {mode}"),
            2,
            &[
                "--opponent",
                "self",
                "--nodes",
                "200",
                "--first-opening",
                opening,
                "--option",
                &format!("ProcessMode={mode}"),
            ],
        );
    }
}

/// A whole game searched with a network the project writes (the same path as a trained net).
#[test]
fn self_play_with_a_network() {
    let net = TestNet::new("selfplay", &tiny(true, true, true), 5);
    play(
        "self-play, written 2x8 SE net, nodes 100",
        1,
        &[
            "--opponent",
            "self",
            "--nodes",
            "100",
            "--first-opening",
            "23",
            "--option",
            &format!("WeightsFile={}", net.path()),
        ],
    );
}

//! Searches driven through the real binary: limits, stop, ponder, searchmoves, and exactly
//! one legal `bestmove` after every `go`.

mod common;

use std::time::{Duration, Instant};

use common::{Engine, bestmove_of, info_field, is_legal, last_search_info};

#[test]
fn go_nodes_from_a_terminal_prints_info_and_a_legal_move() {
    let mut engine = Engine::start();
    engine.send("uci");
    engine.read_until("uciok");
    engine.send("position startpos moves e2e4");
    engine.send("go nodes 1000");
    let lines = engine.read_until("bestmove");
    let infos: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("info depth"))
        .collect();
    let last = infos.last().expect("an info line before bestmove");
    for field in [
        "depth", "seldepth", "time", "nodes", "nps", "hashfull", "score", "pv",
    ] {
        assert!(
            info_field(last, field).is_some(),
            "{field} missing in {last}"
        );
    }
    assert_eq!(info_field(last, "nodes").unwrap(), "1000", "{last}");
    let (best, _) = bestmove_of(&lines);
    assert!(is_legal(None, &["e2e4"], &best), "{best}");
    engine.quit();
}

/// `go nodes N` reaches N exactly at every move of a game, with two workers racing for the
/// last playouts (a playout given back after the budget ran out used to be lost now and then).
#[test]
fn go_nodes_is_exact_at_every_move_of_a_game() {
    let mut engine = Engine::start_heuristic();
    engine.send("setoption name Threads value 2");
    let mut moves: Vec<String> = Vec::new();
    for i in 0..400 {
        let nodes = 100 + (i * 37) % 900;
        engine.send(format!("position startpos moves {}", moves.join(" ")).trim_end());
        engine.send(&format!("go nodes {nodes}"));
        let lines = engine.read_until("bestmove");
        let refs: Vec<&str> = moves.iter().map(String::as_str).collect();
        let (best, _) = bestmove_of(&lines);
        if !is_legal(None, &refs, &best) {
            // The game is over (mate or stalemate): nothing to search; start a new one.
            moves.clear();
            continue;
        }
        let last = last_search_info(&lines);
        // A root proven by the search (a forced mate) ends it at once, by design.
        let proven = info_field(last, "score").is_some_and(|s| s == "mate");
        let searched: u64 = info_field(last, "nodes").unwrap().parse().unwrap();
        assert!(
            searched == nodes || proven && searched < nodes,
            "search {i}: {last}"
        );
        moves.push(best);
        if moves.len() >= 60 {
            moves.clear();
        }
    }
    engine.quit();
}

#[test]
fn every_limit_ends_with_one_legal_bestmove() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("position startpos", &[], "go nodes 1"),
        ("position startpos", &[], "go movetime 200"),
        ("position startpos", &[], "go depth 3"),
        ("position startpos", &[], "go depth 300 nodes 300"),
        ("position startpos", &[], "go wtime 500 btime 500"),
        (
            "position startpos moves e2e4",
            &["e2e4"],
            "go wtime 2000 btime 2000 winc 100 binc 100 movestogo 300",
        ),
        (
            "position startpos moves e2e4",
            &["e2e4"],
            "go wtime -100 btime 5 movetime 50",
        ),
        ("position startpos", &[], "go nodes 200 frobnicate"),
        ("position startpos", &[], "go mate 1 movetime 300"),
    ];
    let mut engine = Engine::start();
    for (position, moves, go) in cases {
        engine.send(position);
        engine.send(go);
        let lines = engine.read_until("bestmove");
        let (best, _) = bestmove_of(&lines);
        assert!(is_legal(None, moves, &best), "{go}: {best}");
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("bestmove")).count(),
            1
        );
    }
    engine.send("isready");
    let rest = engine.read_until("readyok");
    assert!(
        !rest.iter().any(|l| l.starts_with("bestmove")),
        "an extra bestmove: {rest:?}"
    );
    engine.quit();
}

#[test]
fn infinite_search_stops_promptly_on_stop() {
    let mut engine = Engine::start();
    engine.send("position startpos");
    engine.send("go infinite");
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        !engine.drain().iter().any(|l| l.starts_with("bestmove")),
        "bestmove before stop"
    );
    let sent = Instant::now();
    engine.send("stop");
    let lines = engine.read_until("bestmove");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        sent.elapsed()
    );
    assert!(is_legal(None, &[], &bestmove_of(&lines).0));
    engine.quit();
}

#[test]
fn ponder_waits_for_ponderhit_then_plays_on_the_clock() {
    let mut engine = Engine::start();
    engine.send("setoption name Ponder value true");
    engine.send("position startpos moves e2e4 e7e5");
    engine.send("go ponder wtime 1000 btime 1000");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !engine.drain().iter().any(|l| l.starts_with("bestmove")),
        "bestmove while pondering"
    );
    engine.send("ponderhit");
    let lines = engine.read_until_within("bestmove", Duration::from_secs(5));
    assert!(is_legal(None, &["e2e4", "e7e5"], &bestmove_of(&lines).0));
    engine.quit();
}

#[test]
fn searchmoves_restricts_the_root() {
    let mut engine = Engine::start();
    engine.send("position startpos");
    engine.send("go nodes 300 searchmoves a2a3 h2h3");
    let (best, _) = bestmove_of(&engine.read_until("bestmove"));
    assert!(best == "a2a3" || best == "h2h3", "{best}");
    // The next search sees the whole root again.
    engine.send("go nodes 300");
    let (best, _) = bestmove_of(&engine.read_until("bestmove"));
    assert!(is_legal(None, &[], &best));
    engine.quit();
}

#[test]
fn positions_without_moves_and_bad_positions() {
    let mut engine = Engine::start();
    // Fool's mate: white is mated.
    engine.send("position startpos moves f2f3 e7e5 g2g4 d8h4");
    engine.send("go nodes 100");
    assert_eq!(bestmove_of(&engine.read_until("bestmove")).0, "0000");
    // A bad FEN or an illegal move keeps the previous position.
    engine.send("position startpos moves e2e4");
    engine.send("position fen 8/8/8/8/8/8/8/8 w - - 0 1");
    engine.send("position startpos moves e2e4 e2e4");
    engine.send("position fen rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0");
    engine.send("go nodes 100");
    let lines = engine.read_until("bestmove");
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("info string error"))
            .count()
            >= 3,
        "{lines:?}"
    );
    assert!(
        is_legal(None, &["e2e4"], &bestmove_of(&lines).0),
        "{lines:?}"
    );
    engine.quit();
}

#[test]
fn mate_in_one_is_found_and_scored_as_mate() {
    let fen = "6k1/5ppp/8/8/8/8/5PPP/3R2K1 w - - 0 1";
    let mut engine = Engine::start();
    engine.send(&format!("position fen {fen}"));
    engine.send("go nodes 2000");
    let lines = engine.read_until("bestmove");
    assert_eq!(bestmove_of(&lines).0, "d1d8", "{lines:?}");
    let last_info = last_search_info(&lines);
    assert!(last_info.contains("score mate 1"), "{last_info}");
    engine.quit();
}

#[test]
fn options_change_between_searches_in_both_process_modes() {
    let mut engine = Engine::start();
    for setting in [
        "setoption name Threads value 1",
        "setoption name Hash value 16",
        "setoption name ProcessMode value spawn",
        "setoption name Threads value 3",
        "setoption name MultiPV value 3",
        "setoption name UCI_ShowWDL value true",
        "setoption name VerboseMoveStats value true",
        "setoption name ProcessMode value fork",
    ] {
        engine.send(setting);
        engine.send("position startpos moves d2d4");
        engine.send("go nodes 400");
        let lines = engine.read_until("bestmove");
        assert!(
            !lines.iter().any(|l| l.starts_with("info string error")),
            "{setting}: {lines:?}"
        );
        assert!(
            is_legal(None, &["d2d4"], &bestmove_of(&lines).0),
            "{setting}"
        );
    }
    engine.send("go nodes 400");
    let lines = engine.read_until("bestmove");
    assert!(lines.iter().any(|l| l.contains(" multipv 3 ")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains(" wdl ")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("info string ") && l.contains(" N: ")),
        "{lines:?}"
    );
    engine.quit();
}

#[test]
fn chess960_positions_and_castling_notation() {
    let mut engine = Engine::start();
    engine.send("setoption name UCI_Chess960 value true");
    // Shredder-FEN castling rights, as Chess960 GUIs send them; castling is king takes rook.
    engine.send("position fen rk2r3/pppppppp/8/8/8/8/PPPPPPPP/RK2R3 w EAea - 0 1 moves b1e1");
    engine.send("go nodes 200");
    let lines = engine.read_until("bestmove");
    assert!(
        !lines.iter().any(|l| l.starts_with("info string error")),
        "{lines:?}"
    );
    engine.send("position fen rk2r3/pppppppp/8/8/8/8/PPPPPPPP/RK2R3 w EAea - 0 1");
    engine.send("go nodes 300 searchmoves b1e1");
    assert_eq!(bestmove_of(&engine.read_until("bestmove")).0, "b1e1");
    // Standard chess prints castling as the king's two-square move.
    engine.send("setoption name UCI_Chess960 value false");
    engine.send("position fen r3k2r/pppppppp/8/8/8/8/PPPPPPPP/R3K2R w KQkq - 0 1");
    engine.send("go nodes 300 searchmoves e1g1");
    assert_eq!(bestmove_of(&engine.read_until("bestmove")).0, "e1g1");
    engine.quit();
}

/// Every value the options offer works: the largest `Threads` with the smallest `Hash` and the
/// largest `Hash` both search for real (no fallback move); values beyond the offered range are
/// refused with an error and the previous setting stays.
#[test]
fn the_extreme_values_options_offer_all_search() {
    let mut engine = Engine::start();
    engine.send("uci");
    let options = engine.read_until("uciok");
    let max = |name: &str| -> String {
        let line = options
            .iter()
            .find(|l| l.starts_with(&format!("option name {name} type spin")))
            .unwrap_or_else(|| panic!("no {name} option"));
        info_field(line, "max").unwrap()
    };
    let (threads, hash) = (max("Threads"), max("Hash"));
    for (t, h) in [(threads.as_str(), "1"), ("1", hash.as_str()), ("2", "1")] {
        engine.send(&format!("setoption name Threads value {t}"));
        engine.send(&format!("setoption name Hash value {h}"));
        engine.send("position startpos");
        engine.send("go nodes 200");
        let lines = engine.read_until_within("bestmove", Duration::from_secs(60));
        assert!(
            !lines.iter().any(|l| l.starts_with("info string error")),
            "Threads {t} Hash {h}: {lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains(" nodes 200 ")),
            "Threads {t} Hash {h}: {lines:?}"
        );
    }
    let over = |v: &str| (v.parse::<u64>().unwrap() + 1).to_string();
    for (name, value) in [("Threads", over(&threads)), ("Hash", over(&hash))] {
        engine.send(&format!("setoption name {name} value {value}"));
        engine.send("isready");
        let lines = engine.read_until("readyok");
        assert!(
            lines.iter().any(|l| l.starts_with("info string error")),
            "{name} {value} was accepted: {lines:?}"
        );
    }
    engine.send("go nodes 200");
    let lines = engine.read_until("bestmove");
    assert!(lines.iter().any(|l| l.contains(" nodes 200 ")), "{lines:?}");
    engine.quit();
}

//! Positions where an engine throws a game without crashing: proven roots, roots the tree had
//! marked as game ends, and a thousand random `go` commands over positions full of game ends.
//! Everything runs through the real binary on the heuristic evaluator.

mod common;

use std::time::{Duration, Instant};

use common::{Engine, Rng, bestmove_of, info_field, is_legal, move_stat};
use cozy_chess::{Board, Move};

/// A knight against a bare king (a proven draw at once).
const BARE_KNIGHT: &str = "position fen r3k3/1P6/8/8/8/8/8/4K3 w q - 0 1 moves b7a8n";
const BARE_KNIGHT_FEN: &str = "r3k3/1P6/8/8/8/8/8/4K3 w q - 0 1";

fn started() -> Engine {
    let mut engine = Engine::start_heuristic();
    engine.send("uci");
    engine.read_until("uciok");
    engine
}

/// The last `info ... score ...` line before the `bestmove` in `lines`.
fn last_scored_info(lines: &[String]) -> &String {
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("info") && l.contains(" score "))
        .unwrap_or_else(|| panic!("no info line with a score before bestmove: {lines:?}"))
}

#[test]
fn a_proven_root_ends_every_finite_search_at_once() {
    let mut engine = started();
    for go in [
        "go depth 5",
        "go depth 60",
        "go mate 1",
        "go mate 5",
        "go nodes 100000000",
        "go movetime 30000",
    ] {
        engine.send(BARE_KNIGHT);
        let started = Instant::now();
        engine.send(go);
        let lines = engine.read_until_within("bestmove", Duration::from_secs(3));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{go}: {lines:?}"
        );
        let (best, _) = bestmove_of(&lines);
        assert!(
            is_legal(Some(BARE_KNIGHT_FEN), &["b7a8n"], &best),
            "{go}: {best}"
        );
        let info = last_scored_info(&lines);
        assert_eq!(info_field(info, "score").as_deref(), Some("cp"), "{info}");
        assert_eq!(info_field(info, "cp").as_deref(), Some("0"), "{info}");
    }
    // An infinite search at a proven root waits for `stop` without searching on.
    engine.send(BARE_KNIGHT);
    engine.send("go infinite");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(engine.drain().iter().all(|l| !l.starts_with("bestmove")));
    engine.send("stop");
    let lines = engine.read_until_within("bestmove", Duration::from_secs(1));
    let nodes: u64 = info_field(last_scored_info(&lines), "nodes")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        nodes < 10_000,
        "a proven root was searched on: {nodes} nodes"
    );
    // The next search is a normal one.
    engine.send("position startpos");
    engine.send("go nodes 500");
    let lines = engine.read_until("bestmove");
    assert_eq!(
        info_field(last_scored_info(&lines), "nodes").as_deref(),
        Some("500")
    );
    engine.quit();
}

/// Searching `fen` and then playing `moves` into a node the tree marked as a game end (a mate
/// in one, a draw rule): the new root is searched, and the move played is the searched one.
#[test]
fn a_root_the_tree_marked_as_a_game_end_is_searched_afresh() {
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        // After Kh8, White mates in one: marked as a won terminal below the old root.
        (
            "6k1/5ppp/8/8/8/8/5PPP/3R2K1 b - - 0 1",
            &["g8h8"],
            Some("d1d8"),
        ),
        // Taking the last knight leaves bare kings.
        ("8/8/8/4k3/8/8/3n4/4K3 w - - 0 1", &["e1d2"], None),
        // The fifty-move rule falls due with the first move.
        ("8/8/8/4k3/8/8/4P3/4K3 w - - 99 80", &["e1d1"], None),
        // The third occurrence of the start position.
        (
            "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
            &[
                "g1f3", "g8f6", "f3g1", "f6g8", "g1f3", "g8f6", "f3g1", "f6g8",
            ],
            None,
        ),
    ];
    let mut engine = started();
    for &(fen, moves, want) in cases {
        let (before, last) = moves.split_at(moves.len() - 1);
        engine.send("ucinewgame");
        engine.send(&format!("position fen {fen} moves {}", before.join(" ")));
        engine.send("go nodes 2000");
        engine.read_until("bestmove");
        engine.send(&format!("position fen {fen} moves {}", moves.join(" ")));
        engine.send("go nodes 300");
        let lines = engine.read_until("bestmove");
        let (best, _) = bestmove_of(&lines);
        assert!(is_legal(Some(fen), moves, &best), "{fen} {last:?}: {best}");
        let info = last_scored_info(&lines);
        assert_eq!(
            info_field(info, "pv").as_deref(),
            Some(best.as_str()),
            "{fen} {last:?}: the move played is not the searched one: {lines:?}"
        );
        if let Some(want) = want {
            assert_eq!(best, want, "{fen} {last:?}");
            assert_eq!(info_field(info, "mate").as_deref(), Some("1"), "{info}");
        }
    }
    engine.quit();
}

#[test]
fn verbose_move_stats_end_with_lc0s_node_line() {
    let mut engine = started();
    engine.send("setoption name VerboseMoveStats value true");
    engine.send("position startpos");
    engine.send("go nodes 300");
    let lines = engine.read_until("bestmove");
    let node = lines
        .iter()
        .find(|l| l.starts_with("info string node "))
        .unwrap_or_else(|| panic!("no node line: {lines:?}"));
    let n: Vec<&str> = node.split_whitespace().collect();
    let visits = n.iter().position(|&w| w == "N:").map(|i| n[i + 1]);
    assert_eq!(visits, Some("300"), "{node}");
    for field in ["(WL:", "(D:", "(Q:", "(V:"] {
        assert!(node.contains(field), "{field} missing in {node}");
    }
    engine.quit();
}

/// Start positions full of game ends, beside the usual one.
const STARTS: &[&str] = &[
    "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
    // Bare material and nearly so.
    "8/8/8/4k3/8/8/3n4/4K3 w - - 0 1",
    "8/8/3bk3/8/8/8/8/4KB2 w - - 0 1",
    // Mates in one for either side, and a mate in two.
    "6k1/5ppp/8/8/8/8/5PPP/3R2K1 w - - 0 1",
    "6k1/5ppp/8/8/8/8/5PPP/3R2K1 b - - 0 1",
    "r1bqkb1r/pppp1ppp/2n2n2/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4",
    "6k1/5ppp/8/8/8/8/r4PPP/3R2K1 w - - 0 1",
    // Stalemate traps.
    "7k/5Q2/6K1/8/8/8/8/8 w - - 0 1",
    "k7/2Q5/1K6/8/8/8/8/8 w - - 0 1",
    // The fifty-move rule about to fall due.
    "8/8/8/4k3/8/8/4P3/4K3 w - - 98 80",
    "8/5k2/8/8/8/2R5/8/4K3 b - - 97 90",
    // A promotion race.
    "8/P6k/8/8/8/8/6p1/K7 w - - 0 1",
];

/// A random game from one of [`STARTS`]: some random moves, sometimes a knight shuffle that
/// repeats positions. Returns the FEN, the moves (UCI) and the board reached.
fn random_position(rng: &mut Rng) -> (String, Vec<String>, Board) {
    let fen = STARTS[rng.below(STARTS.len())].to_string();
    let mut board = Board::from_fen(&fen, false).unwrap();
    let mut moves = Vec::new();
    let plies = rng.below(12);
    for _ in 0..plies {
        let mut legal: Vec<Move> = Vec::new();
        board.generate_moves(|m| {
            legal.extend(m);
            false
        });
        if legal.is_empty() {
            break;
        }
        let mv = legal[rng.below(legal.len())];
        moves.push(banyan_nn::policy::uci_move(&board, mv, false));
        board.play_unchecked(mv);
    }
    // Repetitions: shuffle a piece out and back, sometimes twice.
    if rng.below(4) == 0 {
        for _ in 0..1 + rng.below(2) {
            for _ in 0..2 {
                let mut legal: Vec<Move> = Vec::new();
                board.generate_moves(|m| {
                    legal.extend(m);
                    false
                });
                let quiet: Vec<Move> = legal
                    .into_iter()
                    .filter(|m| {
                        board.piece_on(m.to).is_none()
                            && board.piece_on(m.from) != Some(cozy_chess::Piece::Pawn)
                    })
                    .collect();
                let Some(&mv) = quiet.first() else {
                    break;
                };
                moves.push(banyan_nn::policy::uci_move(&board, mv, false));
                board.play_unchecked(mv);
            }
        }
    }
    (fen, moves, board)
}

/// Commands of the random-command test; `BANYAN_RANDOM_GO` sets another count.
fn random_commands() -> usize {
    std::env::var("BANYAN_RANDOM_GO")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[test]
fn random_go_commands_each_get_one_legal_bestmove_promptly() {
    let mut rng = Rng(0x005E_EDBA_47A4);
    let mut engine = started();
    engine.send("setoption name Hash value 32");
    let count = random_commands();
    let mut slowest = Duration::ZERO;
    for i in 0..count {
        let (fen, moves, board) = random_position(&mut rng);
        let go = match rng.below(3) {
            0 => format!("go depth {}", 1 + rng.below(6)),
            1 => format!("go nodes {}", 1 + rng.below(2000)),
            _ => format!("go mate {}", 1 + rng.below(3)),
        };
        let position = if moves.is_empty() {
            format!("position fen {fen}")
        } else {
            format!("position fen {fen} moves {}", moves.join(" "))
        };
        if rng.below(8) == 0 {
            engine.send("ucinewgame");
        }
        engine.send(&position);
        let started = Instant::now();
        engine.send(&go);
        let lines = engine.read_until_within("bestmove", Duration::from_secs(10));
        let took = started.elapsed();
        slowest = slowest.max(took);
        let context = format!("command {i}: {position} / {go}");
        // A hang, not a speed limit: on a quiet machine every answer comes within 2 s (the
        // slowest is printed at the end), but a loaded machine may take longer.
        assert!(took < Duration::from_secs(6), "{context}: {took:?}");
        let (best, _) = bestmove_of(&lines);
        let mut any_legal = false;
        board.generate_moves(|_| {
            any_legal = true;
            true
        });
        if any_legal {
            let moves: Vec<&str> = moves.iter().map(String::as_str).collect();
            assert!(is_legal(Some(&fen), &moves, &best), "{context}: {best}");
            last_scored_info(&lines);
        } else {
            assert_eq!(best, "0000", "{context}");
        }
        assert!(
            lines.iter().all(|l| !l.starts_with("info string error")),
            "{context}: {lines:?}"
        );
    }
    // Exactly one bestmove per go: nothing further arrives.
    engine.send("isready");
    let tail = engine.read_until("readyok");
    assert!(tail.iter().all(|l| !l.starts_with("bestmove")), "{tail:?}");
    eprintln!("{count} random go commands, slowest answer {slowest:?}");
    engine.quit();
}

/// The D of `mv`'s `VerboseMoveStats` line after `go nodes 400` from `position`.
fn draw_share(engine: &mut Engine, position: &str, mv: &str) -> f32 {
    engine.send("ucinewgame");
    engine.send(position);
    engine.send("go nodes 400");
    let lines = engine.read_until("bestmove");
    move_stat(&lines, mv, "(D:").unwrap_or_else(|| panic!("no D for {mv}: {lines:?}"))
}

/// Lc0's rule: a position's second occurrence is a draw in the tree only when the cycle lies
/// inside it; its third occurrence (counting the game) is a draw anywhere.
#[test]
fn repetitions_are_draws_by_lc0s_rule() {
    let mut engine = started();
    engine.send("setoption name VerboseMoveStats value true");
    // Going back to the start position repeats a position from before the root: no draw.
    let d = draw_share(
        &mut engine,
        "position startpos moves g1f3 g8f6 f3g1",
        "f6g8",
    );
    assert!(
        d < 0.999,
        "a repetition of a game position was scored as a draw: D {d}"
    );
    // The same move as the start position's third occurrence is a draw.
    let d = draw_share(
        &mut engine,
        "position startpos moves g1f3 g8f6 f3g1 f6g8 g1f3 g8f6 f3g1",
        "f6g8",
    );
    assert!(d >= 0.999, "a threefold repetition was not a draw: D {d}");
    engine.quit();
}

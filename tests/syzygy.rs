//! Syzygy tablebases: the prober against known answers and against python-chess's independent
//! `chess.syzygy`, `SyzygyPath` through the UCI front-end (found tables, errors for bad paths
//! and files, `tbhits` and a proven score), and won endings played out against Stockfish.
//!
//! Needs the 3- and 4-piece tables in ../shared/syzygy; the comparisons and games also need
//! BANYAN_TEST_PYTHON (python-chess, set by scripts/test) and stockfish. Whatever is missing is
//! reported as a skip. `BANYAN_SYZYGY_GAMES` sets the games per ending (default 4; the issue's
//! full count is 20).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use banyan_engine::tablebase::{self, Wdl};
use common::{Engine, Rng, info_field, skip};
use cozy_chess::{Board, BoardBuilder, Color, Move, Piece, Square};

const TABLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/syzygy");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/syzygy.py");

/// The prober holds one set of tables per process: tests that load them take turns.
static PROBER: Mutex<()> = Mutex::new(());

fn tables_or_skip(test: &str) -> bool {
    let ok = PathBuf::from(TABLES).join("KQvK.rtbw").is_file();
    if !ok {
        skip(
            &format!("syzygy::{test}"),
            "no ../shared/syzygy (third-party Syzygy tables)",
        );
    }
    ok
}

/// The test Python with python-chess, or a skip.
fn python_or_skip(test: &str) -> Option<String> {
    let python = std::env::var("BANYAN_TEST_PYTHON").unwrap_or_default();
    let ok = !python.is_empty()
        && Command::new(&python)
            .args(["-c", "import chess.syzygy, chess.engine"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        skip(
            &format!("syzygy::{test}"),
            "BANYAN_TEST_PYTHON with python-chess is not set (run scripts/test)",
        );
    }
    ok.then_some(python)
}

/// Stockfish on PATH, else Debian's, or a skip.
fn stockfish_or_skip(test: &str) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("stockfish"))
        .chain([PathBuf::from("/usr/games/stockfish")])
        .find(|p| p.is_file());
    if found.is_none() {
        skip(
            &format!("syzygy::{test}"),
            "no stockfish (run scripts/test)",
        );
    }
    found.map(|p| p.display().to_string())
}

fn board(fen: &str) -> Board {
    Board::from_fen(fen, false).expect("test FEN")
}

#[test]
fn probes_match_the_known_answers() {
    if !tables_or_skip("probes_match_the_known_answers") {
        return;
    }
    let _turn = PROBER.lock().unwrap_or_else(|e| e.into_inner());
    let report = tablebase::load(TABLES);
    assert_eq!((report.tables, report.max_pieces), (35, 4), "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    // The README's table: WDL win, DTZ 3, 29 and 1.
    for (fen, dtz) in [
        ("8/8/8/8/8/3K4/3P4/3k4 w - - 0 1", 3),
        ("8/8/8/3k4/8/8/8/KR6 w - - 0 1", 29),
        ("8/8/8/3k4/8/8/r7/KQ6 w - - 0 1", 1),
    ] {
        let b = board(fen);
        assert_eq!(tablebase::probe_wdl(&b), Some(Wdl::Win), "{fen}");
        let root = tablebase::probe_root(&[b]).expect("in the tables");
        assert_eq!((root.wdl, root.dtz), (Wdl::Win, Some(dtz)), "{fen}");
        assert!(!root.moves.is_empty(), "{fen}");
    }
    // Castling rights or five pieces: not probed.
    assert_eq!(
        tablebase::probe_wdl(&board("4k3/8/8/8/8/8/8/R3K3 w Q - 0 1")),
        None
    );
    assert_eq!(
        tablebase::probe_wdl(&board("4k3/8/8/8/8/8/8/RNB1K3 w - - 0 1")),
        None
    );
    // Without DTZ tables the root filter falls back on WDL probes of the moves.
    let wdl_only = std::env::temp_dir().join(format!("banyan-syzygy-wdl-{}", std::process::id()));
    std::fs::create_dir_all(&wdl_only).unwrap();
    for entry in std::fs::read_dir(TABLES).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "rtbw") {
            std::os::unix::fs::symlink(entry.path(), wdl_only.join(entry.file_name())).unwrap();
        }
    }
    let report = tablebase::load(wdl_only.to_str().unwrap());
    assert_eq!(report.tables, 35, "{report:?}");
    let b = board("8/8/8/3k4/8/8/8/KR6 w - - 0 1");
    let root = tablebase::probe_root(std::slice::from_ref(&b)).expect("WDL fallback");
    assert_eq!((root.wdl, root.dtz), (Wdl::Win, None));
    for &mv in &root.moves {
        let mut after = b.clone();
        after.play(mv);
        assert_eq!(
            tablebase::probe_wdl(&after),
            Some(Wdl::Loss),
            "{mv} keeps the win"
        );
    }
    assert!(
        root.moves.len() > 1 && root.moves.len() < 16,
        "{:?}",
        root.moves
    );
    let _ = std::fs::remove_dir_all(&wdl_only);
    // Two directories, one of them missing: the other's tables load, the missing one is named.
    let report = tablebase::load(&format!("/nonexistent/syzygy:{TABLES}"));
    assert_eq!(report.tables, 35);
    assert!(
        report.errors[0].contains("/nonexistent/syzygy"),
        "{report:?}"
    );
    assert_eq!(tablebase::load("").tables, 0);
    assert_eq!(
        tablebase::probe_wdl(&board("8/8/8/3k4/8/8/8/KR6 w - - 0 1")),
        None
    );
}

/// `count` random legal positions of the tables' material (3 and 4 pieces), either side to
/// move, with at least one legal move (the root probe needs one), and a tenth more right after
/// a double pawn step that can be taken en passant.
fn random_positions(count: usize) -> Vec<Board> {
    let mut stems: Vec<String> = std::fs::read_dir(TABLES)
        .expect("tables")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".rtbw").map(str::to_string)
        })
        .collect();
    stems.sort();
    let mut rng = Rng(0x5eed_1234_abcd_0014);
    let mut out = Vec::new();
    let mut eps = 0;
    while out.len() < count {
        let stem = &stems[rng.below(stems.len())];
        let (strong, weak) = stem.split_once('v').expect("table name");
        let swap = rng.below(2) == 1;
        let mut builder = BoardBuilder::empty();
        let mut used = Vec::new();
        let mut ok = true;
        for (side, pieces) in [(Color::White, strong), (Color::Black, weak)] {
            let color = if swap { !side } else { side };
            for c in pieces.chars() {
                let sq = Square::index(rng.below(64));
                let piece = match c {
                    'K' => Piece::King,
                    'Q' => Piece::Queen,
                    'R' => Piece::Rook,
                    'B' => Piece::Bishop,
                    'N' => Piece::Knight,
                    _ => Piece::Pawn,
                };
                let back = matches!(
                    sq.rank(),
                    cozy_chess::Rank::First | cozy_chess::Rank::Eighth
                );
                ok &= !(used.contains(&sq) || (piece == Piece::Pawn && back));
                used.push(sq);
                *builder.square_mut(sq) = Some((piece, color));
            }
        }
        builder.side_to_move = if rng.below(2) == 0 {
            Color::White
        } else {
            Color::Black
        };
        // cozy-chess accepts touching kings; the tables do not cover them.
        let Ok(mut b) = builder.build() else {
            continue;
        };
        if !ok
            || !(cozy_chess::get_king_moves(b.king(Color::White)) & b.pieces(Piece::King))
                .is_empty()
        {
            continue;
        }
        // Half the time a double pawn step is played first, for en-passant positions.
        let mut double = None;
        b.generate_moves(|moves| {
            double = double.or(moves.into_iter().find(|m| {
                moves.piece == Piece::Pawn && (m.from.rank() as i32 - m.to.rank() as i32).abs() == 2
            }));
            false
        });
        if let Some(mv) = double.filter(|_| rng.below(2) == 0) {
            b.play(mv);
            eps += b.en_passant().is_some() as usize;
        }
        if b.generate_moves(|_| true) {
            out.push(b);
        }
    }
    // KPvKP right after a double step next to an enemy pawn: en passant is legal.
    while eps < count / 10 {
        let file = rng.below(8);
        let next = if file == 0 || (file < 7 && rng.below(2) == 0) {
            file + 1
        } else {
            file - 1
        };
        let white_steps = rng.below(2) == 0;
        let (mover, rank_from, rank_to, capturer_rank) = if white_steps {
            (Color::White, 1, 3, 3)
        } else {
            (Color::Black, 6, 4, 4)
        };
        let mut builder = BoardBuilder::empty();
        let at = |f: usize, r: usize| Square::index(r * 8 + f);
        let from = at(file, rank_from);
        *builder.square_mut(from) = Some((Piece::Pawn, mover));
        *builder.square_mut(at(next, capturer_rank)) = Some((Piece::Pawn, !mover));
        let (wk, bk) = (Square::index(rng.below(64)), Square::index(rng.below(64)));
        if builder.square(wk).is_some() || builder.square(bk).is_some() || wk == bk {
            continue;
        }
        *builder.square_mut(wk) = Some((Piece::King, Color::White));
        *builder.square_mut(bk) = Some((Piece::King, Color::Black));
        builder.side_to_move = mover;
        let Ok(mut b) = builder.build() else {
            continue;
        };
        let step = Move {
            from,
            to: at(file, rank_to),
            promotion: None,
        };
        if !(cozy_chess::get_king_moves(wk) & b.pieces(Piece::King)).is_empty()
            || b.try_play(step).is_err()
            || b.en_passant().is_none()
            || !b.generate_moves(|_| true)
        {
            continue;
        }
        out.push(b);
        eps += 1;
    }
    eprintln!("{eps} positions with an en-passant square");
    out
}

#[test]
fn probes_match_python_chess_on_random_positions() {
    const TEST: &str = "probes_match_python_chess_on_random_positions";
    if !tables_or_skip(TEST) {
        return;
    }
    let Some(python) = python_or_skip(TEST) else {
        return;
    };
    let positions = random_positions(1200);
    let mut child = Command::new(python)
        .args([SCRIPT, "probe", "--tables", TABLES])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tests/syzygy.py");
    let fens: String = positions.iter().map(|b| format!("{b}\n")).collect();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(fens.as_bytes()));
    let out = child.wait_with_output().expect("python-chess answers");
    writer.join().unwrap().expect("write the FENs");
    assert!(out.status.success(), "tests/syzygy.py probe failed");
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(answers.len(), positions.len());

    let _turn = PROBER.lock().unwrap_or_else(|e| e.into_inner());
    tablebase::load(TABLES);
    let mut wins = 0;
    for (b, answer) in positions.iter().zip(&answers) {
        let (wdl, dtz) = answer.split_once(' ').expect("two fields");
        let wdl: i32 = wdl
            .parse()
            .unwrap_or_else(|_| panic!("{b}: python says {answer}"));
        let dtz: i32 = dtz.parse().unwrap();
        let ours = tablebase::probe_wdl(b).unwrap_or_else(|| panic!("{b}: no WDL"));
        assert_eq!(ours as i32 - 2, wdl, "WDL of {b}");
        let root =
            tablebase::probe_root(std::slice::from_ref(b)).unwrap_or_else(|| panic!("{b}: no DTZ"));
        assert_eq!(root.dtz, Some(dtz), "DTZ of {b}");
        wins += (wdl == 2) as usize;
    }
    eprintln!(
        "{} positions agree with python-chess ({wins} wins)",
        positions.len()
    );
    tablebase::load("");
}

fn start_with_tables(path: &str, mode: &str) -> (Engine, Vec<String>) {
    let mut engine = Engine::start();
    engine.send("uci");
    engine.read_until("uciok");
    engine.send("setoption name Threads value 1");
    engine.send(&format!("setoption name ProcessMode value {mode}"));
    engine.send(&format!("setoption name SyzygyPath value {path}"));
    engine.send("isready");
    let lines = engine.read_until_within("readyok", Duration::from_secs(30));
    (engine, lines)
}

#[test]
fn go_reports_tbhits_and_the_proven_result() {
    if !tables_or_skip("go_reports_tbhits_and_the_proven_result") {
        return;
    }
    // Forked workers inherit the tables; re-executed ones open them.
    for mode in ["fork", "spawn"] {
        go_reports_tbhits_in(mode);
    }
}

fn go_reports_tbhits_in(mode: &str) {
    let (mut engine, lines) = start_with_tables(TABLES, mode);
    assert!(
        lines.contains(&"info string Syzygy: found 35 tables, up to 4 pieces".to_string()),
        "{lines:?}"
    );
    // KRvKP (4 pieces), a win for White; KNvKP, a draw. Their captures are probed in the
    // search, beyond the root's own probes (one per legal move and the root).
    for (fen, score) in [
        ("8/8/8/3k4/8/6p1/8/KR6 w - - 0 1", "12780"),
        ("8/8/8/4k3/8/1p6/8/K1N5 w - - 0 1", "0"),
    ] {
        engine.send(&format!("position fen {fen}"));
        engine.send("go nodes 200");
        let lines = engine.read_until("bestmove");
        let last_info = lines
            .iter()
            .rev()
            .find(|l| l.starts_with("info") && l.contains(" score "))
            .expect("an info line with a score");
        let hits: u64 = info_field(last_info, "tbhits")
            .expect("tbhits")
            .parse()
            .unwrap();
        let mut root_probes = 1;
        board(fen).generate_moves(|m| {
            root_probes += m.len() as u64;
            false
        });
        assert!(hits > root_probes, "{mode}: {last_info}");
        assert_eq!(
            info_field(last_info, "cp").as_deref(),
            Some(score),
            "{fen}: {last_info}"
        );
    }
    engine.quit();
}

#[test]
fn bad_paths_and_files_report_errors_and_the_engine_plays_on() {
    const TEST: &str = "bad_paths_and_files_report_errors_and_the_engine_plays_on";
    if !tables_or_skip(TEST) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("banyan-syzygy-test-{}", std::process::id()));
    let empty = dir.join("empty");
    let broken = dir.join("broken");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(&broken).unwrap();
    // A truncated WDL file, a DTZ file of the wrong kind, and one good table.
    let kqvk = std::fs::read(PathBuf::from(TABLES).join("KQvK.rtbw")).unwrap();
    std::fs::write(broken.join("KQvK.rtbw"), &kqvk[..kqvk.len() / 2 + 5]).unwrap();
    std::fs::write(broken.join("KQvK.rtbz"), &kqvk).unwrap();
    for name in ["KRvK.rtbw", "KRvK.rtbz"] {
        std::fs::copy(PathBuf::from(TABLES).join(name), broken.join(name)).unwrap();
    }
    let cases = [
        (
            "/nonexistent/syzygy".to_string(),
            vec!["/nonexistent/syzygy"],
            None,
        ),
        (empty.display().to_string(), vec!["no usable tables"], None),
        (
            broken.display().to_string(),
            vec!["KQvK.rtbw is truncated", "KQvK.rtbz is not a Syzygy table"],
            Some("info string Syzygy: found 1 tables, up to 3 pieces"),
        ),
    ];
    for (path, errors, found) in cases {
        let (mut engine, lines) = start_with_tables(&path, "fork");
        for error in errors {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("info string error: ") && l.contains(error)),
                "{path}: no error with '{error}' in {lines:?}"
            );
        }
        if let Some(found) = found {
            assert!(lines.iter().any(|l| l == found), "{lines:?}");
        }
        // It plays on: a KQvK position (the broken table is left out) and a KRvK one.
        for fen in [
            "8/8/8/3k4/8/8/8/KQ6 w - - 0 1",
            "8/8/8/3k4/8/8/8/KR6 w - - 0 1",
        ] {
            engine.send(&format!("position fen {fen}"));
            engine.send("go nodes 50");
            engine.read_until("bestmove");
        }
        engine.send("isready");
        engine.read_until("readyok");
        engine.quit();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn won_endings_are_won_against_stockfish() {
    const TEST: &str = "won_endings_are_won_against_stockfish";
    if !tables_or_skip(TEST) {
        return;
    }
    let (Some(python), Some(stockfish)) = (python_or_skip(TEST), stockfish_or_skip(TEST)) else {
        return;
    };
    let per_material: u32 = std::env::var("BANYAN_SYZYGY_GAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let out = Command::new(python)
        .args([SCRIPT, "games", "--tables", TABLES])
        .args(["--banyan", env!("CARGO_BIN_EXE_banyan")])
        .args(["--stockfish", &stockfish])
        .args(["--per-material", &per_material.to_string()])
        .args(["--nodes", "200"])
        .output()
        .expect("run tests/syzygy.py");
    let log = String::from_utf8_lossy(&out.stderr);
    let json = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{log}\n{json}");
    assert!(out.status.success(), "driver failed:\n{log}\n{json}");
    let count = |name: &str| -> u64 {
        let key = format!("\"{name}\": ");
        let at = json
            .find(&key)
            .unwrap_or_else(|| panic!("no {name}: {json}"))
            + key.len();
        let rest = &json[at..];
        rest[..rest.find([',', '}']).unwrap()].parse().unwrap()
    };
    let games = 5 * per_material as u64;
    assert_eq!(count("games"), games, "{json}");
    assert_eq!(
        count("wins"),
        games,
        "every game won, no win given up: {json}"
    );
}

//! Turning one input line into a command.
//!
//! vampirc-uci parses the commands it handles well. `go` is parsed here because vampirc-uci
//! 0.11.1 loses `ponder`, panics on `depth 300` / `movestogo 300` (u8), cuts large `nodes` and
//! drops unknown tokens. Every line is decoded lossily first, so non-UTF-8 bytes are harmless.

use vampirc_uci::UciMessage;

/// Everything `go` can say. Times are milliseconds; negative clock values (some GUIs send them
/// after a flag fall) are clamped to zero.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GoParams {
    pub wtime: Option<u64>,
    pub btime: Option<u64>,
    pub winc: Option<u64>,
    pub binc: Option<u64>,
    pub movestogo: Option<u64>,
    pub movetime: Option<u64>,
    pub nodes: Option<u64>,
    pub depth: Option<u64>,
    pub mate: Option<u64>,
    pub infinite: bool,
    pub ponder: bool,
    pub searchmoves: Vec<String>,
}

/// One parsed input line.
#[derive(Debug)]
pub enum Command {
    Uci,
    Debug,
    IsReady,
    SetOption {
        name: String,
        value: Option<String>,
    },
    UciNewGame,
    Position {
        fen: Option<String>,
        moves: Vec<String>,
    },
    Go {
        params: GoParams,
        problems: Vec<String>,
    },
    Stop,
    PonderHit,
    Quit,
    /// A blank line: ignored, as the protocol asks.
    Empty,
    /// A line that is not a command this engine knows; the string says why.
    Unknown(String),
}

/// Parses one line (already decoded, possibly with trailing newline).
pub fn parse(line: &str) -> Command {
    let line = line.trim();
    let mut tokens = line.split_whitespace();
    let Some(head) = tokens.next() else {
        return Command::Empty;
    };
    match head {
        "go" => {
            let (params, problems) = parse_go(tokens);
            Command::Go { params, problems }
        }
        "position" => parse_position(line),
        "setoption" => parse_setoption(line),
        _ => from_vampirc(line),
    }
}

fn from_vampirc(line: &str) -> Command {
    // The grammar is small and total on these commands, but a parser panic must never end the
    // engine, so it is contained.
    let msg = std::panic::catch_unwind(|| vampirc_uci::parse_one(line));
    match msg {
        Ok(UciMessage::Uci) => Command::Uci,
        Ok(UciMessage::Debug(_)) => Command::Debug,
        Ok(UciMessage::IsReady) => Command::IsReady,
        Ok(UciMessage::UciNewGame) => Command::UciNewGame,
        Ok(UciMessage::Stop) => Command::Stop,
        Ok(UciMessage::PonderHit) => Command::PonderHit,
        Ok(UciMessage::Quit) => Command::Quit,
        _ => Command::Unknown(format!("unknown command '{}'", shorten(line))),
    }
}

/// `position [startpos | fen <fields>] [moves m1 m2 …]`, parsed here: vampirc-uci's FEN
/// grammar refuses Shredder-FEN castling rights (`HAha`), which Chess960 GUIs send, and
/// accepts a `position` with neither `startpos` nor `fen`. The FEN and the moves are checked
/// against the rules when the position is built.
fn parse_position(line: &str) -> Command {
    let malformed = || Command::Unknown(format!("malformed position command '{}'", shorten(line)));
    let mut tokens = line.split_whitespace().skip(1).peekable();
    let fen = match tokens.next() {
        Some("startpos") => None,
        Some("fen") => {
            let fields: Vec<&str> =
                std::iter::from_fn(|| tokens.next_if(|&t| t != "moves")).collect();
            if fields.is_empty() {
                return malformed();
            }
            Some(fields.join(" "))
        }
        _ => return malformed(),
    };
    let moves = match tokens.next() {
        None => Vec::new(),
        Some("moves") => tokens.map(str::to_string).collect(),
        Some(_) => return malformed(),
    };
    Command::Position { fen, moves }
}

/// `setoption name <name with spaces> [value <value with spaces>]`.
fn parse_setoption(line: &str) -> Command {
    let msg = std::panic::catch_unwind(|| vampirc_uci::parse_one(line));
    match msg {
        Ok(UciMessage::SetOption { name, value }) if !name.trim().is_empty() => {
            Command::SetOption {
                name: name.trim().to_string(),
                value: value.map(|v| v.trim().to_string()),
            }
        }
        _ => Command::Unknown(format!("malformed setoption command '{}'", shorten(line))),
    }
}

/// Parses the tokens after `go`. Unknown tokens and bad numbers are reported, not dropped; the
/// search still runs with what was understood.
fn parse_go<'a>(tokens: impl Iterator<Item = &'a str>) -> (GoParams, Vec<String>) {
    let mut p = GoParams::default();
    let mut problems = Vec::new();
    let mut tokens = tokens.peekable();
    while let Some(token) = tokens.next() {
        let slot = match token {
            "wtime" => &mut p.wtime,
            "btime" => &mut p.btime,
            "winc" => &mut p.winc,
            "binc" => &mut p.binc,
            "movestogo" => &mut p.movestogo,
            "movetime" => &mut p.movetime,
            "nodes" => &mut p.nodes,
            "depth" => &mut p.depth,
            "mate" => &mut p.mate,
            "infinite" => {
                p.infinite = true;
                continue;
            }
            "ponder" => {
                p.ponder = true;
                continue;
            }
            "searchmoves" => {
                while let Some(m) = tokens.next_if(|t| looks_like_move(t)) {
                    p.searchmoves.push(m.to_string());
                }
                continue;
            }
            other => {
                problems.push(format!("go: unknown token '{}'", shorten(other)));
                continue;
            }
        };
        match tokens.next().map(parse_number) {
            Some(Some(n)) => *slot = Some(n),
            Some(None) | None => problems.push(format!("go: '{token}' needs a number")),
        }
    }
    (p, problems)
}

/// A whole number, saturating: negative values become 0, huge ones `u64::MAX`.
fn parse_number(token: &str) -> Option<u64> {
    if let Ok(v) = token.parse::<i128>() {
        return Some(v.clamp(0, u64::MAX as i128) as u64);
    }
    let digits = token.strip_prefix('-').unwrap_or(token);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(if token.starts_with('-') { 0 } else { u64::MAX });
    }
    None
}

fn looks_like_move(token: &str) -> bool {
    let b = token.as_bytes();
    (4..=5).contains(&b.len())
        && (b'a'..=b'h').contains(&b[0])
        && (b'1'..=b'8').contains(&b[1])
        && (b'a'..=b'h').contains(&b[2])
        && (b'1'..=b'8').contains(&b[3])
}

/// Caps echoed input so a megabyte-long garbage line gives a short error.
fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(line: &str) -> (GoParams, Vec<String>) {
        match parse(line) {
            Command::Go { params, problems } => (params, problems),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn go_parses_what_vampirc_gets_wrong() {
        let cases: &[(&str, GoParams)] = &[
            (
                "go ponder wtime 1000 btime 900",
                GoParams {
                    ponder: true,
                    wtime: Some(1000),
                    btime: Some(900),
                    ..Default::default()
                },
            ),
            (
                "go depth 300 movestogo 300",
                GoParams {
                    depth: Some(300),
                    movestogo: Some(300),
                    ..Default::default()
                },
            ),
            (
                "go nodes 1000000000000",
                GoParams {
                    nodes: Some(1_000_000_000_000),
                    ..Default::default()
                },
            ),
            (
                "go nodes 99999999999999999999999999999999999999999",
                GoParams {
                    nodes: Some(u64::MAX),
                    ..Default::default()
                },
            ),
            (
                "go wtime -300 btime 10",
                GoParams {
                    wtime: Some(0),
                    btime: Some(10),
                    ..Default::default()
                },
            ),
            (
                "go infinite searchmoves e2e4 d2d4 a7a8q",
                GoParams {
                    infinite: true,
                    searchmoves: vec!["e2e4".into(), "d2d4".into(), "a7a8q".into()],
                    ..Default::default()
                },
            ),
            ("go", GoParams::default()),
        ];
        for (line, want) in cases {
            let (got, problems) = go(line);
            assert_eq!(&got, want, "{line}");
            assert!(problems.is_empty(), "{line}: {problems:?}");
        }
    }

    #[test]
    fn go_reports_unknown_tokens_and_bad_numbers() {
        let (p, problems) = go("go movetime 100 frobnicate depth x");
        assert_eq!(p.movetime, Some(100));
        assert_eq!(problems.len(), 2, "{problems:?}");
        let (_, problems) = go("go wtime");
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn other_lines() {
        assert!(matches!(parse(""), Command::Empty));
        assert!(matches!(parse("   \t "), Command::Empty));
        assert!(matches!(parse("uci"), Command::Uci));
        assert!(matches!(parse("isready\r\n"), Command::IsReady));
        assert!(matches!(parse("position"), Command::Unknown(_)));
        assert!(matches!(parse("setoption"), Command::Unknown(_)));
        assert!(matches!(parse("xyzzy"), Command::Unknown(_)));
        match parse("setoption name Log File value /tmp/x y") {
            Command::SetOption { name, value } => {
                assert_eq!(name, "Log File");
                assert_eq!(value.as_deref(), Some("/tmp/x y"));
            }
            other => panic!("{other:?}"),
        }
        match parse("position startpos moves e2e4 e7e5") {
            Command::Position { fen, moves } => {
                assert!(fen.is_none());
                assert_eq!(moves, ["e2e4", "e7e5"]);
            }
            other => panic!("{other:?}"),
        }
        match parse(
            "position fen bqnb1rkr/pp3ppp/3ppn2/2p5/5P2/P2P4/NPP1P1PP/BQ1BNRKR w HFhf - 2 9",
        ) {
            Command::Position { fen, moves } => {
                assert_eq!(
                    fen.as_deref(),
                    Some("bqnb1rkr/pp3ppp/3ppn2/2p5/5P2/P2P4/NPP1P1PP/BQ1BNRKR w HFhf - 2 9")
                );
                assert!(moves.is_empty());
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "position fen",
            "position fen moves e2e4",
            "position startpos e2e4",
            "position sideways",
        ] {
            assert!(matches!(parse(bad), Command::Unknown(_)), "{bad}");
        }
        match parse("position fen 8/8/8/8/8/8/8/K6k w - - 0 1 moves a1a2") {
            Command::Position { fen, moves } => {
                assert_eq!(fen.as_deref(), Some("8/8/8/8/8/8/8/K6k w - - 0 1"));
                assert_eq!(moves, ["a1a2"]);
            }
            other => panic!("{other:?}"),
        }
        let long = "x".repeat(1 << 20);
        assert!(matches!(parse(&long), Command::Unknown(m) if m.len() < 200));
    }
}

/// Fuzzing the line handler: whatever bytes a GUI (or a cat on the keyboard) sends, `parse`
/// returns a command and never panics. `PROPTEST_CASES` raises the case count (CI keeps the
/// default of 256 per property).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Words the parser gives meaning to, so random lines reach deep into each branch.
    const WORDS: &[&str] = &[
        "uci",
        "isready",
        "go",
        "position",
        "setoption",
        "name",
        "value",
        "startpos",
        "fen",
        "moves",
        "stop",
        "ponderhit",
        "quit",
        "ucinewgame",
        "debug",
        "on",
        "wtime",
        "btime",
        "winc",
        "binc",
        "movestogo",
        "movetime",
        "nodes",
        "depth",
        "mate",
        "infinite",
        "ponder",
        "searchmoves",
        "e2e4",
        "a7a8q",
        "0000",
        "-1",
        "0",
        "18446744073709551616",
        "99999999999999999999999999999999",
        "-99999999999999999999999",
        "1e9",
        "NaN",
        "w",
        "b",
        "KQkq",
        "-",
        "8/8/8/8/8/8/8/8",
        "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR",
        "Threads",
        "Hash",
        "\u{0}",
        "\u{feff}",
        "é",
        "\t",
        "\r",
    ];

    fn word_line() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(WORDS).prop_map(str::to_string),
                1 => "\\PC{0,12}",
                1 => any::<i128>().prop_map(|n| n.to_string()),
            ],
            0..24,
        )
        .prop_map(|w| w.join(" "))
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            // As the engine reads them: lossy UTF-8.
            let _ = parse(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn command_shaped_lines_never_panic(line in word_line()) {
            let _ = parse(&line);
            let _ = parse(&format!("{line}\r\n"));
        }

        #[test]
        fn go_keeps_numbers_in_range(key in prop::sample::select(&["wtime", "btime", "winc", "binc", "movestogo", "movetime", "nodes", "depth", "mate"][..]),
                                     n in any::<i128>()) {
            match parse(&format!("go {key} {n}")) {
                Command::Go { problems, .. } => prop_assert!(problems.is_empty(), "{problems:?}"),
                other => prop_assert!(false, "go {key} {n}: {other:?}"),
            }
        }

        #[test]
        fn very_long_lines_give_a_short_error(c in any::<char>(), len in 10_000usize..300_000) {
            let line = format!("x{}", c.to_string().repeat(len));
            if let Command::Unknown(why) = parse(&line) {
                prop_assert!(why.len() < 400, "{} bytes of error", why.len());
            }
        }
    }
}

//! The UCI text of what the engine reports, serialised with vampirc-uci where it has the
//! attribute (and as plain `name value` pairs where it does not: `wdl`).

use banyan_engine::{Info, MoveStat, Score, Verbose};
use cozy_chess::{Board, Move};
use vampirc_uci::{UciInfoAttribute, UciMessage, UciMove, UciPiece, UciSquare};

/// A move the UCI way (e1g1 castling, or e1h1 under Chess960).
fn uci_move(board: &Board, mv: Move, chess960: bool) -> UciMove {
    let text = banyan_nn::policy::uci_move(board, mv, chess960);
    let b = text.as_bytes();
    let square = |f: u8, r: u8| UciSquare {
        file: f as char,
        rank: r - b'0',
    };
    UciMove {
        from: square(b[0], b[1]),
        to: square(b[2], b[3]),
        promotion: b.get(4).map(|p| match p {
            b'n' => UciPiece::Knight,
            b'b' => UciPiece::Bishop,
            b'r' => UciPiece::Rook,
            _ => UciPiece::Queen,
        }),
    }
}

/// The moves of a line in UCI form, each printed in the position it is played from.
fn uci_line(board: &Board, line: &[Move], chess960: bool) -> Vec<UciMove> {
    let mut board = board.clone();
    line.iter()
        .map(|&mv| {
            let m = uci_move(&board, mv, chess960);
            board.play_unchecked(mv);
            m
        })
        .collect()
}

/// One `info` line per principal variation (one line when nothing is searched yet).
pub fn info(info: &Info, board: &Board, chess960: bool, show_wdl: bool) -> Vec<String> {
    let common = |attrs: &mut Vec<UciInfoAttribute>| {
        attrs.push(UciInfoAttribute::Depth(info.depth.min(255) as u8));
        attrs.push(UciInfoAttribute::SelDepth(info.seldepth.min(255) as u8));
        attrs.push(UciInfoAttribute::Time(vampirc_uci::Duration::milliseconds(
            info.time.as_millis() as i64,
        )));
        attrs.push(UciInfoAttribute::Nodes(info.nodes));
        attrs.push(UciInfoAttribute::Nps(info.nps));
        attrs.push(UciInfoAttribute::HashFull(info.hashfull.min(1000) as u16));
        if info.tbhits > 0 {
            attrs.push(UciInfoAttribute::TbHits(info.tbhits));
        }
    };
    if info.lines.is_empty() {
        let mut attrs = Vec::new();
        common(&mut attrs);
        return vec![UciMessage::Info(attrs).to_string()];
    }
    let multipv = info.lines.len() > 1;
    info.lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let mut attrs = Vec::new();
            common(&mut attrs);
            if multipv {
                attrs.push(UciInfoAttribute::MultiPv(i as u16 + 1));
            }
            attrs.push(match line.score {
                Score::Cp(cp) => UciInfoAttribute::from_centipawns(cp),
                Score::Mate(m) => UciInfoAttribute::from_mate(m.clamp(-127, 127) as i8),
            });
            if show_wdl {
                let [w, d, l] = line.wdl;
                attrs.push(UciInfoAttribute::Any("wdl".into(), format!("{w} {d} {l}")));
            }
            if !line.pv.is_empty() {
                attrs.push(UciInfoAttribute::Pv(uci_line(board, &line.pv, chess960)));
            }
            UciMessage::Info(attrs).to_string()
        })
        .collect()
}

/// `VerboseMoveStats` lines in Lc0's layout: the moves least visited first, then the root's
/// own `node` line.
pub fn move_stats(stats: &Verbose, board: &Board) -> Vec<String> {
    let value = |v: Option<f32>, width: usize, digits: usize| match v {
        Some(v) => format!("{v:>width$.digits$}"),
        None => format!("{:>width$}", format!("-.{}", "-".repeat(digits))),
    };
    let line = |name: &str, s: &MoveStat| {
        let mate = s.mate.map_or("-.-".to_string(), |m| m.to_string());
        format!(
            "info string {name:<5} ({:<4}) N: {:>7} (+{:>2}) (P: {:>5.2}%) (WL: {}) (D: {}) (M: {:>4}) (Q: {}) (V: {})",
            s.policy_index,
            s.visits,
            s.in_flight,
            s.prior * 100.0,
            value(s.wl, 8, 5),
            value(s.d, 5, 3),
            mate,
            value(s.wl, 8, 5),
            value(s.net_value, 7, 4),
        )
    };
    stats
        .moves
        .iter()
        // Lc0 prints castling as king takes rook here, in every mode.
        .map(|s| line(&banyan_nn::policy::uci_move(board, s.mv, true), s))
        .chain(std::iter::once(line("node", &stats.node)))
        .collect()
}

/// `bestmove <m> [ponder <m>]`; `bestmove 0000` when there is no legal move.
pub fn bestmove(board: &Board, best: Option<Move>, ponder: Option<Move>, chess960: bool) -> String {
    let Some(best) = best else {
        return "bestmove 0000".into();
    };
    let best_text = uci_move(board, best, chess960);
    let mut after = board.clone();
    let ponder = ponder.filter(|&p| after.try_play(best).is_ok() && after.is_legal(p));
    match ponder {
        Some(p) => UciMessage::BestMove {
            best_move: best_text,
            ponder: Some(uci_move(&after, p, chess960)),
        }
        .to_string(),
        None => UciMessage::BestMove {
            best_move: best_text,
            ponder: None,
        }
        .to_string(),
    }
}

//! The position source: games Stockfish plays against itself at low node counts from book
//! positions (or the start position), with randomised move choice, some of whose positions
//! get a deeper labelling search.
//!
//! Now and then a side plays a uniformly random legal move instead, and the position after it
//! is always labelled: a search network meets such positions at every node (its search tries
//! bad moves too) and must see what punishes them, which good play alone never shows it.

use std::collections::HashMap;
use std::path::Path;

use cozy_chess::{Board, Color, GameStatus, Move, Piece};

use super::record::{GameRecord, Label, MAX_CP, Outcome};
use super::stockfish::{Line, Stockfish, StockfishError};
use crate::policy::uci_move;

/// How games are played and which of their positions are labelled.
#[derive(Clone, Debug)]
pub struct PlaySettings {
    /// Nodes of the labelling search.
    pub label_nodes: u64,
    /// MultiPV lines of the labelling search.
    pub label_multipv: usize,
    /// Nodes of the search that picks an unlabelled position's move.
    pub play_nodes: u64,
    /// MultiPV lines the move is sampled from.
    pub play_multipv: usize,
    /// Probability that a position (past `skip_plies`) is labelled.
    pub label_fraction: f64,
    /// Probability that a move (past `skip_plies`) is a uniformly random legal one; the
    /// position after it is labelled.
    pub random_move_rate: f64,
    /// Plies from the start position that are never labelled (book games start later).
    pub skip_plies: usize,
    /// Games stop (outcome unknown) after this many plies.
    pub max_plies: usize,
}

impl Default for PlaySettings {
    fn default() -> Self {
        PlaySettings {
            label_nodes: 8000,
            label_multipv: 4,
            play_nodes: 600,
            play_multipv: 4,
            label_fraction: 0.3,
            random_move_rate: 0.03,
            skip_plies: 4,
            max_plies: 320,
        }
    }
}

/// What the caller decides for a position that could be labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Label it.
    Label,
    /// Play on without labelling it.
    Skip,
    /// Enough positions: end the game here.
    Stop,
}

/// Reads an EPD (or FEN-per-line) file: the first four fields of each line are the position,
/// `hmvc`/`fmvn` operations set the clocks. Blank lines and `#` comments are skipped.
pub fn load_book(path: &Path) -> Result<Vec<Board>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read book {}: {e}", path.display()))?;
    let mut boards = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let board = parse_epd(line).ok_or_else(|| {
            format!(
                "{}:{}: not an EPD/FEN position: {line}",
                path.display(),
                number + 1
            )
        })?;
        boards.push(board);
    }
    if boards.is_empty() {
        return Err(format!("book {} holds no positions", path.display()));
    }
    Ok(boards)
}

fn parse_epd(line: &str) -> Option<Board> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    if fields.len() < 4 {
        return None;
    }
    if fields.len() >= 6
        && let Ok(board) = fields[..6].join(" ").parse::<Board>()
    {
        return Some(board);
    }
    let op = |name: &str| {
        line.split(';').find_map(|op| {
            let mut words = op.split_ascii_whitespace();
            while let Some(w) = words.next() {
                if w == name {
                    return words.next().map(str::to_owned);
                }
            }
            None
        })
    };
    let halfmove = op("hmvc").unwrap_or_else(|| "0".into());
    let fullmove = op("fmvn").unwrap_or_else(|| "1".into());
    format!("{} {halfmove} {fullmove}", fields[..4].join(" "))
        .parse()
        .ok()
}

/// Plays one game from `start`; `decide` is asked about each position past the skipped
/// plies. Its labelled positions come back in the record.
pub fn play_game(
    engine: &mut Stockfish,
    rng: &mut fastrand::Rng,
    start: Board,
    settings: &PlaySettings,
    mut decide: impl FnMut(&Board) -> Decision,
) -> Result<GameRecord, StockfishError> {
    engine.new_game()?;
    let start_ply = (usize::from(start.fullmove_number()) - 1) * 2
        + usize::from(start.side_to_move() == Color::Black);
    let mut board = start.clone();
    let mut moves: Vec<Move> = Vec::new();
    let mut uci_moves: Vec<String> = Vec::new();
    let mut labels = Vec::new();
    let mut seen: HashMap<u64, u8> = HashMap::new();
    let mut decisive = 0usize;
    let mut quiet = 0usize;
    let mut after_random = false;
    let outcome = loop {
        if let Some(outcome) = rules_outcome(&board, &seen) {
            break outcome;
        }
        if moves.len() >= settings.max_plies {
            break Outcome::Unknown;
        }
        let ply = start_ply + moves.len();
        let labelled = after_random || rng.f64() < settings.label_fraction;
        let decision = if ply >= settings.skip_plies && labelled {
            decide(&board)
        } else {
            Decision::Skip
        };
        let (nodes, multipv) = match decision {
            Decision::Stop => break Outcome::Unknown,
            Decision::Label => (settings.label_nodes, settings.label_multipv),
            Decision::Skip => (settings.play_nodes, settings.play_multipv),
        };
        let search = engine.search(&start, &uci_moves, &board, nodes, multipv)?;
        let score = search.lines[0].score;
        if decision == Decision::Label
            && let Some(label) = label_of(&search.lines, search.best)
        {
            labels.push((moves.len(), label));
        }
        // Adjudication: a decisive score for 6 plies in a row ends the game; so does a
        // dead-level score for 20 plies once the game is long.
        decisive = if score.unsigned_abs() >= 1000 {
            decisive + 1
        } else {
            0
        };
        quiet = if score.unsigned_abs() <= 10 {
            quiet + 1
        } else {
            0
        };
        if decisive >= 6 {
            let stm_wins = score > 0;
            break match (board.side_to_move() == Color::White) == stm_wins {
                true => Outcome::WhiteWins,
                false => Outcome::BlackWins,
            };
        }
        if quiet >= 20 && moves.len() >= 100 {
            break Outcome::Draw;
        }
        after_random = ply >= settings.skip_plies && rng.f64() < settings.random_move_rate;
        let mv = match after_random {
            true => random_move(&board, rng),
            false => choose(&search.lines, moves.len(), rng),
        };
        uci_moves.push(uci_move(&board, mv, false));
        moves.push(mv);
        board.play_unchecked(mv);
        if board.halfmove_clock() == 0 {
            seen.clear();
        }
        *seen.entry(board.hash()).or_default() += 1;
    };
    Ok(GameRecord {
        start,
        moves,
        labels,
        outcome,
    })
}

/// The game's end by the rules: mate, stalemate, 50 moves, threefold repetition, or material
/// that cannot mate.
fn rules_outcome(board: &Board, seen: &HashMap<u64, u8>) -> Option<Outcome> {
    match board.status() {
        GameStatus::Won => Some(match board.side_to_move() {
            Color::White => Outcome::BlackWins,
            Color::Black => Outcome::WhiteWins,
        }),
        GameStatus::Drawn => Some(Outcome::Draw),
        GameStatus::Ongoing => {
            let repeated = seen.get(&board.hash()).is_some_and(|&n| n >= 3);
            let heavy =
                board.pieces(Piece::Pawn) | board.pieces(Piece::Rook) | board.pieces(Piece::Queen);
            let minors = board.pieces(Piece::Knight) | board.pieces(Piece::Bishop);
            let bare = heavy.is_empty() && minors.len() <= 1;
            (repeated || bare).then_some(Outcome::Draw)
        }
    }
}

/// A label from the lines of a labelling search; `None` when Stockfish gave no W/D/L.
fn label_of(lines: &[Line], best: Move) -> Option<Label> {
    let wdl = lines.first()?.wdl?;
    let mut lines: Vec<(Move, i16)> = lines.iter().map(|l| (l.mv, l.score)).collect();
    let best = match lines.iter().position(|(mv, _)| *mv == best) {
        Some(i) => i,
        None => {
            lines.insert(0, (best, lines[0].1));
            0
        }
    };
    Some(Label { wdl, lines, best })
}

/// A uniformly random legal move of `board` (which has one: the game is not over).
fn random_move(board: &Board, rng: &mut fastrand::Rng) -> Move {
    let mut legal = Vec::new();
    board.generate_moves(|moves| {
        legal.extend(moves);
        false
    });
    legal[rng.usize(..legal.len())]
}

/// Samples a move among the lines by a softmax over their scores: hotter in the first plies
/// (varied openings), cooler later (realistic play), never a line far below the best.
fn choose(lines: &[Line], ply: usize, rng: &mut fastrand::Rng) -> Move {
    let temperature = if ply < 12 { 60.0 } else { 20.0 };
    let best = f64::from(lines[0].score.clamp(-MAX_CP, MAX_CP));
    let weights: Vec<f64> = lines
        .iter()
        .map(|l| {
            let drop = best - f64::from(l.score.clamp(-MAX_CP, MAX_CP));
            if drop > 3.0 * temperature {
                0.0
            } else {
                (-drop / temperature).exp()
            }
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let mut pick = rng.f64() * total;
    for (line, weight) in lines.iter().zip(&weights) {
        if pick < *weight {
            return line.mv;
        }
        pick -= weight;
    }
    lines[0].mv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epd_lines_parse_with_clocks() {
        let board = parse_epd(
            "r1bqk2r/1pppbppp/p1n2n2/4p3/B3P3/5N2/PPPP1PPP/RNBQ1RK1 w kq - hmvc 4; fmvn 6; id \"x\";",
        )
        .unwrap();
        assert_eq!(board.halfmove_clock(), 4);
        assert_eq!(board.fullmove_number(), 6);
        let fen = parse_epd("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1").unwrap();
        assert_eq!(fen, Board::default());
        assert!(parse_epd("not a position at all").is_none());
    }

    #[test]
    fn sampling_stays_near_the_best_line() {
        let line = |mv: &str, score| Line {
            mv: mv.parse().unwrap(),
            score,
            wdl: None,
        };
        let lines = [line("e2e4", 30), line("d2d4", 25), line("a2a3", -300)];
        let mut rng = fastrand::Rng::with_seed(1);
        let picks: Vec<Move> = (0..200).map(|_| choose(&lines, 0, &mut rng)).collect();
        assert!(picks.contains(&lines[0].mv) && picks.contains(&lines[1].mv));
        assert!(!picks.contains(&lines[2].mv));
    }
}

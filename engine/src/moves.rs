//! Chess moves as the tree's opaque 16-bit codes, and the root position a search starts from.

use banyan_nn::encode::PositionHistory;
use cozy_chess::{Board, File, Move, Piece, Rank, Square};

/// Packs a move (cozy-chess form: castling as king takes rook) into 16 bits:
/// from (6 bits) | to (6 bits) << 6 | promotion (0 none, 1 N, 2 B, 3 R, 4 Q) << 12.
pub fn encode(mv: Move) -> u16 {
    let promo = match mv.promotion {
        None => 0,
        Some(Piece::Knight) => 1,
        Some(Piece::Bishop) => 2,
        Some(Piece::Rook) => 3,
        Some(_) => 4,
    };
    mv.from as u16 | (mv.to as u16) << 6 | promo << 12
}

/// The inverse of [`encode`].
pub fn decode(code: u16) -> Move {
    let square = |bits: u16| {
        Square::new(
            File::index((bits & 7) as usize),
            Rank::index((bits >> 3 & 7) as usize),
        )
    };
    let promotion = match code >> 12 {
        0 => None,
        1 => Some(Piece::Knight),
        2 => Some(Piece::Bishop),
        3 => Some(Piece::Rook),
        _ => Some(Piece::Queen),
    };
    Move {
        from: square(code & 63),
        to: square(code >> 6 & 63),
        promotion,
    }
}

/// A game position the way UCI gives it: a start (FEN or the standard start position) and
/// the moves played since, all checked legal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GamePosition {
    /// The FEN of the first position, in Shredder notation (castling rights as rook files).
    pub start_fen: String,
    /// The moves since, in cozy-chess form.
    pub moves: Vec<Move>,
}

impl Default for GamePosition {
    fn default() -> Self {
        GamePosition {
            start_fen: format!("{:#}", Board::default()),
            moves: Vec::new(),
        }
    }
}

impl GamePosition {
    /// Builds a position from `position` arguments; an error names the bad FEN or move.
    pub fn parse(
        fen: Option<&str>,
        moves: &[impl AsRef<str>],
        chess960: bool,
    ) -> Result<GamePosition, String> {
        let board = match fen {
            None => Board::default(),
            // Chess960 GUIs send Shredder-FEN (HAha) or X-FEN (KQkq); both are accepted there.
            Some(fen) => chess960
                .then(|| Board::from_fen(fen, true).ok())
                .flatten()
                .map_or_else(|| Board::from_fen(fen, false), Ok)
                .map_err(|e| format!("invalid FEN '{fen}': {e:?}"))?,
        };
        let mut position = GamePosition {
            start_fen: format!("{board:#}"),
            moves: Vec::new(),
        };
        let mut board = board;
        for text in moves {
            let text = text.as_ref();
            let mv = banyan_nn::policy::parse_uci_move(&board, text, chess960)
                .ok_or_else(|| format!("illegal move '{text}' in position {board}"))?;
            board.play_unchecked(mv);
            position.moves.push(mv);
        }
        Ok(position)
    }

    /// The start board.
    pub fn start(&self) -> Board {
        Board::from_fen(&self.start_fen, true).expect("checked when built")
    }

    /// The history the network sees, from the start to the current position.
    pub fn history(&self) -> PositionHistory {
        let mut history = PositionHistory::new(self.start());
        for &mv in &self.moves {
            history.push(mv);
        }
        history
    }

    /// If `later` is this position followed by more moves, those moves.
    pub fn continuation<'a>(&self, later: &'a GamePosition) -> Option<&'a [Move]> {
        (later.start_fen == self.start_fen && later.moves.starts_with(&self.moves))
            .then(|| &later.moves[self.moves.len()..])
    }
}

/// Lc0's rule for a repetition below the root (the first `root_len` positions of `history`
/// are the game): a third occurrence (counting the game) is a draw anywhere; a second one
/// only when the whole cycle lies below the root, where the side that could deviate is
/// searching and chose not to.
pub fn repetition_draw(history: &PositionHistory, root_len: usize) -> bool {
    let below_root = history.len() - root_len;
    match history.repetitions() {
        0 => false,
        1 => history
            .plies_since_repetition()
            .is_some_and(|plies| plies <= below_root),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_for_every_legal_move_of_some_positions() {
        let fens = [
            "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
            "r3k2r/p1ppqpb1/bn2pnp1/3PN3/1p2P3/2N2Q1p/PPPBBPPP/R3K2R w KQkq - 0 1",
            "r3k2r/Pppp1ppp/1b3nbN/nP6/BBP1P3/q4N2/Pp1P2PP/R2Q1RK1 w kq - 0 1",
        ];
        for fen in fens {
            let board = Board::from_fen(fen, false).unwrap();
            board.generate_moves(|moves| {
                for mv in moves {
                    assert_eq!(decode(encode(mv)), mv, "{fen} {mv}");
                }
                false
            });
        }
    }

    #[test]
    fn parse_rejects_bad_input_and_keeps_castling_forms() {
        let cases: &[(Option<&str>, &[&str], bool)] = &[
            (None, &["e2e4", "e7e5"], true),
            (None, &["e2e5"], false),
            (Some("not a fen"), &[], false),
            (Some("8/8/8/8/8/8/8/8 w - - 0 1"), &[], false),
            (Some("4k3/8/8/8/8/8/8/4K2R w KQ - 0 1"), &[], false),
            (
                Some("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1"),
                &["e1g1", "e8c8"],
                true,
            ),
            (
                Some("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1"),
                &["e1h1"],
                true,
            ),
        ];
        for (fen, moves, ok) in cases {
            assert_eq!(
                GamePosition::parse(*fen, moves, false).is_ok(),
                *ok,
                "{fen:?} {moves:?}"
            );
        }
    }

    #[test]
    fn continuation_finds_the_moves_played_since() {
        let a = GamePosition::parse(None, &["e2e4"], false).unwrap();
        let b = GamePosition::parse(None, &["e2e4", "e7e5", "g1f3"], false).unwrap();
        assert_eq!(a.continuation(&b).map(|m| m.len()), Some(2));
        assert_eq!(b.continuation(&a), None);
    }
}

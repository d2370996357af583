//! The classical 112-plane Lc0 input, kept compact as bitboards until a batch tensor is built,
//! and the position history it is encoded from.

use cozy_chess::{Board, Color, File, Move, Piece, Rank, Square};

/// Number of input planes of the classical format.
pub const INPUT_PLANES: usize = 112;

/// Plane index of the rule-50 counter; its value is `InputPlanes::rule50` on every square.
pub const RULE50_PLANE: usize = 109;

/// One position's network input: a 64-bit square mask per plane (value 1.0 where set), except
/// plane 109 whose every square holds `rule50` (unscaled half-move clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct InputPlanes {
    pub masks: [u64; INPUT_PLANES],
    pub rule50: u8,
}

/// Plane of "we may castle queenside"; the next three are our kingside, their queenside, their
/// kingside.
const CASTLING_PLANE: usize = 104;
/// Plane set to ones when black is to move.
const BLACK_TO_MOVE_PLANE: usize = 108;
/// The all-ones plane.
const ONES_PLANE: usize = 111;
/// History positions encoded, 13 planes each.
const HISTORY_SLOTS: usize = 8;
const PLANES_PER_SLOT: usize = 13;

impl InputPlanes {
    /// Writes the 112×64 floats of this position into `out` (plane-major, square a1 = 0).
    ///
    /// # Panics
    /// If `out` is shorter than `INPUT_PLANES * 64`.
    pub fn write_f32(&self, out: &mut [f32]) {
        let out = &mut out[..INPUT_PLANES * 64];
        for (plane, (&mask, chunk)) in self.masks.iter().zip(out.chunks_exact_mut(64)).enumerate() {
            if plane == RULE50_PLANE {
                chunk.fill(f32::from(self.rule50));
            } else {
                match mask {
                    0 => chunk.fill(0.0),
                    u64::MAX => chunk.fill(1.0),
                    _ => {
                        for (square, value) in chunk.iter_mut().enumerate() {
                            *value = ((mask >> square) & 1) as f32;
                        }
                    }
                }
            }
        }
    }
}

/// One known position and how often it occurred before (Lc0's repetition count).
#[derive(Clone, Debug)]
struct Known {
    board: Board,
    repetitions: u8,
    /// Plies back to the previous occurrence of this position (0 when there is none).
    cycle: u16,
}

/// A game's positions from its start (a FEN or the start position) to the current one, with
/// Lc0's repetition counts: the source of the network input and of draw-by-repetition checks.
///
/// Build it from the game's real first position and push every move: the encoder looks back up
/// to 7 positions and, when the history is shorter, fills the rest the Lc0 `fen_only` way (zeros
/// after the standard start position, otherwise copies of the oldest position).
#[derive(Clone, Debug)]
pub struct PositionHistory {
    positions: Vec<Known>,
}

impl PositionHistory {
    /// A history that starts at `start` (repetition count 0).
    pub fn new(start: Board) -> Self {
        PositionHistory {
            positions: vec![Known {
                board: start,
                repetitions: 0,
                cycle: 0,
            }],
        }
    }

    /// The current (last) position.
    pub fn current(&self) -> &Board {
        &self.positions[self.positions.len() - 1].board
    }

    /// Number of positions held (1 + moves pushed).
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Always false: a history holds at least its start position.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Plays `mv` (legal in the current position; castling as king takes rook).
    pub fn push(&mut self, mv: Move) {
        let mut board = self.current().clone();
        board.play_unchecked(mv);
        let (repetitions, cycle) = self.repetitions_of(&board);
        self.positions.push(Known {
            board,
            repetitions,
            cycle,
        });
    }

    /// Takes back the last move; the start position is never removed. Returns whether a move
    /// was taken back.
    pub fn pop(&mut self) -> bool {
        if self.positions.len() > 1 {
            self.positions.pop();
            true
        } else {
            false
        }
    }

    /// Cuts the history back to its first `len` positions (at least 1).
    pub fn truncate(&mut self, len: usize) {
        self.positions.truncate(len.max(1));
    }

    /// How many times the current position occurred before (0 when it is new).
    pub fn repetitions(&self) -> u8 {
        self.positions[self.positions.len() - 1].repetitions
    }

    /// Plies back to the previous occurrence of the current position, if it occurred before.
    pub fn plies_since_repetition(&self) -> Option<usize> {
        let cycle = self.positions[self.positions.len() - 1].cycle;
        (cycle > 0).then_some(cycle as usize)
    }

    /// Lc0's rule: look back every second ply from 4 plies back, not crossing a zeroing move,
    /// for the same board; (its count + 1, plies back to it), else (0, 0).
    fn repetitions_of(&self, board: &Board) -> (u8, u16) {
        if board.halfmove_clock() < 4 {
            return (0, 0);
        }
        // `positions` does not hold `board` yet: the position one ply back is its last entry.
        for (back, known) in self.positions.iter().rev().enumerate().skip(1).step_by(2) {
            if same_board(&known.board, board) {
                let plies = (back + 1).min(u16::MAX as usize) as u16;
                return (known.repetitions.saturating_add(1), plies);
            }
            if known.board.halfmove_clock() < 2 {
                return (0, 0);
            }
        }
        (0, 0)
    }

    /// The network input for the current position (classical 112-plane format).
    pub fn planes(&self) -> InputPlanes {
        let current = self.current();
        let us = current.side_to_move();
        let mut masks = [0u64; INPUT_PLANES];
        let oldest = &self.positions[0];
        let oldest_is_startpos = is_start_board(&oldest.board);
        for slot in 0..HISTORY_SLOTS {
            let base = slot * PLANES_PER_SLOT;
            let planes = &mut masks[base..base + PLANES_PER_SLOT];
            if let Some(known) = self
                .positions
                .len()
                .checked_sub(slot + 1)
                .map(|i| &self.positions[i])
            {
                write_board(planes, &known.board, us);
                if known.repetitions > 0 {
                    planes[12] = u64::MAX;
                }
            } else {
                if oldest_is_startpos {
                    break;
                }
                // A copy of the first position, whose repetition count is always 0.
                write_board(planes, &oldest.board, us);
                undo_double_push(planes, &oldest.board, us);
            }
        }
        let them = !us;
        let rights = [
            current.castle_rights(us).long,
            current.castle_rights(us).short,
            current.castle_rights(them).long,
            current.castle_rights(them).short,
        ];
        for (k, right) in rights.iter().enumerate() {
            if right.is_some() {
                masks[CASTLING_PLANE + k] = u64::MAX;
            }
        }
        if us == Color::Black {
            masks[BLACK_TO_MOVE_PLANE] = u64::MAX;
        }
        masks[ONES_PLANE] = u64::MAX;
        InputPlanes {
            masks,
            rule50: current.halfmove_clock(),
        }
    }
}

/// Same pieces, side to move, castling rights and en-passant file (Lc0's board equality).
fn same_board(a: &Board, b: &Board) -> bool {
    a.hash() == b.hash()
        && a.colors(Color::White) == b.colors(Color::White)
        && Piece::ALL.iter().all(|&p| a.pieces(p) == b.pieces(p))
        && a.side_to_move() == b.side_to_move()
}

/// Whether `board`, seen from its side to move, is the standard start position's board (Lc0's
/// `fen_only` test compares the side-to-move oriented board, castling included).
fn is_start_board(board: &Board) -> bool {
    let start = Board::default();
    let us = board.side_to_move();
    let mut mine = [0u64; 12];
    let mut standard = [0u64; 12];
    write_board(&mut mine, board, us);
    write_board(&mut standard, &start, Color::White);
    let full = |b: &Board, c: Color| {
        let r = b.castle_rights(c);
        r.short == Some(File::H) && r.long == Some(File::A)
    };
    mine == standard && full(board, us) && full(board, !us)
}

/// Writes 12 piece masks of `board` (ours then theirs, pawn..king) seen from `us`, mirrored
/// vertically when `us` is black.
fn write_board(planes: &mut [u64], board: &Board, us: Color) {
    let orient = |bits: u64| {
        if us == Color::Black {
            bits.swap_bytes()
        } else {
            bits
        }
    };
    for (side, color) in [us, !us].into_iter().enumerate() {
        let colored = board.colors(color);
        for (k, &piece) in Piece::ALL.iter().enumerate() {
            planes[side * 6 + k] = orient((colored & board.pieces(piece)).0);
        }
    }
}

/// Takes back, in the 12 masks written by `write_board`, the double pawn push that created
/// `board`'s en-passant square (the pawn returns to its start square), as Lc0 does in history
/// slots filled with copies of a FEN position.
fn undo_double_push(planes: &mut [u64], board: &Board, us: Color) {
    let Some(file) = board.en_passant() else {
        return;
    };
    let pusher = !board.side_to_move();
    let pushed = Square::new(file, Rank::Fourth.relative_to(pusher));
    let home = Square::new(file, Rank::Second.relative_to(pusher));
    let orient = |bits: u64| {
        if us == Color::Black {
            bits.swap_bytes()
        } else {
            bits
        }
    };
    let pawns = &mut planes[if pusher == us { 0 } else { 6 }];
    if *pawns & orient(pushed.bitboard().0) != 0 && board.piece_on(home).is_none() {
        *pawns ^= orient(pushed.bitboard().0 | home.bitboard().0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{for_each_legal_move, parse_uci_move};
    use cozy_chess::BoardBuilder;
    use proptest::prelude::*;

    fn history(fen: Option<&str>, moves: &str) -> PositionHistory {
        let board = fen.map_or_else(Board::default, |f| f.parse().unwrap());
        let mut history = PositionHistory::new(board);
        for text in moves.split_whitespace() {
            history.push(parse_uci_move(history.current(), text, false).unwrap());
        }
        history
    }

    fn mask(squares: &[Square]) -> u64 {
        squares.iter().fold(0, |m, s| m | s.bitboard().0)
    }

    #[test]
    fn startpos_planes() {
        let planes = history(None, "").planes();
        let expected = [
            (0, 0xff00),
            (1, mask(&[Square::B1, Square::G1])),
            (3, mask(&[Square::A1, Square::H1])),
            (4, mask(&[Square::D1])),
            (5, mask(&[Square::E1])),
            (6, 0x00ff << 48),
            (10, mask(&[Square::D8])),
            (11, mask(&[Square::E8])),
            (104, u64::MAX),
            (105, u64::MAX),
            (106, u64::MAX),
            (107, u64::MAX),
            (108, 0),
            (111, u64::MAX),
        ];
        for (plane, value) in expected {
            assert_eq!(planes.masks[plane], value, "plane {plane}");
        }
        assert!(
            planes.masks[13..104].iter().all(|&m| m == 0),
            "fen_only: no history after startpos"
        );
        assert_eq!(planes.rule50, 0);
    }

    #[test]
    fn black_to_move_is_mirrored_and_history_fills_slots() {
        let planes = history(None, "e2e4 e7e5 g1f3").planes();
        // Slot 0, black to move: our (black) pawns mirrored onto ranks 2 and 4 (e5 → e4).
        assert_eq!(
            planes.masks[0],
            (0xff00 & !mask(&[Square::E2])) | mask(&[Square::E4])
        );
        assert_eq!(
            planes.masks[7],
            mask(&[Square::B8, Square::F6]),
            "their knights after g1f3"
        );
        assert_eq!(planes.masks[108], u64::MAX);
        // Slot 3 is the start position seen from black; slots 4.. are empty.
        assert_eq!(planes.masks[3 * 13], 0xff00);
        assert_eq!(planes.masks[3 * 13 + 6], 0xff << 48);
        assert!(planes.masks[4 * 13..104].iter().all(|&m| m == 0));
        assert_eq!(planes.rule50, 1);
    }

    #[test]
    fn fen_history_repeats_with_en_passant_undone() {
        let fen = "rnbqkbnr/pppp1ppp/8/8/3pP3/8/PPP2PPP/RNBQKBNR b KQkq e3 0 3";
        let planes = history(Some(fen), "").planes();
        // Slot 0: their (white) pawn on e4 seen from black → e5; slots 1..7: back on e7 (mirrored e2).
        assert_ne!(planes.masks[6] & mask(&[Square::E5]), 0);
        for slot in 1..8 {
            let theirs = planes.masks[slot * 13 + 6];
            assert_eq!(theirs & mask(&[Square::E5]), 0, "slot {slot}");
            assert_ne!(theirs & mask(&[Square::E7]), 0, "slot {slot}");
            assert_eq!(
                planes.masks[slot * 13],
                planes.masks[0],
                "slot {slot}: our pawns"
            );
        }
        // Without an en-passant square, copies are identical.
        let planes = history(Some("8/8/8/4k3/8/8/3K4/8 w - - 7 50"), "").planes();
        for slot in 1..8 {
            assert_eq!(planes.masks[slot * 13..slot * 13 + 13], planes.masks[..13]);
        }
        assert_eq!(planes.rule50, 7);
        let mut floats = vec![0.0; INPUT_PLANES * 64];
        planes.write_f32(&mut floats);
        assert!(floats[RULE50_PLANE * 64..][..64].iter().all(|&v| v == 7.0));
        assert_eq!(floats[5 * 64 + Square::D2 as usize], 1.0);
        assert_eq!(floats[5 * 64 + Square::D3 as usize], 0.0);
    }

    #[test]
    fn repetitions_are_counted_like_lc0() {
        let mut h = history(None, "g1f3 g8f6 f3g1 f6g8");
        assert_eq!(h.repetitions(), 1);
        assert_eq!(h.plies_since_repetition(), Some(4));
        assert_eq!(h.planes().masks[12], u64::MAX);
        assert_eq!(h.planes().masks[13 + 12], 0);
        for (text, count) in [("g1f3", 1), ("g8f6", 1), ("f3g1", 1), ("f6g8", 2)] {
            h.push(parse_uci_move(h.current(), text, false).unwrap());
            assert_eq!(h.repetitions(), count, "after {text}");
        }
        assert_eq!(h.len(), 9);
        assert_eq!(h.plies_since_repetition(), Some(4));
        assert!(h.pop());
        assert_eq!(h.repetitions(), 1);
        h.pop();
        assert_eq!((h.repetitions(), h.plies_since_repetition()), (1, Some(4)));
        h.truncate(0);
        assert_eq!(h.len(), 1);
        assert!(!h.pop());
        // A pawn move in between breaks the chain.
        let h = history(None, "g1f3 g8f6 f3g1 f6g8 e2e3 e7e6 g1f3 g8f6 f3g1 f6g8");
        assert_eq!(h.repetitions(), 1);
    }

    /// The position with colours swapped and ranks mirrored (same game, other side).
    fn mirror(board: &Board) -> Board {
        let mut builder = BoardBuilder::empty();
        for square in Square::ALL {
            if let (Some(piece), Some(color)) = (board.piece_on(square), board.color_on(square)) {
                *builder.square_mut(square.flip_rank()) = Some((piece, !color));
            }
        }
        builder.side_to_move = !board.side_to_move();
        for color in [Color::White, Color::Black] {
            *builder.castle_rights_mut(!color) = *board.castle_rights(color);
        }
        builder.en_passant = board
            .en_passant()
            .map(|f| Square::new(f, Rank::Sixth.relative_to(!board.side_to_move())));
        builder.halfmove_clock = board.halfmove_clock();
        builder.build().unwrap()
    }

    fn random_board(seed: u64, plies: usize) -> Board {
        let mut board = Board::default();
        let mut state = seed | 1;
        for _ in 0..plies {
            let mut moves = Vec::new();
            for_each_legal_move(&board, |mv| moves.push(mv));
            if moves.is_empty() {
                break;
            }
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            board.play(moves[((state >> 33) % moves.len() as u64) as usize]);
        }
        board
    }

    proptest! {
        #[test]
        fn mirror_encodes_the_same(seed in any::<u64>(), plies in 1usize..100) {
            let board = random_board(seed, plies);
            let a = PositionHistory::new(board.clone()).planes();
            let b = PositionHistory::new(mirror(&board)).planes();
            for plane in 0..INPUT_PLANES {
                if plane == BLACK_TO_MOVE_PLANE {
                    prop_assert_eq!(a.masks[plane], !b.masks[plane]);
                } else {
                    prop_assert_eq!(a.masks[plane], b.masks[plane], "plane {}", plane);
                }
            }
            prop_assert_eq!(a.rule50, b.rule50);
        }
    }
}

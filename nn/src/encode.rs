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
        let repetitions = self.repetitions_of(&board);
        self.positions.push(Known { board, repetitions });
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

    /// Whether the current position occurred before (Lc0 scores such a position as a draw).
    pub fn is_repetition(&self) -> bool {
        self.repetitions() > 0
    }

    /// Lc0's rule: look back every second ply from 4 plies back, not crossing a zeroing move,
    /// for the same board; its count + 1, else 0.
    fn repetitions_of(&self, board: &Board) -> u8 {
        if board.halfmove_clock() < 4 {
            return 0;
        }
        for known in self.positions.iter().rev().skip(1).step_by(2) {
            if same_board(&known.board, board) {
                return known.repetitions.saturating_add(1);
            }
            if known.board.halfmove_clock() < 2 {
                return 0;
            }
        }
        0
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
                write_board(planes, &oldest.board, us);
                undo_double_push(planes, &oldest.board, us);
                if oldest.repetitions > 0 {
                    planes[12] = u64::MAX;
                }
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

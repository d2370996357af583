//! The Lc0 1858-move policy index, its convolutional-head gather map, and UCI move text.
//!
//! The tables are generated at first use by the rule in `lc0-format-notes.md` (ii), never typed
//! in. All indices are in the side-to-move frame: for black, both squares are mirrored
//! (rank r ↦ 7−r) before the lookup. Castling is "king takes own rook" (as in cozy-chess), and a
//! knight promotion uses the plain from-to entry.

use std::sync::LazyLock;

use cozy_chess::{Board, Color, File, Move, Piece, Rank, Square};

/// Number of entries of the policy output.
pub const POLICY_SIZE: usize = 1858;

/// Planes of the convolutional policy head's output (only the first 73 carry moves).
pub const CONV_POLICY_PLANES: usize = 80;

/// Promotion pieces with an explicit policy entry, in table order.
const PROMOTION_PIECES: [Piece; 3] = [Piece::Queen, Piece::Rook, Piece::Bishop];

/// Queen-like directions (file delta, rank delta) in conv-policy plane order.
const QUEEN_DIRECTIONS: [(i8, i8); 8] = [
    (0, 1),
    (1, 1),
    (1, 0),
    (1, -1),
    (0, -1),
    (-1, -1),
    (-1, 0),
    (-1, 1),
];

/// Knight jumps (file delta, rank delta) in conv-policy plane order.
const KNIGHT_JUMPS: [(i8, i8); 8] = [
    (1, 2),
    (2, 1),
    (2, -1),
    (1, -2),
    (-1, -2),
    (-2, -1),
    (-2, 1),
    (-1, 2),
];

/// Marks "no entry" in the lookup tables.
const NONE: u16 = u16::MAX;

/// One policy entry in the side-to-move frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    from: u8,
    to: u8,
    /// Queen, rook or bishop for the explicit promotion entries.
    promotion: Option<Piece>,
}

/// All generated tables.
struct Tables {
    entries: Vec<Entry>,
    /// `[from][to]` → index of the plain (non-suffixed) entry, or `NONE`.
    plain: Vec<[u16; 64]>,
    /// `[from file][to file][piece in PROMOTION_PIECES order]` → index, or `NONE`.
    promotion: [[[u16; 3]; 8]; 8],
    /// Conv-head flat position (plane·64 + from) → policy index, or −1.
    conv_map: Vec<i16>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(Tables::generate);

fn file_rank(square: u8) -> (i8, i8) {
    ((square % 8) as i8, (square / 8) as i8)
}

fn is_queen_like_or_knight(from: u8, to: u8) -> bool {
    let (f0, r0) = file_rank(from);
    let (f1, r1) = file_rank(to);
    let (df, dr) = ((f1 - f0).abs(), (r1 - r0).abs());
    df == 0 || dr == 0 || df == dr || (df.min(dr) == 1 && df.max(dr) == 2)
}

impl Tables {
    fn generate() -> Self {
        let mut entries = Vec::with_capacity(POLICY_SIZE);
        let mut plain = vec![[NONE; 64]; 64];
        for from in 0..64u8 {
            for to in (0..64u8).filter(|&to| to != from && is_queen_like_or_knight(from, to)) {
                plain[from as usize][to as usize] = entries.len() as u16;
                entries.push(Entry {
                    from,
                    to,
                    promotion: None,
                });
            }
        }
        let mut promotion = [[[NONE; 3]; 8]; 8];
        for from_file in 0..8i8 {
            for to_file in (from_file - 1..=from_file + 1).filter(|f| (0..8).contains(f)) {
                for (k, &piece) in PROMOTION_PIECES.iter().enumerate() {
                    promotion[from_file as usize][to_file as usize][k] = entries.len() as u16;
                    entries.push(Entry {
                        from: 48 + from_file as u8,
                        to: 56 + to_file as u8,
                        promotion: Some(piece),
                    });
                }
            }
        }
        assert_eq!(
            entries.len(),
            POLICY_SIZE,
            "policy table generation is broken"
        );
        let mut conv_map = vec![-1i16; CONV_POLICY_PLANES * 64];
        for (index, entry) in entries.iter().enumerate() {
            let plane = conv_plane(*entry);
            conv_map[plane * 64 + entry.from as usize] = index as i16;
        }
        Tables {
            entries,
            plain,
            promotion,
            conv_map,
        }
    }
}

/// The conv-policy plane (0..73) that carries `entry` at its from-square.
fn conv_plane(entry: Entry) -> usize {
    let (f0, r0) = file_rank(entry.from);
    let (f1, r1) = file_rank(entry.to);
    let (df, dr) = (f1 - f0, r1 - r0);
    if let Some(piece) = entry.promotion {
        let piece_offset = match piece {
            Piece::Rook => 0,
            Piece::Bishop => 1,
            _ => 2,
        };
        return 64 + 3 * (df + 1) as usize + piece_offset;
    }
    if let Some(k) = KNIGHT_JUMPS.iter().position(|&j| j == (df, dr)) {
        return 56 + k;
    }
    let distance = df.abs().max(dr.abs());
    let direction = (df.signum(), dr.signum());
    let dir = QUEEN_DIRECTIONS
        .iter()
        .position(|&d| d == direction)
        .expect("queen-like move");
    7 * dir + (distance as usize - 1)
}

/// Mirrors a square vertically when `stm` is black (rank r ↦ 7−r).
fn to_frame(square: Square, stm: Color) -> u8 {
    let s = square as u8;
    if stm == Color::Black { s ^ 56 } else { s }
}

/// The policy index of `mv` (a move of the side `stm`), in the side-to-move frame.
///
/// Castling must be given as king takes own rook (cozy-chess's representation); a knight
/// promotion maps to the plain from-to entry. Every legal move has an index.
pub fn move_index(mv: Move, stm: Color) -> u16 {
    let tables = &*TABLES;
    let from = to_frame(mv.from, stm);
    let to = to_frame(mv.to, stm);
    let index = match mv.promotion {
        Some(piece @ (Piece::Queen | Piece::Rook | Piece::Bishop)) => {
            let k = PROMOTION_PIECES
                .iter()
                .position(|&p| p == piece)
                .unwrap_or(0);
            tables.promotion[(from % 8) as usize][(to % 8) as usize][k]
        }
        _ => tables.plain[from as usize][to as usize],
    };
    debug_assert_ne!(index, NONE, "move {mv} has no policy index");
    index
}

/// The legal move of `board` whose policy index is `index`, if there is one.
///
/// A plain entry of a pawn reaching the last rank is read as the knight promotion.
pub fn index_move(index: u16, board: &Board) -> Option<Move> {
    let entry = *TABLES.entries.get(index as usize)?;
    let stm = board.side_to_move();
    let from = Square::index(to_frame(Square::index(entry.from as usize), stm) as usize);
    let to = Square::index(to_frame(Square::index(entry.to as usize), stm) as usize);
    let pawn_reaches_last_rank = board.piece_on(from) == Some(Piece::Pawn)
        && board.color_on(from) == Some(stm)
        && to.rank() == Rank::Eighth.relative_to(stm);
    let promotion = match entry.promotion {
        Some(piece) => Some(piece),
        None if pawn_reaches_last_rank => Some(Piece::Knight),
        None => None,
    };
    let mv = Move {
        from,
        to,
        promotion,
    };
    board.is_legal(mv).then_some(mv)
}

/// The convolutional policy head's gather map: flat position `plane·64 + from_square` of the
/// 80×64 head output → policy index, or −1 for positions that carry no move.
pub fn conv_policy_map() -> &'static [i16] {
    &TABLES.conv_map
}

/// For each policy index in order, its flat position `plane·64 + from_square` in the 80×64
/// conv-head output (the inverse of [`conv_policy_map`], ready for one `index_select`).
pub fn conv_policy_gather() -> Vec<i64> {
    let mut gather = vec![0i64; POLICY_SIZE];
    for (position, &index) in conv_policy_map().iter().enumerate() {
        if index >= 0 {
            gather[index as usize] = position as i64;
        }
    }
    gather
}

/// The UCI text of `policy_index` in the side-to-move frame as Lc0 prints it (white's view,
/// castling as king takes rook), e.g. 322 → "e2e4".
pub fn index_uci(policy_index: u16) -> Option<String> {
    let entry = *TABLES.entries.get(policy_index as usize)?;
    let mv = Move {
        from: Square::index(entry.from as usize),
        to: Square::index(entry.to as usize),
        promotion: entry.promotion,
    };
    Some(mv.to_string())
}

/// Whether `mv` is a castling move (king takes own rook) on `board`.
fn is_castle(board: &Board, mv: Move) -> bool {
    let stm = board.side_to_move();
    mv.from == board.king(stm) && board.colors(stm).has(mv.to)
}

/// Prints `mv` (legal on `board`) the UCI way: castling as e1g1/e1c1 in standard chess, as
/// king takes rook (e1h1) under `UCI_Chess960`.
pub fn uci_move(board: &Board, mv: Move, chess960: bool) -> String {
    if !chess960 && is_castle(board, mv) {
        let file = if mv.to.file() > mv.from.file() {
            File::G
        } else {
            File::C
        };
        let to = Square::new(file, mv.from.rank());
        return Move { to, ..mv }.to_string();
    }
    mv.to_string()
}

/// Parses a UCI move and returns it only if legal on `board`. Castling is accepted both as
/// king takes rook (e1h1) and as the king's two-square move (e1g1); a literal legal reading
/// always wins (a Chess960 king on f1 playing f1g1 is a king move).
pub fn parse_uci_move(board: &Board, text: &str, chess960: bool) -> Option<Move> {
    let mv: Move = text.parse().ok()?;
    if board.is_legal(mv) {
        return Some(mv);
    }
    let stm = board.side_to_move();
    let back_rank = Rank::First.relative_to(stm);
    if mv.from != board.king(stm) || mv.to.rank() != back_rank || mv.promotion.is_some() {
        return None;
    }
    if !chess960 && mv.from.file() != File::E {
        return None;
    }
    let rights = board.castle_rights(stm);
    let rook_file = match mv.to.file() {
        File::G => rights.short,
        File::C => rights.long,
        _ => None,
    }?;
    let castle = Move {
        to: Square::new(rook_file, back_rank),
        ..mv
    };
    board.is_legal(castle).then_some(castle)
}

/// Calls `f` with every legal move of `board`.
pub fn for_each_legal_move(board: &Board, mut f: impl FnMut(Move)) {
    board.generate_moves(|moves| {
        moves.into_iter().for_each(&mut f);
        false
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_indices() {
        let cases = [
            (0, "a1b1"),
            (7, "a1a2"),
            (36, "b1c3"),
            (322, "e2e4"),
            (1792, "a7a8q"),
            (1793, "a7a8r"),
            (1794, "a7a8b"),
            (1795, "a7b8q"),
            (1857, "h7h8b"),
        ];
        for (index, text) in cases {
            assert_eq!(index_uci(index).as_deref(), Some(text), "index {index}");
            let mv: Move = text.parse().unwrap();
            assert_eq!(move_index(mv, Color::White), index, "{text}");
        }
        assert_eq!(index_uci(POLICY_SIZE as u16), None);
    }

    #[test]
    fn black_moves_are_mirrored() {
        assert_eq!(index_uci(1597).as_deref(), Some("h7h8"));
        let cases = [("e7e5", 322), ("b8c6", 36), ("a2a1q", 1792), ("h2h1", 1597)];
        for (text, index) in cases {
            let mv: Move = text.parse().unwrap();
            let mirrored = Move {
                from: Square::index(mv.from as usize ^ 56),
                to: Square::index(mv.to as usize ^ 56),
                promotion: mv.promotion,
            };
            assert_eq!(move_index(mv, Color::Black), index, "{text}");
            assert_eq!(move_index(mirrored, Color::White), index, "{text} mirrored");
        }
    }

    #[test]
    fn knight_promotion_uses_plain_entry() {
        let plain: Move = "a7b8".parse().unwrap();
        let knight: Move = "a7b8n".parse().unwrap();
        assert_eq!(
            move_index(knight, Color::White),
            move_index(plain, Color::White)
        );
        let board: Board = "1r5k/P7/8/8/8/8/8/K7 w - - 0 1".parse().unwrap();
        let index = move_index(knight, Color::White);
        assert_eq!(index_move(index, &board), Some(knight));
    }

    #[test]
    fn conv_map_covers_every_index_once() {
        let map = conv_policy_map();
        assert_eq!(map.len(), CONV_POLICY_PLANES * 64);
        let mut seen = vec![0u32; POLICY_SIZE];
        for &index in map.iter().filter(|&&i| i >= 0) {
            seen[index as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n == 1));
        assert!(
            map[73 * 64..].iter().all(|&i| i == -1),
            "planes 73.. are unused"
        );
        // e2e4 = N, distance 2 → plane 1 at e2; b1c3 = knight (+1,+2) → plane 56 at b1;
        // a7a8q straight, queen → plane 69 at a7; a7b8r → plane 70.
        for (plane, square, index) in [(1, 12, 322), (56, 1, 36), (69, 48, 1792), (70, 48, 1796)] {
            assert_eq!(
                map[plane * 64 + square],
                index,
                "plane {plane} square {square}"
            );
        }
        let gather = conv_policy_gather();
        for (index, &position) in gather.iter().enumerate() {
            assert_eq!(map[position as usize], index as i16);
        }
    }

    #[test]
    fn castling_text() {
        let board: Board = "r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1".parse().unwrap();
        let cases = [("e1h1", "e1g1"), ("e1a1", "e1c1")];
        for (internal, standard) in cases {
            let mv: Move = internal.parse().unwrap();
            assert!(board.is_legal(mv));
            assert_eq!(uci_move(&board, mv, false), standard);
            assert_eq!(uci_move(&board, mv, true), internal);
            for chess960 in [false, true] {
                assert_eq!(parse_uci_move(&board, standard, chess960), Some(mv));
                assert_eq!(parse_uci_move(&board, internal, chess960), Some(mv));
            }
        }
        assert_eq!(parse_uci_move(&board, "e1e3", false), None);
        assert_eq!(parse_uci_move(&board, "junk", false), None);
        // Black castles too.
        let board: Board = "r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1".parse().unwrap();
        let mv = parse_uci_move(&board, "e8g8", false).unwrap();
        assert_eq!(mv.to, Square::H8);
        assert_eq!(
            move_index(mv, Color::Black),
            move_index("e1h1".parse().unwrap(), Color::White)
        );
    }

    /// Plays a random game of up to `plies` moves from the start, choosing by `seed`.
    fn random_board(seed: u64, plies: usize) -> Board {
        let mut board = Board::default();
        let mut state = seed | 1;
        for _ in 0..plies {
            let mut moves = Vec::new();
            for_each_legal_move(&board, |mv| moves.push(mv));
            if moves.is_empty() {
                break;
            }
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            board.play(moves[(state % moves.len() as u64) as usize]);
        }
        board
    }

    proptest! {
        #[test]
        fn legal_moves_round_trip(seed in any::<u64>(), plies in 0usize..120) {
            let board = random_board(seed, plies);
            let mut seen = std::collections::HashSet::new();
            for_each_legal_move(&board, |mv| {
                let index = move_index(mv, board.side_to_move());
                assert!((index as usize) < POLICY_SIZE);
                assert!(seen.insert(index), "duplicate index {index} for {mv}");
                assert_eq!(index_move(index, &board), Some(mv));
                let text = uci_move(&board, mv, false);
                assert_eq!(parse_uci_move(&board, &text, false), Some(mv));
                let text = uci_move(&board, mv, true);
                assert_eq!(parse_uci_move(&board, &text, true), Some(mv));
            });
        }
    }
}

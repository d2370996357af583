//! The heuristic evaluator, served when no network is given: a value from material and simple
//! positional terms squashed to [-1, 1], and move priors from move features (captures by victim
//! and attacker, promotions, checks, development, the centre, not hanging the moved piece).
//!
//! It reads the same input as a network: the board is rebuilt from the slot-0 planes, in the
//! side-to-move frame where "ours" are White (castling from planes 104-107, an en-passant
//! square from the double push between slots 1 and 0), and each listed policy index is turned
//! back into a move of that frame.

use cozy_chess::{
    BitBoard, Board, BoardBuilder, Color, File, Move, Piece, Rank, Square, get_bishop_moves,
    get_king_moves, get_knight_moves, get_pawn_attacks, get_rook_moves,
};

use crate::backend::{Backend, EvalInput, RawEval};
use crate::encode::InputPlanes;
use crate::policy::index_move;

/// Planes per history slot, and the castling planes (see the input encoding).
const SLOT_PLANES: usize = 13;
const OUR_QUEENSIDE: usize = 104;
const OUR_KINGSIDE: usize = 105;
const THEIR_QUEENSIDE: usize = 106;
const THEIR_KINGSIDE: usize = 107;

/// Material in pawns, indexed by `Piece as usize` (pawn, knight, bishop, rook, queen, king).
const VALUE: [f32; 6] = [1.0, 3.2, 3.3, 5.0, 9.5, 0.0];
/// How much a pawn's advance (below the sixth rank) is worth on each file, a to h.
const PAWN_FILE: [f32; 8] = [-0.4, -0.2, 0.6, 1.2, 1.2, 0.4, -0.4, -0.6];
/// Pawns of score that make a value of tanh(1) ≈ 0.76.
const VALUE_SCALE: f32 = 4.0;
/// Share of the non-decisive probability mass that is a draw.
const DRAW_SHARE: f32 = 0.35;

/// The heuristic backend. Stateless; cheap per position (a few microseconds).
#[derive(Clone, Debug)]
pub struct Heuristic {
    max_batch: usize,
}

impl Heuristic {
    /// A heuristic that accepts batches of up to `max_batch` positions.
    pub fn new(max_batch: usize) -> Heuristic {
        Heuristic {
            max_batch: max_batch.max(1),
        }
    }
}

impl Backend for Heuristic {
    fn evaluate(&mut self, batch: &[EvalInput<'_>], out: &mut Vec<RawEval>) -> Result<(), String> {
        out.clear();
        out.extend(
            batch
                .iter()
                .map(|input| evaluate(input.planes, input.moves)),
        );
        Ok(())
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn describe(&self) -> String {
        "heuristic (material, position and move features)".into()
    }
}

/// Evaluates one position; an input that is no legal board gets a neutral answer.
pub fn evaluate(planes: &InputPlanes, moves: &[u16]) -> RawEval {
    let Some(board) = board_from_planes(planes) else {
        return RawEval {
            wdl: wdl_from_value(0.0),
            logits: vec![0.0; moves.len()],
        };
    };
    let view = View::new(&board);
    let score = view.score(moves.len());
    RawEval {
        wdl: wdl_from_value((score / VALUE_SCALE).tanh()),
        logits: moves.iter().map(|&m| view.move_logit(m)).collect(),
    }
}

/// W/D/L with W - L = `v` and some draw mass when the game is not decided.
fn wdl_from_value(v: f32) -> [f32; 3] {
    let d = DRAW_SHARE * (1.0 - v.abs());
    [(1.0 - d + v) / 2.0, d, (1.0 - d - v) / 2.0]
}

/// The side-to-move-frame board (ours = White, to move) of the slot-0 planes.
fn board_from_planes(planes: &InputPlanes) -> Option<Board> {
    let mut builder = BoardBuilder::empty();
    for (offset, &mask) in planes.masks[..12].iter().enumerate() {
        let color = if offset < 6 {
            Color::White
        } else {
            Color::Black
        };
        for square in BitBoard(mask) {
            builder.board[square as usize] = Some((Piece::ALL[offset % 6], color));
        }
    }
    let has = |plane: usize| planes.masks[plane] != 0;
    let [ours, theirs] = &mut builder.castle_rights;
    ours.long = has(OUR_QUEENSIDE).then_some(File::A);
    ours.short = has(OUR_KINGSIDE).then_some(File::H);
    theirs.long = has(THEIR_QUEENSIDE).then_some(File::A);
    theirs.short = has(THEIR_KINGSIDE).then_some(File::H);
    builder.en_passant = en_passant_square(planes);
    builder.halfmove_clock = planes.rule50.min(100);
    builder.build().ok()
}

/// The en-passant target square when the last move (slot 1 → slot 0) was a double push of
/// theirs: their pawn left rank 7 and arrived two ranks lower on the same file.
fn en_passant_square(planes: &InputPlanes) -> Option<Square> {
    let their_pawns_now = planes.masks[6];
    let their_pawns_before = planes.masks[SLOT_PLANES + 6];
    if their_pawns_before == 0 {
        return None;
    }
    let left = BitBoard(their_pawns_before & !their_pawns_now) & Rank::Seventh.bitboard();
    let arrived = BitBoard(their_pawns_now & !their_pawns_before) & Rank::Fifth.bitboard();
    let from = left.next_square()?;
    let to = arrived.next_square()?;
    (left.len() == 1 && arrived.len() == 1 && from.file() == to.file())
        .then(|| Square::new(to.file(), Rank::Sixth))
}

/// One position's board with the attack maps the features need.
struct View<'a> {
    board: &'a Board,
    ours: BitBoard,
    theirs: BitBoard,
    /// Squares our / their pieces attack (pseudo-legally, current occupancy).
    our_attacks: BitBoard,
    their_attacks: BitBoard,
    their_pawn_attacks: BitBoard,
}

impl<'a> View<'a> {
    fn new(board: &'a Board) -> View<'a> {
        View {
            board,
            ours: board.colors(Color::White),
            theirs: board.colors(Color::Black),
            our_attacks: attacks(board, Color::White),
            their_attacks: attacks(board, Color::Black),
            their_pawn_attacks: pawn_attacks(board, Color::Black),
        }
    }

    /// Score in pawns for the side to move: material, pawn advancement, minor-piece
    /// centralisation, attacked squares, the best capture on offer, and a tempo.
    fn score(&self, n_moves: usize) -> f32 {
        let mut score = 0.1;
        for (color, sign) in [(Color::White, 1.0), (Color::Black, -1.0)] {
            for piece in Piece::ALL {
                for square in self.board.colored_pieces(color, piece) {
                    score += sign * (VALUE[piece as usize] + placement(piece, color, square));
                }
            }
        }
        let mobility = |attacks: BitBoard, own: BitBoard| (attacks & !own).len() as f32;
        score += 0.03
            * (mobility(self.our_attacks, self.ours) - mobility(self.their_attacks, self.theirs));
        if n_moves == 0 {
            return score;
        }
        // What we can win at once: a capture's victim, less the capturer if it is defended.
        let best_gain = (self.theirs & self.our_attacks)
            .into_iter()
            .map(|square| {
                let victim = value_on(self.board, square);
                let attacker = self.cheapest_attacker(square);
                if self.their_attacks.has(square) {
                    victim - attacker
                } else {
                    victim
                }
            })
            .fold(0.0f32, f32::max);
        score + 0.7 * best_gain
    }

    /// The value of our cheapest piece attacking `square`.
    fn cheapest_attacker(&self, square: Square) -> f32 {
        let occupied = self.board.occupied();
        let ours = |piece| self.board.colored_pieces(Color::White, piece);
        let by = [
            (Piece::Pawn, get_pawn_attacks(square, Color::Black)),
            (Piece::Knight, get_knight_moves(square)),
            (Piece::Bishop, get_bishop_moves(square, occupied)),
            (Piece::Rook, get_rook_moves(square, occupied)),
            (
                Piece::Queen,
                get_bishop_moves(square, occupied) | get_rook_moves(square, occupied),
            ),
            (Piece::King, get_king_moves(square)),
        ];
        by.into_iter()
            .find(|(piece, from)| !(ours(*piece) & *from).is_empty())
            .map_or(0.0, |(piece, _)| VALUE[piece as usize])
    }

    /// The prior logit of the move with policy index `index`.
    fn move_logit(&self, index: u16) -> f32 {
        let Some(mv) = index_move(index, self.board) else {
            return 0.0;
        };
        let Some(piece) = self.board.piece_on(mv.from) else {
            return 0.0;
        };
        let mover = VALUE[piece as usize];
        let castles = piece == Piece::King && self.ours.has(mv.to);
        let mut logit = 0.0;
        // Captures, most valuable victim first, least valuable attacker breaking ties.
        let victim = if self.theirs.has(mv.to) {
            value_on(self.board, mv.to)
        } else if piece == Piece::Pawn && mv.from.file() != mv.to.file() {
            VALUE[Piece::Pawn as usize]
        } else {
            0.0
        };
        if victim > 0.0 {
            logit += 1.0 + 0.35 * victim - 0.05 * mover;
        }
        logit += match mv.promotion {
            Some(Piece::Queen) => 2.5,
            Some(Piece::Knight) => 0.0,
            Some(_) => -1.0,
            None => 0.0,
        };
        if !castles && self.gives_check(mv) {
            logit += 0.8;
        }
        // Moving into an attack: lose the mover (less what it took) if their pawn guards the
        // square or nothing of ours does.
        if !castles && self.their_attacks.has(mv.to) {
            let guarded = self.our_attacks.has(mv.to) && !self.their_pawn_attacks.has(mv.to);
            let loss = if guarded { 0.0 } else { mover - victim };
            logit -= 0.5 * loss.max(0.0);
        }
        // Escaping an attack on a piece that is hanging or attacked by a pawn.
        if piece != Piece::Pawn
            && piece != Piece::King
            && self.their_attacks.has(mv.from)
            && (!self.our_attacks.has(mv.from) || self.their_pawn_attacks.has(mv.from))
        {
            logit += 0.3 * mover;
        }
        if castles {
            logit += 1.0;
        } else if piece == Piece::King {
            logit -= 0.6;
        }
        if matches!(piece, Piece::Knight | Piece::Bishop) && mv.from.rank() == Rank::First {
            logit += 0.5;
        }
        // Quiet wing pawn pushes loosen the king's shelter and develop nothing.
        if piece == Piece::Pawn
            && victim == 0.0
            && mv.promotion.is_none()
            && matches!(mv.from.file() as u8, 0 | 1 | 6 | 7)
            && mv.to.rank() < Rank::Fifth
        {
            logit -= 0.6;
        }
        let centre = BitBoard(0x0000_0018_1800_0000);
        let wide_centre = BitBoard(0x0000_3c3c_3c3c_0000);
        if centre.has(mv.to) {
            logit += 0.35;
        } else if wide_centre.has(mv.to) {
            logit += 0.15;
        }
        logit
    }

    /// Whether `mv` (legal) checks their king.
    fn gives_check(&self, mv: Move) -> bool {
        let mut after = self.board.clone();
        after.play_unchecked(mv);
        !after.checkers().is_empty()
    }
}

/// A positional bonus in pawns for `piece` of `color` on `square`.
fn placement(piece: Piece, color: Color, square: Square) -> f32 {
    let rank = square.rank() as i32;
    let relative_rank = if color == Color::White {
        rank
    } else {
        7 - rank
    };
    let file = square.file() as i32;
    let centrality = 3.5 - ((file as f32 - 3.5).abs() + (rank as f32 - 3.5).abs()) / 2.0;
    match piece {
        // Central pawns gain by advancing; flank pawns shelter the king until they are far
        // enough up the board to be runners.
        Piece::Pawn if relative_rank >= 5 => 0.1 * (relative_rank - 1) as f32,
        Piece::Pawn => 0.05 * (relative_rank - 1).max(0) as f32 * PAWN_FILE[file as usize],
        Piece::Knight | Piece::Bishop => 0.06 * centrality,
        Piece::Queen => 0.02 * centrality,
        // A king tucked on a wing of its back rank (castled) is safer than one in the centre.
        Piece::King if relative_rank == 0 && matches!(file, 1 | 2 | 6) => 0.25,
        Piece::Rook | Piece::King => 0.0,
    }
}

/// The material value of whatever stands on `square`.
fn value_on(board: &Board, square: Square) -> f32 {
    board.piece_on(square).map_or(0.0, |p| VALUE[p as usize])
}

/// Every square `color` attacks with the current occupancy.
fn attacks(board: &Board, color: Color) -> BitBoard {
    let occupied = board.occupied();
    let mut all = pawn_attacks(board, color);
    let pieces = |piece| board.colored_pieces(color, piece);
    for square in pieces(Piece::Knight) {
        all |= get_knight_moves(square);
    }
    for square in pieces(Piece::Bishop) | pieces(Piece::Queen) {
        all |= get_bishop_moves(square, occupied);
    }
    for square in pieces(Piece::Rook) | pieces(Piece::Queen) {
        all |= get_rook_moves(square, occupied);
    }
    all | get_king_moves(board.king(color))
}

/// Every square `color`'s pawns attack.
fn pawn_attacks(board: &Board, color: Color) -> BitBoard {
    board
        .colored_pieces(color, Piece::Pawn)
        .into_iter()
        .fold(BitBoard::EMPTY, |all, square| {
            all | get_pawn_attacks(square, color)
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::encode::INPUT_PLANES;
    use crate::policy::{for_each_legal_move, move_index};

    /// Slot-0 planes and castling planes of `board` in its side-to-move frame.
    pub(crate) fn planes(board: &Board) -> InputPlanes {
        let stm = board.side_to_move();
        let frame = |bb: BitBoard| {
            if stm == Color::Black {
                bb.flip_ranks()
            } else {
                bb
            }
        };
        let mut p = InputPlanes {
            masks: [0; INPUT_PLANES],
            rule50: board.halfmove_clock(),
        };
        for (side, color) in [stm, !stm].into_iter().enumerate() {
            for piece in Piece::ALL {
                p.masks[side * 6 + piece as usize] = frame(board.colored_pieces(color, piece)).0;
            }
            let rights = board.castle_rights(color);
            p.masks[OUR_QUEENSIDE + 2 * side] = if rights.long.is_some() { u64::MAX } else { 0 };
            p.masks[OUR_KINGSIDE + 2 * side] = if rights.short.is_some() { u64::MAX } else { 0 };
        }
        p.masks[111] = u64::MAX;
        p
    }

    /// Legal moves of `board` with their indices, and the heuristic's answer.
    fn run(fen: &str) -> (Vec<(String, u16)>, RawEval) {
        let board: Board = fen.parse().unwrap();
        let mut moves = Vec::new();
        for_each_legal_move(&board, |mv| {
            moves.push((mv.to_string(), move_index(mv, board.side_to_move())));
        });
        let indices: Vec<u16> = moves.iter().map(|m| m.1).collect();
        let planes = planes(&board);
        let mut out = Vec::new();
        Heuristic::new(8)
            .evaluate(
                &[EvalInput {
                    planes: &planes,
                    moves: &indices,
                }],
                &mut out,
            )
            .unwrap();
        (moves, out.pop().unwrap())
    }

    fn logit(moves: &[(String, u16)], eval: &RawEval, uci: &str) -> f32 {
        let i = moves
            .iter()
            .position(|m| m.0 == uci)
            .unwrap_or_else(|| panic!("{uci}"));
        eval.logits[i]
    }

    fn q(eval: &RawEval) -> f32 {
        eval.wdl[0] - eval.wdl[2]
    }

    #[test]
    fn wdl_is_a_distribution() {
        for v in [-1.0, -0.3, 0.0, 0.6, 1.0] {
            let wdl = wdl_from_value(v);
            assert!(wdl.iter().all(|&x| (0.0..=1.0).contains(&x)));
            assert!((wdl.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert!((wdl[0] - wdl[2] - v).abs() < 1e-6);
        }
    }

    #[test]
    fn start_position_is_balanced_and_prefers_central_development() {
        let (moves, eval) = run("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1");
        assert_eq!(moves.len(), 20);
        assert!(q(&eval).abs() < 0.1, "{:?}", eval.wdl);
        assert!(logit(&moves, &eval, "e2e4") > logit(&moves, &eval, "a2a3"));
        assert!(logit(&moves, &eval, "g1f3") > logit(&moves, &eval, "g1h3"));
    }

    #[test]
    fn value_follows_material_from_the_side_to_move() {
        // White is a queen up; from black's side the same position is lost.
        let white = run("4k3/8/8/8/8/8/3Q4/4K3 w - - 0 1").1;
        let black = run("4k3/8/8/8/8/8/3Q4/4K3 b - - 0 1").1;
        assert!(q(&white) > 0.9, "{:?}", white.wdl);
        assert!(q(&black) < -0.8, "{:?}", black.wdl);
    }

    #[test]
    fn priors_favour_winning_captures_promotions_and_avoid_hanging_pieces() {
        // Rxd5 wins a free queen; Ra4 hangs the rook to the b5 pawn.
        let (moves, eval) = run("4k3/8/8/1p1q4/8/8/8/R2RK3 w - - 0 1");
        let best = moves
            .iter()
            .zip(&eval.logits)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        assert_eq!(best.0.0, "d1d5");
        assert!(logit(&moves, &eval, "a1a4") < logit(&moves, &eval, "a1a3"));

        let (moves, eval) = run("8/4P1k1/8/8/8/8/8/4K3 w - - 0 1");
        assert!(logit(&moves, &eval, "e7e8q") > logit(&moves, &eval, "e7e8r"));
        assert!(logit(&moves, &eval, "e7e8q") > logit(&moves, &eval, "e1d2"));
    }

    #[test]
    fn castling_and_black_to_move_use_the_frame() {
        // Black to move with castling rights: O-O (e8h8) is listed and liked.
        let (moves, eval) =
            run("rnbqk2r/pppp1ppp/5n2/2b1p3/2B1P3/5N2/PPPP1PPP/RNBQK2R b KQkq - 4 4");
        assert!(logit(&moves, &eval, "e8h8") > logit(&moves, &eval, "e8f8"));
        assert!(q(&eval).abs() < 0.3);
    }

    #[test]
    fn garbage_planes_get_a_neutral_answer() {
        let planes = InputPlanes {
            masks: [0; INPUT_PLANES],
            rule50: 0,
        };
        let mut out = Vec::new();
        Heuristic::new(1)
            .evaluate(
                &[EvalInput {
                    planes: &planes,
                    moves: &[1, 2],
                }],
                &mut out,
            )
            .unwrap();
        assert_eq!(out[0].logits, vec![0.0, 0.0]);
        assert_eq!(q(&out[0]), 0.0);
    }

    #[test]
    fn boards_rebuilt_from_encoder_planes_match_the_game() {
        use crate::encode::PositionHistory;
        use crate::policy::parse_uci_move;
        // Castling rights, black to move, and a double push that allows en passant.
        let mut history = PositionHistory::new(Board::default());
        for (i, text) in "e2e4 g8f6 e4e5 d7d5".split_whitespace().enumerate() {
            history.push(parse_uci_move(history.current(), text, false).unwrap());
            let board = history.current();
            let rebuilt = board_from_planes(&history.planes()).expect("a legal board");
            let mut legal = 0;
            for_each_legal_move(board, |_| legal += 1);
            let mut rebuilt_legal = 0;
            for_each_legal_move(&rebuilt, |_| rebuilt_legal += 1);
            assert_eq!(rebuilt_legal, legal, "after move {i}");
            assert_eq!(rebuilt.side_to_move(), Color::White);
            assert_eq!(
                rebuilt.castle_rights(Color::Black).short.is_some(),
                board.castle_rights(!board.side_to_move()).short.is_some()
            );
        }
        // After d7d5, e5xd6 en passant is legal, and the rebuilt board knows it.
        assert_eq!(
            board_from_planes(&history.planes()).unwrap().en_passant(),
            Some(File::D)
        );
    }
}

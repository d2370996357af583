//! The labelled-data format: chunk files of whole games with Stockfish labels.
//!
//! A chunk (`chunk-NNNNNN.bin.gz`) is one gzip stream. Inside, all integers little-endian:
//!
//! ```text
//! header   8  magic "BNYLABEL"
//!          2  version (1)
//!          4  games in the chunk
//!          4  labelled positions in the chunk
//! games    one after another, until the end of the stream:
//!   1   flags: bit 0 = the game starts from the standard start position (no board follows),
//!              bits 1-2 = outcome (0 unknown/adjudicated-open, 1 white won, 2 draw, 3 black won)
//!   [packed start board, when bit 0 is clear]
//!       8  occupancy bitboard (bit n = square n, a1 = 0, h8 = 63)
//!       ceil(pieces / 2)  one nibble per occupied square in square order, low nibble first:
//!                         colour * 6 + piece (pawn 0 .. king 5)
//!       1  bit 0: black to move; bits 1-4: en-passant file + 1 (0: none)
//!       2  castling rook files, one nibble each: white short, white long, black short,
//!          black long (15: no right); Chess960-ready
//!       1  halfmove clock
//!       2  fullmove number
//!   2   number of moves n
//!   n   moves, each one byte: its index among the position's legal moves sorted by
//!       (from, to, promotion) (castling is king-takes-rook, as in cozy-chess)
//!   ceil((n + 1) / 8)  bitmap: bit i set = the position after i moves is labelled
//!   per labelled position, in ply order:
//!       3  W/D/L per mille from the side to move: w | d << 10 (l = 1000 - w - d)
//!       1  k, number of MultiPV lines (1 ..= 64)
//!       1  index of Stockfish's best move among the k lines
//!       k  the lines' first moves, as move indices (see above)
//!       2k the lines' scores, i16, side to move's view: centipawns clamped to ±20000,
//!          mate in m moves as ±(32000 - m)
//! ```
//!
//! A game costs about 1 byte per move plus ~6 + 3k bytes per labelled position before
//! compression; the start position needs no board at all when a game starts from the
//! standard position. The trainer replays each game with cozy-chess, which gives it the
//! history that Lc0's 112 input planes need ([`GameRecord::for_each_position`]).

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use cozy_chess::{Board, BoardBuilder, CastleRights, Color, File, Move, Piece, Rank, Square};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::encode::PositionHistory;

/// First bytes of every chunk (after decompression).
pub const MAGIC: [u8; 8] = *b"BNYLABEL";
/// Format version written and accepted.
pub const VERSION: u16 = 1;
/// Bytes of the chunk header.
pub const HEADER_LEN: usize = 18;
const _: () = assert!(HEADER_LEN == MAGIC.len() + 2 + 4 + 4);

/// Bytes of a packed W/D/L triple: two 10-bit per-mille values.
pub const WDL_BYTES: usize = 3;
const _: () = assert!(1000 < (1 << 10) && 2 * 10 <= 8 * WDL_BYTES);

/// Most MultiPV lines one label may hold.
pub const MAX_LINES: usize = 64;
/// Score of "mate in 0": a mate in `m` moves is stored as `±(MATE_SCORE - m)`.
pub const MATE_SCORE: i16 = 32000;
/// Centipawn scores are clamped to `±MAX_CP`, well clear of the mate range.
pub const MAX_CP: i16 = 20000;
/// Longest game a chunk holds.
pub const MAX_MOVES: usize = u16::MAX as usize;

/// A malformed chunk or a record that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The bytes are not a valid chunk, or a record breaks the format's rules.
    #[error("bad label data: {0}")]
    Bad(String),
}

fn bad(text: impl Into<String>) -> FormatError {
    FormatError::Bad(text.into())
}

/// How a game ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped by the ply cap or a decisive-score adjudication that named no winner.
    Unknown = 0,
    /// White won (mate, or adjudicated).
    WhiteWins = 1,
    /// Drawn (stalemate, repetition, 50 moves, material, or adjudicated).
    Draw = 2,
    /// Black won (mate, or adjudicated).
    BlackWins = 3,
}

impl Outcome {
    fn from_bits(bits: u8) -> Outcome {
        match bits & 3 {
            1 => Outcome::WhiteWins,
            2 => Outcome::Draw,
            3 => Outcome::BlackWins,
            _ => Outcome::Unknown,
        }
    }
}

/// Encodes a centipawn score (clamped to `±MAX_CP`).
pub fn cp_score(cp: i64) -> i16 {
    cp.clamp(-(MAX_CP as i64), MAX_CP as i64) as i16
}

/// Encodes UCI's `mate m`: positive when the side to move mates, `mate 0` or negative when it
/// is mated.
pub fn mate_score(moves: i64) -> i16 {
    let m = moves.unsigned_abs().min((MATE_SCORE - MAX_CP - 1) as u64) as i16;
    if moves > 0 {
        MATE_SCORE - m
    } else {
        -(MATE_SCORE - m)
    }
}

/// Stockfish's verdict on one position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Win, draw and loss per mille for the side to move; they sum to 1000.
    pub wdl: [u16; 3],
    /// The MultiPV lines: first move and score (see [`cp_score`], [`mate_score`]), best first.
    pub lines: Vec<(Move, i16)>,
    /// Index of Stockfish's best move in `lines`.
    pub best: usize,
}

impl Label {
    /// Stockfish's best move.
    pub fn best_move(&self) -> Move {
        self.lines[self.best].0
    }

    fn check(&self, board: &Board) -> Result<(), FormatError> {
        if self.wdl.iter().map(|&v| u32::from(v)).sum::<u32>() != 1000 {
            return Err(bad(format!("W/D/L {:?} does not sum to 1000", self.wdl)));
        }
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            return Err(bad(format!("{} MultiPV lines", self.lines.len())));
        }
        if self.best >= self.lines.len() {
            return Err(bad("best move index out of range"));
        }
        for (mv, _) in &self.lines {
            if !board.is_legal(*mv) {
                return Err(bad(format!("label move {mv} is illegal")));
            }
        }
        Ok(())
    }
}

/// One game: its start, its moves and the labels of some of its positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GameRecord {
    /// The position the game started from.
    pub start: Board,
    /// The moves played (legal, castling as king takes rook).
    pub moves: Vec<Move>,
    /// `(ply, label)`: the label of the position after `ply` moves, in ascending ply order,
    /// each ply at most once, `ply <= moves.len()`.
    pub labels: Vec<(usize, Label)>,
    /// How the game ended.
    pub outcome: Outcome,
}

impl GameRecord {
    /// Replays the game and calls `visit` for each labelled position with the history up to
    /// and including it (the input of [`PositionHistory::planes`]).
    pub fn for_each_position(&self, mut visit: impl FnMut(&PositionHistory, &Label)) {
        let mut history = PositionHistory::new(self.start.clone());
        let mut labels = self.labels.iter().peekable();
        for ply in 0..=self.moves.len() {
            while let Some((_, label)) = labels.next_if(|(p, _)| *p == ply) {
                visit(&history, label);
            }
            if let Some(&mv) = self.moves.get(ply) {
                history.push(mv);
            }
        }
    }

    /// Encodes the game onto `out`, checking legality and the label rules on the way.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FormatError> {
        if self.moves.len() > MAX_MOVES {
            return Err(bad(format!("game of {} moves", self.moves.len())));
        }
        let standard = self.start == Board::default();
        out.push(u8::from(standard) | (self.outcome as u8) << 1);
        if !standard {
            pack_board(&self.start, out);
        }
        out.extend_from_slice(&(self.moves.len() as u16).to_le_bytes());
        let mut board = self.start.clone();
        let mut boards = Vec::with_capacity(self.moves.len() + 1);
        for &mv in &self.moves {
            let legal = sorted_moves(&board);
            let index = legal
                .iter()
                .position(|&m| m == mv)
                .ok_or_else(|| bad(format!("move {mv} is illegal")))?;
            out.push(index as u8);
            boards.push(board.clone());
            board.play_unchecked(mv);
        }
        boards.push(board);
        let mut bitmap = vec![0u8; self.moves.len() / 8 + 1];
        let mut last = None;
        for (ply, _) in &self.labels {
            if *ply > self.moves.len() || last.is_some_and(|l| l >= *ply) {
                return Err(bad(format!("label ply {ply} out of order or range")));
            }
            last = Some(*ply);
            bitmap[ply / 8] |= 1 << (ply % 8);
        }
        out.extend_from_slice(&bitmap);
        for (ply, label) in &self.labels {
            let board = &boards[*ply];
            label.check(board)?;
            let packed = u32::from(label.wdl[0]) | u32::from(label.wdl[1]) << 10;
            out.extend_from_slice(&packed.to_le_bytes()[..WDL_BYTES]);
            out.push(label.lines.len() as u8);
            out.push(label.best as u8);
            let legal = sorted_moves(board);
            for (mv, _) in &label.lines {
                out.push(legal.iter().position(|m| m == mv).unwrap_or(0) as u8);
            }
            for (_, score) in &label.lines {
                out.extend_from_slice(&score.to_le_bytes());
            }
        }
        Ok(())
    }

    /// Decodes one game; `Ok(None)` at a clean end of input.
    pub fn decode(input: &mut impl Read) -> Result<Option<GameRecord>, FormatError> {
        let mut flags = [0u8; 1];
        if input.read(&mut flags)? == 0 {
            return Ok(None);
        }
        let flags = flags[0];
        let start = if flags & 1 != 0 {
            Board::default()
        } else {
            unpack_board(input)?
        };
        let n = usize::from(u16::from_le_bytes(read_array(input)?));
        let mut indices = vec![0u8; n];
        input.read_exact(&mut indices)?;
        let mut board = start.clone();
        let mut moves = Vec::with_capacity(n);
        let mut boards = Vec::with_capacity(n + 1);
        for &index in &indices {
            let mv = *sorted_moves(&board)
                .get(usize::from(index))
                .ok_or_else(|| bad("move index past the legal moves"))?;
            moves.push(mv);
            boards.push(board.clone());
            board.play_unchecked(mv);
        }
        boards.push(board);
        let mut bitmap = vec![0u8; n / 8 + 1];
        input.read_exact(&mut bitmap)?;
        let mut labels = Vec::new();
        for (ply, board) in boards.iter().enumerate() {
            if bitmap[ply / 8] & (1 << (ply % 8)) == 0 {
                continue;
            }
            let mut wdl = [0u8; 4];
            input.read_exact(&mut wdl[..WDL_BYTES])?;
            let packed = u32::from_le_bytes(wdl);
            let (w, d) = ((packed & 0x3ff) as u16, (packed >> 10 & 0x3ff) as u16);
            if w + d > 1000 {
                return Err(bad("W/D/L over 1000"));
            }
            let [k, best] = read_array(input)?;
            let k = usize::from(k);
            let legal = sorted_moves(board);
            let mut line_moves = Vec::with_capacity(k);
            for _ in 0..k {
                let [index] = read_array(input)?;
                line_moves.push(
                    *legal
                        .get(usize::from(index))
                        .ok_or_else(|| bad("label move index past the legal moves"))?,
                );
            }
            let mut lines = Vec::with_capacity(k);
            for mv in line_moves {
                lines.push((mv, i16::from_le_bytes(read_array(input)?)));
            }
            let label = Label {
                wdl: [w, d, 1000 - w - d],
                lines,
                best: usize::from(best),
            };
            label.check(board)?;
            labels.push((ply, label));
        }
        Ok(Some(GameRecord {
            start,
            moves,
            labels,
            outcome: Outcome::from_bits(flags >> 1),
        }))
    }
}

fn read_array<const N: usize>(input: &mut impl Read) -> Result<[u8; N], FormatError> {
    let mut buf = [0u8; N];
    input.read_exact(&mut buf)?;
    Ok(buf)
}

/// The legal moves of `board` in the format's order: by from square, to square, promotion.
pub fn sorted_moves(board: &Board) -> Vec<Move> {
    let mut moves = Vec::with_capacity(64);
    board.generate_moves(|list| {
        moves.extend(list);
        false
    });
    moves.sort_unstable_by_key(|m| (m.from as u8, m.to as u8, m.promotion.map(|p| p as u8)));
    moves
}

fn pack_board(board: &Board, out: &mut Vec<u8>) {
    let builder = BoardBuilder::from_board(board);
    out.extend_from_slice(&board.occupied().0.to_le_bytes());
    let mut nibbles = Vec::with_capacity(32);
    for square in board.occupied() {
        let (piece, color) = builder.square(square).expect("occupied square");
        nibbles.push(color as u8 * 6 + piece as u8);
    }
    for pair in nibbles.chunks(2) {
        out.push(pair[0] | pair.get(1).map_or(0, |n| n << 4));
    }
    let ep = board.en_passant().map_or(0, |f| f as u8 + 1);
    out.push(u8::from(board.side_to_move() == Color::Black) | ep << 1);
    let file = |f: Option<File>| f.map_or(15u8, |f| f as u8);
    let (white, black) = (
        board.castle_rights(Color::White),
        board.castle_rights(Color::Black),
    );
    out.push(file(white.short) | file(white.long) << 4);
    out.push(file(black.short) | file(black.long) << 4);
    out.push(board.halfmove_clock());
    out.extend_from_slice(&board.fullmove_number().to_le_bytes());
}

fn unpack_board(input: &mut impl Read) -> Result<Board, FormatError> {
    let occupied = u64::from_le_bytes(read_array(input)?);
    let count = occupied.count_ones() as usize;
    let mut nibbles = vec![0u8; count.div_ceil(2)];
    input.read_exact(&mut nibbles)?;
    let mut builder = BoardBuilder::empty();
    let mut squares = (0..64).filter(|s| occupied >> s & 1 != 0);
    for i in 0..count {
        let code = nibbles[i / 2] >> (4 * (i % 2)) & 15;
        if code >= 12 {
            return Err(bad("bad piece code"));
        }
        let square = Square::index(squares.next().unwrap_or(0));
        let color = if code >= 6 {
            Color::Black
        } else {
            Color::White
        };
        *builder.square_mut(square) = Some((Piece::index(usize::from(code % 6)), color));
    }
    let [side, castle_white, castle_black, halfmove] = read_array(input)?;
    builder.side_to_move = if side & 1 != 0 {
        Color::Black
    } else {
        Color::White
    };
    let ep = side >> 1 & 15;
    builder.en_passant = match ep {
        0 => None,
        1..=8 => {
            let rank = Rank::Sixth.relative_to(builder.side_to_move);
            Some(Square::new(File::index(usize::from(ep - 1)), rank))
        }
        _ => return Err(bad("bad en-passant file")),
    };
    let rights = |byte: u8| -> Result<CastleRights, FormatError> {
        let file = |n: u8| match n {
            15 => Ok(None),
            0..=7 => Ok(Some(File::index(usize::from(n)))),
            _ => Err(bad("bad castling file")),
        };
        Ok(CastleRights {
            short: file(byte & 15)?,
            long: file(byte >> 4)?,
        })
    };
    builder.castle_rights = [rights(castle_white)?, rights(castle_black)?];
    builder.halfmove_clock = halfmove;
    builder.fullmove_number = u16::from_le_bytes(read_array(input)?);
    builder
        .build()
        .map_err(|e| bad(format!("invalid start board: {e:?}")))
}

/// Collects encoded games and writes them as one chunk file.
#[derive(Default)]
pub struct ChunkWriter {
    body: Vec<u8>,
    games: u32,
    positions: u32,
}

impl ChunkWriter {
    /// An empty chunk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a game (checked as it is encoded; a bad game leaves the chunk unchanged).
    pub fn push(&mut self, game: &GameRecord) -> Result<(), FormatError> {
        let mut bytes = Vec::with_capacity(game.moves.len() + 24 * game.labels.len() + 32);
        game.encode(&mut bytes)?;
        self.body.extend_from_slice(&bytes);
        self.games += 1;
        self.positions += game.labels.len() as u32;
        Ok(())
    }

    /// Games added so far.
    pub fn games(&self) -> u32 {
        self.games
    }

    /// Labelled positions added so far.
    pub fn positions(&self) -> u32 {
        self.positions
    }

    /// The compressed chunk: header and games in one gzip stream.
    pub fn finish(&self) -> Result<Vec<u8>, FormatError> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(&MAGIC)?;
        encoder.write_all(&VERSION.to_le_bytes())?;
        encoder.write_all(&self.games.to_le_bytes())?;
        encoder.write_all(&self.positions.to_le_bytes())?;
        encoder.write_all(&self.body)?;
        Ok(encoder.finish()?)
    }

    /// Writes the chunk to `path` through a temporary file (`path` + `.tmp`) renamed when
    /// complete, so a chunk file either exists whole or not at all. Returns the bytes written.
    pub fn write_atomic(&self, path: &Path) -> Result<u64, FormatError> {
        let bytes = self.finish()?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(bytes.len() as u64)
    }
}

/// Streams the games of one chunk.
pub struct ChunkReader<R: Read> {
    input: BufReader<GzDecoder<R>>,
    games: u32,
    positions: u32,
    read_games: u32,
    read_positions: u32,
    done: bool,
}

impl ChunkReader<fs::File> {
    /// Opens a chunk file and checks its header.
    pub fn open(path: &Path) -> Result<Self, FormatError> {
        Self::new(fs::File::open(path)?)
    }
}

impl<R: Read> ChunkReader<R> {
    /// Reads the header of a compressed chunk from `input`.
    pub fn new(input: R) -> Result<Self, FormatError> {
        let mut input = BufReader::new(GzDecoder::new(input));
        let header: [u8; HEADER_LEN] = read_array(&mut input)?;
        if header[..8] != MAGIC {
            return Err(bad("not a Banyan label chunk (bad magic)"));
        }
        let version = u16::from_le_bytes([header[8], header[9]]);
        if version != VERSION {
            return Err(bad(format!("format version {version}, expected {VERSION}")));
        }
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        Ok(ChunkReader {
            input,
            games: word(10),
            positions: word(14),
            read_games: 0,
            read_positions: 0,
            done: false,
        })
    }

    /// Games in the chunk, from its header.
    pub fn games(&self) -> u32 {
        self.games
    }

    /// Labelled positions in the chunk, from its header.
    pub fn positions(&self) -> u32 {
        self.positions
    }
}

impl<R: Read> Iterator for ChunkReader<R> {
    type Item = Result<GameRecord, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match GameRecord::decode(&mut self.input) {
            Ok(Some(game)) => {
                self.read_games += 1;
                self.read_positions += game.labels.len() as u32;
                Some(Ok(game))
            }
            Ok(None) if (self.read_games, self.read_positions) != (self.games, self.positions) => {
                self.done = true;
                Some(Err(bad("chunk ends before the games its header counts")))
            }
            Ok(None) => None,
            Err(e) => {
                // One error ends the stream: what follows cannot be framed.
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_uci_move;

    /// A game from `fen` through `moves` (UCI), labelling the plies in `labelled`.
    fn game(fen: &str, moves: &[&str], labelled: &[usize], outcome: Outcome) -> GameRecord {
        let start: Board = fen.parse().unwrap();
        let mut board = start.clone();
        let mut boards = vec![board.clone()];
        let mut played = Vec::new();
        for text in moves {
            let mv = parse_uci_move(&board, text, false).unwrap_or_else(|| panic!("{text}"));
            board.play(mv);
            played.push(mv);
            boards.push(board.clone());
        }
        let labels = labelled
            .iter()
            .map(|&ply| {
                let legal = sorted_moves(&boards[ply]);
                let lines: Vec<(Move, i16)> = legal
                    .iter()
                    .rev()
                    .take(3)
                    .zip([mate_score(2), cp_score(-45), mate_score(-1)])
                    .map(|(&mv, score)| (mv, score))
                    .collect();
                let w = (ply * 37 % 1000) as u16;
                let label = Label {
                    wdl: [w, (1000 - w) / 2, 1000 - w - (1000 - w) / 2],
                    best: lines.len() - 1,
                    lines,
                };
                (ply, label)
            })
            .collect();
        GameRecord {
            start,
            moves: played,
            labels,
            outcome,
        }
    }

    fn games() -> Vec<GameRecord> {
        vec![
            // En passant, castling both sides, promotion with capture, underpromotion.
            game(
                "r3k2r/1PP3pp/8/3pP3/8/8/P5PP/R3K2R w KQkq d6 0 20",
                &["e5d6", "e8g8", "b7a8q", "h7h6", "c7c8n", "g8h7", "e1c1"],
                &[0, 1, 3, 5, 7],
                Outcome::WhiteWins,
            ),
            game(
                "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
                &["e2e4", "c7c5", "g1f3", "d7d6", "f1b5", "c8d7", "e1g1"],
                &[0, 4, 6],
                Outcome::Draw,
            ),
            game(
                "8/8/4k3/8/8/3K4/6p1/8 b - - 3 70",
                &["g2g1r"],
                &[1],
                Outcome::Unknown,
            ),
            game(
                "4k3/8/8/8/8/8/8/4K2R w K - 0 1",
                &[],
                &[],
                Outcome::BlackWins,
            ),
        ]
    }

    #[test]
    fn chunks_round_trip() {
        let games = games();
        let mut writer = ChunkWriter::new();
        for game in &games {
            writer.push(game).unwrap();
        }
        assert_eq!((writer.games(), writer.positions()), (4, 9));
        let bytes = writer.finish().unwrap();
        let reader = ChunkReader::new(&bytes[..]).unwrap();
        assert_eq!((reader.games(), reader.positions()), (4, 9));
        let back: Vec<GameRecord> = reader.map(Result::unwrap).collect();
        assert_eq!(back, games);
        // The history handed to the trainer ends at the labelled position.
        let mut seen = Vec::new();
        back[0].for_each_position(|history, label| {
            assert!(history.current().is_legal(label.best_move()));
            seen.push(history.len() - 1);
        });
        assert_eq!(seen, [0, 1, 3, 5, 7]);
    }

    #[test]
    fn the_standard_start_costs_no_board() {
        let mut short = Vec::new();
        games()[1].encode(&mut short).unwrap();
        let mut moved = games()[1].clone();
        moved.start.set_fullmove_number(2);
        let mut long = Vec::new();
        moved.encode(&mut long).unwrap();
        assert!(long.len() > short.len() + 8);
    }

    #[test]
    fn bad_records_and_bytes_are_refused() {
        let mut game = games()[1].clone();
        game.labels[0].1.wdl = [500, 500, 1];
        assert!(ChunkWriter::new().push(&game).is_err());
        let mut game = games()[1].clone();
        game.labels.swap(0, 1);
        assert!(ChunkWriter::new().push(&game).is_err());
        let mut game = games()[1].clone();
        game.moves[1] = game.moves[0];
        assert!(ChunkWriter::new().push(&game).is_err());

        assert!(ChunkReader::new(&b"not gzip"[..]).is_err());
        let mut writer = ChunkWriter::new();
        writer.push(&games()[0]).unwrap();
        let bytes = writer.finish().unwrap();
        let mut plain = Vec::new();
        GzDecoder::new(&bytes[..]).read_to_end(&mut plain).unwrap();
        for cut in [HEADER_LEN + 3, plain.len() - 1] {
            let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
            encoder.write_all(&plain[..cut]).unwrap();
            let truncated = encoder.finish().unwrap();
            let results: Vec<_> = ChunkReader::new(&truncated[..]).unwrap().collect();
            assert!(results.last().unwrap().is_err(), "cut at {cut}");
        }
    }
}

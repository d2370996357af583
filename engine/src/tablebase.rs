//! Syzygy endgame tablebases, probed through `pyrrhic-rs`: loading (`SyzygyPath`), the root
//! filter (DTZ, or WDL when the DTZ tables are missing) and the WDL probe of the search.
//!
//! The prober keeps its tables in process-wide state, so this module holds one set of tables
//! per process. Every file is checked before the prober sees it (name, size, magic bytes): the
//! prober reads its tables through raw pointers, and a truncated file must be refused here, not
//! crash a worker later. The files that pass are linked into a private directory, which is
//! the only path the prober is given. The coordinator loads the tables and touches each of
//! them once, so that workers forked afterwards inherit the mappings; a re-executed worker
//! opens the checked directory itself (its path travels in the search order).

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU32, Ordering};

use cozy_chess::{BitBoard, Board, Color, Move, Piece, Square};
use pyrrhic_rs::{DtzProbeValue, EngineAdapter, TableBases, WdlProbeResult};

/// The prober's view of cozy-chess move generation.
#[derive(Clone)]
struct Adapter;

impl EngineAdapter for Adapter {
    fn pawn_attacks(color: pyrrhic_rs::Color, sq: u64) -> u64 {
        let color = match color {
            pyrrhic_rs::Color::White => Color::White,
            pyrrhic_rs::Color::Black => Color::Black,
        };
        cozy_chess::get_pawn_attacks(Square::index(sq as usize), color).0
    }
    fn knight_attacks(sq: u64) -> u64 {
        cozy_chess::get_knight_moves(Square::index(sq as usize)).0
    }
    fn bishop_attacks(sq: u64, occ: u64) -> u64 {
        cozy_chess::get_bishop_moves(Square::index(sq as usize), BitBoard(occ)).0
    }
    fn rook_attacks(sq: u64, occ: u64) -> u64 {
        cozy_chess::get_rook_moves(Square::index(sq as usize), BitBoard(occ)).0
    }
    fn queen_attacks(sq: u64, occ: u64) -> u64 {
        Self::bishop_attacks(sq, occ) | Self::rook_attacks(sq, occ)
    }
    fn king_attacks(sq: u64) -> u64 {
        cozy_chess::get_king_moves(Square::index(sq as usize)).0
    }
}

/// A tablebase result for the side to move. A cursed win (a blessed loss) is a win (a loss)
/// that the fifty-move rule turns into a draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wdl {
    Loss,
    BlessedLoss,
    Draw,
    CursedWin,
    Win,
}

impl Wdl {
    fn from_probe(result: WdlProbeResult) -> Wdl {
        match result {
            WdlProbeResult::Loss => Wdl::Loss,
            WdlProbeResult::BlessedLoss => Wdl::BlessedLoss,
            WdlProbeResult::Draw => Wdl::Draw,
            WdlProbeResult::CursedWin => Wdl::CursedWin,
            WdlProbeResult::Win => Wdl::Win,
        }
    }

    /// The result as the game will score it: +1 win, 0 draw, −1 loss.
    pub fn game_value(self) -> i32 {
        match self {
            Wdl::Win => 1,
            Wdl::Loss => -1,
            _ => 0,
        }
    }

    /// The same result seen by the other side.
    fn flip(self) -> Wdl {
        match self {
            Wdl::Loss => Wdl::Win,
            Wdl::BlessedLoss => Wdl::CursedWin,
            Wdl::Draw => Wdl::Draw,
            Wdl::CursedWin => Wdl::BlessedLoss,
            Wdl::Win => Wdl::Loss,
        }
    }
}

/// What loading a `SyzygyPath` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Tables with a usable WDL file.
    pub tables: usize,
    /// The most pieces (kings included) any of them holds.
    pub max_pieces: u32,
    /// Directories and files that could not be used, one message each.
    pub errors: Vec<String>,
}

/// The root filter's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootProbe {
    /// The moves that keep the best result (and, where the fifty-move rule or a repetition
    /// makes it matter, convert fastest).
    pub moves: Vec<Move>,
    /// The root's result for the side to move, the fifty-move rule counted.
    pub wdl: Wdl,
    /// The root's distance to zeroing in plies (positive: winning, negative: losing), when
    /// the DTZ tables answered.
    pub dtz: Option<i32>,
    /// Positions probed.
    pub probes: u64,
}

/// The tables of this process.
struct Loaded {
    tables: TableBases<Adapter>,
    max_pieces: u32,
    /// The tables (like `KRvK`) with a DTZ file: the prober must not be asked for a DTZ it
    /// lacks (a failed table stops its WDL probes too).
    dtz: Vec<String>,
    /// The checked directory the prober reads.
    dir: PathBuf,
    /// The process that made `dir` (it removes it); `None` when opened from another's.
    owner: Option<u32>,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if self.owner == Some(std::process::id()) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

static CURRENT: RwLock<Option<Loaded>> = RwLock::new(None);

/// Numbers the checked directories this process makes.
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

fn current() -> std::sync::RwLockReadGuard<'static, Option<Loaded>> {
    CURRENT.read().unwrap_or_else(|e| e.into_inner())
}

fn replace(new: Option<Loaded>) {
    let mut guard = CURRENT.write().unwrap_or_else(|e| e.into_inner());
    // The prober allows one set of tables at a time: free the old before opening the new.
    *guard = None;
    *guard = new;
}

/// The magic bytes that open a WDL (`.rtbw`) and a DTZ (`.rtbz`) file.
const WDL_MAGIC: [u8; 4] = [0x71, 0xe8, 0x23, 0x5d];
const DTZ_MAGIC: [u8; 4] = [0xd7, 0x66, 0x0c, 0xa5];

/// The pieces of a table named like `KRPvKB`, or `None` for another name.
fn table_pieces(stem: &str) -> Option<u32> {
    let (white, black) = stem.split_once('v')?;
    let side_ok = |s: &str| {
        s.starts_with('K') && s[1..].chars().all(|c| "QRBNP".contains(c)) && !s.is_empty()
    };
    (side_ok(white) && side_ok(black) && stem.len() <= 8).then(|| stem.len() as u32 - 1)
}

/// Checks one table file: a whole Syzygy file is 16 bytes past a multiple of 64 and opens
/// with its kind's magic bytes.
fn check_file(path: &Path, magic: [u8; 4]) -> Result<(), String> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size < 16 || size % 64 != 16 {
        return Err(format!(
            "{} is truncated or not a Syzygy table ({size} bytes); skipped",
            path.display()
        ));
    }
    let mut head = [0u8; 4];
    file.read_exact(&mut head)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if head != magic {
        return Err(format!(
            "{} is not a Syzygy table (bad magic bytes); skipped",
            path.display()
        ));
    }
    Ok(())
}

/// The usable table files under the `:`-separated `paths`: file name → full path, the first
/// directory holding a name winning (as the prober searches). Problems go to `errors`.
fn scan(paths: &str, errors: &mut Vec<String>) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for dir in paths.split(':').map(str::trim).filter(|d| !d.is_empty()) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push(format!("Syzygy: cannot read directory '{dir}': {e}"));
                continue;
            }
        };
        let mut tables_here = 0;
        let mut names: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .collect();
        names.sort();
        for (name, path) in names {
            let Some((stem, ext)) = name.rsplit_once('.') else {
                continue;
            };
            let magic = match ext {
                "rtbw" => WDL_MAGIC,
                "rtbz" => DTZ_MAGIC,
                _ => continue,
            };
            if table_pieces(stem).is_none() || found.iter().any(|(n, _)| *n == name) {
                continue;
            }
            match check_file(&path, magic) {
                Ok(()) => {
                    tables_here += 1;
                    let path = std::fs::canonicalize(&path).unwrap_or(path);
                    found.push((name, path));
                }
                Err(e) => errors.push(format!("Syzygy: {e}")),
            }
        }
        if tables_here == 0 {
            errors.push(format!("Syzygy: no usable tables in '{dir}'"));
        }
    }
    found
}

/// Loads the tables under `paths` (directories separated by `:`), replacing any loaded
/// before; an empty string unloads them. Bad directories and files are reported and left out.
pub fn load(paths: &str) -> LoadReport {
    replace(None);
    let mut report = LoadReport::default();
    if paths.trim().is_empty() {
        return report;
    }
    let files = scan(paths, &mut report.errors);
    let wdl: Vec<&str> = files
        .iter()
        .filter_map(|(n, _)| n.strip_suffix(".rtbw"))
        .collect();
    if wdl.is_empty() {
        return report;
    }
    let dir = std::env::temp_dir().join(format!(
        "banyan-syzygy-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let linked = std::fs::create_dir_all(&dir).and_then(|()| {
        for (name, target) in &files {
            std::os::unix::fs::symlink(target, dir.join(name))?;
        }
        Ok(())
    });
    if let Err(e) = linked {
        let _ = std::fs::remove_dir_all(&dir);
        report
            .errors
            .push(format!("Syzygy: cannot prepare {}: {e}", dir.display()));
        return report;
    }
    let max_pieces = wdl
        .iter()
        .filter_map(|s| table_pieces(s))
        .max()
        .unwrap_or(0);
    let dtz = files
        .iter()
        .filter_map(|(n, _)| n.strip_suffix(".rtbz").map(str::to_string))
        .collect();
    match open(&dir, max_pieces, dtz, Some(std::process::id())) {
        Ok(()) => {
            report.tables = wdl.len();
            report.max_pieces = max_pieces;
            for stem in &wdl {
                warm(stem);
            }
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            report.errors.push(e);
        }
    }
    report
}

fn open(dir: &Path, max_pieces: u32, dtz: Vec<String>, owner: Option<u32>) -> Result<(), String> {
    let text = dir
        .to_str()
        .ok_or_else(|| format!("Syzygy: {} is not a UTF-8 path", dir.display()))?;
    let tables = TableBases::<Adapter>::new(text)
        .map_err(|e| format!("Syzygy: the prober could not open {text}: {e:?}"))?;
    replace(Some(Loaded {
        tables,
        max_pieces,
        dtz,
        dir: dir.to_path_buf(),
        owner,
    }));
    Ok(())
}

/// The checked directory in use, if tables are loaded.
pub fn current_dir() -> Option<PathBuf> {
    current().as_ref().map(|t| t.dir.clone())
}

/// In a worker: makes sure the tables of the coordinator's checked directory `dir` (empty:
/// none) are the ones loaded. A forked worker inherited them already; a re-executed one opens
/// them on its first search.
pub fn ensure(dir: &Path) {
    let same = match current().as_ref() {
        Some(t) => t.dir == dir,
        None => dir.as_os_str().is_empty(),
    };
    if same {
        return;
    }
    replace(None);
    if dir.as_os_str().is_empty() {
        return;
    }
    let max_pieces = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            table_pieces(name.strip_suffix(".rtbw")?)
        })
        .max()
        .unwrap_or(0);
    // Workers probe WDL only.
    if let Err(e) = open(dir, max_pieces, Vec::new(), None) {
        tracing::warn!("{e}");
    }
}

/// Whether `board` can be probed with tables of `max_pieces`: no castling rights, few enough
/// pieces.
fn probeable(board: &Board, max_pieces: u32) -> bool {
    let castles = |c: Color| {
        let r = board.castle_rights(c);
        r.short.is_some() || r.long.is_some()
    };
    board.occupied().len() <= max_pieces && !castles(Color::White) && !castles(Color::Black)
}

/// The en-passant target square as the prober wants it (0: none).
fn ep_square(board: &Board) -> u32 {
    match board.en_passant() {
        None => 0,
        Some(file) => {
            let rank = match board.side_to_move() {
                Color::White => cozy_chess::Rank::Sixth,
                Color::Black => cozy_chess::Rank::Third,
            };
            Square::new(file, rank) as u32
        }
    }
}

fn wdl_raw(tables: &TableBases<Adapter>, board: &Board) -> Option<Wdl> {
    let p = |piece: Piece| board.pieces(piece).0;
    tables
        .probe_wdl(
            board.colors(Color::White).0,
            board.colors(Color::Black).0,
            p(Piece::King),
            p(Piece::Queen),
            p(Piece::Rook),
            p(Piece::Bishop),
            p(Piece::Knight),
            p(Piece::Pawn),
            ep_square(board),
            board.side_to_move() == Color::White,
        )
        .ok()
        .map(Wdl::from_probe)
}

/// The WDL tables' result for `board`'s side to move, as if the fifty-move counter were zero
/// (the search probes only right after a capture or pawn move). `None`: no tables, too many
/// pieces, castling rights, or no table for this material.
pub fn probe_wdl(board: &Board) -> Option<Wdl> {
    let guard = current();
    let t = guard.as_ref()?;
    if !probeable(board, t.max_pieces) {
        return None;
    }
    guarded(|| wdl_raw(&t.tables, board))
}

/// Runs a probe; a panic in the prober (it maps files as it goes) reads as no answer.
fn guarded<T>(probe: impl FnOnce() -> Option<T>) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(probe))
        .ok()
        .flatten()
}

/// The root filter for the game's current position (`history`: the positions since the game's
/// start, the current one last). Keeps the moves of the best rank, as Stockfish and Lc0 rank
/// them: every move that keeps a win within the fifty-move rule ranks alike, unless the
/// position has repeated since the last capture or pawn move or the counter leaves no slack,
/// when the distance to zeroing decides. Falls back to WDL probes of the moves when the DTZ
/// tables are missing. `None`: the position is not in the tables.
pub fn probe_root(history: &[Board]) -> Option<RootProbe> {
    let board = history.last()?;
    let guard = current();
    let t = guard.as_ref()?;
    if !probeable(board, t.max_pieces) {
        return None;
    }
    let mut legal = Vec::new();
    board.generate_moves(|m| {
        legal.extend(m);
        false
    });
    if legal.is_empty() {
        return None;
    }
    has_dtz(t, board)
        .then(|| guarded(|| dtz_root(&t.tables, board, &legal, repeated(history))))
        .flatten()
        .or_else(|| guarded(|| wdl_root(&t.tables, board, &legal)))
}

/// Whether the DTZ table of `board`'s material is loaded.
fn has_dtz(t: &Loaded, board: &Board) -> bool {
    let side = |c: Color| {
        let mut name = String::from("K");
        for (piece, letter) in [
            (Piece::Queen, 'Q'),
            (Piece::Rook, 'R'),
            (Piece::Bishop, 'B'),
            (Piece::Knight, 'N'),
            (Piece::Pawn, 'P'),
        ] {
            let n = (board.pieces(piece) & board.colors(c)).len() as usize;
            name.extend(std::iter::repeat_n(letter, n));
        }
        name
    };
    let (white, black) = (side(Color::White), side(Color::Black));
    let names = [format!("{white}v{black}"), format!("{black}v{white}")];
    t.dtz.iter().any(|d| names.contains(d))
}

/// Whether a position since the last zeroing move occurs twice.
fn repeated(history: &[Board]) -> bool {
    let since = history
        .iter()
        .rposition(|b| b.halfmove_clock() == 0)
        .unwrap_or(0);
    let mut hashes: Vec<u64> = history[since..].iter().map(Board::hash).collect();
    hashes.sort_unstable();
    hashes.windows(2).any(|w| w[0] == w[1])
}

fn dtz_root(
    tables: &TableBases<Adapter>,
    board: &Board,
    legal: &[Move],
    repeated: bool,
) -> Option<RootProbe> {
    let p = |piece: Piece| board.pieces(piece).0;
    let cnt50 = board.halfmove_clock() as i32;
    let result = tables
        .probe_root(
            board.colors(Color::White).0,
            board.colors(Color::Black).0,
            p(Piece::King),
            p(Piece::Queen),
            p(Piece::Rook),
            p(Piece::Bishop),
            p(Piece::Knight),
            p(Piece::Pawn),
            cnt50 as u32,
            ep_square(board),
            board.side_to_move() == Color::White,
        )
        .ok()?;
    let DtzProbeValue::DtzResult(root) = result.root else {
        return None;
    };
    let mut ranked = Vec::with_capacity(result.num_moves);
    for value in &result.moves[..result.num_moves] {
        let DtzProbeValue::DtzResult(r) = value else {
            return None;
        };
        let promotion = match r.promotion {
            pyrrhic_rs::Piece::Queen => Some(Piece::Queen),
            pyrrhic_rs::Piece::Rook => Some(Piece::Rook),
            pyrrhic_rs::Piece::Bishop => Some(Piece::Bishop),
            pyrrhic_rs::Piece::Knight => Some(Piece::Knight),
            _ => None,
        };
        let mv = legal.iter().copied().find(|m| {
            m.from as u8 == r.from_square && m.to as u8 == r.to_square && m.promotion == promotion
        })?;
        let v = signed(Wdl::from_probe(r.wdl), r.dtz as i32);
        ranked.push((mv, rank(v, cnt50, repeated)));
    }
    // Every legal move must have been scored, or the filter could drop a good one.
    if ranked.len() != legal.len() {
        return None;
    }
    let best = ranked.iter().map(|&(_, r)| r).max()?;
    Some(RootProbe {
        moves: ranked
            .iter()
            .filter(|&&(_, r)| r == best)
            .map(|&(m, _)| m)
            .collect(),
        wdl: Wdl::from_probe(root.wdl),
        dtz: Some(signed(Wdl::from_probe(root.wdl), root.dtz as i32)),
        probes: 1 + legal.len() as u64,
    })
}

/// A distance to zeroing with the sign of the result `wdl`.
fn signed(wdl: Wdl, dtz: i32) -> i32 {
    match wdl {
        Wdl::Win | Wdl::CursedWin => dtz,
        Wdl::Loss | Wdl::BlessedLoss => -dtz,
        Wdl::Draw => 0,
    }
}

/// Stockfish's and Lc0's rank of a root move whose signed distance to zeroing is `v` (plies,
/// positive: it wins, negative: it loses, 0: draw), the fifty-move counter at `cnt50`.
fn rank(v: i32, cnt50: i32, repeated: bool) -> i32 {
    const MAX: i32 = 1000;
    if v > 0 {
        if v + cnt50 <= 99 && !repeated {
            MAX
        } else {
            MAX - (v + cnt50)
        }
    } else if v < 0 {
        if -v * 2 + cnt50 < 100 {
            -MAX
        } else {
            -MAX + (-v + cnt50)
        }
    } else {
        0
    }
}

/// The fallback without DTZ tables: the moves whose positions the WDL tables rate best.
fn wdl_root(tables: &TableBases<Adapter>, board: &Board, legal: &[Move]) -> Option<RootProbe> {
    let mut ranked = Vec::with_capacity(legal.len());
    for &mv in legal {
        let mut after = board.clone();
        after.play_unchecked(mv);
        let mated = !after.generate_moves(|_| true);
        let wdl = match (mated, after.checkers().is_empty()) {
            (true, false) => Wdl::Win,
            (true, true) => Wdl::Draw,
            _ => wdl_raw(tables, &after)?.flip(),
        };
        ranked.push((mv, wdl));
    }
    let best = ranked.iter().map(|&(_, w)| w).max()?;
    Some(RootProbe {
        moves: ranked
            .iter()
            .filter(|&&(_, w)| w == best)
            .map(|&(m, _)| m)
            .collect(),
        wdl: best,
        dtz: None,
        probes: legal.len() as u64,
    })
}

/// Maps the table `stem` (like `KRvKP`) in this process by probing one position of it, so
/// that workers forked later inherit the mapping.
fn warm(stem: &str) {
    let Some((white, black)) = stem.split_once('v') else {
        return;
    };
    let guard = current();
    let Some(t) = guard.as_ref() else {
        return;
    };
    // A fixed pseudo-random walk over placements until one is legal.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ stem.len() as u64;
    for _ in 0..1000 {
        let mut squares: Vec<Square> = Vec::new();
        let mut builder = cozy_chess::BoardBuilder::empty();
        let mut ok = true;
        for (color, side) in [(Color::White, white), (Color::Black, black)] {
            for c in side.chars() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let sq = Square::index((seed % 64) as usize);
                let piece = match c {
                    'K' => Piece::King,
                    'Q' => Piece::Queen,
                    'R' => Piece::Rook,
                    'B' => Piece::Bishop,
                    'N' => Piece::Knight,
                    _ => Piece::Pawn,
                };
                let back_rank = matches!(
                    sq.rank(),
                    cozy_chess::Rank::First | cozy_chess::Rank::Eighth
                );
                if squares.contains(&sq) || (piece == Piece::Pawn && back_rank) {
                    ok = false;
                }
                squares.push(sq);
                *builder.square_mut(sq) = Some((piece, color));
            }
        }
        if !ok {
            continue;
        }
        let Ok(board) = builder.build() else {
            continue;
        };
        let _ = guarded(|| wdl_raw(&t.tables, &board));
        let mut legal = Vec::new();
        board.generate_moves(|m| {
            legal.extend(m);
            false
        });
        if !legal.is_empty() && has_dtz(t, &board) {
            let _ = guarded(|| dtz_root(&t.tables, &board, &legal, false));
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert_eq!(table_pieces("KQvK"), Some(3));
        assert_eq!(table_pieces("KRPvKB"), Some(5));
        assert_eq!(table_pieces("KvK"), Some(2));
        assert_eq!(table_pieces("KXvK"), None);
        assert_eq!(table_pieces("QKvK"), None);
        assert_eq!(table_pieces("README"), None);
    }

    #[test]
    fn ranks_follow_stockfish() {
        assert_eq!(rank(5, 0, false), rank(60, 30, false)); // both win in time: alike
        assert!(rank(5, 0, true) > rank(7, 0, true)); // after a repetition: fastest
        assert!(rank(5, 96, false) > rank(7, 96, false)); // no slack left: fastest
        assert!(rank(1, 0, false) > rank(0, 0, false));
        assert!(rank(0, 0, false) > rank(-3, 0, false));
        assert!(rank(-60, 0, false) > rank(-3, 0, false)); // a loss the rule may save
    }

    #[test]
    fn repetition_since_zeroing() {
        let mut board = Board::from_fen("8/8/8/3k4/8/8/8/KR6 w - - 0 1", false).unwrap();
        let mut history = vec![board.clone()];
        for mv in ["a1a2", "d5d4", "a2a1", "d4d5"] {
            board.play(mv.parse().unwrap());
            history.push(board.clone());
        }
        assert!(repeated(&history));
        assert!(!repeated(&history[..4]));
    }
}

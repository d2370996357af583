//! A small UCI driver for one Stockfish child process (`Threads 1`, `UCI_ShowWDL true`):
//! fixed-node MultiPV searches that return each line's first move, score and W/D/L.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use cozy_chess::{Board, Move};

use super::record::{cp_score, mate_score};
use crate::policy::parse_uci_move;

/// How long one reply may take before the engine counts as hung.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// Stockfish failed to start, answered nonsense, hung or died.
#[derive(Debug, thiserror::Error)]
#[error("stockfish: {0}")]
pub struct StockfishError(String);

fn fail(text: impl Into<String>) -> StockfishError {
    StockfishError(text.into())
}

/// `stockfish` on `PATH`, else Debian's `/usr/games/stockfish`, if either exists.
pub fn find() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("stockfish"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/games/stockfish");
        debian.is_file().then_some(debian)
    })
}

/// One MultiPV line of a finished search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The line's first move (castling as king takes rook).
    pub mv: Move,
    /// Its score for the side to move ([`cp_score`] / [`mate_score`] encoding).
    pub score: i16,
    /// Win/draw/loss per mille for the side to move, when Stockfish reported it.
    pub wdl: Option<[u16; 3]>,
}

/// A finished search: the lines best first (at least one), and the move Stockfish chose.
#[derive(Clone, Debug)]
pub struct Search {
    /// MultiPV lines in Stockfish's order (best first).
    pub lines: Vec<Line>,
    /// Stockfish's `bestmove`.
    pub best: Move,
}

/// A running Stockfish; quit (and reaped) on drop.
pub struct Stockfish {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    multipv: usize,
}

impl Stockfish {
    /// Starts `path` with one thread and `hash_mb` of hash, W/D/L output on.
    pub fn start(path: &Path, hash_mb: u32) -> Result<Stockfish, StockfishError> {
        let mut child = Command::new(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot start {}: {e}", path.display())))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("stockfish-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| fail(format!("reader thread: {e}")))?;
        let mut engine = Stockfish {
            child,
            stdin,
            lines: rx,
            multipv: 1,
        };
        engine.send("uci")?;
        engine.wait_for(|l| l == "uciok")?;
        engine.send("setoption name Threads value 1")?;
        engine.send(&format!("setoption name Hash value {hash_mb}"))?;
        engine.send("setoption name UCI_ShowWDL value true")?;
        engine.send("setoption name MultiPV value 1")?;
        engine.sync()?;
        Ok(engine)
    }

    fn send(&mut self, command: &str) -> Result<(), StockfishError> {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| fail(format!("write: {e}")))
    }

    fn next_line(&mut self) -> Result<String, StockfishError> {
        match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(fail("no reply (hung)")),
            Err(RecvTimeoutError::Disconnected) => Err(fail("the process exited")),
        }
    }

    fn wait_for(&mut self, done: impl Fn(&str) -> bool) -> Result<(), StockfishError> {
        loop {
            if done(self.next_line()?.trim()) {
                return Ok(());
            }
        }
    }

    fn sync(&mut self) -> Result<(), StockfishError> {
        self.send("isready")?;
        self.wait_for(|l| l == "readyok")
    }

    /// Starts a new game (clears the hash).
    pub fn new_game(&mut self) -> Result<(), StockfishError> {
        self.send("ucinewgame")?;
        self.sync()
    }

    /// Searches the position reached from `start` by `moves` for `nodes` nodes with
    /// `multipv` lines. `board` is that position (it decodes the engine's moves).
    pub fn search(
        &mut self,
        start: &Board,
        moves: &[String],
        board: &Board,
        nodes: u64,
        multipv: usize,
    ) -> Result<Search, StockfishError> {
        if multipv != self.multipv {
            self.send(&format!("setoption name MultiPV value {multipv}"))?;
            self.multipv = multipv;
        }
        let mut position = format!("position fen {start}");
        if !moves.is_empty() {
            position.push_str(" moves ");
            position.push_str(&moves.join(" "));
        }
        self.send(&position)?;
        self.send(&format!("go nodes {nodes}"))?;
        let mut lines: Vec<Option<Line>> = vec![None; multipv];
        loop {
            let text = self.next_line()?;
            let mut words = text.split_ascii_whitespace();
            match words.next() {
                Some("info") => {
                    if let Some((index, line)) = parse_info(&text, board)?
                        && index < lines.len()
                    {
                        lines[index] = Some(line);
                    }
                }
                Some("bestmove") => {
                    let best = words.next().unwrap_or("(none)");
                    let best = parse_uci_move(board, best, false)
                        .ok_or_else(|| fail(format!("bestmove {best} is not legal here")))?;
                    let lines: Vec<Line> = lines.into_iter().flatten().collect();
                    if lines.is_empty() {
                        return Err(fail("a search without lines"));
                    }
                    return Ok(Search { lines, best });
                }
                _ => {}
            }
        }
    }
}

/// Reads a MultiPV `info` line: its 0-based index and the line, or `None` for lines without a
/// PV (currmove, string, …).
fn parse_info(text: &str, board: &Board) -> Result<Option<(usize, Line)>, StockfishError> {
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let (mut index, mut score, mut wdl, mut mv) = (0usize, None, None, None);
    let number = |i: usize| -> Result<i64, StockfishError> {
        words
            .get(i)
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| fail(format!("bad info line: {text}")))
    };
    let mut i = 1;
    while i < words.len() {
        match words[i] {
            "multipv" => index = (number(i + 1)? as usize).saturating_sub(1),
            "score" => {
                let value = number(i + 2)?;
                score = match words.get(i + 1) {
                    Some(&"cp") => Some(cp_score(value)),
                    Some(&"mate") => Some(mate_score(value)),
                    _ => return Err(fail(format!("bad score: {text}"))),
                };
                i += 1;
            }
            "wdl" => {
                let (w, d, l) = (number(i + 1)?, number(i + 2)?, number(i + 3)?);
                if [w, d, l].iter().any(|v| !(0..=1000).contains(v)) || w + d + l != 1000 {
                    return Err(fail(format!("bad wdl: {text}")));
                }
                wdl = Some([w as u16, d as u16, l as u16]);
                i += 2;
            }
            "pv" => {
                let first = words.get(i + 1).copied().unwrap_or("");
                mv = Some(
                    parse_uci_move(board, first, false)
                        .ok_or_else(|| fail(format!("pv move {first} is not legal here")))?,
                );
                break;
            }
            "string" => return Ok(None),
            _ => {}
        }
        i += 1;
    }
    Ok(match (mv, score) {
        (Some(mv), Some(score)) => Some((index, Line { mv, score, wdl })),
        _ => None,
    })
}

impl Drop for Stockfish {
    fn drop(&mut self) {
        let _ = self.send("quit");
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lines_parse() {
        let board = Board::default();
        let text = "info depth 7 seldepth 6 multipv 2 score cp 44 wdl 68 931 1 nodes 8012 \
                    nps 572285 hashfull 4 tbhits 0 time 14 pv d2d4 e7e5";
        let (index, line) = parse_info(text, &board).unwrap().unwrap();
        assert_eq!(index, 1);
        assert_eq!(line.score, 44);
        assert_eq!(line.wdl, Some([68, 931, 1]));
        assert_eq!(line.mv, "d2d4".parse().unwrap());
        let mate = "info depth 9 multipv 1 score mate -3 wdl 0 0 1000 upperbound pv e2e4";
        let (_, line) = parse_info(mate, &board).unwrap().unwrap();
        assert_eq!(line.score, -(crate::train::record::MATE_SCORE - 3));
        assert!(
            parse_info("info string NNUE enabled", &board)
                .unwrap()
                .is_none()
        );
        assert!(
            parse_info("info depth 3 currmove e2e4 currmovenumber 1", &board)
                .unwrap()
                .is_none()
        );
        assert!(parse_info("info multipv 1 score cp 3 pv e2e5", &board).is_err());
    }
}

//! What the coordinator tells a worker over its command pipe: start a search (with
//! everything the search needs) or quit. A plain line format, ended by `end`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use banyan_tree::PuctParams;

/// One search order.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchOrder {
    /// The search number the worker reports back when it is done.
    pub search: u32,
    /// Leaves per minibatch.
    pub minibatch: usize,
    /// The selection formula's parameters (`CPuct`, `CPuctFactor`, `CPuctBase`, `FpuValue`).
    pub puct: PuctParams,
    /// The evaluator's socket.
    pub socket: PathBuf,
    /// The game's first position (Shredder FEN) and the moves since, as tree codes.
    pub start_fen: String,
    pub moves: Vec<u16>,
    /// Root moves the search may consider (`go searchmoves`), as tree codes; empty: all.
    pub searchmoves: Vec<u16>,
    /// The coordinator's checked tablebase directory (see `tablebase`); empty: none.
    pub syzygy: PathBuf,
}

/// A message on the command pipe.
#[derive(Clone, Debug, PartialEq)]
pub enum Order {
    Search(SearchOrder),
    Quit,
}

impl Order {
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut text = String::new();
        match self {
            Order::Quit => text.push_str("quit\n"),
            Order::Search(s) => {
                let codes = |v: &[u16]| v.iter().map(|c| format!(" {c}")).collect::<String>();
                text += &format!("search {}\nminibatch {}\n", s.search, s.minibatch);
                let p = &s.puct;
                text += &format!(
                    "puct {} {} {} {}\n",
                    p.cpuct, p.cpuct_factor, p.cpuct_base, p.fpu_reduction
                );
                text += &format!(
                    "moves{}\nsearchmoves{}\n",
                    codes(&s.moves),
                    codes(&s.searchmoves)
                );
                text += &format!("fen {}\nsocket {}\n", s.start_fen, s.socket.display());
                text += &format!("syzygy {}\nend\n", s.syzygy.display());
            }
        }
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// Reads the next order; end of input (the coordinator is gone) reads as `Quit`.
    pub fn read(input: &mut impl BufRead) -> std::io::Result<Order> {
        let bad = |what: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad search order: {what}"),
            )
        };
        let mut order = SearchOrder {
            search: 0,
            minibatch: 1,
            puct: PuctParams::default(),
            socket: PathBuf::new(),
            start_fen: String::new(),
            moves: Vec::new(),
            searchmoves: Vec::new(),
            syzygy: PathBuf::new(),
        };
        let mut line = String::new();
        loop {
            line.clear();
            if input.read_line(&mut line)? == 0 {
                return Ok(Order::Quit);
            }
            let line = line.trim_end_matches('\n');
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let codes = || -> std::io::Result<Vec<u16>> {
                value
                    .split_whitespace()
                    .map(|c| c.parse().map_err(|_| bad(line)))
                    .collect()
            };
            match key {
                "quit" => return Ok(Order::Quit),
                "end" => return Ok(Order::Search(order)),
                "search" => order.search = value.parse().map_err(|_| bad(line))?,
                "minibatch" => order.minibatch = value.parse().map_err(|_| bad(line))?,
                "puct" => order.puct = puct(value).ok_or_else(|| bad(line))?,
                "moves" => order.moves = codes()?,
                "searchmoves" => order.searchmoves = codes()?,
                "fen" => order.start_fen = value.to_string(),
                "socket" => order.socket = PathBuf::from(value),
                "syzygy" => order.syzygy = PathBuf::from(value),
                _ => return Err(bad(line)),
            }
        }
    }
}

/// Reads `puct`'s four numbers: cpuct, its factor, its base, the FPU reduction.
fn puct(value: &str) -> Option<PuctParams> {
    let mut numbers = value.split_whitespace().map(|v| v.parse::<f32>().ok());
    let mut next = || numbers.next().flatten();
    let params = PuctParams {
        cpuct: next()?,
        cpuct_factor: next()?,
        cpuct_base: next()?,
        fpu_reduction: next()?,
    };
    numbers.next().is_none().then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_round_trip() {
        let orders = [
            Order::Quit,
            Order::Search(SearchOrder {
                search: 7,
                minibatch: 32,
                puct: PuctParams {
                    cpuct: 2.5,
                    cpuct_factor: 0.0,
                    cpuct_base: 1000.0,
                    fpu_reduction: 0.25,
                },
                socket: PathBuf::from("/tmp/dir with space/eval.sock"),
                start_fen: "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w HAha - 0 1".into(),
                moves: vec![12 | 28 << 6, 52 | 36 << 6],
                searchmoves: vec![],
                syzygy: PathBuf::from("/tmp/banyan-syzygy-1-0"),
            }),
            Order::Search(SearchOrder {
                search: 8,
                minibatch: 1,
                puct: PuctParams::default(),
                socket: PathBuf::from("/tmp/eval.sock"),
                start_fen: "8/8/8/3k4/8/8/8/KR6 w - - 0 1".into(),
                moves: vec![],
                searchmoves: vec![1, 2],
                syzygy: PathBuf::new(),
            }),
        ];
        let mut pipe = Vec::new();
        for order in &orders {
            order.write(&mut pipe).unwrap();
        }
        let mut input = &pipe[..];
        for order in &orders {
            assert_eq!(&Order::read(&mut input).unwrap(), order);
        }
        assert_eq!(Order::read(&mut input).unwrap(), Order::Quit);
    }
}

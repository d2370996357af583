//! Training data: positions from Stockfish self-play, Stockfish labels (W/D/L, best move,
//! MultiPV scores) and the compact chunk format the trainer streams.
//!
//! - [`record`]: the binary chunk format (layout in its doc), writer and streaming reader;
//! - [`stockfish`]: a UCI driver for one Stockfish child process;
//! - [`selfplay`]: games with randomised move choice, the source of the positions;
//! - [`label`]: the labelling run (jobs, chunk files, progress, resume).

pub mod label;
pub mod record;
pub mod selfplay;
pub mod stockfish;

//! Training data: positions from Stockfish self-play, Stockfish labels (W/D/L, best move,
//! MultiPV scores) and the compact chunk format the trainer streams.
//!
//! - [`record`]: the binary chunk format (layout in its doc), writer and streaming reader;
//! - [`stockfish`]: a UCI driver for one Stockfish child process;
//! - [`selfplay`]: games with randomised move choice, the source of the positions;
//! - [`label`]: the labelling run (jobs, chunk files, progress, resume);
//! - [`dataset`]: samples (input planes, legal moves, policy and W/D/L targets) streamed from
//!   the chunks, the validation split, batches on the device;
//! - [`trainer`]: the training loop over [`crate::network::Network`], checkpoints, export.

pub mod dataset;
pub mod label;
pub mod record;
pub mod selfplay;
pub mod stockfish;
pub mod trainer;

//! Lc0-compatible neural-network side of Banyan: position encoding (112 planes), the 1858-move
//! policy map, networks on libtorch (Banyan's own built in), weight loaders, the evaluator
//! process and its socket protocol, the shared evaluation cache and the heuristic evaluator.
//!
//! This crate knows chess (cozy-chess) and libtorch, and nothing of search.

pub mod backend;
pub mod builtin;
pub mod encode;
pub mod network;
pub mod policy;
pub mod priors;
pub mod weights;

pub mod cache;
pub mod client;
pub mod evalbench;
pub mod evaluator;
pub mod heuristic;
pub mod hostnet;
pub mod protocol;
pub mod server;
pub mod train;
pub mod triton;

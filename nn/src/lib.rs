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

/// Reports a unit test as skipped: one line `<test>: <reason>` to stderr and to the file named
/// by `BANYAN_SKIP_LOG` (which `scripts/test` counts and names). The test then returns.
#[cfg(test)]
pub(crate) fn skip_test(test: &str, reason: &str) {
    use std::io::Write;
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(log) = std::env::var_os("BANYAN_SKIP_LOG") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("BANYAN_SKIP_LOG is writable");
        writeln!(file, "{test}: {reason}").expect("skip log write");
    }
}

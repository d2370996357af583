//! The search coordinator of Banyan: the worker processes that grow the shared tree, their
//! life cycle, search limits and time management, the best-move choice, info snapshots, and
//! tree reuse between moves.
//!
//! The front-end owns one [`Engine`] on its main thread, configures it, and calls
//! [`Engine::go`] with a callback that receives [`Event`]s: info snapshots and exactly one
//! best move per search.

mod childlog;
mod control;
mod coordinator;
pub mod limits;
pub mod moves;
mod order;
pub mod process;
pub mod report;
mod shm;
pub mod tablebase;
mod worker;

pub use banyan_tree::PuctParams;
pub use coordinator::{Engine, EngineConfig, GoRequest, MAX_HASH_MB, MAX_THREADS};
pub use limits::{Clock, Limits};
pub use moves::GamePosition;
pub use process::{ProcessMode, WORKER_ROLE, worker_main};
pub use report::{Event, Info, Line, MoveStat, Score, Verbose};

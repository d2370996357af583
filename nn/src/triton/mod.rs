//! Evaluations beyond one machine: NVIDIA Triton Inference Server (KServe v2 gRPC).
//!
//! - [`export`] writes a Triton model repository for a network: TorchScript traced from the
//!   one tch definition of the architecture, taking the compact input (plane masks and the
//!   rule-50 counter, about 1.3 KB a position instead of 28 KB of floats) and expanding the
//!   112 planes inside the model.
//! - [`client`] talks to the servers: readiness checks and batched inference with several
//!   requests in flight, every call under a deadline.
//! - [`backend`] is the evaluator backend that forwards batches to the servers.
//! - [`pipe`] runs an exported model behind a pipe (`banyan __torchscript`), for a Triton
//!   server without the PyTorch backend.

pub mod backend;
pub mod client;
pub mod export;
pub mod pipe;

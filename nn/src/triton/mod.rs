//! Evaluations beyond one machine: NVIDIA Triton Inference Server.
//!
//! [`export`] writes a Triton model repository for a network: TorchScript traced from the one
//! tch definition of the architecture, taking the compact input (plane masks and the rule-50
//! counter) and expanding the 112 planes inside the model, so a request carries about 1 KB per
//! position instead of 28 KB of floats.

pub mod backend;
pub mod client;
pub mod export;
pub mod pipe;

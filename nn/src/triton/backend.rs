//! The evaluator backend that forwards its batches to Triton: the evaluator keeps its role
//! and protocol towards the workers (and the shared cache still answers hits locally).

use std::time::Duration;

use super::client::{TritonClient, TritonError, TritonTarget};
use super::export::OUTPUT_SIZE;
use crate::backend::{Backend, EvalInput, RawEval};
use crate::encode::InputPlanes;
use crate::policy::POLICY_SIZE;

/// Deadline of every call to the server: a server that does not answer within it is treated
/// as gone (the evaluator exits; the engine replaces it and, for that move, falls back).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Batches evaluated by a Triton server (or several).
pub struct TritonBackend {
    client: TritonClient,
    max_batch: usize,
    description: String,
    planes: Vec<InputPlanes>,
}

impl TritonBackend {
    /// Connects to `target` and checks that every server is live with the model ready.
    pub fn connect(target: &TritonTarget, max_batch: usize) -> Result<TritonBackend, TritonError> {
        let client = TritonClient::connect(target, CALL_TIMEOUT)?;
        let urls: Vec<&str> = client.urls().collect();
        let description = format!(
            "triton: model {} at {}",
            target.model.trim(),
            urls.join(", ")
        );
        Ok(TritonBackend {
            client,
            max_batch: max_batch.max(1),
            description,
            planes: Vec::new(),
        })
    }
}

impl Backend for TritonBackend {
    fn evaluate(&mut self, batch: &[EvalInput<'_>], out: &mut Vec<RawEval>) -> Result<(), String> {
        out.clear();
        self.planes.clear();
        self.planes.extend(batch.iter().map(|e| *e.planes));
        let rows = self.client.infer(&self.planes).map_err(|e| e.to_string())?;
        out.extend(
            batch
                .iter()
                .zip(rows.chunks_exact(OUTPUT_SIZE))
                .map(|(e, row)| {
                    let (logits, wdl) = row.split_at(POLICY_SIZE);
                    RawEval {
                        wdl: [wdl[0], wdl[1], wdl[2]],
                        logits: e.moves.iter().map(|&m| logits[m as usize]).collect(),
                    }
                }),
        );
        Ok(())
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

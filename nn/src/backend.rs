//! What every evaluator backend (an Lc0 network on libtorch, the heuristic) provides.

use crate::encode::InputPlanes;

/// One position to evaluate: the network input and its legal moves as policy indices
/// (side-to-move frame, see `policy`).
#[derive(Clone, Copy, Debug)]
pub struct EvalInput<'a> {
    pub planes: &'a InputPlanes,
    pub moves: &'a [u16],
}

/// The raw answer for one position, before the policy softmax.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawEval {
    /// Win, draw, loss probabilities from the side to move's view (classical nets: D = 0).
    pub wdl: [f32; 3],
    /// One logit per move of the request, in the request's order.
    pub logits: Vec<f32>,
}

/// An evaluator backend: evaluates a whole batch at once (one forward pass for a network).
pub trait Backend: Send {
    /// Evaluates `batch`, writing one `RawEval` per input into `out` (cleared first). Only a
    /// remote backend fails (its server gone or stalled); the evaluator then exits, and the
    /// engine handles it as a dead evaluator.
    fn evaluate(&mut self, batch: &[EvalInput<'_>], out: &mut Vec<RawEval>) -> Result<(), String>;

    /// The largest batch this backend wants in one call.
    fn max_batch(&self) -> usize;

    /// A short human-readable description (network name and shape, or "heuristic").
    fn describe(&self) -> String;
}

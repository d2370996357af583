//! `banyan export-triton`: a Triton model repository for a network.
//!
//! Layout (Triton's `pytorch_libtorch` platform, so a GPU server's PyTorch backend loads it
//! unchanged):
//!
//! ```text
//! DIR/MODEL/config.pbtxt      inputs, outputs, dynamic batching
//! DIR/MODEL/1/model.pt        TorchScript, traced from `Network::forward` in fp32
//! ```
//!
//! The model's inputs are the compact form of [`InputPlanes`]: [`MASKS`] `[B, 112]` int64 (one
//! square mask per plane, a1 = bit 0) and [`RULE50`] `[B, 1]` fp32 (the half-move clock, the
//! value of plane 109). Its one output, [`OUTPUT`] `[B, 1861]` fp32, is what
//! [`Network::forward`] returns side by side: 1858 policy logits in policy-index order, then
//! the win/draw/loss probabilities from the side to move's view.
//!
//! Tracing turns the network's weights and every helper tensor into constants of the graph;
//! none is made inside the traced function, so loading the file onto a GPU (Triton loads with
//! its instance's device as the map location) moves all of them there.

use std::fs;
use std::path::{Path, PathBuf};

use cozy_chess::Board;
use tch::{CModule, Device, Kind, Tensor};

use crate::builtin::Weights;
use crate::encode::{INPUT_PLANES, InputPlanes, PositionHistory, RULE50_PLANE};
use crate::network::{Network, Precision};
use crate::policy::POLICY_SIZE;
use crate::triton::client::MAX_REQUEST;

/// Input: one 64-bit square mask per plane, `[B, 112]` int64.
pub const MASKS: &str = "INPUT__0";
/// Input: the rule-50 half-move clock, `[B, 1]` fp32.
pub const RULE50: &str = "INPUT__1";
/// The output, `[B, 1861]` fp32: policy logits in policy-index order, then win/draw/loss
/// probabilities from the side to move's view (one tensor: a TorchScript method saved from a
/// trace returns a single value).
pub const OUTPUT: &str = "OUTPUT__0";
/// Floats per position of [`OUTPUT`].
pub const OUTPUT_SIZE: usize = POLICY_SIZE + 3;

/// The model name `export-triton` uses unless told otherwise.
pub const DEFAULT_MODEL: &str = "banyan";
/// The largest batch the written configuration accepts unless told otherwise.
pub const DEFAULT_MAX_BATCH: usize = 1024;
/// How long Triton's dynamic batcher may hold a request to merge it with others.
const QUEUE_DELAY_MICROSECONDS: u32 = 100;

/// What [`write_repository`] wrote.
#[derive(Debug)]
pub struct Exported {
    /// The model's directory (`DIR/MODEL`).
    pub model_dir: PathBuf,
    /// The network's description.
    pub network: String,
}

/// Writes a Triton model repository for `weights` under `dir`: `dir/model/config.pbtxt` and
/// `dir/model/1/model.pt`. The network is traced on the CPU in fp32.
pub fn write_repository(
    weights: &Weights,
    dir: &Path,
    model: &str,
    max_batch: usize,
) -> Result<Exported, String> {
    if model.is_empty() || model.contains(['/', '\\']) || model.starts_with('.') {
        return Err(format!(
            "{model:?} is not a model name (a plain directory name)"
        ));
    }
    if max_batch < MAX_REQUEST {
        return Err(format!(
            "the largest batch must be at least {MAX_REQUEST} (the client's largest request)"
        ));
    }
    let mut network = match weights {
        Weights::Heuristic => {
            return Err(
                "the heuristic evaluator is not a network: give a network file or <builtin>".into(),
            );
        }
        Weights::Builtin => Network::load_builtin(Device::Cpu),
        Weights::File(path) => Network::load(path, Device::Cpu),
    }
    .map_err(|e| format!("loading {weights}: {e}"))?;
    network.set_precision(Precision::Fp32);
    let module = trace(&network).map_err(|e| format!("tracing the network: {e}"))?;

    let model_dir = dir.join(model);
    let version_dir = model_dir.join("1");
    fs::create_dir_all(&version_dir)
        .map_err(|e| format!("creating {}: {e}", version_dir.display()))?;
    let file = version_dir.join("model.pt");
    module
        .save(&file)
        .map_err(|e| format!("writing {}: {e}", file.display()))?;
    let config = model_dir.join("config.pbtxt");
    fs::write(&config, config_text(model, max_batch))
        .map_err(|e| format!("writing {}: {e}", config.display()))?;
    Ok(Exported {
        model_dir,
        network: network.describe(),
    })
}

/// Traces `network`'s inference pass behind the compact input, as the module's `forward`:
/// (masks `[B, 112]` int64, rule50 `[B, 1]` fp32) → policy logits and W/D/L probabilities
/// side by side, `[B, 1861]`.
/// The network should compute in fp32, the precision every server supports.
pub fn trace(network: &Network) -> Result<CModule, tch::TchError> {
    let device = network.device();
    // Helper constants, made outside the traced function (see the module's notes).
    let shifts = Tensor::arange(64, (Kind::Int64, device)).view([1, 1, 64]);
    let rule50_plane = Tensor::zeros([1, INPUT_PLANES as i64, 1], (Kind::Float, device));
    let _ = rule50_plane.narrow(1, RULE50_PLANE as i64, 1).fill_(1.0);
    let mask_planes = 1.0 - &rule50_plane;
    // Two positions, so a batch size baked into the graph would show in the tests.
    let start = PositionHistory::new(Board::default()).planes();
    let (masks, rule50) = compact_inputs(&[start, start], device);
    CModule::create_by_tracing("banyan", "forward", &[masks, rule50], &mut |inputs| {
        let bits = inputs[0]
            .unsqueeze(-1)
            .bitwise_right_shift(&shifts)
            .bitwise_and(1)
            .to_kind(Kind::Float);
        let planes = bits * &mask_planes + inputs[1].unsqueeze(-1) * &rule50_plane;
        let (policy, wdl) = network.forward(&planes.view([-1, INPUT_PLANES as i64, 8, 8]));
        vec![Tensor::cat(&[policy, wdl], 1)]
    })
}

/// The compact model input of `batch` on `device`: (masks `[B, 112]` int64, rule50 `[B, 1]`
/// fp32).
pub fn compact_inputs(batch: &[InputPlanes], device: Device) -> (Tensor, Tensor) {
    let masks: Vec<i64> = batch
        .iter()
        .flat_map(|planes| planes.masks.iter().map(|&mask| mask as i64))
        .collect();
    let rule50: Vec<f32> = batch
        .iter()
        .map(|planes| f32::from(planes.rule50))
        .collect();
    let size = batch.len() as i64;
    (
        Tensor::from_slice(&masks)
            .view([size, INPUT_PLANES as i64])
            .to_device(device),
        Tensor::from_slice(&rule50)
            .view([size, 1])
            .to_device(device),
    )
}

/// Runs an exported module on `batch`: (policy logits `[B, 1858]`, W/D/L `[B, 3]`).
pub fn run_module(
    module: &CModule,
    batch: &[InputPlanes],
) -> Result<(Tensor, Tensor), tch::TchError> {
    let (masks, rule50) = compact_inputs(batch, Device::Cpu);
    let output = module.forward_ts(&[masks, rule50])?;
    Ok((
        output.narrow(1, 0, POLICY_SIZE as i64),
        output.narrow(1, POLICY_SIZE as i64, 3),
    ))
}

/// The model's `config.pbtxt`.
fn config_text(model: &str, max_batch: usize) -> String {
    format!(
        r#"# Written by `banyan export-triton`: Banyan's network behind its compact input.
name: "{model}"
platform: "pytorch_libtorch"
max_batch_size: {max_batch}
input [
  {{ name: "{MASKS}" data_type: TYPE_INT64 dims: [ {INPUT_PLANES} ] }},
  {{ name: "{RULE50}" data_type: TYPE_FP32 dims: [ 1 ] }}
]
output [
  {{ name: "{OUTPUT}" data_type: TYPE_FP32 dims: [ {OUTPUT_SIZE} ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: {QUEUE_DELAY_MICROSECONDS} }}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_uci_move;
    use crate::weights::{self, Encoding, NetWeights, variety};

    /// Positions with castling rights gone, en passant, black to move and a rule-50 count.
    fn positions() -> Vec<InputPlanes> {
        let lines = [
            "",
            "e2e4 e7e5 g1f3 b8c6 f1c4 g8f6 e1g1",
            "d2d4 g8f6 c2c4 e7e5 d4e5 f6g4 g1f3 f8c5 e2e3 b8c6 b1c3 c6e5 f3e5 g4e5 f1e2",
            "e2e4 d7d5 e4e5 f7f5",
        ];
        lines
            .iter()
            .map(|line| {
                let mut history = PositionHistory::new(Board::default());
                for text in line.split_whitespace() {
                    history.push(parse_uci_move(history.current(), text, false).unwrap());
                }
                history.planes()
            })
            .collect()
    }

    fn largest_difference(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    /// The exported TorchScript, saved and loaded back, computes the network's forward pass
    /// from the compact input, for every test architecture and a batch size other than the
    /// traced one.
    #[test]
    fn exported_module_gives_the_networks_outputs() {
        let dir = std::env::temp_dir().join(format!("banyan-triton-export-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let batch = positions();
        for (seed, arch) in variety().iter().enumerate() {
            let weights = NetWeights::random(arch, seed as u64);
            let file = dir.join(format!("net-{seed}.pb.gz"));
            weights::save(&weights, &file, Encoding::Linear16).unwrap();
            let exported = write_repository(&Weights::File(file.clone()), &dir, "m", 64).unwrap();
            let module = CModule::load(exported.model_dir.join("1/model.pt")).unwrap();

            let mut network = Network::load(&file, Device::Cpu).unwrap();
            let input = network.input_tensor(batch.iter());
            let (policy, wdl) = network.forward(&input);
            let (module_policy, module_wdl) = run_module(&module, &batch).unwrap();
            assert_eq!(
                module_policy.size(),
                [batch.len() as i64, POLICY_SIZE as i64]
            );
            assert_eq!(module_wdl.size(), [batch.len() as i64, 3]);
            let (dp, dw) = (
                largest_difference(&policy, &module_policy),
                largest_difference(&wdl, &module_wdl),
            );
            assert!(dp < 1e-4 && dw < 1e-5, "{arch:?}: policy {dp}, wdl {dw}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_configuration_names_the_compact_inputs_and_dynamic_batching() {
        let text = config_text("banyan", 256);
        for line in [
            "name: \"banyan\"",
            "platform: \"pytorch_libtorch\"",
            "max_batch_size: 256",
            "{ name: \"INPUT__0\" data_type: TYPE_INT64 dims: [ 112 ] }",
            "{ name: \"INPUT__1\" data_type: TYPE_FP32 dims: [ 1 ] }",
            "{ name: \"OUTPUT__0\" data_type: TYPE_FP32 dims: [ 1861 ] }",
            "dynamic_batching {",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn bad_requests_are_refused() {
        let dir = std::env::temp_dir();
        for (weights, model, max_batch, expected) in [
            (Weights::Heuristic, "m", 64, "not a network"),
            (Weights::Builtin, "a/b", 64, "not a model name"),
            (Weights::Builtin, "m", 63, "at least 64"),
            (
                Weights::File("/nonexistent/net.pb.gz".into()),
                "m",
                64,
                "loading",
            ),
        ] {
            let error = write_repository(&weights, &dir, model, max_batch).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }
}

//! An Lc0 residual network (with or without SE; convolutional or classical policy head; WDL or
//! classical value head; ReLU or Mish) evaluated with libtorch.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::backend::{Backend, EvalInput, RawEval};
use crate::encode::{INPUT_PLANES, InputPlanes};
use crate::policy::{POLICY_SIZE, conv_policy_gather};
use crate::weights::{self, Activation, Conv, Dense, LoadError, NetWeights, PolicyHead};

/// Largest batch the network asks for by default.
pub const DEFAULT_MAX_BATCH: usize = 512;

/// Floats of one position's input (112 planes × 64 squares).
const INPUT_FLOATS: usize = INPUT_PLANES * 64;

/// A convolution on the device (batch-norm folded), "same" padding.
struct ConvLayer {
    weight: Tensor,
    bias: Tensor,
    padding: i64,
}

/// A dense layer on the device.
struct DenseLayer {
    weight: Tensor,
    bias: Tensor,
}

struct SeLayer {
    fc1: DenseLayer,
    fc2: DenseLayer,
    filters: i64,
}

struct Block {
    conv1: ConvLayer,
    conv2: ConvLayer,
    se: Option<SeLayer>,
}

enum PolicyLayers {
    /// Two 3×3 convs, then one `index_select` of the 80·64 outputs by `gather` (1858 entries).
    Convolution {
        conv1: ConvLayer,
        conv2: ConvLayer,
        gather: Tensor,
    },
    Classical {
        conv: ConvLayer,
        fc: DenseLayer,
    },
}

struct ValueLayers {
    conv: ConvLayer,
    fc1: DenseLayer,
    fc2: DenseLayer,
    wdl: bool,
}

/// A loaded network, ready to evaluate batches on its device.
pub struct Network {
    description: String,
    device: Device,
    activation: Activation,
    input: ConvLayer,
    blocks: Vec<Block>,
    policy: PolicyLayers,
    value: ValueLayers,
    max_batch: usize,
    /// Reused host buffer for the batch input.
    input_buffer: Vec<f32>,
}

fn torch_error(error: tch::TchError) -> LoadError {
    LoadError::Torch(error.to_string())
}

fn to_device(values: &[f32], shape: &[i64], device: Device) -> Result<Tensor, LoadError> {
    Tensor::f_from_slice(values)
        .and_then(|t| t.f_view(shape))
        .and_then(|t| t.f_to_device(device))
        .map_err(torch_error)
}

impl ConvLayer {
    fn new(conv: &Conv, device: Device) -> Result<Self, LoadError> {
        let (o, i, k) = (conv.outputs as i64, conv.inputs as i64, conv.kernel as i64);
        Ok(ConvLayer {
            weight: to_device(&conv.weights, &[o, i, k, k], device)?,
            bias: to_device(&conv.bias, &[o], device)?,
            padding: k / 2,
        })
    }

    fn apply(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &self.weight,
            Some(&self.bias),
            [1, 1],
            [self.padding, self.padding],
            [1, 1],
            1,
        )
    }
}

impl DenseLayer {
    fn new(dense: &Dense, device: Device) -> Result<Self, LoadError> {
        let (o, i) = (dense.outputs as i64, dense.inputs as i64);
        Ok(DenseLayer {
            weight: to_device(&dense.weights, &[o, i], device)?,
            bias: to_device(&dense.bias, &[o], device)?,
        })
    }

    fn apply(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

impl Network {
    /// Loads an Lc0 `.pb.gz` file onto `device`. The libtorch CPU thread count is the caller's
    /// (`tch::set_num_threads`), as it is process-wide.
    pub fn load(path: &Path, device: Device) -> Result<Network, LoadError> {
        let weights = weights::load(path)?;
        let name = path
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .trim_end_matches(".gz")
                    .trim_end_matches(".pb")
                    .to_string()
            })
            .unwrap_or_default();
        Network::from_weights(&weights, &name, device)
    }

    /// Puts decoded weights on `device`; `name` heads the description.
    pub fn from_weights(
        weights: &NetWeights,
        name: &str,
        device: Device,
    ) -> Result<Network, LoadError> {
        let blocks = weights
            .residual
            .iter()
            .map(|block| {
                let se = match &block.se {
                    Some(se) => Some(SeLayer {
                        fc1: DenseLayer::new(&se.fc1, device)?,
                        fc2: DenseLayer::new(&se.fc2, device)?,
                        filters: block.conv2.outputs as i64,
                    }),
                    None => None,
                };
                Ok(Block {
                    conv1: ConvLayer::new(&block.conv1, device)?,
                    conv2: ConvLayer::new(&block.conv2, device)?,
                    se,
                })
            })
            .collect::<Result<Vec<_>, LoadError>>()?;
        let policy = match &weights.policy {
            PolicyHead::Convolution { conv1, conv2 } => PolicyLayers::Convolution {
                conv1: ConvLayer::new(conv1, device)?,
                conv2: ConvLayer::new(conv2, device)?,
                gather: Tensor::f_from_slice(&conv_policy_gather())
                    .and_then(|t| t.f_to_device(device))
                    .map_err(torch_error)?,
            },
            PolicyHead::Classical { conv, fc } => PolicyLayers::Classical {
                conv: ConvLayer::new(conv, device)?,
                fc: DenseLayer::new(fc, device)?,
            },
        };
        let value = ValueLayers {
            conv: ConvLayer::new(&weights.value.conv, device)?,
            fc1: DenseLayer::new(&weights.value.fc1, device)?,
            fc2: DenseLayer::new(&weights.value.fc2, device)?,
            wdl: weights.value.is_wdl(),
        };
        let description = if name.is_empty() {
            weights.describe()
        } else {
            format!("{name}: {}", weights.describe())
        };
        tracing::info!(network = %description, ?device, "network loaded");
        Ok(Network {
            description,
            device,
            activation: weights.activation,
            input: ConvLayer::new(&weights.input, device)?,
            blocks,
            policy,
            value,
            max_batch: DEFAULT_MAX_BATCH,
            input_buffer: Vec::new(),
        })
    }

    /// The device the network lives on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Sets the largest batch reported by `Backend::max_batch`.
    pub fn set_max_batch(&mut self, max_batch: usize) {
        self.max_batch = max_batch.max(1);
    }

    /// Name and shape, e.g. "maia-1900: 6x64 SE, conv policy, WDL".
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// Applies the activation in place.
    fn activate(&self, mut x: Tensor) -> Tensor {
        let _ = match self.activation {
            Activation::Relu => x.relu_(),
            Activation::Mish => x.mish_(),
        };
        x
    }

    /// The bare forward pass: `input` `[B, 112, 8, 8]` f32 on the network's device →
    /// (policy logits `[B, 1858]` in policy-index order, win/draw/loss probabilities `[B, 3]`
    /// from the side to move's view; classical value heads give ((1+v)/2, 0, (1−v)/2)).
    pub fn forward(&self, input: &Tensor) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let mut x = self.activate(self.input.apply(input));
            for block in &self.blocks {
                x = self.residual(block, &x);
            }
            (self.policy_head(&x), self.value_head(&x))
        })
    }

    fn residual(&self, block: &Block, x: &Tensor) -> Tensor {
        let y = self.activate(block.conv1.apply(x));
        let mut z = block.conv2.apply(&y);
        if let Some(se) = &block.se {
            let pooled = z.mean_dim([2i64, 3].as_slice(), false, Kind::Float);
            let hidden = self.activate(se.fc1.apply(&pooled));
            let both = se.fc2.apply(&hidden);
            let gamma = both
                .narrow(1, 0, se.filters)
                .sigmoid()
                .view([-1, se.filters, 1, 1]);
            let beta = both
                .narrow(1, se.filters, se.filters)
                .view([-1, se.filters, 1, 1]);
            let _ = z.g_mul_(&gamma);
            let _ = z.g_add_(&beta);
        }
        let _ = z.g_add_(x);
        self.activate(z)
    }

    fn policy_head(&self, x: &Tensor) -> Tensor {
        match &self.policy {
            PolicyLayers::Convolution {
                conv1,
                conv2,
                gather,
            } => {
                let p = conv2.apply(&self.activate(conv1.apply(x)));
                p.flatten(1, -1).index_select(1, gather)
            }
            PolicyLayers::Classical { conv, fc } => {
                fc.apply(&self.activate(conv.apply(x)).flatten(1, -1))
            }
        }
    }

    fn value_head(&self, x: &Tensor) -> Tensor {
        let v = self.activate(self.value.conv.apply(x)).flatten(1, -1);
        let v = self
            .value
            .fc2
            .apply(&self.activate(self.value.fc1.apply(&v)));
        if self.value.wdl {
            v.softmax(1, Kind::Float)
        } else {
            let v = v.tanh();
            let win = (&v + 1.0) * 0.5;
            let loss = (1.0 - &v) * 0.5;
            Tensor::cat(&[win, v.zeros_like(), loss], 1)
        }
    }

    /// Builds the `[B, 112, 8, 8]` input tensor of `batch` on the network's device.
    pub fn input_tensor<'a>(
        &mut self,
        batch: impl ExactSizeIterator<Item = &'a InputPlanes>,
    ) -> Tensor {
        let size = batch.len();
        self.input_buffer.resize(size * INPUT_FLOATS, 0.0);
        for (planes, chunk) in batch.zip(self.input_buffer.chunks_exact_mut(INPUT_FLOATS)) {
            planes.write_f32(chunk);
        }
        Tensor::from_slice(&self.input_buffer)
            .view([size as i64, INPUT_PLANES as i64, 8, 8])
            .to_device(self.device)
    }
}

/// Copies a float tensor to a host vector.
fn to_host(t: &Tensor) -> Vec<f32> {
    let t = t.to_device(Device::Cpu).contiguous();
    let mut out = vec![0f32; t.numel()];
    let len = out.len();
    t.copy_data(&mut out, len);
    out
}

impl Backend for Network {
    fn evaluate(&mut self, batch: &[EvalInput<'_>], out: &mut Vec<RawEval>) {
        out.clear();
        if batch.is_empty() {
            return;
        }
        let input = self.input_tensor(batch.iter().map(|e| e.planes));
        let (policy, wdl) = self.forward(&input);
        let (policy, wdl) = (to_host(&policy), to_host(&wdl));
        out.extend(batch.iter().enumerate().map(|(b, e)| {
            let logits = &policy[b * POLICY_SIZE..(b + 1) * POLICY_SIZE];
            RawEval {
                wdl: [wdl[3 * b], wdl[3 * b + 1], wdl[3 * b + 2]],
                logits: e.moves.iter().map(|&m| logits[m as usize]).collect(),
            }
        }));
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::PositionHistory;
    use crate::policy::{conv_policy_map, for_each_legal_move, move_index, parse_uci_move};
    use crate::weights::{Architecture, Encoding, variety};
    use cozy_chess::Board;

    fn act(x: f32, activation: Activation) -> f32 {
        match activation {
            Activation::Relu => x.max(0.0),
            Activation::Mish => x * (x.exp().ln_1p()).tanh(),
        }
    }

    /// Naive convolution over `[C][64]` planes.
    fn conv_ref(x: &[f32], c: &Conv) -> Vec<f32> {
        let pad = (c.kernel / 2) as i32;
        let mut out = vec![0.0; c.outputs * 64];
        for o in 0..c.outputs {
            for sq in 0..64i32 {
                let (rank, file) = (sq / 8, sq % 8);
                let mut sum = c.bias[o];
                for i in 0..c.inputs {
                    for ky in 0..c.kernel as i32 {
                        for kx in 0..c.kernel as i32 {
                            let (r, f) = (rank + ky - pad, file + kx - pad);
                            if (0..8).contains(&r) && (0..8).contains(&f) {
                                let w = c.weights[((o * c.inputs + i) * c.kernel + ky as usize)
                                    * c.kernel
                                    + kx as usize];
                                sum += w * x[i * 64 + (r * 8 + f) as usize];
                            }
                        }
                    }
                }
                out[o * 64 + sq as usize] = sum;
            }
        }
        out
    }

    fn dense_ref(x: &[f32], d: &Dense) -> Vec<f32> {
        (0..d.outputs)
            .map(|o| {
                d.bias[o]
                    + (0..d.inputs)
                        .map(|i| d.weights[o * d.inputs + i] * x[i])
                        .sum::<f32>()
            })
            .collect()
    }

    /// Lc0's forward pass written out plainly (notes (iii)), for one position.
    fn forward_ref(w: &NetWeights, input: &[f32]) -> (Vec<f32>, [f32; 3]) {
        let a = |v: Vec<f32>| {
            v.into_iter()
                .map(|x| act(x, w.activation))
                .collect::<Vec<_>>()
        };
        let f = w.filters();
        let mut x = a(conv_ref(input, &w.input));
        for block in &w.residual {
            let mut z = conv_ref(&a(conv_ref(&x, &block.conv1)), &block.conv2);
            if let Some(se) = &block.se {
                let pooled: Vec<f32> = z.chunks(64).map(|c| c.iter().sum::<f32>() / 64.0).collect();
                let u = dense_ref(&a(dense_ref(&pooled, &se.fc1)), &se.fc2);
                for c in 0..f {
                    let gamma = 1.0 / (1.0 + (-u[c]).exp());
                    z[c * 64..][..64]
                        .iter_mut()
                        .for_each(|v| *v = gamma * *v + u[f + c]);
                }
            }
            x = a(z.iter().zip(&x).map(|(z, x)| z + x).collect());
        }
        let policy = match &w.policy {
            PolicyHead::Convolution { conv1, conv2 } => {
                let raw = conv_ref(&a(conv_ref(&x, conv1)), conv2);
                let mut policy = vec![0.0; POLICY_SIZE];
                for (position, &index) in conv_policy_map().iter().enumerate() {
                    if index >= 0 {
                        policy[index as usize] = raw[position];
                    }
                }
                policy
            }
            PolicyHead::Classical { conv, fc } => dense_ref(&a(conv_ref(&x, conv)), fc),
        };
        let v = dense_ref(
            &a(dense_ref(&a(conv_ref(&x, &w.value.conv)), &w.value.fc1)),
            &w.value.fc2,
        );
        let wdl = if v.len() == 3 {
            let e: Vec<f32> = v.iter().map(|x| x.exp()).collect();
            let s: f32 = e.iter().sum();
            [e[0] / s, e[1] / s, e[2] / s]
        } else {
            let t = v[0].tanh();
            [(1.0 + t) / 2.0, 0.0, (1.0 - t) / 2.0]
        };
        (policy, wdl)
    }

    fn sample_positions() -> Vec<InputPlanes> {
        let lines = ["", "e2e4 e7e5 g1f3", "d2d4 g8f6 c2c4 e7e6 b1c3 f8b4"];
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

    /// The largest differences (policy logits, W/D/L) between `network`'s forward pass and the
    /// plain one over `weights`, on the sample positions.
    fn worst_differences(network: &mut Network, weights: &NetWeights) -> (f32, f32) {
        let positions = sample_positions();
        let input = network.input_tensor(positions.iter());
        let (policy, values) = network.forward(&input);
        assert_eq!(policy.size(), [3, POLICY_SIZE as i64]);
        assert_eq!(values.size(), [3, 3]);
        let (policy, values) = (to_host(&policy), to_host(&values));
        let (mut worst_policy, mut worst_wdl) = (0.0f32, 0.0f32);
        for (b, planes) in positions.iter().enumerate() {
            let mut floats = vec![0.0; INPUT_FLOATS];
            planes.write_f32(&mut floats);
            let (expected_policy, expected_wdl) = forward_ref(weights, &floats);
            let got = &policy[b * POLICY_SIZE..][..POLICY_SIZE];
            for (a, e) in got.iter().zip(&expected_policy) {
                worst_policy = worst_policy.max((a - e).abs());
            }
            for k in 0..3 {
                worst_wdl = worst_wdl.max((values[3 * b + k] - expected_wdl[k]).abs());
            }
        }
        (worst_policy, worst_wdl)
    }

    #[test]
    fn every_architecture_matches_the_plain_forward_pass() {
        for (seed, arch) in variety().iter().enumerate() {
            let weights = NetWeights::random(arch, seed as u64);
            let mut network = Network::from_weights(&weights, "random", Device::Cpu).unwrap();
            let (policy, wdl) = worst_differences(&mut network, &weights);
            assert!(policy < 1e-3, "{arch:?}: policy differs by {policy}");
            assert!(wdl < 1e-4, "{arch:?}: wdl differs by {wdl}");
        }
    }

    /// A network written to a file and loaded again computes what its weights compute, within
    /// the encoding's rounding.
    #[test]
    fn written_nets_evaluate_like_their_weights() {
        let dir = std::env::temp_dir().join(format!("banyan-network-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (seed, arch) in variety().iter().enumerate() {
            for (encoding, max_policy, max_wdl) in [
                (Encoding::Float16, 5e-3, 2e-3),
                (Encoding::Linear16, 1e-3, 1e-4),
            ] {
                let weights = NetWeights::random(arch, seed as u64);
                let path = dir.join(format!("net-{seed}-{encoding:?}.pb.gz"));
                weights::save(&weights, &path, encoding).unwrap();
                let mut network = Network::load(&path, Device::Cpu).unwrap();
                assert!(
                    network
                        .describe()
                        .starts_with(&format!("net-{seed}-{encoding:?}: "))
                );
                let (policy, wdl) = worst_differences(&mut network, &weights);
                assert!(
                    policy < max_policy,
                    "{arch:?} {encoding:?}: policy differs by {policy}"
                );
                assert!(wdl < max_wdl, "{arch:?} {encoding:?}: wdl differs by {wdl}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn batches_agree_with_single_evaluations() {
        let path =
            std::env::temp_dir().join(format!("banyan-batch-test-{}.pb.gz", std::process::id()));
        let weights = NetWeights::random(&Architecture::new(2, 16), 3);
        weights::save(&weights, &path, Encoding::Float16).unwrap();
        let mut network = Network::load(&path, Device::Cpu).unwrap();
        std::fs::remove_file(&path).unwrap();
        let name = path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .replace(".pb", "");
        assert_eq!(
            network.describe(),
            format!("{name}: 2x16 SE, conv policy, WDL")
        );
        let positions = sample_positions();
        let boards = [Board::default()];
        let mut moves = Vec::new();
        for_each_legal_move(&boards[0], |mv| {
            moves.push(move_index(mv, cozy_chess::Color::White))
        });
        let batch: Vec<EvalInput> = positions
            .iter()
            .map(|planes| EvalInput {
                planes,
                moves: &moves,
            })
            .collect();
        let mut together = Vec::new();
        network.evaluate(&batch, &mut together);
        assert_eq!(together.len(), 3);
        for (input, joint) in batch.iter().zip(&together) {
            let mut single = Vec::new();
            network.evaluate(std::slice::from_ref(input), &mut single);
            assert_eq!(single[0].logits.len(), moves.len());
            for (a, b) in single[0].logits.iter().zip(&joint.logits) {
                assert!((a - b).abs() < 1e-4);
            }
            for (a, b) in single[0].wdl.iter().zip(&joint.wdl) {
                assert!((a - b).abs() < 1e-5);
            }
            assert!((joint.wdl.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        network.evaluate(&[], &mut together);
        assert!(together.is_empty());
    }
}

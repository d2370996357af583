//! An Lc0 residual network (with or without SE; convolutional or classical policy head; WDL or
//! classical value head; ReLU or Mish) on libtorch — the one definition of the architecture,
//! used both by the evaluator and by the trainer.
//!
//! Every weight is a variable of the network's [`VarStore`] (batch-norm folded into the
//! convolutions' biases, as the loader gives them): [`Network::from_weights`] fills them from
//! [`NetWeights`], [`Network::logits`] is the differentiable forward pass the trainer
//! optimises, [`Network::forward`] the evaluator's inference pass over the same tensors, and
//! [`Network::to_weights`] reads them back for the Lc0 writer.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::backend::{Backend, EvalInput, RawEval};
use crate::encode::{INPUT_PLANES, InputPlanes};
use crate::hostnet::{HostNet, Workspace};
use crate::policy::{POLICY_SIZE, conv_policy_gather};
use crate::weights::{
    self, Activation, Conv, Dense, LoadError, NetWeights, PolicyHead, ResidualBlock, SqueezeExcite,
    ValueHead,
};

/// Largest batch the network asks for by default.
pub const DEFAULT_MAX_BATCH: usize = 512;

/// The smallest batch a loaded network evaluates in reduced precision: below it, libtorch's
/// per-operation overhead outweighs bfloat16's faster arithmetic (measured on AMX-BF16:
/// about 750 against 450 positions/s at batch 1, level at 2, bf16 ahead from 4).
const REDUCED_MIN_BATCH: i64 = 3;

/// The largest batch a loaded CPU network computing in bfloat16 evaluates on the host pass
/// ([`HostNet`], fp32) instead of libtorch; in fp32 the host pass takes every batch, as it is
/// the faster of the two at every batch size (maia-1900 through the evaluator process, two
/// lanes, on a 2-core AVX-512 VM without AMX: 3,830 / 4,320 / 4,860 / 4,510 positions/s at
/// batch 1 / 8 / 32 / 256 against libtorch fp32's 2,900 / 2,510 / 3,230 / 2,880).
const HOST_MAX_BATCH: usize = 2;

/// Floats of one position's input (112 planes × 64 squares).
const INPUT_FLOATS: usize = INPUT_PLANES * 64;

/// The number format of the forward pass. Accumulation is in fp32 either way (oneDNN); the
/// trainer's variables stay fp32 whatever it computes in (mixed precision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// bfloat16 on a CPU with AMX-BF16 tiles, where it is about twice as fast, else fp32.
    #[default]
    Auto,
    /// fp32 throughout: what Lc0's parity figures are compared against.
    Fp32,
    /// bfloat16 weights and activations: about twice the speed on AMX-BF16 CPUs, priors
    /// within about 1% of fp32's.
    Bf16,
}

impl Precision {
    /// `Fp32` or `Bf16`: what this choice computes in on `device`.
    pub fn resolve(self, device: Device) -> Precision {
        match self {
            Precision::Auto if device == Device::Cpu && cpu_has_bf16() => Precision::Bf16,
            Precision::Auto => Precision::Fp32,
            exact => exact,
        }
    }

    /// The tensor kind this choice computes in on `device`.
    pub fn kind(self, device: Device) -> Kind {
        match self.resolve(device) {
            Precision::Bf16 => Kind::BFloat16,
            _ => Kind::Float,
        }
    }
}

/// Whether this CPU computes bfloat16 matrix products faster than fp32: only with AMX-BF16
/// tiles. AVX-512 BF16 alone is not enough: on an Emerald Rapids VM that exposes AVX-512 BF16
/// but not AMX, `evalbench` measured bf16 at 1,575 / 1,824 positions/s against fp32's 2,223 /
/// 2,616 through the process at batch 8 / 32 (without either, libtorch emulates bf16, slowly).
fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cpu_has_amx_bf16()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AMX-BF16 and its tiles (CPUID leaf 7, EDX bits 22 and 24), with the tile state enabled by
/// the OS (XCR0 bits 17 and 18). `is_x86_feature_detected!("amx-bf16")` is not stable yet.
#[cfg(target_arch = "x86_64")]
fn cpu_has_amx_bf16() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
    const AMX_BF16: u32 = 1 << 22;
    const AMX_TILE: u32 = 1 << 24;
    const XTILE_STATE: u64 = (1 << 17) | (1 << 18);
    // Every AMX CPU has AVX-512 BF16, and its detection checks that the OS enabled XGETBV.
    if !std::arch::is_x86_feature_detected!("avx512bf16") || __cpuid(0).eax < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    if edx & (AMX_BF16 | AMX_TILE) != AMX_BF16 | AMX_TILE {
        return false;
    }
    // SAFETY: XGETBV is enabled (AVX-512 was detected above); XCR0 is register 0.
    let xcr0 = unsafe { _xgetbv(0) };
    xcr0 & XTILE_STATE == XTILE_STATE
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Precision::Auto),
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision {s:?} (auto, fp32 or bf16)")),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Auto => "auto",
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// The same tensor with channels-last strides (`[N, C, H, W]` stored as N, H, W, C), the
/// layout oneDNN's fast CPU convolutions work in.
fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// A convolution (batch-norm folded), "same" padding; its tensors are store variables.
struct ConvLayer {
    weight: Tensor,
    bias: Tensor,
    padding: i64,
    /// Inference copies of weight and bias in a reduced precision, made once.
    reduced: Option<(Tensor, Tensor)>,
}

impl ConvLayer {
    /// The same layer, its tensors shared.
    fn share(&self) -> ConvLayer {
        ConvLayer {
            weight: self.weight.shallow_clone(),
            bias: self.bias.shallow_clone(),
            padding: self.padding,
            reduced: share_reduced(&self.reduced),
        }
    }
}

/// Reduced-precision copies, shared.
fn share_reduced(reduced: &Option<(Tensor, Tensor)>) -> Option<(Tensor, Tensor)> {
    reduced
        .as_ref()
        .map(|(w, b)| (w.shallow_clone(), b.shallow_clone()))
}

/// A dense layer; its tensors are store variables.
struct DenseLayer {
    weight: Tensor,
    bias: Tensor,
    /// Inference copies of weight and bias in a reduced precision, made once.
    reduced: Option<(Tensor, Tensor)>,
}

/// `weight` and `bias` in `kind`: the reduced copies when they are of that kind, else the
/// variables cast (no copy when they already are; differentiable for the trainer).
fn weights_in(
    weight: &Tensor,
    bias: &Tensor,
    reduced: &Option<(Tensor, Tensor)>,
    kind: Kind,
) -> (Tensor, Tensor) {
    match reduced {
        Some((w, b)) if w.kind() == kind => (w.shallow_clone(), b.shallow_clone()),
        _ => (weight.to_kind(kind), bias.to_kind(kind)),
    }
}

/// Inference copies of `weight` and `bias` in `kind` (a conv weight channels-last on the
/// CPU), or none when the variables already are of that kind.
fn reduced_copies(weight: &Tensor, bias: &Tensor, kind: Kind) -> Option<(Tensor, Tensor)> {
    if weight.kind() == kind {
        return None;
    }
    let mut w = weight.to_kind(kind);
    if w.dim() == 4 && w.device() == Device::Cpu {
        w = channels_last(&w);
    }
    Some((w, bias.to_kind(kind)))
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

impl DenseLayer {
    /// The same layer, its tensors shared.
    fn share(&self) -> DenseLayer {
        DenseLayer {
            weight: self.weight.shallow_clone(),
            bias: self.bias.shallow_clone(),
            reduced: share_reduced(&self.reduced),
        }
    }
}

impl Block {
    /// The same block, its tensors shared.
    fn share(&self) -> Block {
        Block {
            conv1: self.conv1.share(),
            conv2: self.conv2.share(),
            se: self.se.as_ref().map(|se| SeLayer {
                fc1: se.fc1.share(),
                fc2: se.fc2.share(),
                filters: se.filters,
            }),
        }
    }
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

/// A network on its device: trainable variables in a [`VarStore`], evaluable in batches.
pub struct Network {
    description: String,
    store: VarStore,
    activation: Activation,
    input: ConvLayer,
    blocks: Vec<Block>,
    policy: PolicyLayers,
    value: ValueLayers,
    max_batch: usize,
    /// What the passes compute in.
    kind: Kind,
    /// Reused host buffer for the batch input.
    input_buffer: Vec<f32>,
    /// The host pass for small batches: a loaded network on a CPU with AVX2 and FMA.
    host: Option<Arc<HostNet>>,
    /// The host pass's buffers (one per handle).
    workspace: Workspace,
}

fn torch_error(error: tch::TchError) -> LoadError {
    LoadError::Torch(error.to_string())
}

/// A store variable `name` under `path`, holding `values` in `shape`.
fn variable(
    path: &tch::nn::Path,
    name: &str,
    values: &[f32],
    shape: &[i64],
) -> Result<Tensor, LoadError> {
    Tensor::f_from_slice(values)
        .and_then(|t| t.f_view(shape))
        .and_then(|t| path.f_var_copy(name, &t))
        .map_err(torch_error)
}

impl ConvLayer {
    fn new(conv: &Conv, path: tch::nn::Path) -> Result<Self, LoadError> {
        let (o, i, k) = (conv.outputs as i64, conv.inputs as i64, conv.kernel as i64);
        Ok(ConvLayer {
            weight: variable(&path, "weight", &conv.weights, &[o, i, k, k])?,
            bias: variable(&path, "bias", &conv.bias, &[o])?,
            padding: k / 2,
            reduced: None,
        })
    }

    /// Convolves `x` in `x`'s kind.
    fn apply(&self, x: &Tensor) -> Tensor {
        let (weight, bias) = weights_in(&self.weight, &self.bias, &self.reduced, x.kind());
        x.conv2d(
            &weight,
            Some(&bias),
            [1, 1],
            [self.padding, self.padding],
            [1, 1],
            1,
        )
    }

    /// The layer's weights, read back to the host.
    fn to_conv(&self) -> Conv {
        let size = self.weight.size();
        Conv {
            outputs: size[0] as usize,
            inputs: size[1] as usize,
            kernel: size[2] as usize,
            weights: to_host(&self.weight),
            bias: to_host(&self.bias),
        }
    }
}

impl DenseLayer {
    fn new(dense: &Dense, path: tch::nn::Path) -> Result<Self, LoadError> {
        let (o, i) = (dense.outputs as i64, dense.inputs as i64);
        Ok(DenseLayer {
            weight: variable(&path, "weight", &dense.weights, &[o, i])?,
            bias: variable(&path, "bias", &dense.bias, &[o])?,
            reduced: None,
        })
    }

    /// Applies the layer in `x`'s kind.
    fn apply(&self, x: &Tensor) -> Tensor {
        let (weight, bias) = weights_in(&self.weight, &self.bias, &self.reduced, x.kind());
        x.linear(&weight, Some(&bias))
    }

    /// The layer's weights, read back to the host.
    fn to_dense(&self) -> Dense {
        let size = self.weight.size();
        Dense {
            outputs: size[0] as usize,
            inputs: size[1] as usize,
            weights: to_host(&self.weight),
            bias: to_host(&self.bias),
        }
    }
}

impl Network {
    /// Loads an Lc0 `.pb.gz` file onto `device`, for inference: its variables are frozen (the
    /// trainer builds its network with [`Network::from_weights`] instead). The libtorch CPU
    /// thread count is the caller's (`tch::set_num_threads`), as it is process-wide.
    pub fn load(path: &Path, device: Device) -> Result<Network, LoadError> {
        let weights = weights::load(path)?;
        Network::frozen(&weights, &file_name(path), device)
    }

    /// Loads the built-in network ([`crate::builtin::NETWORK`]) onto `device`, for inference.
    pub fn load_builtin(device: Device) -> Result<Network, LoadError> {
        let weights = weights::from_gzip_bytes(crate::builtin::NETWORK)?;
        Network::frozen(&weights, crate::builtin::NETWORK_NAME, device)
    }

    /// Decoded weights on `device` with their variables frozen, for inference.
    fn frozen(weights: &NetWeights, name: &str, device: Device) -> Result<Network, LoadError> {
        let mut network = Network::from_weights(weights, name, device)?;
        network.store.freeze();
        if device == Device::Cpu {
            network.host = HostNet::new(weights).map(Arc::new);
        }
        Ok(network)
    }

    /// Puts decoded weights on `device` as the trainable variables of a new store; `name`
    /// heads the description.
    pub fn from_weights(
        weights: &NetWeights,
        name: &str,
        device: Device,
    ) -> Result<Network, LoadError> {
        let store = VarStore::new(device);
        let root = store.root();
        let blocks = weights
            .residual
            .iter()
            .enumerate()
            .map(|(i, block)| {
                let path = &root / format!("block{i}");
                let se = match &block.se {
                    Some(se) => Some(SeLayer {
                        fc1: DenseLayer::new(&se.fc1, &path / "se1")?,
                        fc2: DenseLayer::new(&se.fc2, &path / "se2")?,
                        filters: block.conv2.outputs as i64,
                    }),
                    None => None,
                };
                Ok(Block {
                    conv1: ConvLayer::new(&block.conv1, &path / "conv1")?,
                    conv2: ConvLayer::new(&block.conv2, &path / "conv2")?,
                    se,
                })
            })
            .collect::<Result<Vec<_>, LoadError>>()?;
        let policy = match &weights.policy {
            PolicyHead::Convolution { conv1, conv2 } => PolicyLayers::Convolution {
                conv1: ConvLayer::new(conv1, &root / "policy1")?,
                conv2: ConvLayer::new(conv2, &root / "policy2")?,
                gather: Tensor::f_from_slice(&conv_policy_gather())
                    .and_then(|t| t.f_to_device(device))
                    .map_err(torch_error)?,
            },
            PolicyHead::Classical { conv, fc } => PolicyLayers::Classical {
                conv: ConvLayer::new(conv, &root / "policy")?,
                fc: DenseLayer::new(fc, &root / "policy_fc")?,
            },
        };
        let value = ValueLayers {
            conv: ConvLayer::new(&weights.value.conv, &root / "value")?,
            fc1: DenseLayer::new(&weights.value.fc1, &root / "value_fc1")?,
            fc2: DenseLayer::new(&weights.value.fc2, &root / "value_fc2")?,
            wdl: weights.value.is_wdl(),
        };
        let input = ConvLayer::new(&weights.input, &root / "input")?;
        let description = describe(weights, name);
        tracing::info!(network = %description, ?device, "network loaded");
        Ok(Network {
            description,
            store,
            activation: weights.activation,
            input,
            blocks,
            policy,
            value,
            max_batch: DEFAULT_MAX_BATCH,
            kind: Kind::Float,
            input_buffer: Vec::new(),
            host: None,
            workspace: Workspace::default(),
        })
    }

    /// The weights as they are now, read back to the host (for the Lc0 writer).
    pub fn to_weights(&self) -> NetWeights {
        let residual = self
            .blocks
            .iter()
            .map(|block| ResidualBlock {
                conv1: block.conv1.to_conv(),
                conv2: block.conv2.to_conv(),
                se: block.se.as_ref().map(|se| SqueezeExcite {
                    fc1: se.fc1.to_dense(),
                    fc2: se.fc2.to_dense(),
                }),
            })
            .collect();
        let policy = match &self.policy {
            PolicyLayers::Convolution { conv1, conv2, .. } => PolicyHead::Convolution {
                conv1: conv1.to_conv(),
                conv2: conv2.to_conv(),
            },
            PolicyLayers::Classical { conv, fc } => PolicyHead::Classical {
                conv: conv.to_conv(),
                fc: fc.to_dense(),
            },
        };
        NetWeights {
            activation: self.activation,
            input: self.input.to_conv(),
            residual,
            policy,
            value: ValueHead {
                conv: self.value.conv.to_conv(),
                fc1: self.value.fc1.to_dense(),
                fc2: self.value.fc2.to_dense(),
            },
        }
    }

    /// The store holding every weight (what an optimiser updates, what a checkpoint saves).
    pub fn var_store(&self) -> &VarStore {
        &self.store
    }

    /// The store, mutably (for loading a checkpoint into it).
    pub fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.store
    }

    /// Whether the value head gives win/draw/loss logits (else one tanh value).
    pub fn has_wdl_head(&self) -> bool {
        self.value.wdl
    }

    /// The device the network lives on.
    pub fn device(&self) -> Device {
        self.store.device()
    }

    /// Another handle on this network for a second evaluator lane: every tensor (variables
    /// and reduced copies) shared, not copied, with its own input buffer. Weights are only
    /// read during a forward pass, so handles may compute at the same time on other threads.
    pub fn share(&self) -> Network {
        let mut store = VarStore::new(self.device());
        store.variables_ = Arc::clone(&self.store.variables_);
        Network {
            description: self.description.clone(),
            store,
            activation: self.activation,
            input: self.input.share(),
            blocks: self.blocks.iter().map(Block::share).collect(),
            policy: match &self.policy {
                PolicyLayers::Convolution {
                    conv1,
                    conv2,
                    gather,
                } => PolicyLayers::Convolution {
                    conv1: conv1.share(),
                    conv2: conv2.share(),
                    gather: gather.shallow_clone(),
                },
                PolicyLayers::Classical { conv, fc } => PolicyLayers::Classical {
                    conv: conv.share(),
                    fc: fc.share(),
                },
            },
            value: ValueLayers {
                conv: self.value.conv.share(),
                fc1: self.value.fc1.share(),
                fc2: self.value.fc2.share(),
                wdl: self.value.wdl,
            },
            max_batch: self.max_batch,
            kind: self.kind,
            input_buffer: Vec::new(),
            host: self.host.clone(),
            workspace: Workspace::default(),
        }
    }

    /// Sets the largest batch reported by `Backend::max_batch`.
    pub fn set_max_batch(&mut self, max_batch: usize) {
        self.max_batch = max_batch.max(1);
    }

    /// Sets what the forward pass computes in (a new network computes in fp32); the
    /// variables stay fp32. A loaded (frozen) network gets reduced-precision copies of its
    /// weights once, and on the CPU its conv weights move to the channels-last layout; a
    /// trainable one casts its variables in each pass (mixed precision).
    pub fn set_precision(&mut self, precision: Precision) {
        self.kind = precision.kind(self.device());
        if self.is_trainable() {
            return;
        }
        let _guard = tch::no_grad_guard();
        if self.device() == Device::Cpu {
            for (_, mut variable) in self.store.variables() {
                if variable.dim() == 4 {
                    variable.set_data(&channels_last(&variable));
                }
            }
        }
        let kind = self.kind;
        self.for_each_layer(
            |conv| conv.reduced = reduced_copies(&conv.weight, &conv.bias, kind),
            |dense| dense.reduced = reduced_copies(&dense.weight, &dense.bias, kind),
        );
    }

    /// Whether the variables take gradients (a network for the trainer); a loaded network's
    /// are frozen.
    fn is_trainable(&self) -> bool {
        self.input.weight.requires_grad()
    }

    /// Calls `conv` on every convolution and `dense` on every dense layer.
    fn for_each_layer(
        &mut self,
        mut conv: impl FnMut(&mut ConvLayer),
        mut dense: impl FnMut(&mut DenseLayer),
    ) {
        conv(&mut self.input);
        for block in &mut self.blocks {
            conv(&mut block.conv1);
            conv(&mut block.conv2);
            if let Some(se) = &mut block.se {
                dense(&mut se.fc1);
                dense(&mut se.fc2);
            }
        }
        match &mut self.policy {
            PolicyLayers::Convolution { conv1, conv2, .. } => {
                conv(conv1);
                conv(conv2);
            }
            PolicyLayers::Classical { conv: c, fc } => {
                conv(c);
                dense(fc);
            }
        }
        conv(&mut self.value.conv);
        dense(&mut self.value.fc1);
        dense(&mut self.value.fc2);
    }

    /// Name and shape, e.g. "maia-1900: 6x64 SE, conv policy, WDL", with " (bf16)" when it
    /// computes in bfloat16.
    pub fn describe(&self) -> String {
        if self.kind == Kind::BFloat16 {
            format!("{} (bf16)", self.description)
        } else {
            self.description.clone()
        }
    }

    /// Applies the activation, in place when `in_place` (inference only: autograd needs the
    /// inputs of its operations intact).
    fn activate(&self, mut x: Tensor, in_place: bool) -> Tensor {
        match (self.activation, in_place) {
            (Activation::Relu, true) => {
                let _ = x.relu_();
                x
            }
            (Activation::Mish, true) => {
                let _ = x.mish_();
                x
            }
            (Activation::Relu, false) => x.relu(),
            (Activation::Mish, false) => x.mish(),
        }
    }

    /// The differentiable forward pass (what the trainer optimises): `input` `[B, 112, 8, 8]`
    /// f32 on the network's device → (policy logits `[B, 1858]` in policy-index order, value
    /// head outputs: win/draw/loss logits `[B, 3]` from the side to move's view, or `[B, 1]`
    /// before the tanh of a classical head).
    pub fn logits(&self, input: &Tensor) -> (Tensor, Tensor) {
        self.run(input, self.kind, false)
    }

    /// The evaluator's forward pass, without gradients: `input` `[B, 112, 8, 8]` f32 on the
    /// network's device → (policy logits `[B, 1858]` in policy-index order, win/draw/loss
    /// probabilities `[B, 3]` from the side to move's view; classical value heads give
    /// ((1+v)/2, 0, (1−v)/2)).
    pub fn forward(&self, input: &Tensor) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            // Too small a batch for reduced precision to pay runs in fp32.
            let kind = if input.size()[0] < REDUCED_MIN_BATCH {
                Kind::Float
            } else {
                self.kind
            };
            let (policy, value) = self.run(input, kind, true);
            (policy, self.value_probabilities(&value))
        })
    }

    /// Win/draw/loss probabilities from the value head's outputs.
    pub fn value_probabilities(&self, value: &Tensor) -> Tensor {
        if self.value.wdl {
            value.softmax(1, Kind::Float)
        } else {
            let v = value.tanh();
            let win = (&v + 1.0) * 0.5;
            let loss = (1.0 - &v) * 0.5;
            Tensor::cat(&[win, v.zeros_like(), loss], 1)
        }
    }

    /// The pass in `kind` (on the CPU in the channels-last layout); the outputs are fp32.
    fn run(&self, input: &Tensor, kind: Kind, in_place: bool) -> (Tensor, Tensor) {
        let mut input = input.to_kind(kind);
        if self.device() == Device::Cpu {
            input = channels_last(&input);
        }
        let mut x = self.activate(self.input.apply(&input), in_place);
        for block in &self.blocks {
            x = self.residual(block, &x, in_place);
        }
        (
            self.policy_head(&x, in_place).to_kind(Kind::Float),
            self.value_head(&x, in_place).to_kind(Kind::Float),
        )
    }

    fn residual(&self, block: &Block, x: &Tensor, in_place: bool) -> Tensor {
        let y = self.activate(block.conv1.apply(x), in_place);
        let mut z = block.conv2.apply(&y);
        if let Some(se) = &block.se {
            let pooled = z.mean_dim([2i64, 3].as_slice(), false, z.kind());
            let hidden = self.activate(se.fc1.apply(&pooled), in_place);
            let both = se.fc2.apply(&hidden);
            let gamma = both
                .narrow(1, 0, se.filters)
                .sigmoid()
                .view([-1, se.filters, 1, 1]);
            let beta = both
                .narrow(1, se.filters, se.filters)
                .view([-1, se.filters, 1, 1]);
            if in_place {
                let _ = z.g_mul_(&gamma);
                let _ = z.g_add_(&beta);
            } else {
                z = z * gamma + beta;
            }
        }
        // In place either way: addition's backward needs neither operand.
        z += x;
        self.activate(z, in_place)
    }

    fn policy_head(&self, x: &Tensor, in_place: bool) -> Tensor {
        match &self.policy {
            PolicyLayers::Convolution {
                conv1,
                conv2,
                gather,
            } => {
                let p = conv2.apply(&self.activate(conv1.apply(x), in_place));
                p.flatten(1, -1).index_select(1, gather)
            }
            PolicyLayers::Classical { conv, fc } => {
                fc.apply(&self.activate(conv.apply(x), in_place).flatten(1, -1))
            }
        }
    }

    fn value_head(&self, x: &Tensor, in_place: bool) -> Tensor {
        let v = self
            .activate(self.value.conv.apply(x), in_place)
            .flatten(1, -1);
        self.value
            .fc2
            .apply(&self.activate(self.value.fc1.apply(&v), in_place))
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
            .to_device(self.device())
    }
}

/// The name of a network file: its file name without `.pb.gz`.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_end_matches(".gz")
                .trim_end_matches(".pb")
                .to_string()
        })
        .unwrap_or_default()
}

/// How a network is described: `name: shape` (the shape alone without a name).
pub fn describe(weights: &NetWeights, name: &str) -> String {
    if name.is_empty() {
        weights.describe()
    } else {
        format!("{name}: {}", weights.describe())
    }
}

/// Copies a float tensor to a host vector.
pub fn to_host(t: &Tensor) -> Vec<f32> {
    let t = t.detach().to_device(Device::Cpu).contiguous();
    let mut out = vec![0f32; t.numel()];
    let len = out.len();
    t.copy_data(&mut out, len);
    out
}

impl Backend for Network {
    fn evaluate(&mut self, batch: &[EvalInput<'_>], out: &mut Vec<RawEval>) -> Result<(), String> {
        out.clear();
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(host) = self
            .host
            .as_ref()
            .filter(|_| batch.len() <= HOST_MAX_BATCH || self.kind == Kind::Float)
        {
            host.evaluate(batch, &mut self.workspace, out);
            return Ok(());
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
        Ok(())
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn describe(&self) -> String {
        Network::describe(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::PositionHistory;
    use crate::hostnet::HOST_CHUNK;
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

    /// The host pass computes what the plain pass does, batch by batch, on every test
    /// architecture (skipped on a CPU without AVX2 and FMA, where it is never used).
    #[test]
    fn host_pass_matches_the_plain_forward_pass() {
        let every_index: Vec<u16> = (0..POLICY_SIZE as u16).collect();
        let mut work = Workspace::default();
        for (seed, arch) in variety().iter().enumerate() {
            let weights = NetWeights::random(arch, seed as u64);
            let Some(host) = HostNet::new(&weights) else {
                crate::skip_test(
                    "host_pass_matches_the_plain_forward_pass",
                    "this CPU lacks AVX2+FMA, so the host pass is not used",
                );
                return;
            };
            // All positions in one call, a whole chunk and a few more: the batched
            // convolutions keep each board apart.
            let positions: Vec<InputPlanes> = sample_positions()
                .into_iter()
                .cycle()
                .take(HOST_CHUNK + 3)
                .collect();
            let batch: Vec<EvalInput<'_>> = positions
                .iter()
                .map(|planes| EvalInput {
                    planes,
                    moves: &every_index,
                })
                .collect();
            let mut answers = Vec::new();
            host.evaluate(&batch, &mut work, &mut answers);
            assert_eq!(answers.len(), positions.len());
            for (planes, got) in positions.iter().zip(&answers) {
                let mut floats = vec![0.0; INPUT_FLOATS];
                planes.write_f32(&mut floats);
                let (policy, wdl) = forward_ref(&weights, &floats);
                let worst_policy = got
                    .logits
                    .iter()
                    .zip(&policy)
                    .map(|(a, e)| (a - e).abs())
                    .fold(0.0, f32::max);
                let worst_wdl = (0..3)
                    .map(|k| (got.wdl[k] - wdl[k]).abs())
                    .fold(0.0, f32::max);
                assert!(
                    worst_policy < 1e-3,
                    "{arch:?}: policy differs by {worst_policy}"
                );
                assert!(worst_wdl < 1e-4, "{arch:?}: wdl differs by {worst_wdl}");
            }
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

    /// The trainer's differentiable pass computes what the evaluator's does, and the weights
    /// read back are the weights put in.
    #[test]
    fn training_pass_and_read_back_match_the_weights() {
        for (seed, arch) in variety().iter().enumerate() {
            let weights = NetWeights::random(arch, seed as u64);
            let mut network = Network::from_weights(&weights, "", Device::Cpu).unwrap();
            assert_eq!(network.to_weights(), weights);
            let positions = sample_positions();
            let input = network.input_tensor(positions.iter());
            let (policy, wdl) = network.forward(&input);
            let (logits, value) = network.logits(&input);
            assert!(logits.requires_grad());
            let probabilities = network.value_probabilities(&value);
            let policy_gap = (policy - logits).abs().max().double_value(&[]);
            let wdl_gap = (wdl - probabilities).abs().max().double_value(&[]);
            assert!(policy_gap < 1e-5 && wdl_gap < 1e-6, "{arch:?}");
        }
    }

    /// Calls `check` with each architecture of [`variety`] and the path of random weights of
    /// it saved in LINEAR16, in a directory of `test`'s own, removed afterwards.
    fn for_each_saved_net(test: &str, mut check: impl FnMut(&Architecture, &Path)) {
        let dir = std::env::temp_dir().join(format!("banyan-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (seed, arch) in variety().iter().enumerate() {
            let weights = NetWeights::random(arch, seed as u64);
            let path = dir.join(format!("net-{seed}.pb.gz"));
            weights::save(&weights, &path, Encoding::Linear16).unwrap();
            check(arch, &path);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A shared handle computes exactly what the network does, on the same weight storage,
    /// also while both compute at once on two threads.
    #[test]
    fn shared_handles_compute_the_same_on_the_same_weights() {
        for_each_saved_net("share-test", |arch, path| {
            for precision in [Precision::Fp32, Precision::Bf16] {
                let mut network = Network::load(path, Device::Cpu).unwrap();
                network.set_precision(precision);
                let shared = network.share();
                assert_eq!(shared.describe(), network.describe());
                assert_eq!(
                    shared.input.weight.data_ptr(),
                    network.input.weight.data_ptr()
                );
                let positions = sample_positions();
                let input = network.input_tensor(positions.iter());
                let (policy, wdl) = network.forward(&input);
                let other = std::thread::scope(|scope| {
                    let theirs = input.shallow_clone();
                    let handle = scope.spawn(move || shared.forward(&theirs));
                    let _ = network.forward(&input);
                    handle.join().unwrap()
                });
                assert!(policy.equal(&other.0) && wdl.equal(&other.1), "{arch:?}");
            }
        });
    }

    /// Loaded networks computing in bfloat16 stay close to the plain fp32 pass: priors within
    /// 0.01 of each other, W/D/L within 0.01.
    #[test]
    fn bf16_inference_stays_close_to_fp32() {
        for_each_saved_net("bf16-test", |arch, path| {
            let mut fp32 = Network::load(path, Device::Cpu).unwrap();
            let mut bf16 = Network::load(path, Device::Cpu).unwrap();
            bf16.set_precision(Precision::Bf16);
            assert!(bf16.describe().ends_with(" (bf16)"), "{}", bf16.describe());
            let positions = sample_positions();
            let input = fp32.input_tensor(positions.iter());
            let (policy, wdl) = fp32.forward(&input);
            let (policy_bf16, wdl_bf16) = bf16.forward(&input);
            assert_eq!(policy_bf16.kind(), Kind::Float);
            let priors = |p: Tensor| p.softmax(1, Kind::Float);
            let prior_gap = (priors(policy) - priors(policy_bf16))
                .abs()
                .max()
                .double_value(&[]);
            let wdl_gap = (wdl - wdl_bf16).abs().max().double_value(&[]);
            assert!(prior_gap < 0.01, "{arch:?}: priors differ by {prior_gap}");
            assert!(wdl_gap < 0.01, "{arch:?}: W/D/L differs by {wdl_gap}");
            // The variables stay fp32: the read-back weights are the loaded ones.
            assert!(bf16.to_weights() == fp32.to_weights(), "{arch:?}");
            // A single position is evaluated in fp32 (too small a batch for bf16 to pay).
            let one = fp32.input_tensor(positions[..1].iter());
            let single_gap = (fp32.forward(&one).0 - bf16.forward(&one).0)
                .abs()
                .max()
                .double_value(&[]);
            assert!(
                single_gap < 1e-4,
                "{arch:?}: batch 1 differs by {single_gap}"
            );
        });
    }

    /// Training in bfloat16 (mixed precision): the pass computes in bfloat16, the gradients
    /// reach the fp32 variables, which stay fp32.
    #[test]
    fn bf16_training_keeps_fp32_variables() {
        let weights = NetWeights::random(&Architecture::new(2, 16), 5);
        let mut network = Network::from_weights(&weights, "", Device::Cpu).unwrap();
        network.set_precision(Precision::Bf16);
        let positions = sample_positions();
        let input = network.input_tensor(positions.iter());
        let (logits, value) = network.logits(&input);
        assert_eq!(logits.kind(), Kind::Float);
        (logits.sum(Kind::Float) + value.sum(Kind::Float)).backward();
        for (name, variable) in network.var_store().variables() {
            assert_eq!(variable.kind(), Kind::Float, "{name}");
            assert!(variable.grad().defined(), "{name} has no gradient");
        }
    }

    #[test]
    fn precision_names_round_trip() {
        for p in [Precision::Auto, Precision::Fp32, Precision::Bf16] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert_eq!("BF16".parse::<Precision>(), Ok(Precision::Bf16));
        assert!("fp8".parse::<Precision>().unwrap_err().contains("fp8"));
        assert_eq!(Precision::Fp32.kind(Device::Cpu), Kind::Float);
        assert_eq!(Precision::Auto.kind(Device::Cuda(0)), Kind::Float);
        assert_ne!(Precision::Auto.resolve(Device::Cpu), Precision::Auto);
    }

    /// `auto` picks bf16 exactly where Linux reports usable AMX-BF16 tiles (the kernel lists
    /// `amx_bf16` and `amx_tile` only when it has enabled their state).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn auto_precision_follows_amx() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap();
        let has = |f: &str| flags.split_whitespace().any(|w| w == f);
        let amx = has("amx_bf16") && has("amx_tile");
        assert_eq!(cpu_has_bf16(), amx, "flags: {flags}");
        let expected = if amx {
            Precision::Bf16
        } else {
            Precision::Fp32
        };
        assert_eq!(Precision::Auto.resolve(Device::Cpu), expected);
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
        network.evaluate(&batch, &mut together).unwrap();
        assert_eq!(together.len(), 3);
        for (input, joint) in batch.iter().zip(&together) {
            let mut single = Vec::new();
            network
                .evaluate(std::slice::from_ref(input), &mut single)
                .unwrap();
            assert_eq!(single[0].logits.len(), moves.len());
            for (a, b) in single[0].logits.iter().zip(&joint.logits) {
                assert!((a - b).abs() < 1e-4);
            }
            for (a, b) in single[0].wdl.iter().zip(&joint.wdl) {
                assert!((a - b).abs() < 1e-5);
            }
            assert!((joint.wdl.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        network.evaluate(&[], &mut together).unwrap();
        assert!(together.is_empty());
    }
}

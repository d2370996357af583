//! The network's inference pass written out on the host, for small batches on the CPU.
//!
//! At batch 1 libtorch spends most of a pass dispatching ~110 operators and running direct
//! convolutions; Lc0's BLAS backend is faster there. This pass evaluates one position at a
//! time with Winograd convolutions ([`winograd`], their multiply written with intrinsics in
//! [`simd`]) and plain loops for the rest; the whole pass is compiled for AVX2+FMA and for
//! AVX-512, the copy picked at run time. It computes the function of
//! [`crate::network::Network::forward`] in fp32 (tested against the plain reference pass on
//! every test architecture) and is used only where it is the faster of the two. Its weights
//! (the 3×3 ones in the Winograd domain, 16/9 of their size) are one copy shared by the lanes.

mod simd;
mod winograd;

use crate::backend::RawEval;
use crate::encode::{INPUT_PLANES, InputPlanes};
use crate::policy::conv_policy_gather;
use crate::weights::{Activation, Conv, Dense, NetWeights, PolicyHead};

use simd::Kernel;
use winograd::{Conv3, Scratch, axpy};

/// A 1×1 convolution, weights `[in][out]` so that each input channel adds a row.
struct Conv1 {
    inputs: usize,
    outputs: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// A dense layer, weights `[in][out]` (inputs in this pass's order) so that each input adds a
/// row.
struct Fc {
    inputs: usize,
    outputs: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

struct Block {
    conv1: Conv3,
    conv2: Conv3,
    se: Option<(Fc, Fc)>,
}

enum Policy {
    /// Two 3×3 convs; `gather[i]` is policy index i's place in the `[square][80]` output.
    Convolution {
        conv1: Conv3,
        conv2: Conv3,
        gather: Vec<usize>,
    },
    /// 1×1 conv, then a dense layer over its output.
    Classical { conv: Conv1, fc: Fc },
}

/// A loaded network's weights, laid out for [`HostNet::evaluate`].
pub struct HostNet {
    activation: Activation,
    input: Conv3,
    blocks: Vec<Block>,
    policy: Policy,
    value_conv: Conv1,
    value_fc1: Fc,
    value_fc2: Fc,
    kernel: Kernel,
}

/// Buffers of one evaluator lane, reused between positions.
#[derive(Default)]
pub struct Workspace {
    planes: Vec<f32>,
    x: Vec<f32>,
    y: Vec<f32>,
    z: Vec<f32>,
    head: Vec<f32>,
    pooled: Vec<f32>,
    hidden: Vec<f32>,
    scratch: Scratch,
}

impl Conv1 {
    fn new(conv: &Conv) -> Conv1 {
        assert_eq!(conv.kernel, 1, "a 1x1 convolution");
        Conv1 {
            inputs: conv.inputs,
            outputs: conv.outputs,
            weights: transpose(&conv.weights, conv.outputs, conv.inputs),
            bias: conv.bias.clone(),
        }
    }

    #[inline(always)]
    fn apply(&self, input: &[f32], out: &mut [f32]) {
        for square in 0..64 {
            let cell = &mut out[square * self.outputs..][..self.outputs];
            cell.copy_from_slice(&self.bias);
            for (i, &x) in input[square * self.inputs..][..self.inputs]
                .iter()
                .enumerate()
            {
                axpy(cell, x, &self.weights[i * self.outputs..][..self.outputs]);
            }
        }
    }
}

impl Fc {
    /// A dense layer whose inputs arrive in the order given by `order` (`order[k]` is the
    /// weight column of this pass's input k).
    fn new(dense: &Dense, order: impl Fn(usize) -> usize) -> Fc {
        let (inputs, outputs) = (dense.inputs, dense.outputs);
        let mut weights = vec![0f32; inputs * outputs];
        for k in 0..inputs {
            let column = order(k);
            for o in 0..outputs {
                weights[k * outputs + o] = dense.weights[o * inputs + column];
            }
        }
        Fc {
            inputs,
            outputs,
            weights,
            bias: dense.bias.clone(),
        }
    }

    /// A dense layer over a channels-last `[64][channels]` map, whose weights expect the
    /// NCHW flattening (channel · 64 + square).
    fn over_board(dense: &Dense, channels: usize) -> Fc {
        Fc::new(dense, |k| (k % channels) * 64 + k / channels)
    }

    #[inline(always)]
    fn apply(&self, input: &[f32], out: &mut [f32]) {
        let out = &mut out[..self.outputs];
        out.copy_from_slice(&self.bias);
        for (k, &x) in input[..self.inputs].iter().enumerate() {
            if x != 0.0 {
                axpy(out, x, &self.weights[k * self.outputs..][..self.outputs]);
            }
        }
    }
}

/// `[rows][columns]` → `[columns][rows]`.
fn transpose(values: &[f32], rows: usize, columns: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    for r in 0..rows {
        for c in 0..columns {
            out[c * rows + r] = values[r * columns + c];
        }
    }
    out
}

impl HostNet {
    /// The pass for `weights`, or `None` where this CPU lacks AVX2 and FMA (libtorch then
    /// evaluates every batch).
    pub fn new(weights: &NetWeights) -> Option<HostNet> {
        let kernel = Kernel::detect()?;
        let blocks = weights
            .residual
            .iter()
            .map(|block| Block {
                conv1: Conv3::new(&block.conv1),
                conv2: Conv3::new(&block.conv2),
                se: block
                    .se
                    .as_ref()
                    .map(|se| (Fc::new(&se.fc1, |k| k), Fc::new(&se.fc2, |k| k))),
            })
            .collect();
        let policy = match &weights.policy {
            PolicyHead::Convolution { conv1, conv2 } => {
                let channels = conv2.outputs;
                Policy::Convolution {
                    conv1: Conv3::new(conv1),
                    conv2: Conv3::new(conv2),
                    gather: conv_policy_gather()
                        .iter()
                        .map(|&g| (g as usize % 64) * channels + g as usize / 64)
                        .collect(),
                }
            }
            PolicyHead::Classical { conv, fc } => Policy::Classical {
                conv: Conv1::new(conv),
                fc: Fc::over_board(fc, conv.outputs),
            },
        };
        Some(HostNet {
            activation: weights.activation,
            input: Conv3::new(&weights.input),
            blocks,
            policy,
            value_conv: Conv1::new(&weights.value.conv),
            value_fc1: Fc::over_board(&weights.value.fc1, weights.value.conv.outputs),
            value_fc2: Fc::new(&weights.value.fc2, |k| k),
            kernel,
        })
    }

    /// Evaluates one position: win/draw/loss probabilities from the side to move's view and
    /// the policy logits of `moves` (policy indices).
    pub fn evaluate(&self, planes: &InputPlanes, moves: &[u16], work: &mut Workspace) -> RawEval {
        // SAFETY: `kernel` was chosen by `Kernel::detect`, which checked that this CPU has
        // the features each copy is compiled for.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match self.kernel {
                Kernel::Avx512 => self.evaluate_avx512(planes, moves, work),
                Kernel::Avx2 => self.evaluate_avx2(planes, moves, work),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.pass(planes, moves, work)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn evaluate_avx512(
        &self,
        planes: &InputPlanes,
        moves: &[u16],
        work: &mut Workspace,
    ) -> RawEval {
        self.pass(planes, moves, work)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn evaluate_avx2(
        &self,
        planes: &InputPlanes,
        moves: &[u16],
        work: &mut Workspace,
    ) -> RawEval {
        self.pass(planes, moves, work)
    }

    /// The pass itself, inlined into each compiled copy.
    #[inline(always)]
    fn pass(&self, planes: &InputPlanes, moves: &[u16], work: &mut Workspace) -> RawEval {
        let filters = self.input.outputs();
        work.planes.resize(INPUT_PLANES * 64, 0.0);
        planes.write_f32(&mut work.planes);
        // [plane][square] → [square][plane]
        work.y.resize(64 * INPUT_PLANES, 0.0);
        for (plane, row) in work.planes.chunks_exact(64).enumerate() {
            for (square, &value) in row.iter().enumerate() {
                work.y[square * INPUT_PLANES + plane] = value;
            }
        }
        work.x.resize(64 * filters, 0.0);
        self.input
            .apply(&work.y, &mut work.x, &mut work.scratch, self.kernel);
        self.activate(&mut work.x);
        work.y.resize(64 * filters, 0.0);
        work.z.resize(64 * filters, 0.0);
        for block in &self.blocks {
            block
                .conv1
                .apply(&work.x, &mut work.y, &mut work.scratch, self.kernel);
            self.activate(&mut work.y);
            block
                .conv2
                .apply(&work.y, &mut work.z, &mut work.scratch, self.kernel);
            if let Some((fc1, fc2)) = &block.se {
                self.excite(fc1, fc2, work, filters);
            }
            for (z, &x) in work.z.iter_mut().zip(&work.x) {
                *z += x;
            }
            self.activate(&mut work.z);
            std::mem::swap(&mut work.x, &mut work.z);
        }
        let logits = self.policy(moves, work);
        let wdl = self.value(work);
        RawEval { wdl, logits }
    }

    /// Squeeze-excitation of `work.z`: its channel means through `fc1` and `fc2` scale
    /// (sigmoid) and shift it.
    #[inline(always)]
    fn excite(&self, fc1: &Fc, fc2: &Fc, work: &mut Workspace, filters: usize) {
        work.pooled.clear();
        work.pooled.resize(filters, 0.0);
        for row in work.z.chunks_exact(filters) {
            for (p, &z) in work.pooled.iter_mut().zip(row) {
                *p += z;
            }
        }
        for p in &mut work.pooled {
            *p /= 64.0;
        }
        work.hidden.resize(fc1.outputs, 0.0);
        fc1.apply(&work.pooled, &mut work.hidden);
        self.activate(&mut work.hidden);
        work.head.resize(fc2.outputs, 0.0);
        fc2.apply(&work.hidden, &mut work.head);
        let (gamma, beta) = work.head.split_at_mut(filters);
        for g in gamma.iter_mut() {
            *g = 1.0 / (1.0 + (-*g).exp());
        }
        for row in work.z.chunks_exact_mut(filters) {
            for ((z, &g), &b) in row.iter_mut().zip(gamma.iter()).zip(beta.iter()) {
                *z = z.mul_add(g, b);
            }
        }
    }

    /// The policy logits of `moves`, from the tower's output in `work.x`.
    #[inline(always)]
    fn policy(&self, moves: &[u16], work: &mut Workspace) -> Vec<f32> {
        match &self.policy {
            Policy::Convolution {
                conv1,
                conv2,
                gather,
            } => {
                work.y.resize(64 * conv1.outputs(), 0.0);
                conv1.apply(&work.x, &mut work.y, &mut work.scratch, self.kernel);
                self.activate(&mut work.y);
                work.head.resize(64 * conv2.outputs(), 0.0);
                conv2.apply(&work.y, &mut work.head, &mut work.scratch, self.kernel);
                moves
                    .iter()
                    .map(|&m| work.head[gather[m as usize]])
                    .collect()
            }
            Policy::Classical { conv, fc } => {
                work.y.resize(64 * conv.outputs, 0.0);
                conv.apply(&work.x, &mut work.y);
                self.activate(&mut work.y);
                work.head.resize(fc.outputs, 0.0);
                fc.apply(&work.y, &mut work.head);
                moves.iter().map(|&m| work.head[m as usize]).collect()
            }
        }
    }

    /// Win/draw/loss probabilities from the tower's output in `work.x`.
    #[inline(always)]
    fn value(&self, work: &mut Workspace) -> [f32; 3] {
        let channels = self.value_conv.outputs;
        work.y.resize(64 * channels, 0.0);
        self.value_conv.apply(&work.x, &mut work.y);
        self.activate(&mut work.y);
        work.hidden.resize(self.value_fc1.outputs, 0.0);
        self.value_fc1.apply(&work.y, &mut work.hidden);
        self.activate(&mut work.hidden);
        let mut out = [0f32; 3];
        self.value_fc2.apply(&work.hidden, &mut out);
        if self.value_fc2.outputs == 3 {
            let top = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp = out.map(|v| (v - top).exp());
            let sum: f32 = exp.iter().sum();
            exp.map(|e| e / sum)
        } else {
            let v = out[0].tanh();
            [(1.0 + v) * 0.5, 0.0, (1.0 - v) * 0.5]
        }
    }

    #[inline(always)]
    fn activate(&self, values: &mut [f32]) {
        match self.activation {
            Activation::Relu => {
                for v in values {
                    *v = v.max(0.0);
                }
            }
            Activation::Mish => {
                for v in values {
                    *v *= v.exp().ln_1p().tanh();
                }
            }
        }
    }
}

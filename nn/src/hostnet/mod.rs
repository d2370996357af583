//! The network's inference pass written out on the host, for fp32 on the CPU.
//!
//! libtorch spends much of a small batch dispatching ~110 operators, and its fp32 direct
//! convolutions are slower than Winograd ones at any batch on this scale of network. This
//! pass runs batches of up to [`HOST_CHUNK`] positions through Winograd 3×3 convolutions
//! ([`winograd`]) and turns the 1×1 convolutions and dense layers into matrix multiplies
//! ([`linear`]), all on one register-blocked multiply kernel written with intrinsics
//! ([`simd`]), with plain loops for the rest; the whole pass is compiled for AVX2+FMA and for
//! AVX-512, the copy picked at run time. It computes the function of
//! [`crate::network::Network::forward`] in fp32 (tested against the plain reference pass on
//! every test architecture) and is used only where it is the faster of the two. Its weights
//! (the 3×3 ones in the Winograd domain, 4× their size) are one copy shared by the lanes.
//! Where it takes every batch (fp32 on the CPU), an evaluator lane is a [`HostLane`] and
//! builds no libtorch network at all.

mod linear;
mod simd;
mod winograd;

use std::sync::Arc;

use crate::backend::{Backend, EvalInput, RawEval};
use crate::encode::INPUT_PLANES;
use crate::policy::conv_policy_gather;
use crate::weights::{Activation, NetWeights, PolicyHead};

use linear::Linear;
use simd::Kernel;
use winograd::{Conv3, Scratch};

/// Positions whose 3×3 convolutions run together: enough to share each weight panel many
/// times, few enough that a layer's transformed tiles stay in the L2 cache.
pub const HOST_CHUNK: usize = 8;

struct Block {
    conv1: Conv3,
    conv2: Conv3,
    se: Option<(Linear, Linear)>,
}

enum Policy {
    /// Two 3×3 convs; `gather[i]` is policy index i's place in the `[square][80]` output.
    Convolution {
        conv1: Conv3,
        conv2: Conv3,
        gather: Vec<usize>,
    },
    /// 1×1 conv, then a dense layer over its output.
    Classical { conv: Linear, fc: Linear },
}

/// A loaded network's weights, laid out for [`HostNet::evaluate`].
pub struct HostNet {
    activation: Activation,
    input: Conv3,
    blocks: Vec<Block>,
    policy: Policy,
    value_conv: Linear,
    value_fc1: Linear,
    value_fc2: Linear,
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
    linear: linear::Scratch,
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
                    .map(|se| (Linear::dense(&se.fc1, |k| k), Linear::dense(&se.fc2, |k| k))),
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
                conv: Linear::conv1x1(conv),
                fc: Linear::over_board(fc, conv.outputs),
            },
        };
        Some(HostNet {
            activation: weights.activation,
            input: Conv3::new(&weights.input),
            blocks,
            policy,
            value_conv: Linear::conv1x1(&weights.value.conv),
            value_fc1: Linear::over_board(&weights.value.fc1, weights.value.conv.outputs),
            value_fc2: Linear::dense(&weights.value.fc2, |k| k),
            kernel,
        })
    }

    /// Evaluates a batch of positions, appending to `out` each one's win/draw/loss
    /// probabilities from the side to move's view and the policy logits of its moves (policy
    /// indices). Each 3×3 convolution runs over the whole batch at once, so batches of up to
    /// [`HOST_CHUNK`] positions share each weight panel's trip from memory.
    pub fn evaluate(&self, batch: &[EvalInput<'_>], work: &mut Workspace, out: &mut Vec<RawEval>) {
        for chunk in batch.chunks(HOST_CHUNK) {
            // SAFETY: `kernel` was chosen by `Kernel::detect`, which checked that this CPU has
            // the features each copy is compiled for.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                match self.kernel {
                    Kernel::Avx512 => self.evaluate_avx512(chunk, work, out),
                    Kernel::Avx2 => self.evaluate_avx2(chunk, work, out),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            self.pass(chunk, work, out)
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn evaluate_avx512(
        &self,
        batch: &[EvalInput<'_>],
        work: &mut Workspace,
        out: &mut Vec<RawEval>,
    ) {
        self.pass(batch, work, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn evaluate_avx2(
        &self,
        batch: &[EvalInput<'_>],
        work: &mut Workspace,
        out: &mut Vec<RawEval>,
    ) {
        self.pass(batch, work, out)
    }

    /// The pass itself, inlined into each compiled copy.
    #[inline(always)]
    fn pass(&self, batch: &[EvalInput<'_>], work: &mut Workspace, out: &mut Vec<RawEval>) {
        let n = batch.len();
        let filters = self.input.outputs();
        work.planes.resize(INPUT_PLANES * 64, 0.0);
        work.y.resize(n * 64 * INPUT_PLANES, 0.0);
        for (e, board) in batch.iter().zip(work.y.chunks_exact_mut(64 * INPUT_PLANES)) {
            e.planes.write_f32(&mut work.planes);
            // [plane][square] → [square][plane]
            for (plane, row) in work.planes.chunks_exact(64).enumerate() {
                for (square, &value) in row.iter().enumerate() {
                    board[square * INPUT_PLANES + plane] = value;
                }
            }
        }
        self.input
            .apply(&work.y, &mut work.x, n, &mut work.scratch, self.kernel);
        self.activate(&mut work.x);
        for block in &self.blocks {
            block
                .conv1
                .apply(&work.x, &mut work.y, n, &mut work.scratch, self.kernel);
            self.activate(&mut work.y);
            block
                .conv2
                .apply(&work.y, &mut work.z, n, &mut work.scratch, self.kernel);
            if let Some((fc1, fc2)) = &block.se {
                self.excite(fc1, fc2, n, work, filters);
            }
            for (z, &x) in work.z.iter_mut().zip(&work.x) {
                *z += x;
            }
            self.activate(&mut work.z);
            std::mem::swap(&mut work.x, &mut work.z);
        }
        let logits = self.policy(batch, work);
        let wdl = self.value(n, work);
        out.extend(
            logits
                .into_iter()
                .zip(wdl)
                .map(|(logits, wdl)| RawEval { wdl, logits }),
        );
    }

    /// Squeeze-excitation of the `n` boards of `work.z`: each one's channel means through
    /// `fc1` and `fc2` scale (sigmoid) and shift it.
    #[inline(always)]
    fn excite(&self, fc1: &Linear, fc2: &Linear, n: usize, work: &mut Workspace, filters: usize) {
        work.pooled.clear();
        work.pooled.resize(n * filters, 0.0);
        for (pooled, board) in work
            .pooled
            .chunks_exact_mut(filters)
            .zip(work.z.chunks_exact(64 * filters))
        {
            for row in board.chunks_exact(filters) {
                for (p, &z) in pooled.iter_mut().zip(row) {
                    *p += z;
                }
            }
            for p in pooled {
                *p /= 64.0;
            }
        }
        fc1.apply(
            &work.pooled,
            n,
            &mut work.hidden,
            &mut work.linear,
            self.kernel,
        );
        self.activate(&mut work.hidden);
        fc2.apply(
            &work.hidden,
            n,
            &mut work.head,
            &mut work.linear,
            self.kernel,
        );
        let boards = work.z.chunks_exact_mut(64 * filters);
        for (board, scale) in boards.zip(work.head.chunks_exact_mut(2 * filters)) {
            let (gamma, beta) = scale.split_at_mut(filters);
            for g in gamma.iter_mut() {
                *g = 1.0 / (1.0 + (-*g).exp());
            }
            for row in board.chunks_exact_mut(filters) {
                for ((z, &g), &b) in row.iter_mut().zip(gamma.iter()).zip(beta.iter()) {
                    *z = z.mul_add(g, b);
                }
            }
        }
    }

    /// The policy logits of each position's moves, from the tower's output in `work.x`.
    #[inline(always)]
    fn policy(&self, batch: &[EvalInput<'_>], work: &mut Workspace) -> Vec<Vec<f32>> {
        let n = batch.len();
        match &self.policy {
            Policy::Convolution {
                conv1,
                conv2,
                gather,
            } => {
                conv1.apply(&work.x, &mut work.y, n, &mut work.scratch, self.kernel);
                self.activate(&mut work.y);
                conv2.apply(&work.y, &mut work.head, n, &mut work.scratch, self.kernel);
                batch
                    .iter()
                    .zip(work.head.chunks_exact(64 * conv2.outputs()))
                    .map(|(e, head)| e.moves.iter().map(|&m| head[gather[m as usize]]).collect())
                    .collect()
            }
            Policy::Classical { conv, fc } => {
                conv.apply(&work.x, n * 64, &mut work.y, &mut work.linear, self.kernel);
                self.activate(&mut work.y);
                fc.apply(&work.y, n, &mut work.head, &mut work.linear, self.kernel);
                batch
                    .iter()
                    .zip(work.head.chunks_exact(fc.outputs()))
                    .map(|(e, head)| e.moves.iter().map(|&m| head[m as usize]).collect())
                    .collect()
            }
        }
    }

    /// Win/draw/loss probabilities of the `n` boards of the tower's output in `work.x`.
    #[inline(always)]
    fn value(&self, n: usize, work: &mut Workspace) -> Vec<[f32; 3]> {
        let conv = &self.value_conv;
        conv.apply(&work.x, n * 64, &mut work.y, &mut work.linear, self.kernel);
        self.activate(&mut work.y);
        self.value_fc1
            .apply(&work.y, n, &mut work.hidden, &mut work.linear, self.kernel);
        self.activate(&mut work.hidden);
        let fc2 = &self.value_fc2;
        fc2.apply(
            &work.hidden,
            n,
            &mut work.head,
            &mut work.linear,
            self.kernel,
        );
        work.head
            .chunks_exact(fc2.outputs())
            .map(|out| {
                if let &[w, d, l] = out {
                    let top = w.max(d).max(l);
                    let exp = [w, d, l].map(|v| (v - top).exp());
                    let sum: f32 = exp.iter().sum();
                    exp.map(|e| e / sum)
                } else {
                    let v = out[0].tanh();
                    [(1.0 + v) * 0.5, 0.0, (1.0 - v) * 0.5]
                }
            })
            .collect()
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

/// An evaluator lane on the host pass alone: a network in fp32 on a CPU with AVX2 and FMA,
/// where the host pass would take every batch of a libtorch [`crate::network::Network`].
pub struct HostLane {
    net: Arc<HostNet>,
    work: Workspace,
    max_batch: usize,
    description: String,
}

impl HostLane {
    /// `lanes` lanes sharing one copy of `weights` (described as `description`), for batches
    /// of up to `max_batch`; `None` where this CPU lacks AVX2 and FMA.
    pub fn open(
        weights: &NetWeights,
        description: &str,
        max_batch: usize,
        lanes: usize,
    ) -> Option<Vec<HostLane>> {
        let net = Arc::new(HostNet::new(weights)?);
        tracing::info!(network = %description, lanes, "network loaded for the host pass");
        Some(
            (0..lanes)
                .map(|_| HostLane {
                    net: Arc::clone(&net),
                    work: Workspace::default(),
                    max_batch: max_batch.max(1),
                    description: description.to_string(),
                })
                .collect(),
        )
    }
}

impl Backend for HostLane {
    fn evaluate(&mut self, batch: &[EvalInput<'_>], out: &mut Vec<RawEval>) -> Result<(), String> {
        out.clear();
        self.net.evaluate(batch, &mut self.work, out);
        Ok(())
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

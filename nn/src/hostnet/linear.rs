//! The pass's 1×1 convolutions and dense layers: one matrix multiply each, `[rows][inputs]` by
//! `[inputs][outputs]`, on the register-blocked kernel of [`simd::multiply`] (a 1×1
//! convolution's rows are the squares of every board, a dense layer's the positions).

use super::simd::{self, Kernel, LANES};
use crate::weights::{Conv, Dense};

/// Weights in [`simd::multiply`]'s panels, `[padded / LANES][inputs][LANES]`, outputs padded
/// with zero columns to a multiple of [`LANES`].
pub(super) struct Linear {
    inputs: usize,
    outputs: usize,
    padded: usize,
    panels: Vec<f32>,
    bias: Vec<f32>,
}

/// Work space of [`Linear::apply`] for outputs that are not whole panels.
pub(super) type Scratch = Vec<f32>;

impl Linear {
    /// The layer whose weight from input i to output o is `weight(i, o)`.
    fn new(
        inputs: usize,
        outputs: usize,
        weight: impl Fn(usize, usize) -> f32,
        bias: &[f32],
    ) -> Linear {
        let padded = outputs.div_ceil(LANES) * LANES;
        let mut panels = vec![0f32; inputs * padded];
        for i in 0..inputs {
            for o in 0..outputs {
                panels[((o / LANES) * inputs + i) * LANES + o % LANES] = weight(i, o);
            }
        }
        Linear {
            inputs,
            outputs,
            padded,
            panels,
            bias: bias.to_vec(),
        }
    }

    /// A 1×1 convolution (weights `[out][in]`), applied square by square.
    pub(super) fn conv1x1(conv: &Conv) -> Linear {
        assert_eq!(conv.kernel, 1, "a 1x1 convolution");
        let inputs = conv.inputs;
        Linear::new(
            inputs,
            conv.outputs,
            |i, o| conv.weights[o * inputs + i],
            &conv.bias,
        )
    }

    /// A dense layer (weights `[out][in]`) whose inputs arrive in the order given by `order`
    /// (`order[k]` is the weight column of this pass's input k).
    pub(super) fn dense(dense: &Dense, order: impl Fn(usize) -> usize) -> Linear {
        let inputs = dense.inputs;
        Linear::new(
            inputs,
            dense.outputs,
            |k, o| dense.weights[o * inputs + order(k)],
            &dense.bias,
        )
    }

    /// A dense layer over a channels-last `[64][channels]` map, whose weights expect the
    /// NCHW flattening (channel · 64 + square).
    pub(super) fn over_board(dense: &Dense, channels: usize) -> Linear {
        Linear::dense(dense, |k| (k % channels) * 64 + k / channels)
    }

    /// Output count.
    pub(super) fn outputs(&self) -> usize {
        self.outputs
    }

    /// `out[r] = bias + input[r] · W` for the `rows` rows of `input` (`[rows][inputs]`) into
    /// `out`, sized here to `[rows][outputs]`.
    #[inline(always)]
    pub(super) fn apply(
        &self,
        input: &[f32],
        rows: usize,
        out: &mut Vec<f32>,
        scratch: &mut Scratch,
        kernel: Kernel,
    ) {
        let (cin, cout, padded) = (self.inputs, self.outputs, self.padded);
        out.resize(rows * cout, 0.0);
        let (input, out) = (&input[..rows * cin], &mut out[..]);
        if padded == cout {
            simd::multiply(kernel, input, rows, cin, &self.panels, padded, out, cout);
            for row in out.chunks_exact_mut(cout) {
                add(row, &self.bias);
            }
            return;
        }
        // Through zero columns up to a whole panel.
        scratch.resize(rows * padded, 0.0);
        simd::multiply(
            kernel,
            input,
            rows,
            cin,
            &self.panels,
            padded,
            scratch,
            padded,
        );
        for (row, product) in out.chunks_exact_mut(cout).zip(scratch.chunks_exact(padded)) {
            row.copy_from_slice(&product[..cout]);
            add(row, &self.bias);
        }
    }
}

/// `out += x`, element by element.
#[inline(always)]
fn add(out: &mut [f32], x: &[f32]) {
    for (out, &x) in out.iter_mut().zip(x) {
        *out += x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_plain_product() {
        let kernels = Kernel::available();
        if kernels.is_empty() {
            crate::skip_test(
                "linear::matches_the_plain_product",
                "this CPU lacks AVX2+FMA, so the host pass is not used",
            );
            return;
        }
        let mut rng = fastrand::Rng::with_seed(11);
        // Rows and outputs below, at and above whole blocks and panels.
        for (rows, inputs, outputs) in [
            (1, 7, 3),
            (4, 16, 16),
            (6, 64, 80),
            (64, 64, 32),
            (3, 2048, 128),
        ] {
            let dense = Dense {
                inputs,
                outputs,
                weights: (0..inputs * outputs).map(|_| rng.f32() - 0.5).collect(),
                bias: (0..outputs).map(|_| rng.f32() - 0.5).collect(),
            };
            let input: Vec<f32> = (0..rows * inputs).map(|_| rng.f32() * 2.0 - 1.0).collect();
            let mut out = vec![0f32; rows * outputs];
            let layer = Linear::dense(&dense, |k| k);
            for &kernel in &kernels {
                layer.apply(&input, rows, &mut out, &mut Scratch::default(), kernel);
                for r in 0..rows {
                    for o in 0..outputs {
                        let want: f64 = f64::from(dense.bias[o])
                            + (0..inputs)
                                .map(|i| {
                                    f64::from(dense.weights[o * inputs + i])
                                        * f64::from(input[r * inputs + i])
                                })
                                .sum::<f64>();
                        let got = f64::from(out[r * outputs + o]);
                        assert!(
                            (got - want).abs() < 1e-4 * (inputs as f64).sqrt(),
                            "{kernel:?} {rows}x{inputs}->{outputs}: [{r}][{o}] {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

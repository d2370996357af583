//! Freshly initialised networks: the starting point of training, and small nets the project
//! makes for its tests. Seeded, so the same architecture and seed always give the same weights.

use super::{
    Activation, Conv, Dense, NetWeights, PolicyHead, ResidualBlock, SqueezeExcite, ValueHead,
};
use crate::encode::INPUT_PLANES;
use crate::policy::{CONV_POLICY_PLANES, POLICY_SIZE};

/// The shape of a residual network to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Architecture {
    /// Residual blocks.
    pub blocks: usize,
    /// Filters F of the tower.
    pub filters: usize,
    /// Width of each block's squeeze-excitation, or `None` for a plain tower.
    pub se_channels: Option<usize>,
    /// A convolutional policy head (else a classical one).
    pub conv_policy: bool,
    /// Channels of the classical policy head's 1×1 convolution (unused by a conv policy head).
    pub policy_channels: usize,
    /// A win/draw/loss value head (else one tanh value).
    pub wdl: bool,
    /// Channels of the value head's 1×1 convolution.
    pub value_channels: usize,
    /// Width of the value head's hidden dense layer.
    pub value_hidden: usize,
    pub activation: Activation,
}

impl Architecture {
    /// `blocks`×`filters` with the heads of current Lc0 residual nets (e.g. Maia): SE of
    /// width F/8 (at least 1), convolutional policy, WDL value with 32 channels and 128 hidden,
    /// ReLU.
    pub fn new(blocks: usize, filters: usize) -> Architecture {
        Architecture {
            blocks,
            filters,
            se_channels: Some((filters / 8).max(1)),
            conv_policy: true,
            policy_channels: 32,
            wdl: true,
            value_channels: 32,
            value_hidden: 128,
            activation: Activation::Relu,
        }
    }
}

impl NetWeights {
    /// A network of the given shape with He-uniform weights and small biases, from `seed`.
    pub fn random(arch: &Architecture, seed: u64) -> NetWeights {
        let mut r = Rng::new(seed);
        let f = arch.filters;
        let residual = (0..arch.blocks)
            .map(|_| ResidualBlock {
                conv1: r.conv(f, f, 3),
                conv2: r.conv(f, f, 3),
                se: arch.se_channels.map(|s| SqueezeExcite {
                    fc1: r.dense(s, f),
                    fc2: r.dense(2 * f, s),
                }),
            })
            .collect();
        let policy = if arch.conv_policy {
            PolicyHead::Convolution {
                conv1: r.conv(f, f, 3),
                conv2: r.conv(CONV_POLICY_PLANES, f, 3),
            }
        } else {
            PolicyHead::Classical {
                conv: r.conv(arch.policy_channels, f, 1),
                fc: r.dense(POLICY_SIZE, arch.policy_channels * 64),
            }
        };
        let value = ValueHead {
            conv: r.conv(arch.value_channels, f, 1),
            fc1: r.dense(arch.value_hidden, arch.value_channels * 64),
            fc2: r.dense(if arch.wdl { 3 } else { 1 }, arch.value_hidden),
        };
        NetWeights {
            activation: arch.activation,
            input: r.conv(f, INPUT_PLANES, 3),
            residual,
            policy,
            value,
        }
    }
}

/// SplitMix64: small, seedable, good enough for initial weights.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Uniform in [−1, 1).
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// `n` values uniform in [−limit, limit).
    fn uniform(&mut self, n: usize, limit: f32) -> Vec<f32> {
        (0..n).map(|_| self.unit() * limit).collect()
    }

    /// He-uniform for `fan_in` inputs (keeps ReLU activations at a steady scale).
    fn he(&mut self, n: usize, fan_in: usize) -> Vec<f32> {
        self.uniform(n, (6.0 / fan_in as f32).sqrt())
    }

    fn conv(&mut self, outputs: usize, inputs: usize, kernel: usize) -> Conv {
        let fan_in = inputs * kernel * kernel;
        Conv {
            outputs,
            inputs,
            kernel,
            weights: self.he(outputs * fan_in, fan_in),
            bias: self.uniform(outputs, 0.1),
        }
    }

    fn dense(&mut self, outputs: usize, inputs: usize) -> Dense {
        Dense {
            outputs,
            inputs,
            weights: self.he(outputs * inputs, inputs),
            bias: self.uniform(outputs, 0.1),
        }
    }
}

/// One small network of each kind the loader reads: SE and plain towers, conv and classical
/// policy heads, WDL and classical value heads, ReLU and Mish.
#[cfg(test)]
pub(crate) fn variety() -> Vec<Architecture> {
    let tiny = |se: bool, conv_policy: bool, wdl: bool, activation: Activation| Architecture {
        blocks: 2,
        filters: 4,
        se_channels: se.then_some(2),
        conv_policy,
        policy_channels: 3,
        wdl,
        value_channels: 2,
        value_hidden: 5,
        activation,
    };
    vec![
        tiny(true, true, true, Activation::Relu),
        tiny(false, true, false, Activation::Relu),
        tiny(true, false, false, Activation::Mish),
        tiny(false, false, true, Activation::Mish),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_net() {
        let arch = Architecture::new(2, 8);
        let a = NetWeights::random(&arch, 5);
        assert_eq!(a, NetWeights::random(&arch, 5));
        assert_ne!(a, NetWeights::random(&arch, 6));
        assert_eq!(a.describe(), "2x8 SE, conv policy, WDL");
        let limit = (6.0f32 / (8.0 * 9.0)).sqrt();
        let w = &a.residual[1].conv2.weights;
        assert!(w.iter().all(|x| x.abs() <= limit));
        let mean = w.iter().sum::<f32>() / w.len() as f32;
        assert!(mean.abs() < limit / 5.0, "mean {mean}");
    }
}

//! Writing a network as an Lc0 `.pb.gz` file: the inverse of the loader, for networks the
//! project makes itself (test nets, the trainer's output).
//!
//! Convolutions are written with their (already folded) biases and no batch-norm layers, which
//! Lc0 reads as "no batch norm": the weights are used as they are. Every tensor is quantised
//! with the chosen [`Encoding`]; the file declares the network's shape in its `NetworkFormat`.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::proto;
use super::{Activation, Conv, Dense, NetWeights, PolicyHead, WEIGHT_MAGIC};
use crate::policy::{CONV_POLICY_PLANES, POLICY_SIZE};

/// How each tensor is stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// 16-bit steps between the layer's minimum and maximum: what every Lc0 version reads.
    Linear16,
    /// IEEE half precision (Lc0 0.33 or later reads it).
    Float16,
}

/// Why a network could not be written.
#[derive(Debug, Error)]
pub enum WriteError {
    #[error("cannot write this network as an Lc0 file: {0}")]
    Shape(String),
    #[error("cannot write weight file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `Format.weights_encoding` / `Layer.encoding` values.
const LINEAR16: i32 = 1;
const FLOAT16: i32 = 2;

/// Writes `weights` to `path` as a gzip-compressed Lc0 weight file.
pub fn save(weights: &NetWeights, path: &Path, encoding: Encoding) -> Result<(), WriteError> {
    let bytes = to_gzip_bytes(weights, encoding)?;
    std::fs::write(path, bytes).map_err(|source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The bytes of a `.pb.gz` file holding `weights`.
pub fn to_gzip_bytes(weights: &NetWeights, encoding: Encoding) -> Result<Vec<u8>, WriteError> {
    let raw = to_protobuf_bytes(weights, encoding)?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(&raw)
        .expect("writing to a Vec cannot fail");
    Ok(encoder.finish().expect("writing to a Vec cannot fail"))
}

/// The serialized (uncompressed) `Net` message holding `weights`.
pub fn to_protobuf_bytes(weights: &NetWeights, encoding: Encoding) -> Result<Vec<u8>, WriteError> {
    Ok(prost::Message::encode_to_vec(&message(weights, encoding)?))
}

/// The `Net` message holding `weights`, after checking the shape is one Lc0 can describe.
pub(super) fn message(weights: &NetWeights, encoding: Encoding) -> Result<proto::Net, WriteError> {
    check_shape(weights)?;
    let se = weights.residual[0].se.is_some();
    let conv_policy = matches!(weights.policy, PolicyHead::Convolution { .. });
    let wdl = weights.value.is_wdl();
    let mish = weights.activation == Activation::Mish;
    let file_encoding = match encoding {
        Encoding::Linear16 => LINEAR16,
        Encoding::Float16 => FLOAT16,
    };
    // The oldest Lc0 that reads the file: 0.33 for half-precision layers, 0.28 for Mish.
    let minor = match (encoding, mish) {
        (Encoding::Float16, _) => 33,
        (Encoding::Linear16, true) => 28,
        (Encoding::Linear16, false) => 26,
    };
    let layer = |values: &[f32]| layer(values, encoding);
    let conv = |c: &Conv| conv_block(c, encoding);
    let mut w = proto::Weights {
        input: Some(conv(&weights.input)),
        residual: weights
            .residual
            .iter()
            .map(|block| proto::Residual {
                conv1: Some(conv(&block.conv1)),
                conv2: Some(conv(&block.conv2)),
                se: block.se.as_ref().map(|se| proto::SeUnit {
                    w1: Some(layer(&se.fc1.weights)),
                    b1: Some(layer(&se.fc1.bias)),
                    w2: Some(layer(&se.fc2.weights)),
                    b2: Some(layer(&se.fc2.bias)),
                }),
            })
            .collect(),
        value: Some(conv(&weights.value.conv)),
        ip1_val_w: Some(layer(&weights.value.fc1.weights)),
        ip1_val_b: Some(layer(&weights.value.fc1.bias)),
        ip2_val_w: Some(layer(&weights.value.fc2.weights)),
        ip2_val_b: Some(layer(&weights.value.fc2.bias)),
        ..proto::Weights::default()
    };
    match &weights.policy {
        PolicyHead::Convolution { conv1, conv2 } => {
            w.policy1 = Some(conv(conv1));
            w.policy = Some(conv(conv2));
        }
        PolicyHead::Classical { conv: c, fc } => {
            w.policy = Some(conv(c));
            w.ip_pol_w = Some(layer(&fc.weights));
            w.ip_pol_b = Some(layer(&fc.bias));
        }
    }
    Ok(proto::Net {
        magic: WEIGHT_MAGIC,
        license: String::new(),
        min_version: Some(proto::EngineVersion {
            major: 0,
            minor,
            patch: 0,
        }),
        format: Some(proto::Format {
            weights_encoding: file_encoding,
            network_format: Some(proto::NetworkFormat {
                input: 1,                                // INPUT_CLASSICAL_112_PLANE
                output: if wdl { 2 } else { 1 },         // OUTPUT_WDL / OUTPUT_CLASSICAL
                network: if se { 4 } else { 3 }, // SE_WITH_HEADFORMAT / CLASSICAL_WITH_HEADFORMAT
                policy: if conv_policy { 2 } else { 1 }, // CONVOLUTION / CLASSICAL
                value: if wdl { 2 } else { 1 },  // WDL / CLASSICAL
                moves_left: 0,
                default_activation: i32::from(mish),
            }),
        }),
        weights: Some(w),
        onnx_model: None,
    })
}

/// Checks what the loader will check, so that a written file always loads.
fn check_shape(w: &NetWeights) -> Result<(), WriteError> {
    let bad = |what: String| Err(WriteError::Shape(what));
    let filters = w.filters();
    let conv_ok = |c: &Conv, outputs: Option<usize>, inputs: usize, kernel: usize| {
        outputs.is_none_or(|o| o == c.outputs)
            && c.outputs > 0
            && c.inputs == inputs
            && c.kernel == kernel
            && c.weights.len() == c.outputs * inputs * kernel * kernel
            && c.bias.len() == c.outputs
    };
    let dense_ok = |d: &Dense, outputs: Option<usize>, inputs: usize| {
        outputs.is_none_or(|o| o == d.outputs)
            && d.outputs > 0
            && d.inputs == inputs
            && d.weights.len() == d.outputs * inputs
            && d.bias.len() == d.outputs
    };
    if !conv_ok(&w.input, None, crate::encode::INPUT_PLANES, 3) {
        return bad("the input convolution is not 3x3 from 112 planes".into());
    }
    if w.residual.is_empty() {
        return bad("no residual blocks".into());
    }
    let se = w.residual[0].se.is_some();
    for (i, block) in w.residual.iter().enumerate() {
        if block.se.is_some() != se {
            return bad("squeeze-excitation in some blocks but not all".into());
        }
        let se_ok = block.se.as_ref().is_none_or(|se| {
            dense_ok(&se.fc1, None, filters) && dense_ok(&se.fc2, Some(2 * filters), se.fc1.outputs)
        });
        if !conv_ok(&block.conv1, Some(filters), filters, 3)
            || !conv_ok(&block.conv2, Some(filters), filters, 3)
            || !se_ok
        {
            return bad(format!("residual block {i} does not fit {filters} filters"));
        }
    }
    let policy_ok = match &w.policy {
        PolicyHead::Convolution { conv1, conv2 } => {
            conv_ok(conv1, Some(filters), filters, 3)
                && conv_ok(conv2, Some(CONV_POLICY_PLANES), filters, 3)
        }
        PolicyHead::Classical { conv, fc } => {
            conv_ok(conv, None, filters, 1) && dense_ok(fc, Some(POLICY_SIZE), conv.outputs * 64)
        }
    };
    if !policy_ok {
        return bad("the policy head's sizes do not fit".into());
    }
    let v = &w.value;
    if !(conv_ok(&v.conv, None, filters, 1)
        && dense_ok(&v.fc1, None, v.conv.outputs * 64)
        && (dense_ok(&v.fc2, Some(3), v.fc1.outputs) || dense_ok(&v.fc2, Some(1), v.fc1.outputs)))
    {
        return bad("the value head's sizes do not fit".into());
    }
    Ok(())
}

/// A convolution without batch-norm: its weights and biases as they are.
fn conv_block(conv: &Conv, encoding: Encoding) -> proto::ConvBlock {
    proto::ConvBlock {
        weights: Some(layer(&conv.weights, encoding)),
        biases: Some(layer(&conv.bias, encoding)),
        ..proto::ConvBlock::default()
    }
}

/// One quantised tensor.
fn layer(values: &[f32], encoding: Encoding) -> proto::Layer {
    match encoding {
        Encoding::Linear16 => {
            let min = values.iter().copied().fold(f32::INFINITY, f32::min);
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let (min, max) = if values.is_empty() {
                (0.0, 0.0)
            } else {
                (min, max)
            };
            let range = max - min;
            let params = values
                .iter()
                .flat_map(|&v| {
                    let q = if range > 0.0 {
                        ((v - min) / range * 65535.0).round().clamp(0.0, 65535.0) as u16
                    } else {
                        0
                    };
                    q.to_le_bytes()
                })
                .collect();
            // Encoding 0: the file's (LINEAR16), as the oldest readers expect.
            proto::Layer {
                min_val: min,
                max_val: max,
                params,
                encoding: 0,
                dims: vec![],
            }
        }
        Encoding::Float16 => proto::Layer {
            min_val: 0.0,
            max_val: 0.0,
            params: values
                .iter()
                .flat_map(|&v| f32_to_f16(v).to_le_bytes())
                .collect(),
            encoding: FLOAT16,
            dims: vec![],
        },
    }
}

/// IEEE single to half precision, rounding to nearest even; overflow becomes infinity.
fn f32_to_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    if exponent == 0xff {
        // Infinity or NaN (kept a NaN).
        return sign | 0x7c00 | if mantissa != 0 { 0x200 } else { 0 };
    }
    let half_exponent = exponent - 127 + 15;
    if half_exponent >= 0x1f {
        return sign | 0x7c00;
    }
    if half_exponent <= 0 {
        // Subnormal half (or zero): shift the full mantissa into place, rounding.
        if half_exponent < -10 {
            return sign;
        }
        let full = mantissa | 0x80_0000;
        let shift = (14 - half_exponent) as u32;
        let half = full >> shift;
        let rest = full & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let round = u32::from(rest > halfway || (rest == halfway && half & 1 == 1));
        return sign | (half + round) as u16;
    }
    let half = ((half_exponent as u32) << 10) | (mantissa >> 13);
    let rest = mantissa & 0x1fff;
    let round = u32::from(rest > 0x1000 || (rest == 0x1000 && half & 1 == 1));
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    sign | (half + round) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::from_gzip_bytes;
    use crate::weights::variety;

    #[test]
    fn half_precision_rounds_to_nearest() {
        let cases: [(f32, u16); 9] = [
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (1e6, 0x7c00),
            (2f32.powi(-24), 0x0001),
            (2f32.powi(-26), 0x0000),
            (1.0 + 2f32.powi(-11), 0x3c00), // a tie: to even
        ];
        for (value, half) in cases {
            assert_eq!(f32_to_f16(value), half, "{value}");
        }
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02); // a tie: to even, up
        assert!(f32_to_f16(f32::NAN) & 0x7c00 == 0x7c00 && f32_to_f16(f32::NAN) & 0x3ff != 0);
    }

    /// Every architecture and encoding: the file loads back to the same shape, each value within
    /// the encoding's rounding; a half-precision file written again from what was loaded is the
    /// very same file.
    #[test]
    fn written_nets_load_back() {
        for (i, arch) in variety().iter().enumerate() {
            let net = NetWeights::random(arch, i as u64);
            for encoding in [Encoding::Linear16, Encoding::Float16] {
                let bytes = to_gzip_bytes(&net, encoding).unwrap();
                let loaded = from_gzip_bytes(&bytes).unwrap();
                assert_eq!(loaded.describe(), net.describe(), "{encoding:?}");
                let (a, b) = (flatten(&net), flatten(&loaded));
                assert_eq!(a.len(), b.len());
                // Linear16: half a step of the widest layer.
                let widest = a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                for (x, y) in a.iter().zip(&b) {
                    let tolerance = match encoding {
                        Encoding::Float16 => x.abs() * 2f32.powi(-11) + 2f32.powi(-25),
                        Encoding::Linear16 => widest / 65535.0 * 1.01 + 1e-7,
                    };
                    assert!((x - y).abs() <= tolerance, "{encoding:?}: {x} read as {y}");
                }
                if encoding == Encoding::Float16 {
                    let again = to_protobuf_bytes(&loaded, encoding).unwrap();
                    assert_eq!(again, to_protobuf_bytes(&net, encoding).unwrap());
                }
            }
        }
    }

    #[test]
    fn shapes_lc0_cannot_describe_are_refused() {
        let mut net = NetWeights::random(&variety()[0], 1);
        net.residual[1].se = None;
        let error = to_protobuf_bytes(&net, Encoding::Float16).unwrap_err();
        assert!(
            error.to_string().contains("some blocks but not all"),
            "{error}"
        );
        let mut net = NetWeights::random(&variety()[0], 1);
        net.value.fc2.bias.pop();
        assert!(to_protobuf_bytes(&net, Encoding::Linear16).is_err());
        let dir = Path::new("/nonexistent/dir/net.pb.gz");
        let net = NetWeights::random(&variety()[0], 1);
        let error = save(&net, dir, Encoding::Float16).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/dir/net.pb.gz"),
            "{error}"
        );
    }

    /// Every value of the network, in a fixed order.
    fn flatten(net: &NetWeights) -> Vec<f32> {
        let mut out = Vec::new();
        let conv = |c: &Conv, out: &mut Vec<f32>| {
            out.extend(&c.weights);
            out.extend(&c.bias);
        };
        let dense = |d: &Dense, out: &mut Vec<f32>| {
            out.extend(&d.weights);
            out.extend(&d.bias);
        };
        conv(&net.input, &mut out);
        for block in &net.residual {
            conv(&block.conv1, &mut out);
            conv(&block.conv2, &mut out);
            if let Some(se) = &block.se {
                dense(&se.fc1, &mut out);
                dense(&se.fc2, &mut out);
            }
        }
        match &net.policy {
            PolicyHead::Convolution { conv1, conv2 } => {
                conv(conv1, &mut out);
                conv(conv2, &mut out);
            }
            PolicyHead::Classical { conv: c, fc } => {
                conv(c, &mut out);
                dense(fc, &mut out);
            }
        }
        conv(&net.value.conv, &mut out);
        dense(&net.value.fc1, &mut out);
        dense(&net.value.fc2, &mut out);
        out
    }
}

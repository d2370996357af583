//! Loading Lc0 `.pb.gz` weight files of residual networks into plain float tensors, with
//! batch-norm folded into the convolutions, every size checked against the network's shape;
//! writing such networks back as Lc0 files ([`save`]); fresh seeded networks
//! ([`NetWeights::random`]).

mod decode;
mod proto;
mod random;
mod write;

pub use random::Architecture;
#[cfg(test)]
pub(crate) use random::variety;
pub use write::{Encoding, WriteError, save, to_gzip_bytes, to_protobuf_bytes};

use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

use decode::{LayerReader, fold_batch_norm};

/// The magic number of Lc0 weight files (`kWeightMagic`).
const WEIGHT_MAGIC: u32 = 0x1c0;

/// Why a weight file could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("weight file {0} not found")]
    NotFound(PathBuf),
    #[error("cannot read weight file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("weight file is empty")]
    Empty,
    #[error("weight file is not gzip-compressed (expected an Lc0 .pb.gz file)")]
    NotGzip,
    #[error("weight file is truncated or its gzip data is corrupt: {0}")]
    Truncated(std::io::Error),
    #[error("weight file is not a valid Lc0 protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("bad magic number {0:#x} (an Lc0 weight file has 0x1c0)")]
    BadMagic(u32),
    #[error("unsupported network: {0}")]
    UnsupportedNetwork(String),
    #[error("unsupported input format {0} (only the classical 112-plane input is supported)")]
    UnsupportedInput(String),
    #[error("unsupported policy head: {0}")]
    UnsupportedPolicy(String),
    #[error("unsupported value head: {0}")]
    UnsupportedValue(String),
    #[error("unsupported weights encoding {0}")]
    UnsupportedEncoding(i32),
    #[error("missing layer {0}")]
    MissingLayer(String),
    #[error("layer {layer} has {found} values, expected {expected}")]
    WrongLayerSize {
        layer: String,
        expected: usize,
        found: usize,
    },
    #[error("libtorch error: {0}")]
    Torch(String),
}

/// The non-linearity used throughout the tower and heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Mish,
}

/// A convolution with batch-norm already folded: weights `[out][in][k][k]`, one bias per output.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub outputs: usize,
    pub inputs: usize,
    /// Kernel side: 3 or 1.
    pub kernel: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A dense layer: weights `[out][in]` row-major, y = W·x + b.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub outputs: usize,
    pub inputs: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Squeeze-and-excitation: `fc1` F→S, `fc2` S→2F (gammas then betas).
#[derive(Clone, Debug, PartialEq)]
pub struct SqueezeExcite {
    pub fc1: Dense,
    pub fc2: Dense,
}

/// One residual block.
#[derive(Clone, Debug, PartialEq)]
pub struct ResidualBlock {
    pub conv1: Conv,
    pub conv2: Conv,
    pub se: Option<SqueezeExcite>,
}

/// The policy head.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicyHead {
    /// 3×3 conv F→F, ReLU, 3×3 conv F→80, then the conv-policy gather map.
    Convolution { conv1: Conv, conv2: Conv },
    /// 1×1 conv F→k, ReLU, dense k·64→1858.
    Classical { conv: Conv, fc: Dense },
}

/// The value head: 1×1 conv, dense (ReLU), dense to 3 (WDL) or 1 (classical, tanh) outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueHead {
    pub conv: Conv,
    pub fc1: Dense,
    pub fc2: Dense,
}

impl ValueHead {
    /// Whether the head outputs win/draw/loss logits (else one tanh value).
    pub fn is_wdl(&self) -> bool {
        self.fc2.outputs == 3
    }
}

/// A residual network's weights, decoded and folded, ready to be put on a device.
#[derive(Clone, Debug, PartialEq)]
pub struct NetWeights {
    pub activation: Activation,
    pub input: Conv,
    pub residual: Vec<ResidualBlock>,
    pub policy: PolicyHead,
    pub value: ValueHead,
}

impl NetWeights {
    /// Residual filters F.
    pub fn filters(&self) -> usize {
        self.input.outputs
    }

    /// A short shape description, e.g. "6x64 SE, conv policy, WDL".
    pub fn describe(&self) -> String {
        let se = if self.residual.iter().any(|b| b.se.is_some()) {
            " SE"
        } else {
            ""
        };
        let policy = match self.policy {
            PolicyHead::Convolution { .. } => "conv policy",
            PolicyHead::Classical { .. } => "classical policy",
        };
        let value = if self.value.is_wdl() {
            "WDL"
        } else {
            "classical value"
        };
        let mish = if self.activation == Activation::Mish {
            ", mish"
        } else {
            ""
        };
        format!(
            "{}x{}{se}, {policy}, {value}{mish}",
            self.residual.len(),
            self.filters()
        )
    }
}

/// Loads an Lc0 `.pb.gz` weight file.
pub fn load(path: &Path) -> Result<NetWeights, LoadError> {
    let compressed = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotFound(path.to_path_buf()),
        _ => LoadError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    from_gzip_bytes(&compressed)
}

/// Decodes the bytes of an Lc0 `.pb.gz` file.
pub fn from_gzip_bytes(compressed: &[u8]) -> Result<NetWeights, LoadError> {
    if compressed.is_empty() {
        return Err(LoadError::Empty);
    }
    if !compressed.starts_with(&[0x1f, 0x8b]) {
        return Err(LoadError::NotGzip);
    }
    let mut bytes = Vec::with_capacity(compressed.len() * 2);
    flate2::read::GzDecoder::new(compressed)
        .read_to_end(&mut bytes)
        .map_err(LoadError::Truncated)?;
    from_protobuf_bytes(&bytes)
}

/// Decodes an uncompressed serialized `Net` message.
pub fn from_protobuf_bytes(bytes: &[u8]) -> Result<NetWeights, LoadError> {
    let net = <proto::Net as prost::Message>::decode(bytes)?;
    if net.magic != WEIGHT_MAGIC {
        return Err(LoadError::BadMagic(net.magic));
    }
    let format = net.format.clone().unwrap_or_default();
    let shape = NetShape::of(&net, &format)?;
    let reader = LayerReader::new(format.weights_encoding);
    let weights = net
        .weights
        .as_ref()
        .ok_or_else(|| LoadError::MissingLayer("weights".into()))?;
    build(weights, &shape, &reader)
}

/// What the file's `NetworkFormat` declares, after Lc0's normalisation of older files.
struct NetShape {
    se: bool,
    conv_policy: bool,
    wdl: bool,
    activation: Activation,
}

impl NetShape {
    fn of(net: &proto::Net, format: &proto::Format) -> Result<Self, LoadError> {
        if net.onnx_model.is_some() {
            return Err(LoadError::UnsupportedNetwork("ONNX model".into()));
        }
        let Some(nf) = &format.network_format else {
            // Pre-format files: classical everything.
            return Ok(NetShape {
                se: false,
                conv_policy: false,
                wdl: false,
                activation: Activation::Relu,
            });
        };
        let (se, legacy) = match nf.network {
            1 => (false, true),
            2 => (true, true),
            3 => (false, false),
            4 => (true, false),
            5 => return Err(LoadError::UnsupportedNetwork("ONNX network".into())),
            6 | 7 | 134 => {
                return Err(LoadError::UnsupportedNetwork(
                    "attention body (transformer) networks are not supported".into(),
                ));
            }
            n => {
                return Err(LoadError::UnsupportedNetwork(format!(
                    "network structure {n}"
                )));
            }
        };
        match nf.input {
            1 => {}
            0 if legacy => {}
            2 => {
                return Err(LoadError::UnsupportedInput(
                    "112 planes with castling plane (2)".into(),
                ));
            }
            3 | 4 | 5 | 132 | 133 => {
                return Err(LoadError::UnsupportedInput(format!(
                    "canonicalized 112 planes ({})",
                    nf.input
                )));
            }
            n => return Err(LoadError::UnsupportedInput(n.to_string())),
        }
        let conv_policy = match (legacy, nf.policy) {
            (true, _) | (false, 1) => false,
            (false, 2) => true,
            (false, 3) => {
                return Err(LoadError::UnsupportedPolicy("attention policy (3)".into()));
            }
            (false, n) => return Err(LoadError::UnsupportedPolicy(format!("policy format {n}"))),
        };
        let wdl = match (legacy, nf.value) {
            (true, _) | (false, 1) => false,
            (false, 2) => true,
            (false, 3) => return Err(LoadError::UnsupportedValue("VALUE_PARAM (3)".into())),
            (false, n) => return Err(LoadError::UnsupportedValue(format!("value format {n}"))),
        };
        let activation = match nf.default_activation {
            0 => Activation::Relu,
            1 => Activation::Mish,
            n => {
                return Err(LoadError::UnsupportedNetwork(format!(
                    "default activation {n}"
                )));
            }
        };
        if nf.moves_left != 0 {
            tracing::debug!("ignoring the moves-left head");
        }
        Ok(NetShape {
            se,
            conv_policy,
            wdl,
            activation,
        })
    }
}

/// Decodes every layer the shape needs, checking sizes.
fn build(
    w: &proto::Weights,
    shape: &NetShape,
    reader: &LayerReader,
) -> Result<NetWeights, LoadError> {
    let input = conv_block(reader, w.input.as_ref(), "input", None, 112, 3)?;
    let filters = input.outputs;
    let residual = w
        .residual
        .iter()
        .enumerate()
        .map(|(i, block)| {
            let name = |part: &str| format!("residual[{i}].{part}");
            let conv1 = conv_block(
                reader,
                block.conv1.as_ref(),
                &name("conv1"),
                Some(filters),
                filters,
                3,
            )?;
            let conv2 = conv_block(
                reader,
                block.conv2.as_ref(),
                &name("conv2"),
                Some(filters),
                filters,
                3,
            )?;
            let se = match (&block.se, shape.se) {
                (Some(se), true) => Some(squeeze_excite(reader, se, filters, &name("se"))?),
                (None, true) => return Err(LoadError::MissingLayer(name("se"))),
                (_, false) => None,
            };
            Ok(ResidualBlock { conv1, conv2, se })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if residual.is_empty() {
        return Err(LoadError::MissingLayer("residual".into()));
    }
    let policy = if shape.conv_policy {
        let conv1 = conv_block(
            reader,
            w.policy1.as_ref(),
            "policy1",
            Some(filters),
            filters,
            3,
        )?;
        let conv2 = conv_block(
            reader,
            w.policy.as_ref(),
            "policy",
            Some(crate::policy::CONV_POLICY_PLANES),
            filters,
            3,
        )?;
        PolicyHead::Convolution { conv1, conv2 }
    } else {
        let conv = conv_block(reader, w.policy.as_ref(), "policy", None, filters, 1)?;
        let fc = dense(
            reader,
            (w.ip_pol_w.as_ref(), w.ip_pol_b.as_ref()),
            ("ip_pol_w", "ip_pol_b"),
            conv.outputs * 64,
            Some(crate::policy::POLICY_SIZE),
        )?;
        PolicyHead::Classical { conv, fc }
    };
    let conv = conv_block(reader, w.value.as_ref(), "value", None, filters, 1)?;
    let fc1 = dense(
        reader,
        (w.ip1_val_w.as_ref(), w.ip1_val_b.as_ref()),
        ("ip1_val_w", "ip1_val_b"),
        conv.outputs * 64,
        None,
    )?;
    let outputs = if shape.wdl { 3 } else { 1 };
    let fc2 = dense(
        reader,
        (w.ip2_val_w.as_ref(), w.ip2_val_b.as_ref()),
        ("ip2_val_w", "ip2_val_b"),
        fc1.outputs,
        Some(outputs),
    )?;
    let value = ValueHead { conv, fc1, fc2 };
    Ok(NetWeights {
        activation: shape.activation,
        input,
        residual,
        policy,
        value,
    })
}

fn required<'a, T>(layer: Option<&'a T>, name: &str) -> Result<&'a T, LoadError> {
    layer.ok_or_else(|| LoadError::MissingLayer(name.to_string()))
}

fn check_len(values: &[f32], expected: usize, name: &str) -> Result<(), LoadError> {
    if values.len() == expected {
        Ok(())
    } else {
        Err(LoadError::WrongLayerSize {
            layer: name.to_string(),
            expected,
            found: values.len(),
        })
    }
}

/// A conv block `name` with `inputs` input channels and a `kernel`×`kernel` kernel; its output
/// count is `outputs` when given, else read from its biases / batch-norm means.
fn conv_block(
    reader: &LayerReader,
    block: Option<&proto::ConvBlock>,
    name: &str,
    outputs: Option<usize>,
    inputs: usize,
    kernel: usize,
) -> Result<Conv, LoadError> {
    let block = required(block, name)?;
    let weights = reader.read(
        required(block.weights.as_ref(), &format!("{name}.weights"))?,
        name,
    )?;
    let optional = |layer: &Option<proto::Layer>,
                    part: &str|
     -> Result<Option<Vec<f32>>, LoadError> {
        match layer {
            Some(l) if !l.params.is_empty() => Ok(Some(reader.read(l, &format!("{name}.{part}"))?)),
            _ => Ok(None),
        }
    };
    let biases = optional(&block.biases, "biases")?;
    let means = optional(&block.bn_means, "bn_means")?;
    let outputs = match (outputs, &biases, &means) {
        (Some(n), _, _) => n,
        (None, Some(b), _) => b.len(),
        (None, None, Some(m)) => m.len(),
        (None, None, None) => return Err(LoadError::MissingLayer(format!("{name}.biases"))),
    };
    check_len(
        &weights,
        outputs * inputs * kernel * kernel,
        &format!("{name}.weights"),
    )?;
    let mut bias = biases.unwrap_or_else(|| vec![0.0; outputs]);
    check_len(&bias, outputs, &format!("{name}.biases"))?;
    let mut weights = weights;
    if let Some(means) = means {
        check_len(&means, outputs, &format!("{name}.bn_means"))?;
        let variances = reader.read(
            required(block.bn_stddivs.as_ref(), &format!("{name}.bn_stddivs"))?,
            &format!("{name}.bn_stddivs"),
        )?;
        check_len(&variances, outputs, &format!("{name}.bn_stddivs"))?;
        let gammas = optional(&block.bn_gammas, "bn_gammas")?.unwrap_or_else(|| vec![1.0; outputs]);
        check_len(&gammas, outputs, &format!("{name}.bn_gammas"))?;
        let betas = optional(&block.bn_betas, "bn_betas")?.unwrap_or_else(|| vec![0.0; outputs]);
        check_len(&betas, outputs, &format!("{name}.bn_betas"))?;
        fold_batch_norm(&mut weights, &mut bias, &means, &variances, &gammas, &betas);
    }
    Ok(Conv {
        outputs,
        inputs,
        kernel,
        weights,
        bias,
    })
}

/// A dense layer from its weight and bias layers (named `w_name`, `b_name`) with `inputs`
/// inputs; its output count is `outputs` when given, else its bias length.
fn dense(
    reader: &LayerReader,
    (weights, bias): (Option<&proto::Layer>, Option<&proto::Layer>),
    (w_name, b_name): (&str, &str),
    inputs: usize,
    outputs: Option<usize>,
) -> Result<Dense, LoadError> {
    let weights = reader.read(required(weights, w_name)?, w_name)?;
    let bias = reader.read(required(bias, b_name)?, b_name)?;
    let outputs = outputs.unwrap_or(bias.len());
    if outputs == 0 {
        return Err(LoadError::MissingLayer(b_name.to_string()));
    }
    check_len(&bias, outputs, b_name)?;
    check_len(&weights, outputs * inputs, w_name)?;
    Ok(Dense {
        outputs,
        inputs,
        weights,
        bias,
    })
}

fn squeeze_excite(
    reader: &LayerReader,
    se: &proto::SeUnit,
    filters: usize,
    name: &str,
) -> Result<SqueezeExcite, LoadError> {
    let names = |w: &str, b: &str| (format!("{name}.{w}"), format!("{name}.{b}"));
    let (w1, b1) = names("w1", "b1");
    let fc1 = dense(
        reader,
        (se.w1.as_ref(), se.b1.as_ref()),
        (&w1, &b1),
        filters,
        None,
    )?;
    let (w2, b2) = names("w2", "b2");
    let fc2 = dense(
        reader,
        (se.w2.as_ref(), se.b2.as_ref()),
        (&w2, &b2),
        fc1.outputs,
        Some(2 * filters),
    )?;
    Ok(SqueezeExcite { fc1, fc2 })
}

#[cfg(test)]
mod tests;

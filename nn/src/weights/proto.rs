//! The parts of Lc0's `net.proto` (package `pblczero`) that residual networks use, written by
//! hand for prost. Unknown fields (training parameters, transformer layers, …) are skipped.
//! Enumerations are kept as raw `i32` so that unknown values reach the loader's checks.

/// `Net`: the whole file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Net {
    #[prost(fixed32, tag = "1")]
    pub magic: u32,
    #[prost(string, tag = "2")]
    pub license: String,
    #[prost(message, optional, tag = "3")]
    pub min_version: Option<EngineVersion>,
    #[prost(message, optional, tag = "4")]
    pub format: Option<Format>,
    #[prost(message, optional, tag = "10")]
    pub weights: Option<Weights>,
    #[prost(message, optional, tag = "11")]
    pub onnx_model: Option<OnnxModel>,
}

/// `EngineVersion`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EngineVersion {
    #[prost(uint32, tag = "1")]
    pub major: u32,
    #[prost(uint32, tag = "2")]
    pub minor: u32,
    #[prost(uint32, tag = "3")]
    pub patch: u32,
}

/// `OnnxModel`: only its presence matters (ONNX nets are refused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OnnxModel {}

/// `Format`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Format {
    #[prost(int32, tag = "1")]
    pub weights_encoding: i32,
    #[prost(message, optional, tag = "2")]
    pub network_format: Option<NetworkFormat>,
}

/// `NetworkFormat`; absent fields read as 0.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NetworkFormat {
    #[prost(int32, tag = "1")]
    pub input: i32,
    #[prost(int32, tag = "2")]
    pub output: i32,
    #[prost(int32, tag = "3")]
    pub network: i32,
    #[prost(int32, tag = "4")]
    pub policy: i32,
    #[prost(int32, tag = "5")]
    pub value: i32,
    #[prost(int32, tag = "6")]
    pub moves_left: i32,
    #[prost(int32, tag = "7")]
    pub default_activation: i32,
}

/// `Weights` (residual tower and its heads).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Weights {
    #[prost(message, optional, tag = "1")]
    pub input: Option<ConvBlock>,
    #[prost(message, repeated, tag = "2")]
    pub residual: Vec<Residual>,
    #[prost(message, optional, tag = "3")]
    pub policy: Option<ConvBlock>,
    #[prost(message, optional, tag = "4")]
    pub ip_pol_w: Option<Layer>,
    #[prost(message, optional, tag = "5")]
    pub ip_pol_b: Option<Layer>,
    #[prost(message, optional, tag = "6")]
    pub value: Option<ConvBlock>,
    #[prost(message, optional, tag = "7")]
    pub ip1_val_w: Option<Layer>,
    #[prost(message, optional, tag = "8")]
    pub ip1_val_b: Option<Layer>,
    #[prost(message, optional, tag = "9")]
    pub ip2_val_w: Option<Layer>,
    #[prost(message, optional, tag = "10")]
    pub ip2_val_b: Option<Layer>,
    #[prost(message, optional, tag = "11")]
    pub policy1: Option<ConvBlock>,
}

/// `Weights.Residual`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Residual {
    #[prost(message, optional, tag = "1")]
    pub conv1: Option<ConvBlock>,
    #[prost(message, optional, tag = "2")]
    pub conv2: Option<ConvBlock>,
    #[prost(message, optional, tag = "3")]
    pub se: Option<SeUnit>,
}

/// `Weights.SEunit`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeUnit {
    #[prost(message, optional, tag = "1")]
    pub w1: Option<Layer>,
    #[prost(message, optional, tag = "2")]
    pub b1: Option<Layer>,
    #[prost(message, optional, tag = "3")]
    pub w2: Option<Layer>,
    #[prost(message, optional, tag = "4")]
    pub b2: Option<Layer>,
}

/// `Weights.ConvBlock`; `bn_stddivs` holds the variance.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConvBlock {
    #[prost(message, optional, tag = "1")]
    pub weights: Option<Layer>,
    #[prost(message, optional, tag = "2")]
    pub biases: Option<Layer>,
    #[prost(message, optional, tag = "3")]
    pub bn_means: Option<Layer>,
    #[prost(message, optional, tag = "4")]
    pub bn_stddivs: Option<Layer>,
    #[prost(message, optional, tag = "5")]
    pub bn_gammas: Option<Layer>,
    #[prost(message, optional, tag = "6")]
    pub bn_betas: Option<Layer>,
}

/// `Weights.Layer`: one quantised tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Layer {
    #[prost(float, tag = "1")]
    pub min_val: f32,
    #[prost(float, tag = "2")]
    pub max_val: f32,
    #[prost(bytes = "vec", tag = "3")]
    pub params: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub encoding: i32,
    #[prost(uint32, repeated, tag = "5")]
    pub dims: Vec<u32>,
}

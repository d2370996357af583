//! Turning quantised `Layer`s into floats, and folding batch-norm into a convolution.

use super::LoadError;
use super::proto::Layer;

/// Per-layer encodings (`Weights.Layer.Encoding`).
const LINEAR16: i32 = 1;
const FLOAT16: i32 = 2;
const BFLOAT16: i32 = 3;
const FLOAT32: i32 = 4;

/// Batch-norm epsilon used by Lc0.
const BN_EPSILON: f32 = 1e-5;

/// Decodes layers, falling back to the file-level encoding for layers that declare none.
pub(super) struct LayerReader {
    file_encoding: i32,
}

impl LayerReader {
    pub(super) fn new(file_encoding: i32) -> Self {
        LayerReader { file_encoding }
    }

    /// The layer's values; `name` is used in errors.
    pub(super) fn read(&self, layer: &Layer, name: &str) -> Result<Vec<f32>, LoadError> {
        let encoding = if layer.encoding == 0 {
            self.file_encoding
        } else {
            layer.encoding
        };
        let bytes = &layer.params;
        let width = match encoding {
            LINEAR16 | FLOAT16 | BFLOAT16 => 2,
            FLOAT32 => 4,
            other => return Err(LoadError::UnsupportedEncoding(other)),
        };
        if !bytes.len().is_multiple_of(width) {
            return Err(LoadError::WrongLayerSize {
                layer: name.to_string(),
                expected: bytes.len() / width * width,
                found: bytes.len(),
            });
        }
        let values = match encoding {
            FLOAT32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            _ => {
                let words = bytes
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]));
                match encoding {
                    LINEAR16 => {
                        let (min, range) = (layer.min_val, layer.max_val - layer.min_val);
                        words
                            .map(|q| min + range * (f32::from(q) / 65535.0))
                            .collect()
                    }
                    FLOAT16 => words.map(f16_to_f32).collect(),
                    _ => words.map(|h| f32::from_bits(u32::from(h) << 16)).collect(),
                }
            }
        };
        Ok(values)
    }
}

/// IEEE half precision to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exponent = i32::from((h >> 10) & 0x1f);
    let mantissa = f32::from(h & 0x3ff);
    match exponent {
        0 => sign * mantissa * 2f32.powi(-24),
        31 if mantissa == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + mantissa / 1024.0) * 2f32.powi(exponent - 15),
    }
}

/// Folds batch-norm into a convolution (Lc0's `ConvBlock` constructor):
/// g = γ/√(var+ε); w'[o] = g·w[o]; b'[o] = β − g·(mean − b).
pub(super) fn fold_batch_norm(
    weights: &mut [f32],
    bias: &mut [f32],
    means: &[f32],
    variances: &[f32],
    gammas: &[f32],
    betas: &[f32],
) {
    let per_output = weights.len() / bias.len();
    for (o, row) in weights.chunks_exact_mut(per_output).enumerate() {
        let g = gammas[o] / (variances[o] + BN_EPSILON).sqrt();
        row.iter_mut().for_each(|w| *w *= g);
        bias[o] = betas[o] - g * (means[o] - bias[o]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(encoding: i32, params: Vec<u8>) -> Layer {
        Layer {
            min_val: -1.0,
            max_val: 3.0,
            params,
            encoding,
            dims: vec![],
        }
    }

    #[test]
    fn decodes_each_encoding() {
        let reader = LayerReader::new(LINEAR16);
        let cases: [(i32, Vec<u8>, Vec<f32>); 4] = [
            (
                0,
                [0u16, 65535].iter().flat_map(|q| q.to_le_bytes()).collect(),
                vec![-1.0, 3.0],
            ),
            (
                FLOAT16,
                [0x3c00u16, 0xc000, 0x0001]
                    .iter()
                    .flat_map(|q| q.to_le_bytes())
                    .collect(),
                vec![1.0, -2.0, 2f32.powi(-24)],
            ),
            (
                BFLOAT16,
                [0x3fc0u16].iter().flat_map(|q| q.to_le_bytes()).collect(),
                vec![1.5],
            ),
            (FLOAT32, 0.25f32.to_le_bytes().to_vec(), vec![0.25]),
        ];
        for (encoding, params, expected) in cases {
            assert_eq!(
                reader.read(&layer(encoding, params), "x").unwrap(),
                expected,
                "encoding {encoding}"
            );
        }
    }

    #[test]
    fn refuses_odd_sizes_and_unknown_encodings() {
        let reader = LayerReader::new(LINEAR16);
        assert!(matches!(
            reader.read(&layer(0, vec![1, 2, 3]), "x"),
            Err(LoadError::WrongLayerSize { .. })
        ));
        assert!(matches!(
            reader.read(&layer(9, vec![]), "x"),
            Err(LoadError::UnsupportedEncoding(9))
        ));
        let reader = LayerReader::new(0);
        assert!(matches!(
            reader.read(&layer(0, vec![]), "x"),
            Err(LoadError::UnsupportedEncoding(0))
        ));
    }

    #[test]
    fn folds_batch_norm() {
        let mut weights = vec![1.0, 2.0, 3.0, 4.0];
        let mut bias = vec![0.5, 0.0];
        fold_batch_norm(
            &mut weights,
            &mut bias,
            &[1.0, 2.0],
            &[4.0 - BN_EPSILON, 1.0 - BN_EPSILON],
            &[2.0, 1.0],
            &[0.0, 1.0],
        );
        assert_eq!(weights, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(bias, vec![-0.5, -1.0]);
    }
}

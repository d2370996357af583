//! Runs an exported model (`model.pt`) behind a pipe: the hidden `__torchscript` role.
//!
//! A Triton server without the PyTorch backend (pytriton's CPU build has only the Python
//! backend) can still serve the exported TorchScript itself: its Python model starts
//! `banyan __torchscript DIR/MODEL/1/model.pt` and forwards every batch through this pipe.
//!
//! Frames on stdin: `rows` (u32, little-endian), then the masks (`rows` × 112 × i64) and the
//! rule-50 counters (`rows` × f32). Each is answered on stdout with `rows` × 1861 f32, the
//! model's output. End of input ends the process.

use std::io::{self, Read, Write};
use std::path::Path;

use tch::{CModule, Kind, Tensor};

use super::export::OUTPUT_SIZE;
use crate::encode::INPUT_PLANES;

/// The role argument that starts [`serve`].
pub const ROLE_ARG: &str = "__torchscript";

/// Largest batch a frame may carry.
const MAX_ROWS: usize = 1 << 16;

/// Loads `model` and answers frames from `input` on `output` until end of input.
pub fn serve(model: &Path, input: &mut impl Read, output: &mut impl Write) -> Result<(), String> {
    // The profiling executor re-optimises the graph for every new batch size, which costs
    // seconds each time; the traced graph runs as it is.
    tch::jit::set_profiling_mode(false);
    let module = CModule::load(model).map_err(|e| format!("loading {}: {e}", model.display()))?;
    let mut header = [0u8; 4];
    loop {
        match input.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(format!("reading a frame: {e}")),
        }
        let rows = u32::from_le_bytes(header) as usize;
        if rows == 0 || rows > MAX_ROWS {
            return Err(format!("a frame of {rows} positions"));
        }
        let mut masks = vec![0u8; rows * INPUT_PLANES * 8];
        let mut rule50 = vec![0u8; rows * 4];
        input
            .read_exact(&mut masks)
            .and_then(|()| input.read_exact(&mut rule50))
            .map_err(|e| format!("reading a frame: {e}"))?;
        let masks =
            Tensor::from_data_size(&masks, &[rows as i64, INPUT_PLANES as i64], Kind::Int64);
        let rule50 = Tensor::from_data_size(&rule50, &[rows as i64, 1], Kind::Float);
        let out = tch::no_grad(|| module.forward_ts(&[masks, rule50]))
            .map_err(|e| format!("running the model: {e}"))?
            .contiguous();
        if out.kind() != Kind::Float || out.size() != [rows as i64, OUTPUT_SIZE as i64] {
            return Err(format!(
                "the model answered {:?} {:?}, expected Float [{rows}, {OUTPUT_SIZE}]",
                out.kind(),
                out.size()
            ));
        }
        let mut floats = vec![0f32; rows * OUTPUT_SIZE];
        out.copy_data(&mut floats, rows * OUTPUT_SIZE);
        let bytes: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
        output
            .write_all(&bytes)
            .and_then(|()| output.flush())
            .map_err(|e| format!("writing an answer: {e}"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::Weights;
    use crate::encode::PositionHistory;
    use crate::triton::export::{run_module, write_repository};
    use cozy_chess::Board;

    /// Two frames through the pipe answer what the module answers directly (within the
    /// rounding of another batch size).
    #[test]
    fn frames_are_answered_with_the_models_output() {
        let dir = std::env::temp_dir().join(format!("banyan-triton-pipe-{}", std::process::id()));
        let exported = write_repository(&Weights::Builtin, &dir, "m", 64).unwrap();
        let file = exported.model_dir.join("1/model.pt");
        let mut planes = PositionHistory::new(Board::default()).planes();
        planes.rule50 = 3;
        let mut input = Vec::new();
        for rows in [1u32, 2] {
            input.extend_from_slice(&rows.to_le_bytes());
            for _ in 0..rows {
                input.extend(planes.masks.iter().flat_map(|m| m.to_le_bytes()));
            }
            for _ in 0..rows {
                input.extend_from_slice(&3f32.to_le_bytes());
            }
        }
        let mut output = Vec::new();
        serve(&file, &mut input.as_slice(), &mut output).unwrap();
        assert_eq!(output.len(), 3 * OUTPUT_SIZE * 4);
        let (policy, wdl) = run_module(&CModule::load(&file).unwrap(), &[planes]).unwrap();
        let expected: Vec<f32> = crate::network::to_host(&Tensor::cat(&[policy, wdl], 1));
        for row in output.chunks_exact(OUTPUT_SIZE * 4) {
            let got: Vec<f32> = row
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let worst = got
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "differs by {worst}");
        }
        let bad = 0u32.to_le_bytes();
        assert!(serve(&file, &mut bad.as_slice(), &mut Vec::new()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

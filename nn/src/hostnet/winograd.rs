//! A 3×3 "same" convolution over one 8×8 board by Winograd's minimal filtering F(m×m, 3×3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015): the board is
//! cut into overlapping n×n input tiles (n = m + 2, zero-padded at the edge), each giving an
//! m×m block of outputs, and the 9·Cin·Cout multiply-adds of every output square become n²
//! products of transformed tiles with transformed weights per tile. Lc0's F(4×4, 3×3): 4
//! tiles of 6×6, 36 products per 16 outputs, 4× fewer multiplies than the direct
//! convolution, with weights 4× the plain ones. (F(2×2, 3×3), 16 tiles of 4×4 with weights
//! 16/9 of the plain ones, was measured beside it: level at batch 1, where each weight's trip
//! from beyond the L2 cache serves few tiles, and 15–30% slower from batch 2 on.)
//!
//! The transforms are written out as formulas over one vector of [`LANES`] channels, which
//! the compiler turns into whole-register instructions; a tile's components stay in
//! registers or on the stack between the two halves of a transform.
//!
//! Layouts: activations are channels-last, `[position][square][channel]` (square = rank·8 +
//! file). A convolution first copies its input boards into rings of zeros (10×10 squares,
//! channels padded with zeros to `wide`, a multiple of LANES), so that the tiles at the edge
//! read zeros and every read is a whole vector. Transformed tiles are
//! `[K][positions · tiles][wide]` (K = n² components); transformed weights
//! `[K][Cout / LANES][wide][LANES]` (outputs padded with zeros to a multiple of LANES), so
//! that the multiply ([`simd::multiply`]) reads them front to back and every tile of the
//! batch uses a weight panel while it is in the L1 cache.

use super::simd::{self, Kernel, LANES};
use crate::weights::Conv;

/// One vector of [`LANES`] channels.
type Lanes = [f32; LANES];

const ZERO: Lanes = [0.0; LANES];

/// Side of an output tile, m.
const M: usize = 4;
/// Side of an input tile, n = m + 2.
const N: usize = M + 2;
/// Tiles per board side.
const SIDE: usize = 8 / M;
/// Tiles per board.
const TILES: usize = SIDE * SIDE;
/// Transform components per tile.
const K: usize = N * N;

/// Weight transform G (n×3), with Lc0's interpolation points 0, ±1, ±2 and ∞.
const G: [[f64; 3]; N] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Bᵀ·x, Bᵀ = [[4, 0, −5, 0, 1, 0], [0, −4, −4, 1, 1, 0], [0, 4, −4, −1, 1, 0],
/// [0, −2, −1, 2, 1, 0], [0, 2, −1, −2, 1, 0], [0, 4, 0, −5, 0, 1]].
#[inline(always)]
fn input(x: &[Lanes; N]) -> [Lanes; N] {
    let mut r = [ZERO; N];
    for l in 0..LANES {
        let [x0, x1, x2, x3, x4, x5] = [x[0][l], x[1][l], x[2][l], x[3][l], x[4][l], x[5][l]];
        let a = (-4.0f32).mul_add(x2, x4);
        let b = (-4.0f32).mul_add(x1, x3);
        let c = x4 - x2;
        let d = 2.0 * (x3 - x1);
        r[0][l] = 4.0f32.mul_add(x0, (-5.0f32).mul_add(x2, x4));
        r[1][l] = a + b;
        r[2][l] = a - b;
        r[3][l] = c + d;
        r[4][l] = c - d;
        r[5][l] = 4.0f32.mul_add(x1, (-5.0f32).mul_add(x3, x5));
    }
    r
}

/// Aᵀ·x, Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, −1, 2, −2, 0], [0, 1, 1, 4, 4, 0],
/// [0, 1, −1, 8, −8, 1]] (m entries; zeros after).
#[inline(always)]
fn output(x: &[Lanes; N]) -> [Lanes; N] {
    let mut r = [ZERO; N];
    for l in 0..LANES {
        let [x0, x1, x2, x3, x4, x5] = [x[0][l], x[1][l], x[2][l], x[3][l], x[4][l], x[5][l]];
        let (s12, d12) = (x1 + x2, x1 - x2);
        let (s34, d34) = (x3 + x4, x3 - x4);
        r[0][l] = x0 + s12 + s34;
        r[1][l] = 2.0f32.mul_add(d34, d12);
        r[2][l] = 4.0f32.mul_add(s34, s12);
        r[3][l] = 8.0f32.mul_add(d34, d12) + x5;
    }
    r
}

/// A 3×3 convolution with its weights in the Winograd domain.
pub(super) struct Conv3 {
    inputs: usize,
    outputs: usize,
    /// `inputs` rounded up to [`LANES`], the channels of a padded board.
    wide: usize,
    /// `outputs` rounded up to [`LANES`]; the padding columns of the weights are zero.
    padded: usize,
    /// Transformed weights, `[K][padded / LANES][wide][LANES]`.
    u: Vec<f32>,
    /// The biases, padded with zeros to `padded`.
    bias: Vec<f32>,
}

/// Side of a board with its ring of zeros, what the tiles at the edge read beyond it.
const RING: usize = 10;

/// Work space of one pass, reused between calls.
#[derive(Default)]
pub(super) struct Scratch {
    /// The input boards in their rings of zeros.
    rings: Rings,
    /// Transformed tiles, `[K][positions · tiles][wide]`.
    v: Vec<f32>,
    /// Products, `[K][positions · tiles][padded]`.
    m: Vec<f32>,
}

/// Boards in rings of zeros, channels padded with zeros to a multiple of [`LANES`]:
/// `[positions][RING][RING][wide]`, one buffer per `wide` (a pass has two: the input
/// planes' and the tower's), so that no layer re-zeroes the other's.
#[derive(Default)]
struct Rings(Vec<(usize, Vec<f32>)>);

impl Rings {
    /// Room for `positions` boards of `wide` channels. Only the boards' squares are written
    /// after this, so the rings and padding channels stay zero.
    fn boards(&mut self, positions: usize, wide: usize) -> &mut [f32] {
        let at = match self.0.iter().position(|(w, _)| *w == wide) {
            Some(at) => at,
            None => {
                self.0.push((wide, Vec::new()));
                self.0.len() - 1
            }
        };
        grown(&mut self.0[at].1, positions * RING * RING * wide)
    }
}

/// The first `len` floats of `buffer`, grown with zeros to that if shorter; never shrunk, so
/// that layers of different sizes do not refill it each pass.
fn grown(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

impl Conv3 {
    /// Transforms `conv`'s weights (`[out][in][3][3]`).
    pub(super) fn new(conv: &Conv) -> Conv3 {
        assert_eq!(conv.kernel, 3, "Winograd F(4x4, 3x3) is for 3x3 kernels");
        let wide = conv.inputs.div_ceil(LANES) * LANES;
        let padded = conv.outputs.div_ceil(LANES) * LANES;
        Conv3 {
            inputs: conv.inputs,
            outputs: conv.outputs,
            wide,
            padded,
            u: transform_weights(conv, wide, padded),
            bias: {
                let mut bias = conv.bias.clone();
                bias.resize(padded, 0.0);
                bias
            },
        }
    }

    /// Output channels.
    pub(super) fn outputs(&self) -> usize {
        self.outputs
    }

    /// Convolves each of the `positions` boards of `input` (`[positions][64][inputs]`) into
    /// `out`, sized here to `[positions][64][outputs]`, bias added.
    #[inline(always)]
    pub(super) fn apply(
        &self,
        input: &[f32],
        out: &mut Vec<f32>,
        positions: usize,
        scratch: &mut Scratch,
        kernel: Kernel,
    ) {
        let (cin, wide, cout, padded) = (self.inputs, self.wide, self.outputs, self.padded);
        let rows = positions * TILES;
        out.resize(positions * 64 * cout, 0.0);
        let boards = scratch.rings.boards(positions, wide);
        for (ringed, board) in boards
            .chunks_exact_mut(RING * RING * wide)
            .zip(input.chunks_exact(64 * cin))
        {
            for (square, channels) in board.chunks_exact(cin).enumerate() {
                let at = ((square / 8 + 1) * RING + square % 8 + 1) * wide;
                let ringed = &mut ringed[at..][..cin];
                let whole = ringed
                    .chunks_exact_mut(LANES)
                    .zip(channels.chunks_exact(LANES));
                for (to, from) in whole {
                    to.copy_from_slice(from);
                }
                let left = cin / LANES * LANES;
                if left < cin {
                    ringed[left..].copy_from_slice(&channels[left..]);
                }
            }
        }
        let v = grown(&mut scratch.v, K * rows * wide);
        let m = grown(&mut scratch.m, K * rows * padded);
        for (position, board) in boards.chunks_exact(RING * RING * wide).enumerate() {
            for tile in 0..TILES {
                let row = position * TILES + tile;
                transform_tile(board, wide, tile, row, rows, v);
            }
        }
        // M[k] = V[k] · U[k] for each component k.
        let components = v.chunks_exact(rows * wide);
        let weights = self.u.chunks_exact(wide * padded);
        let products = m.chunks_exact_mut(rows * padded);
        for ((v, u), m) in components.zip(weights).zip(products) {
            simd::multiply(kernel, v, rows, wide, u, padded, m, padded);
        }
        for (position, board) in out.chunks_exact_mut(64 * cout).enumerate() {
            for tile in 0..TILES {
                let row = position * TILES + tile;
                self.untransform_tile(tile, row, rows, m, board);
            }
        }
    }

    /// Y = Aᵀ·M·A of one tile (row `row` of `rows` in the products `m`) plus the bias, into
    /// its m×m squares of `out`, one board.
    #[inline(always)]
    fn untransform_tile(&self, tile: usize, row: usize, rows: usize, m: &[f32], out: &mut [f32]) {
        let (cout, padded) = (self.outputs, self.padded);
        let (rank0, file0) = (M * (tile / SIDE), M * (tile % SIDE));
        let mut half = [[ZERO; N]; N];
        for c in (0..padded).step_by(LANES) {
            // Column b of Aᵀ·m is Aᵀ times component column b.
            let (base, across) = (row * padded + c, rows * padded);
            columns::<false>(&mut half, m, base, N * across, across);
            let bias = load(&self.bias[c..]);
            #[allow(clippy::needless_range_loop)] // p picks entry p of every column
            for p in 0..M {
                let row = [
                    half[0][p], half[1][p], half[2][p], half[3][p], half[4][p], half[5][p],
                ];
                let row = output(&row);
                for (q, y) in row.iter().enumerate().take(M) {
                    let square = (rank0 + p) * 8 + file0 + q;
                    let mut y = *y;
                    for (y, b) in y.iter_mut().zip(bias) {
                        *y += b;
                    }
                    let dst = &mut out[square * cout + c..];
                    if c + LANES <= cout {
                        dst[..LANES].copy_from_slice(&y);
                    } else {
                        dst[..cout - c].copy_from_slice(&y[..cout - c]);
                    }
                }
            }
        }
    }
}

/// `conv`'s weights in the Winograd domain, G·g·Gᵀ, laid out `[K][padded / LANES][wide]
/// [LANES]` (zeros for the inputs from `conv.inputs` to `wide` and the outputs from
/// `conv.outputs` to `padded`); computed in f64 so that the transform adds no rounding
/// beyond the final f32.
fn transform_weights(conv: &Conv, wide: usize, padded: usize) -> Vec<f32> {
    let (inputs, outputs) = (conv.inputs, conv.outputs);
    let mut u = vec![0f32; K * wide * padded];
    for o in 0..outputs {
        for i in 0..inputs {
            let g = &conv.weights[(o * inputs + i) * 9..][..9];
            // G · g, then · Gᵀ
            let gg: [[f64; 3]; N] = G.map(|row| {
                std::array::from_fn(|c| (0..3).map(|k| row[k] * f64::from(g[k * 3 + c])).sum())
            });
            for (a, row) in gg.iter().enumerate() {
                for (b, g) in G.iter().enumerate() {
                    let value: f64 = (0..3).map(|c| row[c] * g[c]).sum();
                    let block = (a * N + b) * padded / LANES + o / LANES;
                    u[(block * wide + i) * LANES + o % LANES] = value as f32;
                }
            }
        }
    }
    u
}

/// V = Bᵀ·d·B of input tile `tile` of `board` (`[RING][RING][wide]`, the board in its ring
/// of zeros), into row `row` (of `rows`) of the transformed tiles `v`.
#[inline(always)]
fn transform_tile(board: &[f32], wide: usize, tile: usize, row: usize, rows: usize, v: &mut [f32]) {
    // The tile's first square, in the ring's coordinates (the board's less one).
    let (rank0, file0) = (M * (tile / SIDE), M * (tile % SIDE));
    let mut half = [[ZERO; N]; N];
    for c in (0..wide).step_by(LANES) {
        // Column j of Bᵀ·d is Bᵀ times the tile's column j.
        let base = (rank0 * RING + file0) * wide + c;
        columns::<true>(&mut half, board, base, RING * wide, wide);
        #[allow(clippy::needless_range_loop)] // a picks entry a of every column
        for a in 0..N {
            let row_of_v = input(&[
                half[0][a], half[1][a], half[2][a], half[3][a], half[4][a], half[5][a],
            ]);
            for (b, value) in row_of_v.iter().enumerate() {
                let k = a * N + b;
                v[(k * rows + row) * wide + c..][..LANES].copy_from_slice(value);
            }
        }
    }
}

/// The input (`INPUT`) or output transform of each column of an n×n tile x whose entry
/// (i, j) starts at `src[base + i·down + j·across]`, into `columns`. (Without closures or
/// `array::map` around the transforms: the compiler may leave those as calls compiled
/// without the CPU's features.)
#[inline(always)]
fn columns<const INPUT: bool>(
    columns: &mut [[Lanes; N]; N],
    src: &[f32],
    base: usize,
    down: usize,
    across: usize,
) {
    for (j, column) in columns.iter_mut().enumerate() {
        let at = base + j * across;
        let entry = |i: usize| at + i * down;
        let x = [
            load(&src[entry(0)..]),
            load(&src[entry(1)..]),
            load(&src[entry(2)..]),
            load(&src[entry(3)..]),
            load(&src[entry(4)..]),
            load(&src[entry(5)..]),
        ];
        *column = if INPUT { input(&x) } else { output(&x) };
    }
}

/// The [`LANES`] floats at the start of `src`.
#[inline(always)]
fn load(src: &[f32]) -> Lanes {
    src[..LANES].try_into().expect("LANES floats")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct 3×3 "same" convolution, channels-last, in f64.
    fn direct(conv: &Conv, input: &[f32]) -> Vec<f64> {
        let (cin, cout) = (conv.inputs, conv.outputs);
        let mut out = vec![0f64; 64 * cout];
        for square in 0..64 {
            let (rank, file) = (square / 8, square % 8);
            for o in 0..cout {
                let mut sum = f64::from(conv.bias[o]);
                for di in 0..3 {
                    for dj in 0..3 {
                        let (r, f) = (rank as isize + di - 1, file as isize + dj - 1);
                        if !(0..8).contains(&r) || !(0..8).contains(&f) {
                            continue;
                        }
                        let from = (r * 8 + f) as usize;
                        for i in 0..cin {
                            let w =
                                conv.weights[((o * cin + i) * 3 + di as usize) * 3 + dj as usize];
                            sum += f64::from(w) * f64::from(input[from * cin + i]);
                        }
                    }
                }
                out[square * cout + o] = sum;
            }
        }
        out
    }

    #[test]
    fn matches_the_direct_convolution() {
        let kernels = Kernel::available();
        if kernels.is_empty() {
            crate::skip_test(
                "matches_the_direct_convolution",
                "this CPU lacks AVX2+FMA, so the host pass is not used",
            );
            return;
        }
        let mut rng = fastrand::Rng::with_seed(7);
        // Output counts below, at and above a multiple of LANES; an input count like Lc0's;
        // three boards at once, each convolved on its own.
        const BOARDS: usize = 3;
        for (cin, cout) in [(5, 3), (16, 16), (112, 24), (64, 80)] {
            let conv = Conv {
                outputs: cout,
                inputs: cin,
                kernel: 3,
                weights: (0..cout * cin * 9).map(|_| rng.f32() - 0.5).collect(),
                bias: (0..cout).map(|_| rng.f32() - 0.5).collect(),
            };
            let input: Vec<f32> = (0..BOARDS * 64 * cin)
                .map(|_| rng.f32() * 2.0 - 1.0)
                .collect();
            let expected: Vec<f64> = input
                .chunks_exact(64 * cin)
                .flat_map(|board| direct(&conv, board))
                .collect();
            for &kernel in &kernels {
                let mut out = Vec::new();
                let mut scratch = Scratch::default();
                Conv3::new(&conv).apply(&input, &mut out, BOARDS, &mut scratch, kernel);
                let worst = out
                    .iter()
                    .zip(&expected)
                    .map(|(&got, &want)| (f64::from(got) - want).abs())
                    .fold(0.0, f64::max);
                assert!(
                    worst < 2e-4 * (cin as f64).sqrt(),
                    "{kernel:?} {cin}->{cout}: off by {worst}"
                );
            }
        }
    }
}

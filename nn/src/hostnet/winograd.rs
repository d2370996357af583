//! A 3×3 "same" convolution over one 8×8 board by Winograd's F(2×2, 3×3): the board is 16
//! overlapping 4×4 input tiles (zero-padded at the edge), each giving a 2×2 block of outputs;
//! the 9·Cin·Cout multiply-adds of every output square become 16 products of transformed
//! tiles with transformed weights per tile, 2.25× fewer than the direct convolution (Lavin &
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2015). F(2×2, 3×3) rather than
//! Lc0's F(4×4, 3×3): its transformed weights are 16/9 of the plain ones instead of 4×, which
//! counts at batch 1, where each weight comes from beyond the L2 cache for a few uses, and its
//! transforms are additions only. (A first F(4×4) version with compiler-vectorised loops took
//! 730 µs a position of maia-1900; this one takes 440 µs. F(4×4) with this file's multiply
//! kernel was not measured.)
//!
//! Layouts: activations are channels-last, `[position][square][channel]` (square = rank·8 +
//! file). Transformed tiles are `[K][positions · TILES][Cin]`; transformed weights
//! `[K][Cout / LANES][Cin][LANES]` (outputs padded with zeros to a multiple of LANES), so that
//! the multiply loop reads them front to back. A batch of positions shares each weight panel
//! (one K, LANES outputs: Cin · LANES floats) while it is in the L1 cache, instead of fetching
//! every layer's weights from beyond L2 once per position.

use super::simd::{self, Kernel, LANES};
use crate::weights::Conv;

/// Input transform Bᵀ (4×4) = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]:
/// row a is `x + sign · y` over the entries (x, y, sign).
const BT: [(usize, usize, f32); 4] = [(0, 2, -1.0), (1, 2, 1.0), (2, 1, -1.0), (1, 3, -1.0)];

/// Weight transform G (4×3).
const G: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// Output transform Aᵀ (2×4) = [[1, 1, 1, 0], [0, 1, −1, −1]]: row p is `x + y·s + z·s`
/// over the entries (x, y, z, s).
const AT: [(usize, usize, usize, f32); 2] = [(0, 1, 2, 1.0), (1, 2, 3, -1.0)];

/// Side of an input tile.
const N: usize = 4;
/// Side of an output tile.
const M: usize = 2;
/// Tiles per board side.
const SIDE: usize = 8 / M;
/// Tiles per board.
const TILES: usize = SIDE * SIDE;
/// Transform components per tile.
const K: usize = N * N;

/// A 3×3 convolution with its weights in the Winograd domain.
pub(super) struct Conv3 {
    inputs: usize,
    outputs: usize,
    /// `outputs` rounded up to [`LANES`]; the padding columns of `u` are zero.
    padded: usize,
    /// Transformed weights `[K][padded / LANES][inputs][LANES]`.
    u: Vec<f32>,
    bias: Vec<f32>,
}

/// Work space of one pass, reused between calls.
#[derive(Default)]
pub(super) struct Scratch {
    /// Zeros, what a tile reads beyond the board's edge.
    zeros: Vec<f32>,
    /// Bᵀ·d, `[N][N][Cin]`.
    half: Vec<f32>,
    /// Transformed tiles, `[K][positions · TILES][Cin]`.
    v: Vec<f32>,
    /// Products, `[K][positions · TILES][padded]`.
    m: Vec<f32>,
    /// Aᵀ·m of one tile, `[M][N][Cout]`.
    out_half: Vec<f32>,
}

impl Conv3 {
    /// Transforms `conv`'s weights (`[out][in][3][3]`), in f64 so that the transform itself
    /// adds no rounding beyond the final f32.
    pub(super) fn new(conv: &Conv) -> Conv3 {
        assert_eq!(conv.kernel, 3, "Winograd F(2x2, 3x3) is for 3x3 kernels");
        let (inputs, outputs) = (conv.inputs, conv.outputs);
        let padded = outputs.div_ceil(LANES) * LANES;
        let mut u = vec![0f32; K * inputs * padded];
        for o in 0..outputs {
            for i in 0..inputs {
                let g = &conv.weights[(o * inputs + i) * 9..][..9];
                // G · g · Gᵀ
                let mut gg = [[0f64; 3]; N];
                for (a, row) in gg.iter_mut().enumerate() {
                    for (c, cell) in row.iter_mut().enumerate() {
                        *cell = (0..3).map(|k| G[a][k] * f64::from(g[k * 3 + c])).sum();
                    }
                }
                for (a, row) in gg.iter().enumerate() {
                    for (b, g) in G.iter().enumerate() {
                        let value: f64 = (0..3).map(|c| row[c] * g[c]).sum();
                        let block = (a * N + b) * padded / LANES + o / LANES;
                        u[(block * inputs + i) * LANES + o % LANES] = value as f32;
                    }
                }
            }
        }
        Conv3 {
            inputs,
            outputs,
            padded,
            u,
            bias: conv.bias.clone(),
        }
    }

    /// Output channels.
    pub(super) fn outputs(&self) -> usize {
        self.outputs
    }

    /// Convolves each of the `positions` boards of `input` (`[positions][64][inputs]`) into
    /// `out` (`[positions][64][outputs]`), bias added.
    #[inline(always)]
    pub(super) fn apply(
        &self,
        input: &[f32],
        out: &mut [f32],
        positions: usize,
        scratch: &mut Scratch,
        kernel: Kernel,
    ) {
        let (cin, cout, padded) = (self.inputs, self.outputs, self.padded);
        let rows = positions * TILES;
        scratch.zeros.resize(cin, 0.0);
        scratch.half.resize(K * cin, 0.0);
        scratch.v.resize(K * rows * cin, 0.0);
        scratch.m.resize(K * rows * padded, 0.0);
        scratch.out_half.resize(M * N * padded, 0.0);
        for (position, board) in input.chunks_exact(64 * cin).take(positions).enumerate() {
            for tile in 0..TILES {
                self.transform_tile(board, tile, position * TILES + tile, rows, scratch);
            }
        }
        self.multiply(rows, scratch, kernel);
        for (position, board) in out.chunks_exact_mut(64 * cout).take(positions).enumerate() {
            for tile in 0..TILES {
                self.untransform_tile(tile, position * TILES + tile, rows, board, scratch);
            }
        }
    }

    /// V = Bᵀ·d·B of one input tile of `board`, into row `row` (of `rows`) of `scratch.v`.
    #[inline(always)]
    fn transform_tile(
        &self,
        board: &[f32],
        tile: usize,
        row: usize,
        rows: usize,
        scratch: &mut Scratch,
    ) {
        let cin = self.inputs;
        let rank0 = (M * (tile / SIDE)) as isize - 1;
        let file0 = (M * (tile % SIDE)) as isize - 1;
        let zeros = &scratch.zeros[..cin];
        let d: [&[f32]; K] = std::array::from_fn(|n| {
            let (rank, file) = (rank0 + (n / N) as isize, file0 + (n % N) as isize);
            if (0..8).contains(&rank) && (0..8).contains(&file) {
                &board[(rank * 8 + file) as usize * cin..][..cin]
            } else {
                zeros
            }
        });
        // half[a][j] = Σ_i Bᵀ[a][i] · d[i][j]
        let half = &mut scratch.half;
        for j in 0..N {
            for (a, &(x, y, sign)) in BT.iter().enumerate() {
                combine(
                    &mut half[(a * N + j) * cin..][..cin],
                    d[x * N + j],
                    d[y * N + j],
                    sign,
                );
            }
        }
        // v[a][b] = Σ_j half[a][j] · Bᵀ[b][j]
        for a in 0..N {
            let part = |j: usize| &half[(a * N + j) * cin..][..cin];
            for (b, &(x, y, sign)) in BT.iter().enumerate() {
                let k = a * N + b;
                let cell = &mut scratch.v[(k * rows + row) * cin..][..cin];
                combine(cell, part(x), part(y), sign);
            }
        }
    }

    /// M[k][row] = V[k][row] · U[k] for the K components ([`simd::multiply`]).
    #[inline(always)]
    fn multiply(&self, rows: usize, scratch: &mut Scratch, kernel: Kernel) {
        let (cin, padded) = (self.inputs, self.padded);
        let components = scratch.v.chunks_exact(rows * cin);
        let weights = self.u.chunks_exact(cin * padded);
        let products = scratch.m.chunks_exact_mut(rows * padded);
        for ((v, u), m) in components.zip(weights).zip(products) {
            simd::multiply(kernel, v, rows, cin, u, padded, m, padded);
        }
    }

    /// Y = Aᵀ·M·A of one tile (row `row` of `rows` in `scratch.m`) plus the bias, into its
    /// M×M squares of `out`, one board.
    #[inline(always)]
    fn untransform_tile(
        &self,
        tile: usize,
        row: usize,
        rows: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) {
        let (cout, padded) = (self.outputs, self.padded);
        let m = &scratch.m;
        let half = &mut scratch.out_half;
        // half[p][b] = Σ_a Aᵀ[p][a] · m[a][b]
        for b in 0..N {
            let entry = |a: usize| &m[((a * N + b) * rows + row) * padded..][..cout];
            for (p, &(x, y, z, sign)) in AT.iter().enumerate() {
                let cell = &mut half[(p * N + b) * cout..][..cout];
                combine3(cell, entry(x), entry(y), entry(z), sign, None);
            }
        }
        let (rank0, file0) = (M * (tile / SIDE), M * (tile % SIDE));
        for p in 0..M {
            let row = |b: usize| &half[(p * N + b) * cout..][..cout];
            for (q, &(x, y, z, sign)) in AT.iter().enumerate() {
                let square = (rank0 + p) * 8 + file0 + q;
                let cell = &mut out[square * cout..][..cout];
                combine3(cell, row(x), row(y), row(z), sign, Some(&self.bias));
            }
        }
    }
}

/// `out = x + sign · y`, element by element.
#[inline(always)]
fn combine(out: &mut [f32], x: &[f32], y: &[f32], sign: f32) {
    for ((out, &x), &y) in out.iter_mut().zip(x).zip(y) {
        *out = sign.mul_add(y, x);
    }
}

/// `out = x + sign · (y + z)` (plus `bias`), element by element.
#[inline(always)]
fn combine3(out: &mut [f32], x: &[f32], y: &[f32], z: &[f32], sign: f32, bias: Option<&[f32]>) {
    for (((out, &x), &y), &z) in out.iter_mut().zip(x).zip(y).zip(z) {
        *out = sign.mul_add(y + z, x);
    }
    if let Some(bias) = bias {
        for (out, &b) in out.iter_mut().zip(bias) {
            *out += b;
        }
    }
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
                let mut out = vec![0f32; BOARDS * 64 * cout];
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

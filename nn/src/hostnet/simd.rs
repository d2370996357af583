//! The one loop of the host pass that the compiler does not vectorise well by itself: the
//! Winograd multiply, written with AVX-512 and with AVX2+FMA intrinsics, the copy picked once
//! per CPU.
//!
//! A call computes a register block of [`ROWS`] tiles by up to [`PANELS`] panels of [`LANES`]
//! outputs (AVX-512: 4 × 4 = 16 sum registers of 16 floats) over all input channels. Per input
//! channel that is 4 weight loads and 4 broadcast loads for 16 FMAs, so the two FMA ports,
//! not the loads, set the pace, and 16 independent sums cover the FMA latency. (An 8 × 1
//! block, 9 loads per 8 FMAs with results going through the stack, ran at about half the
//! speed.)

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output channels in one panel of weights (one AVX-512 register of f32, two AVX2 ones).
pub(super) const LANES: usize = 16;

/// Tiles whose sums are held in registers together.
pub(super) const ROWS: usize = 4;

/// Panels whose sums are held in registers together, at most.
pub(super) const PANELS: usize = 4;

/// Which instruction set the pass runs on.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kernel {
    Avx512,
    Avx2,
}

impl Kernel {
    /// The best this CPU has, or `None` without AVX2 and FMA.
    pub(super) fn detect() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        {
            if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
                None
            } else if is_x86_feature_detected!("avx512f") {
                Some(Kernel::Avx512)
            } else {
                Some(Kernel::Avx2)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }
    /// Every copy this CPU can run, best first (for tests of both).
    #[cfg(test)]
    pub(super) fn available() -> Vec<Kernel> {
        match Kernel::detect() {
            Some(Kernel::Avx512) => vec![Kernel::Avx512, Kernel::Avx2],
            Some(Kernel::Avx2) => vec![Kernel::Avx2],
            None => Vec::new(),
        }
    }
}

/// `out[r·stride + o] = Σ_i x[r·cin + i] · w[o / LANES][i][o % LANES]` for `rows` rows of
/// `cin` inputs and the `padded` outputs of the panels in `w` (`padded / LANES` panels of
/// `cin · LANES` floats), in register blocks of [`ROWS`] rows (rows beyond the last whole
/// block one by one) by up to [`PANELS`] panels; each block's panels serve every row before
/// the next are read.
#[inline(always)]
pub(super) fn multiply(
    kernel: Kernel,
    x: &[f32],
    rows: usize,
    cin: usize,
    w: &[f32],
    padded: usize,
    out: &mut [f32],
    stride: usize,
) {
    let panels = padded / LANES;
    let mut first = 0;
    while first < panels {
        let take = (panels - first).min(PANELS);
        let args = (kernel, &x[..rows * cin], cin, w, first, &mut *out, stride);
        match take {
            1 => panel_group::<1>(args),
            2 => panel_group::<2>(args),
            3 => panel_group::<3>(args),
            _ => panel_group::<PANELS>(args),
        }
        first += take;
    }
}

/// Every row block of [`multiply`] against panels `first..first + P`.
#[inline(always)]
fn panel_group<const P: usize>(
    (kernel, x, cin, w, first, out, stride): (
        Kernel,
        &[f32],
        usize,
        &[f32],
        usize,
        &mut [f32],
        usize,
    ),
) {
    let panels: [&[f32]; P] =
        std::array::from_fn(|p| &w[(first + p) * cin * LANES..][..cin * LANES]);
    let blocks = x.chunks_exact(ROWS * cin);
    let left = blocks.remainder();
    let whole = x.len() / cin - left.len() / cin;
    for (group, tiles) in blocks.enumerate() {
        let out = &mut out[group * ROWS * stride + first * LANES..];
        multiply_block::<ROWS, P>(kernel, tiles, cin, panels, out, stride);
    }
    for (r, row) in left.chunks_exact(cin).enumerate() {
        let out = &mut out[(whole + r) * stride + first * LANES..];
        multiply_block::<1, P>(kernel, row, cin, panels, out, stride);
    }
}

/// `out[r·stride + p·LANES + l] = Σ_i tiles[r·cin + i] · panels[p][i·LANES + l]` for the
/// `R` tiles r (rows of `cin` floats), the `P` panels p (`cin` rows of [`LANES`] outputs
/// each) and lanes l.
#[inline(always)]
fn multiply_block<const R: usize, const P: usize>(
    kernel: Kernel,
    tiles: &[f32],
    cin: usize,
    panels: [&[f32]; P],
    out: &mut [f32],
    stride: usize,
) {
    assert!(R <= ROWS && P <= PANELS && tiles.len() >= R * cin);
    assert!(panels.iter().all(|panel| panel.len() >= cin * LANES));
    assert!(out.len() >= (R - 1) * stride + P * LANES);
    // SAFETY: a `Kernel` is only made by `Kernel::detect`, after checking that this CPU has
    // the features of the copy it names; the slices are as long as the kernels read and
    // write (asserted above).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match kernel {
            Kernel::Avx512 => multiply_avx512::<R, P>(tiles, cin, panels, out, stride),
            Kernel::Avx2 => multiply_avx2::<R, P>(tiles, cin, panels, out, stride),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
/// # Safety
/// The CPU has AVX-512F; `tiles` holds `R · cin` floats, each panel `cin · LANES`, and
/// `out` `(R − 1) · stride + P · LANES`.
unsafe fn multiply_avx512<const R: usize, const P: usize>(
    tiles: &[f32],
    cin: usize,
    panels: [&[f32]; P],
    out: &mut [f32],
    stride: usize,
) {
    let mut sums = [[_mm512_setzero_ps(); P]; R];
    let x = tiles.as_ptr();
    let w = panels.map(<[f32]>::as_ptr);
    for i in 0..cin {
        // SAFETY: i < cin, so every read is within the lengths the caller promised.
        unsafe {
            let mut weights = [_mm512_setzero_ps(); P];
            for (weights, w) in weights.iter_mut().zip(w) {
                *weights = _mm512_loadu_ps(w.add(i * LANES));
            }
            for (r, row) in sums.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*x.add(r * cin + i));
                for (sum, &weights) in row.iter_mut().zip(&weights) {
                    *sum = _mm512_fmadd_ps(x, weights, *sum);
                }
            }
        }
    }
    for (r, row) in sums.iter().enumerate() {
        for (p, &sum) in row.iter().enumerate() {
            // SAFETY: within `out` (the caller's promise).
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(r * stride + p * LANES), sum) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
/// # Safety
/// The CPU has AVX2 and FMA; `tiles` holds `R · cin` floats, each panel `cin · LANES`,
/// and `out` `(R − 1) · stride + P · LANES`.
unsafe fn multiply_avx2<const R: usize, const P: usize>(
    tiles: &[f32],
    cin: usize,
    panels: [&[f32]; P],
    out: &mut [f32],
    stride: usize,
) {
    // One panel at a time: R × 2 registers of sums, within AVX2's 16.
    let x = tiles.as_ptr();
    for (p, panel) in panels.iter().enumerate() {
        let w = panel.as_ptr();
        let mut sums = [[_mm256_setzero_ps(); 2]; R];
        for i in 0..cin {
            // SAFETY: i < cin, so every read is within the lengths the caller promised.
            unsafe {
                let weights = [
                    _mm256_loadu_ps(w.add(i * LANES)),
                    _mm256_loadu_ps(w.add(i * LANES + 8)),
                ];
                for (r, sum) in sums.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(*x.add(r * cin + i));
                    sum[0] = _mm256_fmadd_ps(x, weights[0], sum[0]);
                    sum[1] = _mm256_fmadd_ps(x, weights[1], sum[1]);
                }
            }
        }
        for (r, sum) in sums.iter().enumerate() {
            // SAFETY: within `out` (the caller's promise).
            unsafe {
                let at = out.as_mut_ptr().add(r * stride + p * LANES);
                _mm256_storeu_ps(at, sum[0]);
                _mm256_storeu_ps(at.add(8), sum[1]);
            }
        }
    }
}

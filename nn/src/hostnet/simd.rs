//! The one loop of the host pass that the compiler does not vectorise well by itself: the
//! Winograd multiply, written with AVX-512 and with AVX2+FMA intrinsics, the copy picked once
//! per CPU.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output channels computed together (one AVX-512 register of f32, two AVX2 ones).
pub(super) const LANES: usize = 16;

/// Tiles whose sums are held in registers together.
pub(super) const GROUP: usize = 8;

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
}

/// `Σ_i tiles[t][i] · lanes[i][l]` for every tile t of the group and lane l.
#[inline(always)]
pub(super) fn multiply_block(
    kernel: Kernel,
    tiles: &[&[f32]; GROUP],
    lanes: &[[f32; LANES]],
) -> [[f32; LANES]; GROUP] {
    assert!(tiles.iter().all(|row| row.len() == lanes.len()));
    let mut sums = [[0f32; LANES]; GROUP];
    // SAFETY: a `Kernel` is only made by `Kernel::detect`, after checking that this CPU has
    // the features of the copy it names; every tile row is as long as `lanes` (asserted).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match kernel {
            Kernel::Avx512 => multiply_avx512(tiles, lanes, &mut sums),
            Kernel::Avx2 => multiply_avx2(tiles, lanes, &mut sums),
        }
    }
    sums
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
/// # Safety
/// Every row of `tiles` holds at least `lanes.len()` floats; the CPU has AVX-512F.
unsafe fn multiply_avx512(
    tiles: &[&[f32]; GROUP],
    lanes: &[[f32; LANES]],
    out: &mut [[f32; LANES]; GROUP],
) {
    let mut sums = [_mm512_setzero_ps(); GROUP];
    for (i, w) in lanes.iter().enumerate() {
        // SAFETY: `w` is LANES = 16 floats, one unaligned 512-bit load; i is within every
        // tile row (the caller's promise).
        let w = unsafe { _mm512_loadu_ps(w.as_ptr()) };
        for (sum, row) in sums.iter_mut().zip(tiles) {
            let x = unsafe { *row.get_unchecked(i) };
            *sum = _mm512_fmadd_ps(_mm512_set1_ps(x), w, *sum);
        }
    }
    for (out, sum) in out.iter_mut().zip(sums) {
        // SAFETY: `out` is 16 floats, one unaligned 512-bit store.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), sum) };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
/// # Safety
/// Every row of `tiles` holds at least `lanes.len()` floats; the CPU has AVX2 and FMA.
unsafe fn multiply_avx2(
    tiles: &[&[f32]; GROUP],
    lanes: &[[f32; LANES]],
    out: &mut [[f32; LANES]; GROUP],
) {
    // Two passes of half the group: 4 tiles × 2 registers of sums, within AVX2's 16.
    const HALF: usize = GROUP / 2;
    for half in 0..2 {
        let mut sums = [[_mm256_setzero_ps(); 2]; HALF];
        for (i, w) in lanes.iter().enumerate() {
            // SAFETY: `w` is 16 floats, two unaligned 256-bit loads; i is within every tile
            // row (the caller's promise).
            let w = unsafe {
                [
                    _mm256_loadu_ps(w.as_ptr()),
                    _mm256_loadu_ps(w.as_ptr().add(8)),
                ]
            };
            for (sum, row) in sums.iter_mut().zip(&tiles[half * HALF..][..HALF]) {
                let x = _mm256_set1_ps(unsafe { *row.get_unchecked(i) });
                sum[0] = _mm256_fmadd_ps(x, w[0], sum[0]);
                sum[1] = _mm256_fmadd_ps(x, w[1], sum[1]);
            }
        }
        for (out, sum) in out[half * HALF..][..HALF].iter_mut().zip(sums) {
            // SAFETY: `out` is 16 floats, two unaligned 256-bit stores.
            unsafe {
                _mm256_storeu_ps(out.as_mut_ptr(), sum[0]);
                _mm256_storeu_ps(out.as_mut_ptr().add(8), sum[1]);
            }
        }
    }
}

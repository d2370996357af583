//! Turning the legal moves' policy logits into priors (Lc0's `SoftmaxPolicy`).

/// Lc0's default `PolicyTemperature`.
pub const DEFAULT_POLICY_TEMPERATURE: f32 = 1.359;

/// Writes into `out` (cleared first) the softmax of `logits` (the legal moves' logits) at
/// `temperature`: subtract the maximum, divide by T, exponentiate, normalise to sum 1.
/// An empty `logits` gives an empty `out`.
pub fn softmax_priors(logits: &[f32], temperature: f32, out: &mut Vec<f32>) {
    out.clear();
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inverse_t = 1.0 / temperature;
    out.extend(logits.iter().map(|&l| ((l - max) * inverse_t).exp()));
    let sum: f32 = out.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        out.iter_mut().for_each(|p| *p /= sum);
    } else if !out.is_empty() {
        let uniform = 1.0 / out.len() as f32;
        out.iter_mut().for_each(|p| *p = uniform);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_cases() {
        let cases: [(&[f32], f32, &[f32]); 5] = [
            (&[], 1.0, &[]),
            (&[3.0], 1.359, &[1.0]),
            (&[0.0, 0.0], 1.0, &[0.5, 0.5]),
            (&[2f32.ln(), 0.0], 1.0, &[2.0 / 3.0, 1.0 / 3.0]),
            (&[2.0 * 2f32.ln(), 0.0], 2.0, &[2.0 / 3.0, 1.0 / 3.0]),
        ];
        let mut out = vec![9.0];
        for (logits, t, expected) in cases {
            softmax_priors(logits, t, &mut out);
            assert_eq!(out.len(), expected.len());
            for (p, e) in out.iter().zip(expected) {
                assert!((p - e).abs() < 1e-6, "{logits:?} T={t}: {out:?}");
            }
        }
    }

    #[test]
    fn huge_logits_do_not_overflow() {
        let mut out = Vec::new();
        softmax_priors(&[1e30, 1e30, -1e30], DEFAULT_POLICY_TEMPERATURE, &mut out);
        assert_eq!(out, vec![0.5, 0.5, 0.0]);
    }
}

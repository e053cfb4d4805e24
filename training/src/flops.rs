//! Compute in FLOPs, as the paper plots it (paper-spec §6): 6·N per trained token (forward 2N
//! + backward 4N) and 2·N per inference token, N the parameter count.

/// FLOPs of training a model of `params` parameters on `tokens` tokens.
pub fn train_flops(params: usize, tokens: u64) -> f64 {
    6.0 * params as f64 * tokens as f64
}

/// FLOPs of running a model of `params` parameters forward over `tokens` tokens (generation,
/// prefill, scoring).
pub fn inference_flops(params: usize, tokens: u64) -> f64 {
    2.0 * params as f64 * tokens as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn six_n_d() {
        assert_eq!(super::train_flops(1_000, 10), 60_000.0);
        assert_eq!(super::inference_flops(1_000, 10), 20_000.0);
    }
}

//! Helpers shared by the tests of the CPU backend's fused operations.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// The elements of `t` as f32.
pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// Asserts `|got − want| <= tolerance · (1 + |want|)` elementwise.
pub fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w} (tolerance {tolerance})"
        );
    }
}

//! Where a model's parameter values come from when it is built: a checkpoint (safetensors
//! directory, GGUF file) or a seeded random initialisation. The model asks for each tensor by its
//! Hugging Face name and shape, so every source speaks HF names and HF layouts (`[out, in]` for
//! linear weights, rotate-half order for q/k rows).

use std::path::Path;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use sftvsrl_envs::Rng;

use crate::error::ModelError;

/// What a parameter is, which decides how a random initialisation fills it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Linear or embedding matrix: normal(0, 0.02) as HF initialises them.
    Weight,
    /// RMSNorm scale: ones.
    NormScale,
    /// Linear bias: zeros.
    Bias,
}

/// A supplier of parameter values by HF name.
pub trait ParamSource {
    /// The file or directory the values come from (named in errors).
    fn path(&self) -> &Path;

    /// The values of tensor `name` as f32 in row-major order; its shape must be `shape`.
    fn values(
        &mut self,
        name: &str,
        shape: &[usize],
        kind: ParamKind,
    ) -> Result<Vec<f32>, ModelError>;

    /// The names of the source's tensors that no [`ParamSource::values`] call has read yet
    /// (none for a random initialisation).
    fn unread(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Refuses a checkpoint with tensors the model did not read, except those `redundant` names
/// (copies the architecture derives itself, such as a tied output matrix).
pub(crate) fn check_all_read(
    source: &dyn ParamSource,
    redundant: impl Fn(&str) -> bool,
) -> Result<(), ModelError> {
    let names: Vec<String> = (source.unread().into_iter())
        .filter(|n| !redundant(n))
        .collect();
    match names.is_empty() {
        true => Ok(()),
        false => Err(ModelError::UnusedTensors {
            path: source.path().to_path_buf(),
            names,
        }),
    }
}

/// Tensor `name` of `source` on `device`.
pub(crate) fn load_tensor<B: Backend, const D: usize>(
    source: &mut dyn ParamSource,
    name: &str,
    shape: [usize; D],
    kind: ParamKind,
    device: &B::Device,
) -> Result<Tensor<B, D>, ModelError> {
    let values = source.values(name, &shape, kind)?;
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}

/// `{prefix}.{name}`, or `name` alone for an empty prefix (a model nested in another reads
/// its tensors under the outer model's field name).
pub(crate) fn prefixed(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Seeded random parameters (for models trained from scratch and for benchmarks). The values
/// depend only on the seed and the tensor names, so every backend gets the same model.
pub struct RandomInit {
    seed: u64,
}

impl RandomInit {
    /// Random parameters determined by `seed`.
    pub fn new(seed: u64) -> Self {
        RandomInit { seed }
    }
}

impl ParamSource for RandomInit {
    fn path(&self) -> &Path {
        Path::new("<random init>")
    }

    fn values(
        &mut self,
        name: &str,
        shape: &[usize],
        kind: ParamKind,
    ) -> Result<Vec<f32>, ModelError> {
        let n: usize = shape.iter().product();
        Ok(match kind {
            ParamKind::NormScale => vec![1.0; n],
            ParamKind::Bias => vec![0.0; n],
            ParamKind::Weight => {
                let mut rng = named_rng(self.seed, name);
                normal_values(&mut rng, n, 0.02)
            }
        })
    }
}

/// A random stream determined by `seed` and a tensor's name (its FNV-1a hash), so that each
/// tensor's values do not depend on the order in which tensors are built.
pub(crate) fn named_rng(seed: u64, name: &str) -> Rng {
    let stream = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    Rng::derive(seed, stream)
}

/// `n` draws from normal(0, std) by the Box-Muller transform.
fn normal_values(rng: &mut Rng, n: usize, std: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1 = 1.0 - rng.unit_f64();
        let u2 = rng.unit_f64();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let theta = 2.0 * std::f64::consts::PI * u2;
        out.push((r * theta.cos()) as f32);
        out.push((r * theta.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// Checks a stored shape against the expected one.
pub(crate) fn check_shape(
    path: &Path,
    name: &str,
    expected: &[usize],
    found: &[usize],
) -> Result<(), ModelError> {
    if expected == found {
        Ok(())
    } else {
        Err(ModelError::TensorShape {
            path: path.to_path_buf(),
            tensor: name.to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_init_is_seeded_per_name() {
        let mut a = RandomInit::new(7);
        let w1 = a.values("x.weight", &[4, 8], ParamKind::Weight).unwrap();
        let w2 = RandomInit::new(7)
            .values("x.weight", &[4, 8], ParamKind::Weight)
            .unwrap();
        let w3 = a.values("y.weight", &[4, 8], ParamKind::Weight).unwrap();
        assert_eq!(w1, w2);
        assert_ne!(w1, w3);
        assert_eq!(w1.len(), 32);
        let big = a.values("z", &[100_000], ParamKind::Weight).unwrap();
        let mean = big.iter().map(|&x| x as f64).sum::<f64>() / 1e5;
        let var = big.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / 1e5;
        assert!(mean.abs() < 1e-3 && (var.sqrt() - 0.02).abs() < 1e-3);
        assert_eq!(
            a.values("n", &[3], ParamKind::NormScale).unwrap(),
            vec![1.0; 3]
        );
    }
}

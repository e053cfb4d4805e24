//! Choosing a Burn backend at run time: `--device cpu|ndarray|wgpu|cuda`.
//!
//! Models are generic over `Backend`; the binary instantiates them for each backend compiled in.
//! `cpu` is Flex (the faster pure-Rust CPU backend), `ndarray` is for debugging, `wgpu` and `cuda`
//! are compiled in by the cargo features of the same names.

use std::fmt;
use std::str::FromStr;

/// The backend trait that [`OnBackend`] jobs are generic over.
pub use burn::tensor::backend::Backend;

/// The pure-Rust CPU backend used by `--device cpu`.
pub type CpuBackend = burn::backend::Flex;
/// The NdArray backend used by `--device ndarray`.
pub type NdArrayBackend = burn::backend::NdArray<f32>;
/// The portable GPU backend used by `--device wgpu`.
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn::backend::Wgpu;
/// The NVIDIA backend used by `--device cuda`.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;

/// A device named on the command line or in a config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// Flex, pure Rust.
    Cpu,
    /// NdArray, pure Rust (debugging).
    Ndarray,
    /// wgpu: Vulkan, Metal or DX12.
    Wgpu,
    /// CUDA on NVIDIA GPUs.
    Cuda,
}

/// A device that is unknown or not compiled into this binary.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`: expected one of cpu, ndarray, wgpu, cuda")]
    Unknown(String),
    #[error("device `{0}` is not compiled into this binary: rebuild with `--features {0}`")]
    NotCompiled(DeviceKind),
}

impl DeviceKind {
    /// Every device name, in the order `--help` lists them.
    pub const ALL: [DeviceKind; 4] = [Self::Cpu, Self::Ndarray, Self::Wgpu, Self::Cuda];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }

    /// Whether this binary was built with the backend for this device.
    pub fn is_compiled(self) -> bool {
        match self {
            Self::Cpu | Self::Ndarray => true,
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// This device, or an error saying which cargo feature brings it in.
    pub fn require_compiled(self) -> Result<Self, DeviceError> {
        if self.is_compiled() {
            Ok(self)
        } else {
            Err(DeviceError::NotCompiled(self))
        }
    }
}

/// Work written once for every backend; [`run_on`] runs it on the backend of a device name.
pub trait OnBackend {
    type Output;
    /// Runs on backend `B` with its default device.
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

/// Runs `job` on the backend of `kind` (an error if that backend is not compiled in).
pub fn run_on<J: OnBackend>(kind: DeviceKind, job: J) -> Result<J::Output, DeviceError> {
    match kind.require_compiled()? {
        DeviceKind::Cpu => Ok(job.run::<CpuBackend>(Default::default())),
        DeviceKind::Ndarray => Ok(job.run::<NdArrayBackend>(Default::default())),
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => Ok(job.run::<WgpuBackend>(Default::default())),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Ok(job.run::<CudaBackend>(Default::default())),
        #[allow(unreachable_patterns)]
        other => Err(DeviceError::NotCompiled(other)),
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceKind {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| DeviceError::Unknown(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tensor;

    /// A small matmul whose result is known exactly, run on one backend.
    fn matmul_smoke<B: Backend>(device: &B::Device) {
        let a = Tensor::<B, 2>::from_floats([[1.0, 2.0], [3.0, 4.0]], device);
        let b = Tensor::<B, 2>::from_floats([[5.0, 6.0], [7.0, 8.0]], device);
        let c: Vec<f32> = a.matmul(b).into_data().to_vec().unwrap();
        assert_eq!(c, vec![19.0, 22.0, 43.0, 50.0]);
    }

    #[test]
    fn names_round_trip() {
        for d in DeviceKind::ALL {
            assert_eq!(d.name().parse::<DeviceKind>().unwrap(), d);
        }
        assert!("tpu".parse::<DeviceKind>().is_err());
    }

    struct Smoke;

    impl OnBackend for Smoke {
        type Output = ();
        fn run<B: Backend>(self, device: B::Device) {
            matmul_smoke::<B>(&device)
        }
    }

    #[test]
    fn run_on_picks_compiled_backends() {
        run_on(DeviceKind::Cpu, Smoke).unwrap();
        run_on(DeviceKind::Ndarray, Smoke).unwrap();
        if !DeviceKind::Cuda.is_compiled() {
            let e = run_on(DeviceKind::Cuda, Smoke).unwrap_err();
            assert!(e.to_string().contains("--features cuda"));
        }
    }

    #[test]
    fn cpu_backends_compute() {
        matmul_smoke::<CpuBackend>(&Default::default());
        matmul_smoke::<NdArrayBackend>(&Default::default());
    }

    #[cfg(feature = "wgpu")]
    #[test]
    fn wgpu_backend_computes() {
        matmul_smoke::<WgpuBackend>(&Default::default());
    }
}

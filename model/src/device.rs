//! Choosing a Burn backend at run time: `--device cpu|ndarray|wgpu|cuda`.
//!
//! Models are generic over `Backend`; the binary instantiates them for each backend compiled in.
//! `cpu` is Flex (the faster pure-Rust CPU backend), `ndarray` is for debugging, `wgpu` and `cuda`
//! are compiled in by the cargo features of the same names.

use std::fmt;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
use std::path::Path;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::ModelError;

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
    #[error("--devices: all devices must be of one kind, not {0} and {1}")]
    Mixed(DeviceKind, DeviceKind),
    #[error("`{0}`: {1}")]
    BadSpec(String, String),
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

/// One entry of a device list such as `--devices cuda:0,cuda:1`: a kind and, for GPUs, an
/// index (`wgpu:N` is the N-th discrete GPU, plain `wgpu` the default adapter). cpu and ndarray
/// have one device, `cpu` (or `cpu:0`), which may be listed more than once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    pub kind: DeviceKind,
    pub index: Option<usize>,
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| DeviceError::BadSpec(s.to_string(), why);
        let (kind, index) = match s.split_once(':') {
            Some((kind, index)) => {
                let index = index
                    .parse()
                    .map_err(|_| bad(format!("the device index `{index}` is not a number")))?;
                (kind, Some(index))
            }
            None => (s, None),
        };
        let kind = kind.parse::<DeviceKind>()?;
        if matches!(kind, DeviceKind::Cpu | DeviceKind::Ndarray) && index.is_some_and(|i| i > 0) {
            return Err(bad(format!("{kind} has one device, `{kind}`")));
        }
        Ok(DeviceSpec { kind, index })
    }
}

/// Work written once for every backend on a list of its devices; [`run_on_devices`] runs it.
pub trait OnDevices {
    type Output;
    /// Runs on backend `B` with `devices` (at least one).
    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Self::Output;
}

/// Runs `job` on the devices `specs` name, all of one kind (an error for mixed kinds, an empty
/// list or a backend not compiled in).
pub fn run_on_devices<J: OnDevices>(
    specs: &[DeviceSpec],
    job: J,
) -> Result<J::Output, DeviceError> {
    let Some(first) = specs.first() else {
        return Err(DeviceError::BadSpec(
            String::new(),
            "no device named".into(),
        ));
    };
    if let Some(other) = specs.iter().find(|s| s.kind != first.kind) {
        return Err(DeviceError::Mixed(first.kind, other.kind));
    }
    match first.kind.require_compiled()? {
        DeviceKind::Cpu => Ok(job.run::<CpuBackend>(vec![Default::default(); specs.len()])),
        DeviceKind::Ndarray => Ok(job.run::<NdArrayBackend>(vec![Default::default(); specs.len()])),
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => {
            use burn::backend::wgpu::WgpuDevice;
            let devices = specs.iter().map(|s| {
                s.index
                    .map_or(WgpuDevice::DefaultDevice, WgpuDevice::DiscreteGpu)
            });
            Ok(job.run::<WgpuBackend>(devices.collect()))
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            use burn::backend::cuda::CudaDevice;
            let devices = specs.iter().map(|s| CudaDevice {
                index: s.index.unwrap_or(0),
            });
            Ok(job.run::<CudaBackend>(devices.collect()))
        }
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

/// The `pad_to_multiple_of` of the backends that compile kernels per shape (wgpu, cuda) when a
/// config leaves it out.
pub const GPU_PAD_TO_MULTIPLE_OF: usize = 32;

/// Whether `B` compiles kernels at run time for the tensor shapes it meets (the CubeCL backends
/// behind wgpu and cuda): there every new sequence length costs compilations.
pub fn compiles_kernels<B: Backend>(device: &B::Device) -> bool {
    B::name(device).contains("cubecl")
}

/// How sequence lengths are rounded on `device`: `setting` when given, else
/// [`GPU_PAD_TO_MULTIPLE_OF`] where kernels are compiled per shape and 1 (exact lengths) on the
/// CPU backends. Padding is masked, so the multiple changes shapes, never results.
pub fn pad_multiple<B: Backend>(setting: Option<usize>, device: &B::Device) -> usize {
    setting.unwrap_or_else(|| {
        if compiles_kernels::<B>(device) {
            GPU_PAD_TO_MULTIPLE_OF
        } else {
            1
        }
    })
}

/// `len` rounded up to a multiple of `multiple` (0 and 1 keep it).
pub fn pad_len(len: usize, multiple: usize) -> usize {
    len.next_multiple_of(multiple.max(1))
}

/// What the binary asks of CubeCL, the kernel compiler behind the wgpu and cuda backends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelSettings {
    /// Keep compiled kernels (CUDA's PTX) and autotune results here across runs; see
    /// [`default_kernel_cache`].
    pub cache: Option<PathBuf>,
    /// Append a line per compiled kernel (`[Compiling kernel] name`) to this file.
    pub compile_log: Option<PathBuf>,
    /// How hard to autotune; `None` keeps CubeCL's (its settings file, else `balanced`). See
    /// [`AutotuneLevel`] and [`autotune_level_from_env`].
    pub autotune: Option<AutotuneLevel>,
}

/// The environment variable that sets the autotune level (CubeCL's own name for it).
pub const AUTOTUNE_ENV: &str = "CUBECL_AUTOTUNE_LEVEL";

/// How hard CubeCL searches for the fastest variant of a kernel (matmul tiling, reduction
/// strategy …) the first time it meets a shape, and how many shapes share one search (shapes
/// are bucketed by powers of 2 up to `extensive`; `full` tunes every shape). Each search runs
/// every candidate on the device, so it costs start-up time, not results: every level computes
/// the same values up to f32 rounding. Results are kept in the kernel cache, so a level's
/// searches are paid once per machine. `minimal` suits CI and short runs, CubeCL's default
/// `balanced` long trainings on one set of shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutotuneLevel {
    Minimal,
    Balanced,
    Extensive,
    Full,
}

impl AutotuneLevel {
    /// Every level, least effort first.
    pub const ALL: [AutotuneLevel; 4] =
        [Self::Minimal, Self::Balanced, Self::Extensive, Self::Full];

    /// The name CubeCL and `CUBECL_AUTOTUNE_LEVEL` use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Balanced => "balanced",
            Self::Extensive => "extensive",
            Self::Full => "full",
        }
    }
}

impl FromStr for AutotuneLevel {
    type Err = String;

    /// A level's name, or its number 0–3 (as CubeCL reads `CUBECL_AUTOTUNE_LEVEL`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .enumerate()
            .find(|(i, l)| l.name() == s || i.to_string() == s)
            .map(|(_, l)| l)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not an autotune level: expected minimal, balanced, extensive or \
                     full (or 0-3)"
                )
            })
    }
}

/// The level `CUBECL_AUTOTUNE_LEVEL` asks for (`None` when unset or empty). CubeCL itself
/// ignores a value it does not know; here it is an error naming the variable.
pub fn autotune_level_from_env() -> Result<Option<AutotuneLevel>, ModelError> {
    match std::env::var(AUTOTUNE_ENV) {
        Ok(v) if !v.is_empty() => v.parse().map(Some).map_err(|message| ModelError::Settings {
            path: PathBuf::from(AUTOTUNE_ENV),
            message,
        }),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ModelError::Settings {
            path: PathBuf::from(AUTOTUNE_ENV),
            message: "not valid UTF-8".into(),
        }),
    }
}

/// Lets the C allocator keep freed memory for reuse (glibc on Linux; a no-op elsewhere): blocks
/// up to 32 MiB come from the heap instead of fresh `mmap`s, and up to 1 GiB of free heap is
/// kept. A training step frees and reallocates the same tensor sizes every time; without this,
/// each reallocation page-faults its memory in again (140 000 faults and 7 % of the CPU time in
/// 20 steps of the tiny model). Call once at start-up, before other threads allocate.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; glibc rejects out-of-range values
    // by returning 0, which leaves the defaults in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// `$XDG_CACHE_HOME/sftvsrl/cubecl`, else `$HOME/.cache/sftvsrl/cubecl`.
pub fn default_kernel_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("sftvsrl").join("cubecl"))
}

/// Hands CubeCL its settings; call before any GPU work (a no-op without the wgpu and cuda
/// features). A `cubecl.toml` (or `burn.toml` with a `[cubecl]` table) in the working directory
/// or above is the user's: its settings stand and `settings.cache` is ignored; otherwise the
/// kernel cache is `settings.cache`. CubeCL's environment variables (`CUBECL_AUTOTUNE_LEVEL`,
/// `CUBECL_DEBUG_LOG` …) apply on top, then `settings.compile_log` and `settings.autotune`. The user's file is parsed
/// here first ([`crate::cubecl_config`]): one CubeCL cannot parse is an error naming it
/// (CubeCL itself would panic).
///
/// # Panics
/// If CubeCL's settings were already read or set in this process.
pub fn configure_kernels(settings: &KernelSettings) -> Result<(), ModelError> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        use burn::cubecl::config::cache::CacheConfig;
        use burn::cubecl::config::compilation::CompilationLogLevel;
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

        let cwd = std::env::current_dir().map_err(|e| ModelError::io(Path::new("."), e))?;
        let user = crate::cubecl_config::find_settings_file::<CubeClRuntimeConfig>(
            &cwd,
            CubeClRuntimeConfig::file_names(),
            CubeClRuntimeConfig::section_file_names(),
        )?;
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        if let Some(dir) = settings.cache.as_ref().filter(|_| user.is_none()) {
            config.compilation.cache = Some(CacheConfig::File(dir.clone()));
            config.autotune.cache = CacheConfig::File(dir.clone());
        }
        if let Some(level) = settings.autotune {
            use burn::cubecl::config::autotune::AutotuneLevel as Level;
            config.autotune.level = match level {
                AutotuneLevel::Minimal => Level::Minimal,
                AutotuneLevel::Balanced => Level::Balanced,
                AutotuneLevel::Extensive => Level::Extensive,
                AutotuneLevel::Full => Level::Full,
            };
        }
        if let Some(log) = &settings.compile_log {
            let logger = &mut config.compilation.logger;
            logger.file = Some(log.clone());
            if matches!(logger.level, CompilationLogLevel::Disabled) {
                logger.level = CompilationLogLevel::Basic;
            }
        }
        CubeClRuntimeConfig::set(config);
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    let _ = settings;
    Ok(())
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
    fn lengths_round_up_on_request_and_on_gpu_backends() {
        assert_eq!(pad_len(0, 32), 0);
        assert_eq!(pad_len(1, 32), 32);
        assert_eq!(pad_len(33, 32), 64);
        assert_eq!(pad_len(33, 1), 33);
        assert_eq!(pad_len(33, 0), 33);
        let device = Default::default();
        assert!(!compiles_kernels::<CpuBackend>(&device));
        assert_eq!(pad_multiple::<CpuBackend>(None, &device), 1);
        assert_eq!(pad_multiple::<CpuBackend>(Some(8), &device), 8);
        assert!(!compiles_kernels::<NdArrayBackend>(&Default::default()));
    }

    #[test]
    fn autotune_levels_parse_as_cubecl_reads_them() {
        for (i, level) in AutotuneLevel::ALL.into_iter().enumerate() {
            assert_eq!(level.name().parse::<AutotuneLevel>(), Ok(level));
            assert_eq!(i.to_string().parse::<AutotuneLevel>(), Ok(level));
        }
        for bad in ["fast", "4", "Minimal", " minimal"] {
            let e = bad.parse::<AutotuneLevel>().unwrap_err();
            assert!(
                e.contains(&format!("`{bad}`")) && e.contains("balanced"),
                "{e}"
            );
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
        let device = Default::default();
        matmul_smoke::<WgpuBackend>(&device);
        assert!(compiles_kernels::<WgpuBackend>(&device));
        let autodiff = compiles_kernels::<burn::backend::Autodiff<WgpuBackend>>(&device);
        assert!(autodiff);
        assert_eq!(
            pad_multiple::<WgpuBackend>(None, &device),
            GPU_PAD_TO_MULTIPLE_OF
        );
    }
}

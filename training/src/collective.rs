//! Workers of one run that sum values over each other through burn-collective (issue 19): one
//! per process, joined through the global orchestrator on one node or several
//! ([`Workers::join`]), or one per thread of a process, joined as local peers
//! ([`Workers::join_local`]). PPO (`crate::rl::distributed`) and SFT (`crate::run`) split their
//! batches over them. All collective traffic goes through the host (values as `f32`, reduced on
//! the CPU backend), whatever device trains.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_collective::{
    AllReduceStrategy, CollectiveConfig, CollectiveError, PeerId, ReduceOperation, all_reduce,
    finish_collective, register,
};
use sftvsrl_model::device::CpuBackend;

use crate::error::TrainError;

/// How one worker process joins the others (the `sftvsrl rl` flags `--world-size`, `--rank`,
/// `--orchestrator`, `--address`, `--collective-timeout-s`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSpec {
    /// This worker's number, `0..world_size`; worker 0 writes the run folder.
    pub rank: usize,
    /// Worker processes in the run, over all nodes.
    pub world_size: usize,
    /// `HOST:PORT` of the orchestrator (`sftvsrl orchestrator --port PORT`).
    pub orchestrator: String,
    /// `HOST:PORT` at which the other workers reach this one; its tensor service listens on
    /// `PORT` on every interface.
    pub address: String,
    /// The longest wait for the orchestrator or the other workers before the run stops with an
    /// error.
    pub timeout: Duration,
}

impl WorkerSpec {
    /// Checks the rank, the world size and the addresses.
    pub fn validate(&self) -> Result<(), String> {
        if self.world_size < 2 {
            return Err("--world-size must be at least 2 for a multi-worker run".into());
        }
        if self.rank >= self.world_size {
            return Err(format!(
                "--rank {} is not below --world-size {}",
                self.rank, self.world_size
            ));
        }
        if !host_port(&self.orchestrator) {
            return Err(format!(
                "--orchestrator `{}` is not HOST:PORT",
                self.orchestrator
            ));
        }
        self.port().map(|_| ())
    }

    /// The port of [`WorkerSpec::address`].
    fn port(&self) -> Result<u16, String> {
        self.address
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty())
            .and_then(|(_, port)| port.parse().ok())
            .ok_or_else(|| format!("--address `{}` is not HOST:PORT", self.address))
    }
}

fn host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// This worker's place among the workers, registered with burn-collective: one per worker
/// process ([`Workers::join`]), or one per thread of a process whose workers are local peers
/// ([`Workers::join_local`]).
#[derive(Debug)]
pub struct Workers {
    rank: usize,
    world_size: usize,
    timeout: Duration,
    /// Set when another local peer has failed: every collective call then stops with an error
    /// rather than wait for it.
    stop: Arc<AtomicBool>,
}

impl Workers {
    /// Registers with the orchestrator and waits until all `world_size` workers have; an
    /// unreachable orchestrator or missing workers are an error after `spec.timeout`.
    pub fn join(spec: &WorkerSpec) -> Result<Self, TrainError> {
        spec.validate().map_err(TrainError::Invalid)?;
        let parse = |s: &str| format!("ws://{s}").parse().expect("an address parses");
        let config = CollectiveConfig::default()
            .with_num_devices(1)
            .with_num_nodes(spec.world_size as u32)
            .with_global_address(parse(&spec.orchestrator))
            .with_node_address(parse(&spec.address))
            .with_data_service_port(spec.port().map_err(TrainError::Invalid)?)
            .with_global_all_reduce_strategy(AllReduceStrategy::Tree(2));
        let what = format!(
            "worker {} of {}: registering with the orchestrator at {} (is `sftvsrl orchestrator` \
             running there, and have all {} workers started?)",
            spec.rank, spec.world_size, spec.orchestrator, spec.world_size
        );
        Self::register(
            spec.rank,
            spec.world_size,
            spec.timeout,
            Arc::default(),
            config,
            &what,
        )
    }

    /// Registers as local peer `rank` of `world_size` workers that are threads of this process
    /// (burn-collective's local server, no orchestrator), waiting until all have. `stop` is
    /// shared by the peers: set it when one fails, and the others' collective calls end with
    /// an error instead of waiting for it.
    pub fn join_local(
        rank: usize,
        world_size: usize,
        timeout: Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, TrainError> {
        if rank >= world_size {
            return Err(TrainError::Invalid(format!(
                "local worker {rank} is not below the {world_size} workers"
            )));
        }
        let config = CollectiveConfig::default().with_num_devices(world_size);
        let what = format!("local worker {rank} of {world_size}: registering");
        Self::register(rank, world_size, timeout, stop, config, &what)
    }

    fn register(
        rank: usize,
        world_size: usize,
        timeout: Duration,
        stop: Arc<AtomicBool>,
        config: CollectiveConfig,
        what: &str,
    ) -> Result<Self, TrainError> {
        let peer = PeerId::from(rank);
        within(timeout, &stop, what, move || {
            register::<CpuBackend>(peer, Default::default(), config)
        })?;
        Ok(Workers {
            rank,
            world_size,
            timeout,
            stop,
        })
    }

    /// This worker's number.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of workers.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The element-wise sum of `values` over all workers (every worker passes as many).
    pub fn sum(&self, values: Vec<f32>) -> Result<Vec<f32>, TrainError> {
        let len = values.len();
        let peer = PeerId::from(self.rank);
        let what = format!("worker {}: all-reducing {len} values", self.rank);
        within(self.timeout, &self.stop, &what, move || {
            let device = Default::default();
            let tensor =
                Tensor::<CpuBackend, 1>::from_data(TensorData::new(values, [len]), &device);
            let reduced = all_reduce::<CpuBackend>(
                peer,
                tensor.into_primitive().tensor(),
                ReduceOperation::Sum,
            )?;
            let reduced = Tensor::<CpuBackend, 1>::from_primitive(TensorPrimitive::Float(reduced));
            Ok(reduced
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32 data"))
        })
    }

    /// Runs `work` on each worker in turn, rank 0 first, the next starting when the one before
    /// has finished (say, writing a data file that the later workers then find on a shared
    /// disk). A failure stops every worker: the failed one with its error, the others with
    /// one naming it.
    pub fn in_turn<T>(
        &self,
        work: impl FnOnce() -> Result<T, TrainError>,
    ) -> Result<T, TrainError> {
        let mut work = Some(work);
        let mut result = None;
        for turn in 0..self.world_size {
            if turn == self.rank {
                result = work.take().map(|w| w());
            }
            let failed = matches!(result, Some(Err(_)));
            let count = self.sum(vec![f32::from(u8::from(failed))])?;
            if count[0] > 0.0 && !failed {
                return Err(TrainError::Invalid(format!(
                    "worker {turn} failed (its own output says why)"
                )));
            }
        }
        result.expect("every worker takes its turn")
    }

    /// The global vector of `global_len` values of which this worker holds `local[i]` at
    /// `positions[i]` (every position held by exactly one worker). Exact to about 48 bits: each
    /// value travels as two `f32` halves, summed with zeros.
    pub fn gather(
        &self,
        local: &[f64],
        positions: &[usize],
        global_len: usize,
    ) -> Result<Vec<f64>, TrainError> {
        let mut halves = vec![0.0f32; 2 * global_len];
        for (&value, &p) in local.iter().zip(positions) {
            let high = value as f32;
            halves[2 * p] = high;
            halves[2 * p + 1] = (value - f64::from(high)) as f32;
        }
        let summed = self.sum(halves)?;
        Ok(summed
            .chunks(2)
            .map(|h| f64::from(h[0]) + f64::from(h[1]))
            .collect())
    }

    /// Stops the run with an error unless every worker has a distinct rank and the same
    /// `fingerprint` (of its config) and `update` (the update it starts from: a resumed worker
    /// must resume where the others do).
    pub fn check_agreement(&self, fingerprint: u32, update: usize) -> Result<(), TrainError> {
        let n = self.world_size;
        let mut values = vec![0.0f32; n + 3];
        values[self.rank] = 1.0;
        // 16-bit halves and an update count below 2^24 sum exactly in f32.
        let own = [
            (fingerprint >> 16) as f32,
            (fingerprint & 0xffff) as f32,
            update as f32,
        ];
        values[n..].copy_from_slice(&own);
        let summed = self.sum(values)?;
        if let Some(rank) = summed[..n].iter().position(|&c| c != 1.0) {
            return Err(TrainError::Invalid(format!(
                "{} workers claim --rank {rank}: each rank in 0..{n} must be given once",
                summed[rank]
            )));
        }
        let same = |i: usize| summed[n + i] == n as f32 * own[i];
        if !(same(0) && same(1)) {
            return Err(TrainError::Invalid(
                "the workers were given different RL configs: start every worker with the same \
                 config file"
                    .into(),
            ));
        }
        if !same(2) {
            return Err(TrainError::Invalid(format!(
                "worker {} resumes from update {update}, another worker from a different one: \
                 every worker's run folder must hold the same newest checkpoint",
                self.rank
            )));
        }
        Ok(())
    }

    /// Sums `grads` (this worker's share of an optimizer step) over all workers, with the
    /// number of samples each trained; returns the summed gradients of every trainable
    /// parameter some worker has a gradient for, and the summed sample count.
    pub fn sum_gradients<A: AutodiffBackend, M: AutodiffModule<A>>(
        &self,
        module: &M,
        grads: GradientsParams,
        samples: usize,
    ) -> Result<(GradientsParams, usize), TrainError> {
        let mut flat = Flatten {
            grads: &grads,
            values: Vec::new(),
        };
        module.visit(&mut flat);
        let mut values = flat.values;
        values.push(samples as f32);
        let summed = self.sum(values)?;
        let (total, values) = summed.split_last().expect("the sample count");
        let mut rebuild = Rebuild {
            values,
            at: 0,
            grads: GradientsParams::new(),
        };
        module.visit(&mut rebuild);
        Ok((rebuild.grads, *total as usize))
    }

    /// Unregisters from the orchestrator at the end of the run.
    pub fn finish(&self) -> Result<(), TrainError> {
        let peer = PeerId::from(self.rank);
        let what = format!("worker {}: leaving the collective", self.rank);
        within(self.timeout, &self.stop, &what, move || {
            finish_collective::<CpuBackend>(peer)
        })
    }
}

/// Every trainable parameter's gradient (zeros where this worker has none), each preceded by
/// 1 or 0: whether this worker has it.
struct Flatten<'a> {
    grads: &'a GradientsParams,
    values: Vec<f32>,
}

impl<A: AutodiffBackend> ModuleVisitor<A> for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        match self.grads.get::<A::InnerBackend, D>(param.id) {
            Some(g) => {
                self.values.push(1.0);
                let data = g.into_data().convert::<f32>();
                self.values
                    .extend(data.to_vec::<f32>().expect("f32 gradient"));
            }
            None => {
                self.values.push(0.0);
                let n = value.shape().num_elements();
                self.values.extend(std::iter::repeat_n(0.0, n));
            }
        }
    }
}

/// The inverse of [`Flatten`] over summed values: a gradient for every parameter some worker
/// had one for.
struct Rebuild<'a> {
    values: &'a [f32],
    at: usize,
    grads: GradientsParams,
}

impl<A: AutodiffBackend> ModuleVisitor<A> for Rebuild<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        let shape = value.shape();
        let n = shape.num_elements();
        let (flag, data) = (
            self.values[self.at],
            &self.values[self.at + 1..self.at + 1 + n],
        );
        self.at += 1 + n;
        if flag > 0.0 {
            let data = TensorData::new(data.to_vec(), shape);
            let g = Tensor::<A::InnerBackend, D>::from_data(data, &value.device());
            self.grads.register(param.id, g);
        }
    }
}

/// Runs a blocking collective call on its own thread, giving up after `timeout` or when `stop`
/// is set (the call itself would wait forever for an absent orchestrator or worker).
fn within<T: Send + 'static>(
    timeout: Duration,
    stop: &AtomicBool,
    what: &str,
    call: impl FnOnce() -> Result<T, CollectiveError> + Send + 'static,
) -> Result<T, TrainError> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || send.send(call()));
    let deadline = Instant::now() + timeout;
    loop {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        match receive.recv_timeout(wait) {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => return Err(TrainError::Invalid(format!("{what}: {e:?}"))),
            Err(_) if stop.load(Ordering::Relaxed) => {
                return Err(TrainError::PeerFailed(what.to_string()));
            }
            Err(_) if Instant::now() >= deadline => {
                return Err(TrainError::Invalid(format!(
                    "{what}: no answer within {} s",
                    timeout.as_secs()
                )));
            }
            Err(_) => {}
        }
    }
}

/// Serves burn-collective's global orchestrator on `port` (every interface) until the process
/// is interrupted; workers name it with `--orchestrator HOST:PORT`.
pub fn run_orchestrator(port: u16) -> Result<(), TrainError> {
    // burn-collective only logs a failed bind: check the port first, for a clear error.
    std::net::TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        TrainError::Invalid(format!(
            "the orchestrator cannot listen on port {port}: {e}"
        ))
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| TrainError::Invalid(format!("the orchestrator's runtime: {e}")))?;
    runtime.block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}

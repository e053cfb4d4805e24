//! The flags of one worker of a multi-worker run, and `sftvsrl rl|sft CONFIG --local-workers N`:
//! starts this node's worker processes of a multi-worker run (and, for a run on one node, its
//! orchestrator), forwards their output and stops them all when one fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use sftvsrl_model::device::DeviceKind;
use sftvsrl_training::rl::WorkerSpec;

/// One of several worker processes (README "Several workers"): RL workers each run
/// `rollout.num_envs` environments, SFT workers each a share of every optimizer step's
/// micro-batches, and all take the optimizer steps of one worker with all of them.
#[derive(Args)]
pub struct WorkerArgs {
    /// Worker processes in the run, over all nodes (1: a run of its own).
    #[arg(long, default_value_t = 1)]
    pub world_size: usize,
    /// This worker's number, 0 to world size − 1; worker 0 writes `runs/<name>/`, worker R
    /// `runs/<name>.rank-R/`.
    #[arg(long, default_value_t = 0)]
    pub rank: usize,
    /// HOST:PORT of `sftvsrl orchestrator`.
    #[arg(long)]
    pub orchestrator: Option<String>,
    /// HOST:PORT at which the other workers reach this one (a free port per worker).
    #[arg(long)]
    pub address: Option<String>,
    /// Seconds to wait for the orchestrator or the other workers before stopping with an error.
    #[arg(long, default_value_t = 600)]
    pub collective_timeout_s: u64,
}

impl WorkerArgs {
    /// The worker's place, or `None` for a run of its own.
    pub fn spec(&self) -> Result<Option<WorkerSpec>> {
        if self.world_size <= 1 {
            if self.rank > 0 || self.orchestrator.is_some() || self.address.is_some() {
                bail!("--rank, --orchestrator and --address need --world-size 2 or more");
            }
            return Ok(None);
        }
        let (Some(orchestrator), Some(address)) = (&self.orchestrator, &self.address) else {
            bail!(
                "--world-size {} needs --orchestrator and --address",
                self.world_size
            );
        };
        let spec = WorkerSpec {
            rank: self.rank,
            world_size: self.world_size,
            orchestrator: orchestrator.clone(),
            address: address.clone(),
            timeout: Duration::from_secs(self.collective_timeout_s),
        };
        spec.validate().map_err(anyhow::Error::msg)?;
        Ok(Some(spec))
    }
}

/// The node's part of a multi-worker run, started by one command (README "Several workers").
#[derive(Args, Clone, Debug)]
pub struct LaunchArgs {
    /// Start N worker processes on this machine, ranks node-rank × N to node-rank × N + N − 1 of
    /// nodes × N. With one node (the default) an orchestrator is started on loopback too.
    #[arg(long, value_name = "N", conflicts_with_all = ["world_size", "rank", "address"])]
    pub local_workers: Option<usize>,
    /// Machines in the run, each running this command with its own --node-rank (needs
    /// --orchestrator and --host).
    #[arg(long, default_value_t = 1, requires = "local_workers")]
    pub nodes: usize,
    /// This machine's number, 0 to nodes − 1.
    #[arg(long, default_value_t = 0, requires = "local_workers")]
    pub node_rank: usize,
    /// The address at which the other machines reach this one (default with one node:
    /// 127.0.0.1); each worker listens on a free port of it.
    #[arg(long, requires = "local_workers")]
    pub host: Option<String>,
}

/// What every worker of the node is given besides its place.
pub struct WorkerCommand<'a> {
    /// The worker's subcommand: `rl` or `sft`.
    pub subcommand: &'static str,
    pub config: &'a Path,
    pub resume: bool,
    pub device: DeviceKind,
    /// HOST:PORT of a running orchestrator; `None` starts one (one-node runs only).
    pub orchestrator: Option<&'a str>,
    pub timeout_s: u64,
}

impl<'a> WorkerCommand<'a> {
    /// The command of `subcommand`'s workers, with the worker flags `workers` was given.
    pub fn new(
        subcommand: &'static str,
        config: &'a Path,
        resume: bool,
        device: DeviceKind,
        workers: &'a WorkerArgs,
    ) -> Self {
        WorkerCommand {
            subcommand,
            config,
            resume,
            device,
            orchestrator: workers.orchestrator.as_deref(),
            timeout_s: workers.collective_timeout_s,
        }
    }
}

impl LaunchArgs {
    /// The checked number of local workers.
    fn local(&self) -> Result<usize> {
        let n = self.local_workers.unwrap_or(0);
        if n == 0 {
            bail!("--local-workers must be at least 1");
        }
        if self.nodes == 0 || self.node_rank >= self.nodes {
            bail!(
                "--node-rank {} is not below --nodes {}",
                self.node_rank,
                self.nodes
            );
        }
        if n * self.nodes < 2 {
            bail!("--local-workers 1 on one node is a run of its own: leave the flag out");
        }
        Ok(n)
    }
}

/// Runs this node's workers to the end; an error names the first worker that failed (the
/// others are stopped, so none waits for it until its timeout).
pub fn run(args: &LaunchArgs, worker: &WorkerCommand<'_>) -> Result<()> {
    let local = args.local()?;
    let world = local * args.nodes;
    let host = match (&args.host, args.nodes) {
        (Some(h), _) => h.clone(),
        (None, 1) => "127.0.0.1".to_string(),
        (None, _) => bail!(
            "--nodes {} needs --host: this machine's address",
            args.nodes
        ),
    };
    let exe = std::env::current_exe().context("the sftvsrl executable's path")?;
    let mut processes = Processes::default();
    let orchestrator_at = match (worker.orchestrator, args.nodes) {
        (Some(at), _) => at.to_string(),
        (None, 1) => {
            let port = free_port("127.0.0.1")?;
            let mut child = Command::new(&exe)
                .args(["orchestrator", "--port", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting the orchestrator")?;
            let readers = vec![forward(child.stderr.take(), "[orchestrator]".into(), true)];
            processes.0.push(Process {
                name: "the orchestrator".into(),
                worker: false,
                child,
                readers,
            });
            format!("127.0.0.1:{port}")
        }
        (None, _) => bail!(
            "--nodes {} needs --orchestrator HOST:PORT (start `sftvsrl orchestrator --port \
             PORT` on one machine first)",
            args.nodes
        ),
    };
    let gpus = match worker.device {
        DeviceKind::Cuda => Some(gpus(local)?),
        _ => None,
    };
    for local_rank in 0..local {
        let rank = args.node_rank * local + local_rank;
        let address = format!("{host}:{}", free_port(&host)?);
        let mut command = Command::new(&exe);
        command
            .arg(worker.subcommand)
            .arg(worker.config)
            .args(["--device", worker.device.name()])
            .args(["--world-size", &world.to_string()])
            .args(["--rank", &rank.to_string()])
            .args(["--orchestrator", &orchestrator_at])
            .args(["--address", &address])
            .args(["--collective-timeout-s", &worker.timeout_s.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if worker.resume {
            command.arg("--resume");
        }
        if let Some(gpus) = &gpus {
            command.env("CUDA_VISIBLE_DEVICES", &gpus[local_rank]);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting worker {rank}"))?;
        let label = format!("[worker {rank}]");
        let readers = vec![
            forward(child.stdout.take(), label.clone(), false),
            forward(child.stderr.take(), label, true),
        ];
        processes.0.push(Process {
            name: format!("worker {rank}"),
            worker: true,
            child,
            readers,
        });
    }
    eprintln!(
        "started workers {}..={} of {world} (orchestrator {orchestrator_at})",
        args.node_rank * local,
        args.node_rank * local + local - 1
    );
    processes.wait_workers()
}

/// A started process and the threads that forward its output.
struct Process {
    name: String,
    worker: bool,
    child: Child,
    readers: Vec<thread::JoinHandle<()>>,
}

/// The node's processes (an orchestrator first, if any, then the workers), killed when dropped
/// before they end.
#[derive(Default)]
struct Processes(Vec<Process>);

impl Processes {
    /// Waits until every worker has ended; an error when a worker fails or the orchestrator
    /// ends while workers still run.
    fn wait_workers(&mut self) -> Result<()> {
        loop {
            let mut workers_running = false;
            for p in &mut self.0 {
                let status = p
                    .child
                    .try_wait()
                    .with_context(|| format!("waiting for {}", p.name))?;
                if status.is_some() {
                    // Its last words first: the pipes close when it ends.
                    p.readers.drain(..).for_each(|r| drop(r.join()));
                }
                match status {
                    Some(s) if !s.success() || !p.worker => {
                        bail!(
                            "{} ended ({}); the others were stopped",
                            p.name,
                            describe(s)
                        )
                    }
                    Some(_) => {}
                    None => workers_running |= p.worker,
                }
            }
            if !workers_running {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for p in &mut self.0 {
            if let Ok(None) = p.child.try_wait() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    }
}

/// Copies a process's output to ours, each line led by `label`.
fn forward(
    stream: Option<impl Read + Send + 'static>,
    label: String,
    to_stderr: bool,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Some(stream) = stream else { return };
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let line = format!("{label} {line}\n");
            let _ = match to_stderr {
                true => std::io::stderr().write_all(line.as_bytes()),
                false => std::io::stdout().write_all(line.as_bytes()),
            };
        }
    })
}

/// A port of `host` that nobody listens on now.
fn free_port(host: &str) -> Result<u16> {
    let listener = TcpListener::bind((host, 0))
        .with_context(|| format!("finding a free port on {host} (--host)"))?;
    Ok(listener.local_addr()?.port())
}

/// One GPU for each of `local` CUDA workers: the entries of `CUDA_VISIBLE_DEVICES` when it is
/// set, else GPUs 0 to `local` − 1.
fn gpus(local: usize) -> Result<Vec<String>> {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    if visible.trim().is_empty() {
        return Ok((0..local).map(|i| i.to_string()).collect());
    }
    let list: Vec<String> = visible.split(',').map(|s| s.trim().to_string()).collect();
    if list.len() < local {
        bail!(
            "--local-workers {local} needs a GPU each, and CUDA_VISIBLE_DEVICES lists {}",
            list.len()
        );
    }
    Ok(list)
}

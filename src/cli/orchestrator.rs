//! `sftvsrl orchestrator --port PORT`: burn-collective's orchestrator for a multi-worker RL run
//! (`sftvsrl rl … --world-size N --rank R --orchestrator HOST:PORT`).

use anyhow::Result;
use clap::Args;
use sftvsrl_training::rl::run_orchestrator;

#[derive(Args)]
pub struct OrchestratorArgs {
    /// The port to listen on (every interface); the workers' `--orchestrator HOST:PORT`.
    #[arg(long)]
    port: u16,
}

pub fn run(args: OrchestratorArgs) -> Result<()> {
    eprintln!(
        "orchestrator listening on port {} (Ctrl-C to stop)",
        args.port
    );
    run_orchestrator(args.port)?;
    Ok(())
}

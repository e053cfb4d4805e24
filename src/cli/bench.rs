//! `sftvsrl bench …`.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Placeholder while the GeneralPoints CLI is written.
    Todo,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Todo => anyhow::bail!("not built yet"),
    }
}

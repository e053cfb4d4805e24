//! `sftvsrl gp …`.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum GpCommand {
    /// Placeholder while the GeneralPoints CLI is written.
    Todo,
}

pub fn run(cmd: GpCommand) -> anyhow::Result<()> {
    match cmd {
        GpCommand::Todo => anyhow::bail!("not built yet"),
    }
}

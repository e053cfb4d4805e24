//! `sftvsrl data …`.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Placeholder while the GeneralPoints CLI is written.
    Todo,
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Todo => anyhow::bail!("not built yet"),
    }
}

//! `sftvsrl nav …` (issue 7 fills this in).

use clap::Subcommand;

#[derive(Subcommand)]
pub enum NavCommand {
    /// Generate a synthetic city with routes in the V-IRL data layout.
    World,
}

pub fn run(cmd: NavCommand) -> anyhow::Result<()> {
    match cmd {
        NavCommand::World => anyhow::bail!("navigation is not built yet"),
    }
}

//! `aether-dbhub`: parse the command line and hand over to [`aether_dbhub::app`].

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = aether_dbhub::config::Cli::parse();
    aether_dbhub::app::run(cli)
}

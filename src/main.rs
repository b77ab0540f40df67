//! `aether-dbhub`: parse the command line and hand over to [`aether_dbhub::app`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = aether_dbhub::config::Cli::parse();
    match aether_dbhub::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // app::run has logged why.
        Err(_) => ExitCode::FAILURE,
    }
}

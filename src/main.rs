//! `aether-dbhub`: parse the command line and hand over to [`aether_dbhub::app`].

use std::process::ExitCode;

use clap::Parser;

// jemalloc hands memory freed after a burst back to the kernel (glibc's malloc kept it).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = aether_dbhub::config::Cli::parse();
    match aether_dbhub::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // app::run has logged why.
        Err(_) => ExitCode::FAILURE,
    }
}

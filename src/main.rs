//! The `odsync` binary: parse the command line, run it, map the outcome to an exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = odsync::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env(odsync::env_vars::ODSYNC_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match odsync::run_cli(cli) {
        Ok(code) => code,
        Err(e) if odsync::error::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(odsync::error::exit_code(&e))
        }
    }
}

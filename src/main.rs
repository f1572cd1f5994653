//! The `odsync` binary: parse the command line, run it, map the outcome to an exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = odsync::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env(odsync::env_vars::ODSYNC_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Logs (every level, every crate) pass through the one redaction path.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| odsync::redact::RedactingWriter)
        .with_target(false)
        .init();
    let json = cli.json;
    match odsync::run_cli(cli) {
        Ok(code) => code,
        Err(e) if odsync::error::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let code = odsync::error::exit_code(&e);
            let text = odsync::redact::text(&format!("{e:#}"));
            eprintln!("error: {text}");
            if json {
                // Schedulers parse stdout: a failure is one JSON document too.
                println!("{}", odsync::error::failure_json(&e, &text, code));
            }
            ExitCode::from(code)
        }
    }
}

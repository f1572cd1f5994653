//! The `odsync` binary: parse the command line, run it, map the outcome to an exit code.

use clap::Parser;
use std::process::ExitCode;

// A run allocates millions of short strings while parsing and building tables; glibc's malloc
// spent a fifth of a 250k-organisation baseline in malloc/free and page clearing (perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = odsync::cli::Cli::parse();
    let default_level = if cli.quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env(odsync::env_vars::ODSYNC_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    odsync::printer::set_quiet(cli.quiet);
    // Logs (every level, every crate) pass through the one redaction path. Colour only on a
    // terminal, and never with NO_COLOR set (https://no-color.org).
    let colour = {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| odsync::redact::RedactingWriter)
        .with_target(false);
    match cli.log_format {
        // One JSON object per line, with the run and stage spans (run id, pipeline, stage).
        odsync::cli::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_ansi(false)
            .init(),
        odsync::cli::LogFormat::Text => builder.with_ansi(colour).init(),
    }
    let json = cli.json;
    match odsync::run_cli(cli) {
        Ok(code) => code,
        Err(e) if odsync::error::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let code = odsync::exit_code(&e);
            let text = odsync::redact::text(&format!("{e:#}"));
            eprintln!("error: {text}");
            if json {
                // Schedulers parse stdout: a failure is one JSON document too.
                println!("{}", odsync::failure_json(&e, &text, code));
            }
            ExitCode::from(code)
        }
    }
}

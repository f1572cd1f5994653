//! `odsync serve`: the local ORD-compatible server, for the demo and manual testing.

use crate::cli::ServeArgs;
use crate::error::UserError;
use crate::server::OrdServer;
use std::process::ExitCode;

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.write_trud {
        let state = crate::server::fixtures::load_state(&args.states, &args.state).map_err(UserError)?;
        let published = args.published.unwrap_or(state.config.served_on);
        crate::server::trud::write_release_zip(&state, published, path).map_err(UserError)?;
        eprintln!(
            "wrote state `{}` ({} organisations) as a TRUD XML release published {published} to {}",
            args.state,
            state.records.len(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let server = OrdServer::start(&args.states, &args.state, args.port).map_err(UserError)?;
    eprintln!(
        "serving state `{}` at {} (Ctrl-C to stop)",
        args.state,
        server.base_url()
    );
    if let Some(path) = &args.port_file {
        // Written last, and atomically, so a waiting script never reads a half-written port.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, server.port().to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    server.wait();
    Ok(ExitCode::SUCCESS)
}

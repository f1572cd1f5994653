//! `odsync serve`: the local ORD-compatible server, for the demo and manual testing.

use crate::cli::ServeArgs;
use crate::error::UserError;
use crate::server::OrdServer;
use std::process::ExitCode;

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
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

//! `odsync check <pipeline>`: a connection test that changes nothing.

use super::Globals;
use crate::cli::CheckArgs;
use crate::sources::CheckReport;
use std::process::ExitCode;

pub fn run(globals: &Globals, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let pipeline = globals.load(&args.pipeline)?;
    let built = globals.source(&pipeline, args.base_url.as_deref(), args.fhir_base_url.as_deref())?;
    let report = built.source.check()?;
    globals.printer.emit(&report, |r: &CheckReport| {
        let mut out = format!("{}: reachable in {} ms\n", r.location, r.latency_ms);
        if let Some(t) = r.total_in_scope {
            out.push_str(&format!("  in scope: {t}\n"));
        }
        if let (Some(code), Some(name)) = (&r.sample_code, &r.sample_name) {
            out.push_str(&format!("  sample record parses: {code} {name}\n"));
        }
        for n in &r.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        out
    })?;
    Ok(ExitCode::SUCCESS)
}

//! `odsync gc <pipeline>`: remove old versions under a keep policy (see `gc`).

use super::Globals;
use crate::cli::GcArgs;
use crate::gc::{GcPolicy, GcReport};
use std::process::ExitCode;

pub fn run(globals: &Globals, args: &GcArgs) -> anyhow::Result<ExitCode> {
    let pipeline = globals.load_known(&args.pipeline)?;
    let name = pipeline
        .as_ref()
        .map_or(args.pipeline.clone(), |p| p.config.name.clone());
    let warehouse = globals.warehouse(pipeline.as_ref());
    let run_id = format!("{}-{name}-gc", globals.clock.now().format("%Y%m%dT%H%M%SZ"));
    let lock = crate::warehouse::lock_pipeline(&warehouse, &name, &run_id)?;
    let policy = GcPolicy {
        keep_versions: args.keep,
        keep_days: args.keep_days,
        dry_run: args.dry_run,
    };
    let report = crate::gc::gc(&warehouse, &name, &policy, globals.clock.now(), &lock)?;
    drop(lock);
    if !report.dry_run
        && !report.removed.is_empty()
        && let Err(e) = crate::catalog::Catalog::open(&warehouse).and_then(|c| c.refresh_views())
    {
        tracing::warn!("versions removed, but the catalog views were not refreshed: {e:#}");
    }
    globals.printer.emit(&report, |r: &GcReport| {
        let verb = if r.dry_run { "would remove" } else { "removed" };
        let mut out = format!("{}: {verb} {} folder(s)", r.pipeline, r.removed.len());
        if !r.reports_removed.is_empty() {
            out.push_str(&format!(" and {} run report file(s)", r.reports_removed.len()));
        }
        out.push('\n');
        for p in r.removed.iter().chain(&r.reports_removed) {
            out.push_str(&format!("  - {p}\n"));
        }
        for (v, why) in &r.kept {
            out.push_str(&format!("  keeps version {v}: {why}\n"));
        }
        out
    })?;
    Ok(ExitCode::SUCCESS)
}

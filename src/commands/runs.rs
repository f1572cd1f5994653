//! `odsync runs [pipeline]`: the run log from the catalog.

use super::Globals;
use crate::catalog::{Catalog, RunRecord};
use crate::cli::RunsArgs;
use std::process::ExitCode;

pub fn run(globals: &Globals, args: &RunsArgs) -> anyhow::Result<ExitCode> {
    let pipeline = globals.load_known_opt(args.pipeline.as_deref())?;
    let catalog = Catalog::open_read(&globals.warehouse(pipeline.as_ref()))?;
    let name = pipeline
        .as_ref()
        .map(|p| p.config.name.clone())
        .or(args.pipeline.clone());
    let runs = catalog.runs(name.as_deref(), args.limit)?;
    globals.printer.emit(&runs, |runs: &Vec<RunRecord>| {
        if runs.is_empty() {
            return "no runs recorded yet\n".into();
        }
        let mut out = format!(
            "{:<40}  {:<11}  {:<10}  {:>7}  {:>9}  {:>11}  {:>7}  {:<10}  {}\n",
            "run_id", "mode", "status", "version", "fetched", "quarantined", "pending", "watermark", "error"
        );
        for r in runs {
            out.push_str(&format!(
                "{:<40}  {:<11}  {:<10}  {:>7}  {:>9}  {:>11}  {:>7}  {:<10}  {}\n",
                r.run_id,
                r.mode,
                r.status,
                r.snapshot_version.map_or("-".into(), |v| v.to_string()),
                r.records_fetched.map_or("-".into(), |v| v.to_string()),
                r.records_quarantined.map_or("-".into(), |v| v.to_string()),
                r.records_pending.map_or("-".into(), |v| v.to_string()),
                r.watermark_after.map_or("-".into(), |d| d.to_string()),
                r.error
                    .as_deref()
                    .map_or(String::new(), |e| e.lines().next().unwrap_or_default().to_owned()),
            ));
        }
        out
    })?;
    Ok(ExitCode::SUCCESS)
}

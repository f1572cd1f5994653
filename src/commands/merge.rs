//! `odsync merge <pipeline>`: merge the latest snapshot into the trust table now.

use super::Globals;
use crate::merge::MergeReport;
use crate::pipeline::merge_now::{merge_latest, merge_run_id};

pub fn run(globals: &Globals, name: &str) -> anyhow::Result<MergeReport> {
    let pipeline = globals.load(name)?;
    let warehouse = globals.warehouse(Some(&pipeline));
    let run_id = merge_run_id(&globals.clock, &pipeline.config.name);
    let lock = crate::warehouse::lock_pipeline(&warehouse, &pipeline.config.name, &run_id)?;
    let report = merge_latest(&pipeline, &warehouse, &globals.clock, &lock)?;
    globals.printer.emit(&report, super::merge_text)?;
    Ok(report)
}

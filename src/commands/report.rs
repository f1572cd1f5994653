//! `odsync report <pipeline> [--run ID] [--out FILE]`: a run's HTML report, written again.

use super::{Globals, display_path};
use crate::cli::ReportArgs;
use serde::Serialize;
use std::process::ExitCode;

#[derive(Serialize)]
struct Written {
    pipeline: String,
    run_id: String,
    report: std::path::PathBuf,
}

pub fn run(globals: &Globals, args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let pipeline = globals.load_known(&args.pipeline)?;
    let name = pipeline
        .as_ref()
        .map_or(args.pipeline.clone(), |p| p.config.name.clone());
    let warehouse = globals.warehouse(pipeline.as_ref());
    let (run_id, html) = crate::report::render_saved(&warehouse, &name, args.run.as_deref())?;
    let path = match &args.out {
        Some(p) => p.clone(),
        None => crate::report::reports_dir(&warehouse, &name).join(format!("{run_id}.html")),
    };
    crate::report::write_atomic(&path, &html)?;
    let written = Written {
        pipeline: name,
        run_id,
        report: path,
    };
    globals.printer.emit(&written, |w| {
        format!(
            "{}: report of run {} written to {}\n",
            w.pipeline,
            w.run_id,
            display_path(&w.report)
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

//! `odsync verify [pipeline] [--repair]`: the warehouse against its manifests.

use super::Globals;
use crate::cli::VerifyArgs;
use crate::verify::VerifyReport;
use std::process::ExitCode;

pub fn run(globals: &Globals, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let pipeline = globals.load_known_opt(args.pipeline.as_deref())?;
    let warehouse = globals.warehouse(pipeline.as_ref());
    let names: Vec<String> = match (&pipeline, &args.pipeline) {
        (Some(p), _) => vec![p.config.name.clone()],
        (None, Some(name)) => vec![name.clone()],
        (None, None) => crate::warehouse::layout::pipelines_in(&warehouse),
    };
    if names.is_empty() {
        return Err(crate::error::UserError(format!(
            "no pipeline has snapshots in `{}`\nHelp: pass --warehouse, or run a pipeline first",
            warehouse.display()
        ))
        .into());
    }
    let reports: Vec<VerifyReport> = names
        .iter()
        .map(|n| crate::verify::verify(&warehouse, n, args.repair, &globals.clock))
        .collect();
    let failed = reports.iter().any(|r| !r.problems.is_empty());
    globals.printer.emit(&reports, |reports: &Vec<VerifyReport>| {
        let mut out = String::new();
        for r in reports {
            out.push_str(&format!(
                "{}: {} versions, {} files checked, {}\n",
                r.pipeline,
                r.versions.len(),
                r.files_checked,
                if r.problems.is_empty() {
                    "no problem".to_owned()
                } else {
                    format!("{} problem(s)", r.problems.len())
                }
            ));
            for p in &r.problems {
                out.push_str(&format!("  - {}: {}\n    repair: {}\n", p.path, p.problem, p.repair));
            }
            for m in &r.repaired {
                out.push_str(&format!("  moved aside: {m}\n"));
            }
        }
        out
    })?;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

//! `odsync run <pipeline>`: the scheduled job.

use super::{Globals, display_path};
use crate::cli::RunArgs;
use crate::error::UserError;
use crate::model::code::OdsCode;
use crate::model::states::RunStatus;
use crate::pipeline::runner::{RunOptions, RunSummary, Runner};
use std::process::ExitCode;

pub fn run(globals: &Globals, args: &RunArgs) -> anyhow::Result<ExitCode> {
    // Checked before anything else: a code goes into a URL path.
    let codes = args
        .codes
        .as_ref()
        .map(|codes| {
            codes
                .iter()
                .map(|c| c.parse::<OdsCode>())
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| {
            UserError(format!(
                "--codes: {e}\nHelp: give ODS codes separated by commas, e.g. --codes RWR,RAX"
            ))
        })?;
    let pipeline = globals.load(&args.pipeline)?;
    let built = globals.source(&pipeline, args.base_url.as_deref(), args.fhir_base_url.as_deref())?;
    let runner = Runner {
        pipeline: &pipeline,
        warehouse: globals.warehouse(Some(&pipeline)),
        source: built.source,
        baseline_source: pipeline.config.baseline_source(),
        clock: globals.clock,
        csv_layout: built.csv_layout,
    };
    let options = RunOptions {
        full: args.full,
        codes,
        accept_shift: args.accept_shift,
        dry_run: args.dry_run,
    };
    let mut summary = runner.run(&options)?;
    if summary.status != RunStatus::DryRun {
        // After the commit, and never a reason to fail it: a report that cannot be written is a
        // warning, and `odsync report` writes it again.
        let warehouse = globals.warehouse(Some(&pipeline));
        let doc = serde_json::to_value(&summary).expect("the summary serialises");
        let writing = std::time::Instant::now();
        let written = crate::report::write_for_run(&warehouse, &summary.pipeline, &doc);
        tracing::debug!(ms = writing.elapsed().as_millis() as u64, "run report written");
        match written {
            Ok(path) => summary.report = Some(path),
            Err(e) => tracing::warn!("the run is committed, but its report was not written: {e}"),
        }
    }
    globals.printer.emit(&summary, human)?;
    Ok(ExitCode::SUCCESS)
}

fn human(s: &RunSummary) -> String {
    let mut out = String::new();
    let verb = match s.status {
        RunStatus::Unchanged => "unchanged: same content as",
        RunStatus::DryRun => "dry run, nothing committed: would be",
        RunStatus::Succeeded | RunStatus::Running | RunStatus::Failed | RunStatus::Abandoned => "committed",
    };
    out.push_str(&format!(
        "{}: {} run {} — {} version {}\n",
        s.pipeline, s.mode, s.run_id, verb, s.snapshot_version
    ));
    out.push_str(&format!("  why: {}\n", s.mode_reason));
    out.push_str(&format!(
        "  records: {} fetched, {} unchanged, {} quarantined, {} out of scope → {} organisations\n",
        s.records.fetched, s.records.unchanged, s.records.quarantined, s.records.out_of_scope, s.records.organisations
    ));
    if !s.records.pending.is_empty() {
        out.push_str(&format!(
            "  pending: {} (could not be fetched or read: kept at their previous version, the watermark stays, the next run asks again)\n",
            s.records.pending.join(", ")
        ));
    }
    let tables: Vec<String> = s.tables.iter().map(|(k, v)| format!("{k} {v}")).collect();
    out.push_str(&format!("  tables: {}\n", tables.join(", ")));
    out.push_str(&format!(
        "  http: {} requests, {} retries; watermark {} → {}; {} ms\n",
        s.fetch.http.requests,
        s.fetch.http.retries,
        s.watermark_before.map_or("none".into(), |d| d.to_string()),
        s.watermark_after.map_or("none".into(), |d| d.to_string()),
        s.duration_ms
    ));
    out.push_str(&format!("  snapshot: {}\n", display_path(&s.snapshot_path)));
    if let Some(report) = &s.report {
        out.push_str(&format!("  report: {}\n", display_path(report)));
    }
    let stages: Vec<String> = s.stages.iter().map(|t| format!("{} {} ms", t.stage, t.ms)).collect();
    out.push_str(&format!("  stages: {}\n", stages.join(", ")));
    if s.records.left_window > 0 {
        out.push_str(&format!(
            "  left the file's publication window: {} closed organisations, kept as last published (e.g. {})\n",
            s.records.left_window,
            s.records.left_window_examples.join(", ")
        ));
    }
    if let Some(d) = &s.diff {
        out.push_str(&format!(
            "  changes from version {}: {} rows\n",
            d.from_version, d.changes
        ));
        out.push_str(&super::diff::summary_text(d));
    }
    for u in &s.unmapped_roles {
        out.push_str(&format!(
            "  unmapped role {}: {} organisations (e.g. {})\n",
            u.role_id,
            u.organisations,
            u.examples.join(", ")
        ));
    }
    for c in &s.code_system_changes {
        let names = match (&c.old_name, &c.new_name) {
            (Some(o), Some(n)) => format!("`{o}` → `{n}`"),
            (Some(o), None) => format!("was `{o}`"),
            (None, Some(n)) => format!("`{n}`"),
            (None, None) => String::new(),
        };
        out.push_str(&format!(
            "  role code {} {} in ODS's code system {}{}\n",
            c.role_id,
            c.change,
            names,
            if c.used_by_pipeline {
                " (this pipeline's scope or role mapping names it: check them)"
            } else {
                ""
            }
        ));
    }
    for shift in &s.accepted_shift {
        out.push_str(&format!("  accepted publication shift: {shift}\n"));
    }
    if let Some(m) = &s.merge {
        out.push_str(&format!("  trust table: {}", super::merge_text(m)));
    }
    out
}

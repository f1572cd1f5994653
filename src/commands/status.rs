//! `odsync status [pipeline]`: each pipeline's health, for cron, monitors and schedulers.

use super::Globals;
use crate::catalog::Catalog;
use crate::cli::StatusArgs;
use crate::pipeline::SourceConfig;
use crate::status::{PipelineFacts, PipelineHealth, Thresholds, health};
use std::process::ExitCode;

/// The exit code when a threshold is crossed (distinct from 1, a user error, and 2, a bug).
pub const UNHEALTHY: u8 = 3;

pub fn run(globals: &Globals, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let limits = Thresholds {
        max_hours_since_success: args.max_hours_since_success,
        min_sync_days_left: args.min_sync_days_left,
        max_pending: args.max_pending,
        max_quarantined: args.max_quarantined.unwrap_or(u64::MAX),
        max_open_conflicts: args.max_open_conflicts.unwrap_or(u64::MAX),
        max_conflict_age_days: args.max_conflict_age_days,
    };
    // A named pipeline must load (a broken file is an error); without a name, every pipeline
    // the warehouse holds, with what its file (when there is one) says about the source.
    let named = args.pipeline.as_deref().map(|p| globals.load(p)).transpose()?;
    let warehouse = globals.warehouse(named.as_ref());
    let facts_of = |p: &crate::pipeline::Pipeline| {
        let (uses_sync, overlap_days) = match &p.config.source {
            SourceConfig::Ord(o) => (true, o.overlap_days),
            SourceConfig::Fhir(f) => (true, f.overlap_days),
            SourceConfig::Csv(_) | SourceConfig::TrudXml(_) => (false, 0),
        };
        PipelineFacts {
            name: p.config.name.clone(),
            uses_sync,
            overlap_days,
        }
    };
    let facts: Vec<PipelineFacts> = match &named {
        Some(p) => vec![facts_of(p)],
        None => {
            crate::warehouse::layout::pipelines_in(&warehouse)
                .into_iter()
                // A pipeline file that exists but does not load is an error, never skipped.
                .map(|name| match globals.load_known(&name)? {
                    Some(p) => Ok(facts_of(&p)),
                    // Known only from the warehouse: the manifest says the source kind.
                    None => {
                        let kind = crate::snapshot::SnapshotStore::new(&warehouse, &name)
                            .latest()
                            .ok()
                            .flatten()
                            .map(|m| m.source.kind);
                        Ok(PipelineFacts {
                            uses_sync: kind.is_some_and(|k| k.has_change_feed()),
                            overlap_days: 2,
                            name,
                        })
                    }
                })
                .collect::<anyhow::Result<_>>()?
        }
    };
    let catalog = Catalog::open_existing_read_only(&warehouse)?;
    let now = globals.clock.now();
    let report: Vec<PipelineHealth> = facts
        .iter()
        .map(|f| health(&warehouse, f, catalog.as_ref(), now, &limits))
        .collect::<anyhow::Result<_>>()?;
    let unhealthy = report.iter().any(|h| h.status != crate::model::states::Health::Ok);
    globals.printer.emit(&report, |report: &Vec<PipelineHealth>| {
        if report.is_empty() {
            return format!("no pipeline has run in `{}` yet\n", warehouse.display());
        }
        let mut out = String::new();
        for h in report {
            out.push_str(&format!("{}: {}\n", h.pipeline, h.status.as_str().to_uppercase()));
            let run = |r: &Option<crate::status::RunBrief>| {
                r.as_ref().map_or("none".to_owned(), |r| {
                    format!(
                        "{} {} ({})",
                        r.run_id,
                        r.status,
                        r.finished_at.as_deref().unwrap_or("unfinished")
                    )
                })
            };
            out.push_str(&format!("  last run: {}\n", run(&h.last_run)));
            out.push_str(&format!(
                "  last success: {}{}\n",
                run(&h.last_success),
                h.hours_since_success.map_or(String::new(), |n| format!(
                    ", {n} hour{} ago",
                    if n == 1 { "" } else { "s" }
                ))
            ));
            out.push_str(&format!(
                "  version {}; watermark {}{}\n",
                h.snapshot_version.map_or("none".into(), |v| v.to_string()),
                h.watermark.map_or("none".into(), |d| d.to_string()),
                h.sync_days_left.map_or(String::new(), |d| format!(
                    " ({d} days left before /sync cannot reach it)"
                ))
            ));
            out.push_str(&format!(
                "  pending {}, quarantined {}, open conflicts {}{}\n",
                h.pending.len(),
                h.quarantined,
                h.open_conflicts,
                h.oldest_open_conflict_days
                    .map_or(String::new(), |d| format!(" (oldest {d} days)"))
            ));
            for p in &h.problems {
                out.push_str(&format!("  ! {p}\n"));
            }
        }
        out
    })?;
    Ok(if unhealthy {
        ExitCode::from(UNHEALTHY)
    } else {
        ExitCode::SUCCESS
    })
}

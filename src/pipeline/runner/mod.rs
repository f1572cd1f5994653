//! One run of a pipeline: decide the mode, fetch, apply to the previous snapshot, parse and
//! quarantine, build the tables, commit a version (or find it unchanged), record the run.
//!
//! Invariants:
//! - A failed run commits no snapshot and leaves the watermark where it was (it is read from
//!   successful runs only); its row in `runs` says which stage failed and why.
//! - Every record fetched ends up in the snapshot, in the quarantine with a reason, or counted as
//!   out of scope; nothing is dropped silently.
//! - A delta (incremental or `--codes`) is applied to the previous snapshot's raw records, and the
//!   tables are always re-derived from the resulting raw set, so a delta snapshot and a baseline
//!   of the same data are identical.

mod carry;
mod completeness;
mod diff_stage;
mod fetch_stage;
mod parse_stage;
mod publish;
mod snapshot_stage;
mod stages;
mod summary;

use carry::*;
pub use completeness::CompletenessError;
use diff_stage::{DiffInputs, DiffStage, diff_stage};
use publish::Snapshotted;
use stages::*;
pub use summary::{RecordCounts, RunSummary, StageTime};

use super::Pipeline;
use crate::catalog::{Catalog, RunRecord};
use crate::clock::Clock;
use crate::model::csv_row::CsvLayout;
use crate::model::states::{RunStatus, Stage};
use crate::model::tables;
use crate::model::{OrgRecord, ParseContext, Quarantined, RawRecord, parse_raw};
use crate::snapshot::{CommitOutcome, Manifest, SnapshotStore, SourceInfo, Staged};
use crate::sources::{FetchMetrics, FetchMode, Source};
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

/// `/sync` only reaches back this many days (ORD answers 406 beyond it).
pub const SYNC_MAX_DAYS: i64 = 185;

#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// Force a baseline even when an incremental run is possible.
    pub full: bool,
    /// Refresh only these codes.
    pub codes: Option<Vec<crate::model::code::OdsCode>>,
    /// Commit even when the publication-shift guard trips (recorded in the run and manifest).
    pub accept_shift: bool,
    /// Do everything a run does (fetch, parse, diff, guard, history, merge) in the run's
    /// scratch area, report what would change, and commit nothing: no version, no watermark, no
    /// `runs` row, the catalog untouched.
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "run `{run_id}` of pipeline `{pipeline}` failed at the {stage} stage: nothing was committed and the watermark did not move"
)]
pub struct RunError {
    pub run_id: String,
    pub pipeline: String,
    pub stage: Stage,
    #[source]
    pub source: anyhow::Error,
}

/// What one run's work starts from.
#[derive(Clone, Copy)]
struct Step<'a> {
    store: &'a SnapshotStore,
    /// The source this run fetches from: `source`, or the baseline source for a baseline.
    source: &'a dyn Source,
    /// Whether `source` is the pipeline's `[baseline]` source.
    from_baseline_source: bool,
    previous: Option<&'a Manifest>,
    mode: &'a FetchMode,
    run_id: &'a str,
    watermark_before: Option<NaiveDate>,
    accept_shift: bool,
    /// `--full`: derive every record again, even one byte-identical to its previous copy.
    rederive: bool,
}

/// How a run fetches: decided before it starts.
struct Plan<'s> {
    mode: FetchMode,
    /// The source this run fetches from: `source`, or the baseline source for a baseline.
    active: &'s dyn Source,
    from_baseline_source: bool,
    /// Why this mode, for the summary and the `runs` row.
    mode_reason: String,
}

/// The summary and the source location, or the stage that failed and why.
type WorkResult = Result<(RunSummary, String), (Stage, anyhow::Error)>;

pub struct Runner<'a> {
    pub pipeline: &'a Pipeline,
    pub warehouse: PathBuf,
    pub source: Box<dyn Source>,
    /// The pipeline's `[baseline]` source (a TRUD release), used whenever the run is a baseline.
    pub baseline_source: Option<Box<dyn Source>>,
    pub clock: Clock,
    pub csv_layout: Option<CsvLayout>,
}

/// Chooses baseline or incremental (docs/ods-reference.md 2.5: `/sync` reaches back 185 days).
pub fn choose_mode(
    options: &RunOptions,
    supports_deltas: bool,
    has_previous: bool,
    watermark: Option<NaiveDate>,
    overlap_days: u32,
    today: NaiveDate,
) -> FetchMode {
    let baseline = |reason: &str| FetchMode::Baseline {
        reason: reason.to_owned(),
    };
    if let Some(codes) = &options.codes
        && supports_deltas
        && has_previous
    {
        return FetchMode::Codes { codes: codes.clone() };
    }
    if !supports_deltas {
        return baseline("the source is a whole file: every run reads all of it");
    }
    if options.full {
        return baseline("forced with --full");
    }
    if !has_previous {
        return baseline("no previous snapshot");
    }
    let Some(watermark) = watermark else {
        return baseline("no watermark from an earlier successful run");
    };
    let since = watermark - chrono::Days::new(u64::from(overlap_days));
    if (today - since).num_days() > SYNC_MAX_DAYS {
        return FetchMode::Baseline {
            reason: format!(
                "the watermark {watermark} minus {overlap_days} days overlap is more than {SYNC_MAX_DAYS} days ago: /sync cannot reach back that far"
            ),
        };
    }
    FetchMode::Incremental { since }
}

impl Runner<'_> {
    /// One run: lock, plan, record its start, work in a transaction, commit, record its end.
    ///
    /// Long on purpose (a little over 120 lines): the order of lock, catalog row, transaction and
    /// commit is the crash-safety argument of the module docs, kept readable in one place.
    pub fn run(&self, options: &RunOptions) -> anyhow::Result<RunSummary> {
        let started = Instant::now();
        let name = self.pipeline.config.name.clone();
        let now = self.clock.now();
        let store = SnapshotStore::new(&self.warehouse, &name);

        // The catalog is an index, not the commit point: a reader holding it (a notebook, a
        // `duckdb` shell) must not stop a run, so the run reads it read-only when it must.
        let (catalog, writable) = if options.dry_run {
            (Catalog::open_existing_read_only(&self.warehouse)?, false)
        } else {
            let (catalog, writable) = Catalog::open_for_run(&self.warehouse)?;
            (Some(catalog), writable)
        };
        let run_number = match &catalog {
            Some(c) => c.next_run_number(&name)?,
            None => 1,
        };
        let run_id = format!("{}-{}-{run_number:04}", now.format("%Y%m%dT%H%M%SZ"), name);
        // Every log line of the run carries its id and pipeline (and, inside, its stage).
        let _run_span = tracing::info_span!("run", run_id = %run_id, pipeline = %name).entered();
        let _lock = crate::warehouse::lock_pipeline(&self.warehouse, &name, &run_id)?;
        crate::warehouse::recover(&self.warehouse, &name)?;
        let previous = store.latest().map_err(|e| {
            anyhow::anyhow!(e).context(format!(
                "the latest snapshot of `{name}` cannot be read\nHelp: run `odsync verify {name}`; it names the damaged files and how to repair them"
            ))
        })?;
        // The committed state file is authoritative (written in the same commit as the
        // versions); the catalog and the manifest are the fallbacks of older warehouses.
        let committed_state = crate::warehouse::read_state(&self.warehouse, &name);
        let watermark_before = match &committed_state {
            Some(state) => state.watermark,
            None => match &catalog {
                Some(c) => c.watermark(&name)?,
                None => None,
            }
            .or(previous.as_ref().and_then(|m| m.watermark)),
        };
        let Plan {
            mode,
            active,
            from_baseline_source,
            mode_reason,
        } = self.plan(options, previous.as_ref(), watermark_before);
        let record = RunRecord {
            run_id: run_id.clone(),
            pipeline: name.clone(),
            run_number,
            mode: mode.name().to_owned(),
            mode_reason: Some(mode_reason.clone()),
            source: active.kind(),
            source_location: None,
            started_at: now.to_rfc3339(),
            finished_at: None,
            status: RunStatus::Running,
            watermark_before,
            watermark_after: None,
            records_fetched: None,
            records_unchanged: None,
            records_quarantined: None,
            snapshot_version: None,
            error: None,
            accepted_shift: None,
            records_pending: None,
        };
        if writable
            && let Some(catalog) = &catalog
            && let Err(e) = catalog.start_run(&record, &now, committed_state.as_ref())
        {
            tracing::warn!("could not record the start of the run in the catalog: {e:#}");
        }
        // Released while the run works: see the catalog module docs.
        drop(catalog);
        tracing::info!(run_id, mode = mode.name(), reason = mode_reason, "run started");

        let mut txn = crate::warehouse::Txn::new(&self.warehouse, &name, &run_id);
        let step = Step {
            store: &store,
            source: active,
            from_baseline_source,
            previous: previous.as_ref(),
            mode: &mode,
            run_id: &run_id,
            watermark_before,
            accept_shift: options.accept_shift,
            rederive: options.full,
        };
        if options.dry_run {
            return match self.dry_run(step, txn) {
                Ok((mut summary, _)) => {
                    summary.mode_reason = mode_reason;
                    summary.duration_ms = started.elapsed().as_millis() as u64;
                    summary.status = RunStatus::DryRun;
                    Ok(summary)
                }
                Err((stage, error)) => Err(RunError {
                    run_id,
                    pipeline: name,
                    stage,
                    source: error,
                }
                .into()),
            };
        }
        let result = self.work(step, &mut txn).and_then(|(summary, location)| {
            // The committed state moves with the versions, in the same commit.
            txn.stage_state(&crate::warehouse::PipelineState {
                run_id: run_id.clone(),
                watermark: summary.watermark_after,
                snapshot_version: Some(summary.snapshot_version),
            })
            .map_err(|e| (Stage::Commit, e.into()))?;
            crate::warehouse::failpoint("run:staged");
            let committing = Instant::now();
            txn.commit().map_err(|e| (Stage::Commit, e.into()))?;
            tracing::debug!(ms = committing.elapsed().as_millis() as u64, "committed");
            crate::warehouse::failpoint("run:committed");
            Ok((summary, location))
        });
        self.record_outcome(record, result, mode_reason, started)
    }

    /// Records how the run ended in `runs` (after the commit nothing may turn the run into a
    /// failure) and returns the summary, or the failure as a `RunError` naming the stage.
    fn record_outcome(
        &self,
        mut record: RunRecord,
        result: WorkResult,
        mode_reason: String,
        started: Instant,
    ) -> anyhow::Result<RunSummary> {
        let (run_id, name) = (record.run_id.clone(), record.pipeline.clone());
        match result {
            Ok((mut summary, location)) => {
                summary.mode_reason = mode_reason;
                summary.duration_ms = started.elapsed().as_millis() as u64;
                record.status = summary.status;
                record.accepted_shift = (!summary.accepted_shift.is_empty()).then(|| summary.accepted_shift.join("; "));
                record.source_location = Some(location);
                record.watermark_after = summary.watermark_after;
                record.records_fetched = Some(summary.records.fetched as i64);
                record.records_unchanged = Some(summary.records.unchanged as i64);
                record.records_quarantined = Some(summary.records.quarantined as i64);
                record.records_pending = Some(summary.records.pending.len() as i64);
                record.snapshot_version = Some(summary.snapshot_version as i64);
                record.finished_at = Some(self.clock.now().to_rfc3339());
                // Committed: from here nothing may turn the run into a failure.
                let recording = Instant::now();
                crate::catalog::record_run(&self.warehouse, &record);
                tracing::debug!(
                    ms = recording.elapsed().as_millis() as u64,
                    "run recorded in the catalog"
                );
                Ok(summary)
            }
            // (The transaction, uncommitted, was dropped with the closure: its staging is gone.)
            Err((stage, error)) => {
                record.status = RunStatus::Failed;
                record.error = Some(crate::redact::text(&format!("{stage}: {error:#}")));
                record.finished_at = Some(self.clock.now().to_rfc3339());
                crate::catalog::record_run(&self.warehouse, &record);
                Err(RunError {
                    run_id,
                    pipeline: name,
                    stage,
                    source: error,
                }
                .into())
            }
        }
    }

    /// The run's mode (`choose_mode`, then a change of source kind forces a baseline) and the
    /// source it fetches from (the `[baseline]` source for a baseline, when there is one).
    fn plan<'s>(
        &'s self,
        options: &RunOptions,
        previous: Option<&Manifest>,
        watermark_before: Option<NaiveDate>,
    ) -> Plan<'s> {
        let overlap = match &self.pipeline.config.source {
            crate::pipeline::SourceConfig::Ord(o) => o.overlap_days,
            crate::pipeline::SourceConfig::Csv(_) | crate::pipeline::SourceConfig::TrudXml(_) => 0,
            crate::pipeline::SourceConfig::Fhir(f) => f.overlap_days,
        };
        let mode = choose_mode(
            options,
            self.source.supports_deltas(),
            previous.is_some(),
            watermark_before,
            overlap,
            self.clock.today(),
        );
        // A different source kind than the previous snapshot's: its records cannot be patched
        // with deltas in another format, so the new source's full scope replaces them.
        // (A snapshot from the pipeline's own baseline source is the start its deltas build on.)
        let baseline_kind = self.baseline_source.as_ref().map(|b| b.kind());
        let mode = match (previous.map(|p| p.source.kind), mode) {
            (Some(old), FetchMode::Incremental { .. } | FetchMode::Codes { .. })
                if old != self.source.kind() && Some(old) != baseline_kind =>
            {
                FetchMode::Baseline {
                    reason: format!(
                        "the source changed from {old} to {}: a baseline replaces the previous records",
                        self.source.kind()
                    ),
                }
            }
            (_, mode) => mode,
        };
        let (active, from_baseline_source): (&dyn Source, bool) = match (&mode, &self.baseline_source) {
            (FetchMode::Baseline { .. }, Some(b)) => (b.as_ref(), true),
            _ => (self.source.as_ref(), false),
        };
        let mode_reason = match &mode {
            FetchMode::Baseline { reason } if self.baseline_source.is_some() => {
                format!("{reason}; from the [baseline] source ({})", active.kind())
            }
            FetchMode::Baseline { reason } => reason.clone(),
            FetchMode::Incremental { since } => format!("/sync from {since} (watermark minus {overlap} days)"),
            FetchMode::Codes { codes } => format!("refresh of {} given codes", codes.len()),
        };
        Plan {
            mode,
            active,
            from_baseline_source,
            mode_reason,
        }
    }

    /// `--dry-run`: the same work in a transaction that is dropped, so nothing is committed or
    /// recorded; the output folders a first diff or merge creates go too, so the warehouse is
    /// as before.
    fn dry_run(&self, step: Step<'_>, mut txn: crate::warehouse::Txn) -> WorkResult {
        let layout = crate::warehouse::Layout::new(&self.warehouse, &self.pipeline.config.name);
        let mut folders: Vec<PathBuf> = layout.temp_parents();
        folders.push(layout.dir().join(crate::warehouse::layout::META));
        // Deepest first, so `_meta/ods` goes before `_meta`.
        folders.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        folders.retain(|p| !p.exists());
        let result = self.work(step, &mut txn);
        drop(txn);
        for folder in folders {
            // Only if empty: `remove_dir` refuses a folder that holds anything.
            let _ = std::fs::remove_dir(folder);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn mode_follows_watermark_age_and_flags() {
        let opts = RunOptions::default();
        let today = d("2025-07-16");
        assert!(matches!(
            choose_mode(&opts, true, false, None, 2, today),
            FetchMode::Baseline { .. }
        ));
        assert_eq!(
            choose_mode(&opts, true, true, Some(d("2025-07-10")), 2, today),
            FetchMode::Incremental { since: d("2025-07-08") }
        );
        // 2025-01-10 - 2 days = 2025-01-08, 189 days before 2025-07-16.
        let old = choose_mode(&opts, true, true, Some(d("2025-01-10")), 2, today);
        assert!(
            matches!(old, FetchMode::Baseline { ref reason } if reason.contains("185")),
            "{old:?}"
        );
        let full = RunOptions {
            full: true,
            ..RunOptions::default()
        };
        assert!(matches!(
            choose_mode(&full, true, true, Some(d("2025-07-10")), 2, today),
            FetchMode::Baseline { .. }
        ));
        assert!(matches!(
            choose_mode(&opts, false, true, Some(d("2025-07-10")), 2, today),
            FetchMode::Baseline { .. }
        ));
    }
}

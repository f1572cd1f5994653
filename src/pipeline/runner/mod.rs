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
mod publish;
mod snapshot_stage;
mod stages;
mod summary;

use carry::*;
pub use completeness::CompletenessError;
use diff_stage::{DiffInputs, DiffStage, diff_stage};
use fetch_stage::Fetch;
use publish::Snapshotted;
use snapshot_stage::Parsed;
use stages::*;
pub use summary::{RecordCounts, RunSummary, StageTime};

use super::Pipeline;
use crate::catalog::{Catalog, RunRecord};
use crate::clock::Clock;
use crate::model::csv_row::CsvLayout;
use crate::model::states::RunStatus;
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
    pub codes: Option<Vec<String>>,
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
    pub stage: &'static str,
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

/// The summary and the source location, or the stage that failed and why.
type WorkResult = Result<(RunSummary, String), (&'static str, anyhow::Error)>;

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
        let mode = match (previous.as_ref().map(|p| p.source.kind.as_str()), mode) {
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
        let mut record = RunRecord {
            run_id: run_id.clone(),
            pipeline: name.clone(),
            run_number,
            mode: mode.name().to_owned(),
            mode_reason: Some(mode_reason.clone()),
            source: active.kind().to_owned(),
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
            // Everything staged goes with the uncommitted transaction; nothing is recorded. The
            // output folders a first diff or merge creates go too, so the warehouse is as before.
            let layout = crate::warehouse::Layout::new(&self.warehouse, &name);
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
            return match result {
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
            .map_err(|e| ("commit", e.into()))?;
            crate::warehouse::failpoint("run:staged");
            txn.commit().map_err(|e| ("commit", e.into()))?;
            crate::warehouse::failpoint("run:committed");
            Ok((summary, location))
        });
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
                crate::catalog::record_run(&self.warehouse, &record);
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

    /// The fallible middle of a run; errors carry the stage they happened in. Everything it
    /// writes is staged in `txn`, which the caller commits.
    fn work(&self, step: Step<'_>, txn: &mut crate::warehouse::Txn) -> WorkResult {
        let Step {
            source,
            previous,
            mode,
            rederive,
            ..
        } = step;
        let config = &self.pipeline.config;
        let Fetch {
            mut fetched,
            previous_raw,
            previous_quarantine,
            unchanged,
            mut laps,
        } = self.fetch_stage(step)?;
        let mut counts = RecordCounts {
            fetched: fetched.records.len() as u64,
            unchanged: unchanged.len() as u64,
            ..RecordCounts::default()
        };

        let ctx = ParseContext {
            today: self.clock.today(),
            csv: self.csv_layout.clone(),
        };
        let mapping_source = self.pipeline.role_mapping();
        let derivation = derivation_id(&mapping_source, &config.scope);
        // A whole file (a bulk CSV, a TRUD release) repeats, day after day, records that did not
        // change: a record byte-identical to its previous copy is not parsed again, and its rows
        // are carried forward from the previous snapshot, as a delta carries the organisations it
        // did not fetch (see `reuse_unchanged`).
        let reuse = fetched.complete
            && !rederive
            && previous.is_some_and(|m| reuse_unchanged(m, &derivation, source.kind(), &fetched.parameters, ctx.today));
        let skip: std::collections::HashSet<String> = if reuse { unchanged } else { Default::default() };
        // The raw set this snapshot is derived from: the fetch itself (baseline) or the previous
        // snapshot with the fetched records applied (delta).
        let mut current: BTreeMap<String, RawRecord> = BTreeMap::new();
        let mut quarantine: Vec<Quarantined> = Vec::new();
        // This run's failures: records that could not be fetched or parsed, lines that are not rows.
        let mut failed: Vec<Quarantined> = fetched.failures.clone();
        let mut previous_by_code: BTreeMap<String, RawRecord> =
            previous_raw.into_iter().map(|r| (r.code.clone(), r)).collect();
        if !fetched.complete {
            let attempted: BTreeSet<&str> = fetched
                .records
                .iter()
                .map(|r| r.code.as_str())
                .chain(fetched.failures.iter().filter_map(|q| q.code.as_deref()))
                .collect();
            // Quarantined earlier and not retried now: still unresolved, so it stays.
            quarantine.extend(
                previous_quarantine
                    .into_iter()
                    .filter(|q| q.code.as_deref().is_none_or(|c| !attempted.contains(c))),
            );
            // A delta starts from every previous record (so a failed one is already kept).
            current = std::mem::take(&mut previous_by_code);
        }
        let mut parsed: BTreeMap<String, OrgRecord> = BTreeMap::new();
        let fetched_records = std::mem::take(&mut fetched.records);
        let records_len = fetched_records.len();
        counts.out_of_scope += fetched.out_of_scope;
        // Parsing is the costly part of a large fetch: it runs on every core (a source that
        // parsed already hands its records over instead).
        // `None`: byte-identical to its previous copy, so not parsed (its rows are carried).
        let results: Vec<Option<Result<OrgRecord, String>>> = if fetched.parsed.len() == records_len && records_len > 0
        {
            std::mem::take(&mut fetched.parsed)
                .into_iter()
                .zip(&fetched_records)
                .map(|(rec, raw)| (!skip.contains(&raw.code)).then_some(Ok(rec)))
                .collect()
        } else {
            use rayon::prelude::*;
            fetched_records
                .par_iter()
                .map(|raw| (!skip.contains(&raw.code)).then(|| parse_raw(raw, &ctx)))
                .collect()
        };
        let mut reused = 0;
        for (raw, result) in fetched_records.into_iter().zip(results) {
            let Some(result) = result else {
                current.insert(raw.code.clone(), raw);
                reused += 1;
                continue;
            };
            match result {
                Ok(rec) if rec.organisation.code != raw.code => failed.push(Quarantined {
                    code: Some(raw.code.clone()),
                    source: raw.origin.clone(),
                    reason: format!("asked for `{}` but the record is `{}`", raw.code, rec.organisation.code),
                    raw: raw.payload,
                }),
                Ok(rec) if config.scope.matches(&rec) => {
                    parsed.insert(raw.code.clone(), rec);
                    current.insert(raw.code.clone(), raw);
                }
                Ok(_) => {
                    counts.out_of_scope += 1;
                    current.remove(&raw.code);
                }
                Err(reason) => failed.push(Quarantined {
                    code: Some(raw.code.clone()),
                    source: raw.origin.clone(),
                    reason,
                    raw: raw.payload,
                }),
            }
        }
        self.check_completeness(source, mode, &fetched, records_len, &failed, parsed.len() + reused)
            .map_err(|e| ("completeness", e.into()))?;
        // A record that failed keeps its previous copy: a failure is never a deletion. (A delta
        // already holds it; a baseline or a bulk file takes it back from the previous snapshot.)
        let mut pending: BTreeSet<String> = BTreeSet::new();
        for q in &failed {
            if let Some(code) = &q.code {
                if source.supports_deltas() {
                    pending.insert(code.clone());
                }
                if !current.contains_key(code)
                    && let Some(prev) = previous_by_code.get(code)
                {
                    current.insert(code.clone(), prev.clone());
                }
            }
        }
        // A closed organisation that left a bulk file's publication window is kept, not deleted.
        if fetched.complete && source.kind() == "csv" && previous.is_some_and(|m| m.source.kind == "csv") {
            let kept =
                crate::pipeline::window::keep_closed(&previous_by_code, &mut current, &mut parsed, &ctx, &|rec| {
                    config.scope.matches(rec)
                });
            counts.left_window = kept.len() as u64;
            counts.left_window_examples = kept.into_iter().take(10).collect();
        }
        if !failed.is_empty() {
            tracing::warn!(
                failed = failed.len(),
                examples = ?failed.iter().take(5).map(|q| format!("{}: {}", q.source, q.reason)).collect::<Vec<_>>(),
                "records that failed are quarantined and keep their previous version"
            );
        }
        quarantine.extend(failed);
        // A delta carries the untouched organisations' rows forward column-wise from the previous
        // snapshot when they would be derived the same way now (same schema version, same role
        // mapping): only the fetched records are parsed. Otherwise (and for a baseline, or when
        // a source repeats an id across organisations) every record is derived again. Either
        // way the tables equal a baseline of the same records (tests/it/trud.rs).
        let mapping = Some(
            mapping_source
                .load()
                .map_err(|e| ("role mapping", anyhow::anyhow!(e)))?,
        );
        let carry_from = previous.filter(|m| {
            (!fetched.complete || reuse)
                && m.schema_version == crate::model::SCHEMA_VERSION
                && m.derivation.as_deref() == Some(derivation.as_str())
        });
        let derive = |rec: &mut OrgRecord| derive(mapping.as_ref(), rec);
        // Derived columns of the fetched records: the parent from the hierarchy rules, the type
        // from the role mapping (carried records are derived as they are parsed).
        parsed.values_mut().for_each(derive);
        if carry_from.is_none() {
            parse_carried(&mut current, &mut parsed, &mut quarantine, &ctx, &derive);
        }
        laps.lap("parse");
        self.snapshot(
            step,
            Parsed {
                current,
                parsed,
                quarantine,
                counts,
                pending,
                fetched,
                mapping,
                carry_from,
                ctx,
                derivation,
            },
            laps,
            txn,
        )
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

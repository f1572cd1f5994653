//! Fetch and parse: the fetched records applied to the previous raw set (a delta) or taken as
//! the whole set (a baseline), parsed on every core, checked for completeness, failures kept at
//! their previous copy, then handed to the snapshot stage.

use super::carry::*;
use super::fetch_stage::Fetch;
use super::snapshot_stage::Parsed;
use super::{RecordCounts, Runner, Stage, Step, WorkResult};
use crate::model::{OrgRecord, ParseContext, Quarantined, RawRecord, parse_raw};
use std::collections::{BTreeMap, BTreeSet};

impl Runner<'_> {
    /// The fallible middle of a run; errors carry the stage they happened in. Everything it
    /// writes is staged in `txn`, which the caller commits.
    ///
    /// Long on purpose: the order of the raw-set updates (delta start, fetched records, failures
    /// kept, the publication window, carry or re-derive) is the invariant; it reads top to bottom.
    pub(super) fn work(&self, step: Step<'_>, txn: &mut crate::warehouse::Txn) -> WorkResult {
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
            previous_raw_batches,
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
        counts.out_of_scope += fetched.out_of_scope;
        let records_len = fetched.records.len();
        let Applied { mut parsed, reused } = apply_fetched(
            &mut fetched,
            &skip,
            &ctx,
            &config.scope,
            &mut current,
            &mut failed,
            &mut counts,
        );
        self.check_completeness(source, mode, &fetched, records_len, &failed, parsed.len() + reused)
            .map_err(|e| (Stage::Completeness, e.into()))?;
        let pending = keep_failed(&failed, source.supports_deltas(), &mut current, &previous_by_code);
        // A closed organisation that left a bulk file's publication window is kept, not deleted.
        if fetched.complete
            && source.kind() == crate::model::states::SourceKind::Csv
            && previous.is_some_and(|m| m.source.kind == crate::model::states::SourceKind::Csv)
        {
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
                .map_err(|e| (Stage::RoleMapping, anyhow::anyhow!(e)))?,
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
        laps.lap(Stage::Parse);
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
                previous_raw_batches,
                ctx,
                derivation,
            },
            laps,
            txn,
        )
    }
}

/// The fetched records applied to the raw set, and those parsed.
struct Applied {
    parsed: BTreeMap<String, OrgRecord>,
    /// Records byte-identical to their previous copy: not parsed, their rows carried.
    reused: usize,
}

/// Parses the fetched records (on every core; a source that parsed already hands its records
/// over; a code in `skip` is byte-identical to its previous copy and not parsed) and applies
/// them to `current`: in scope → kept and parsed; out of scope → removed and counted; a record
/// that is another code than asked for, or does not parse → `failed`.
fn apply_fetched(
    fetched: &mut crate::sources::Fetched,
    skip: &std::collections::HashSet<String>,
    ctx: &ParseContext,
    scope: &crate::sources::scope::ScopeConfig,
    current: &mut BTreeMap<String, RawRecord>,
    failed: &mut Vec<Quarantined>,
    counts: &mut RecordCounts,
) -> Applied {
    let mut parsed: BTreeMap<String, OrgRecord> = BTreeMap::new();
    let fetched_records = std::mem::take(&mut fetched.records);
    let records_len = fetched_records.len();
    // Parsing is the costly part of a large fetch: it runs on every core (a source that
    // parsed already hands its records over instead).
    // `None`: byte-identical to its previous copy, so not parsed (its rows are carried).
    let results: Vec<Option<Result<OrgRecord, String>>> = if fetched.parsed.len() == records_len && records_len > 0 {
        std::mem::take(&mut fetched.parsed)
            .into_iter()
            .zip(&fetched_records)
            .map(|(rec, raw)| (!skip.contains(&raw.code)).then_some(Ok(rec)))
            .collect()
    } else {
        use rayon::prelude::*;
        fetched_records
            .par_iter()
            .map(|raw| (!skip.contains(&raw.code)).then(|| parse_raw(raw, ctx)))
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
                raw: raw.payload.to_vec(),
            }),
            Ok(rec) if scope.matches(&rec) => {
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
                raw: raw.payload.to_vec(),
            }),
        }
    }
    Applied { parsed, reused }
}

/// A record that failed keeps its previous copy: a failure is never a deletion (a delta already
/// holds it; a baseline or a bulk file takes it back from the previous snapshot). Returns the
/// codes to fetch again next run (sources with deltas).
fn keep_failed(
    failed: &[Quarantined],
    supports_deltas: bool,
    current: &mut BTreeMap<String, RawRecord>,
    previous_by_code: &BTreeMap<String, RawRecord>,
) -> BTreeSet<String> {
    let mut pending: BTreeSet<String> = BTreeSet::new();
    for q in failed {
        if let Some(code) = &q.code {
            if supports_deltas {
                pending.insert(code.clone());
            }
            if !current.contains_key(code)
                && let Some(prev) = previous_by_code.get(code)
            {
                current.insert(code.clone(), prev.clone());
            }
        }
    }
    pending
}

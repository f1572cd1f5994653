//! The snapshot stages: the deletions and the code system, the tables (built, or carried forward
//! and merged with the parsed records), the manifest, and the staged version.

use super::*;
use crate::model::states::Table;

/// What parsing hands to the snapshot stages.
pub(super) struct Parsed<'a> {
    /// The raw records the snapshot is derived from, by code.
    pub(super) current: BTreeMap<String, RawRecord>,
    /// The records parsed (and derived) this run, by code; the others are carried or parsed later.
    pub(super) parsed: BTreeMap<String, OrgRecord>,
    pub(super) quarantine: Vec<Quarantined>,
    pub(super) counts: RecordCounts,
    pub(super) pending: BTreeSet<String>,
    /// The fetch, its records taken.
    pub(super) fetched: crate::sources::Fetched,
    pub(super) mapping: Option<crate::pipeline::roles::RoleMapping>,
    /// The previous snapshot whose rows are carried forward, if any.
    pub(super) carry_from: Option<&'a Manifest>,
    /// The previous snapshot's `raw` batches, already read by the fetch stage.
    pub(super) previous_raw_batches: Vec<arrow::array::RecordBatch>,
    pub(super) ctx: ParseContext,
    pub(super) derivation: String,
}

/// The previous snapshot's deletions and code system, brought up to date.
struct Sidecars {
    deletions: Vec<crate::model::Deletion>,
    code_system: Vec<tables::CodeSystemRole>,
    code_system_changes: Vec<crate::pipeline::roles::CodeSystemChange>,
    /// The code system table comes out as the previous snapshot's.
    code_system_same: bool,
}

impl Runner<'_> {
    /// The snapshot stages: sidecars, the tables (the previous snapshot when nothing is new,
    /// else built or carried and merged), the manifest and the staged version.
    ///
    /// Long on purpose: the order (sidecars before the nothing-new check, the check before any
    /// table is read, the batches dropped once written) is the invariant; it reads top to bottom.
    pub(super) fn snapshot(
        &self,
        step: Step<'_>,
        parsed_records: Parsed<'_>,
        mut laps: StageTimes,
        txn: &mut crate::warehouse::Txn,
    ) -> WorkResult {
        let Step {
            store,
            mode,
            watermark_before,
            ..
        } = step;
        let Parsed {
            mut current,
            mut parsed,
            quarantine,
            mut counts,
            pending,
            fetched,
            mapping,
            carry_from,
            previous_raw_batches,
            ctx,
            derivation,
        } = parsed_records;
        let config = &self.pipeline.config;
        let derive = |rec: &mut OrgRecord| derive(mapping.as_ref(), rec);
        let mapped_roles: Vec<String> = mapping
            .as_ref()
            .map(|m| m.role_ids().map(str::to_owned).collect())
            .unwrap_or_default();
        let Sidecars {
            deletions,
            code_system,
            code_system_changes,
            code_system_same,
        } = self.sidecars(step, &fetched, &mut current, &mut parsed, &mut counts, &mapped_roles)?;
        counts.quarantined = quarantine.len() as u64;
        laps.lap(Stage::Roles);
        // A delta that brought nothing new is the previous snapshot (`brings_nothing_new`), found
        // without carrying 371k organisations through the table builder to compare content hashes.
        if let Some(prev) = carry_from
            && brings_nothing_new(prev, &fetched, &counts, &pending, code_system_same)
        {
            counts.carried = current.keys().filter(|c| !parsed.contains_key(*c)).count() as u64;
            let watermark_after = self.watermark_after(mode, &pending, &fetched, watermark_before);
            laps.lap(Stage::BuildTables);
            laps.lap(Stage::WriteSnapshot);
            let previous = previous_unchanged(prev, counts, watermark_after, code_system_changes, fetched);
            return self.publish(step, previous, laps, txn);
        }
        let t0 = std::time::Instant::now();
        let carried = match carry_from {
            Some(m) => {
                let keep: tables::CodeSet = current.keys().filter(|c| !parsed.contains_key(*c)).cloned().collect();
                // A whole file read every record again: its raw rows are today's (their origin,
                // the file and line, moves), not the previous snapshot's.
                Some(
                    read_carried(
                        store,
                        m.version,
                        keep,
                        (!fetched.complete).then_some(previous_raw_batches),
                    )
                    .map_err(|e| (Stage::ReadPreviousSnapshot, previous_hint(&config.name, e)))?,
                )
            }
            None => None,
        };
        tracing::trace!(ms = t0.elapsed().as_millis() as u64, "carried rows read");
        let redo = |r: &mut Records| parse_carried(&mut r.current, &mut r.parsed, &mut r.quarantine, &ctx, &derive);
        let records = Records {
            current,
            parsed,
            quarantine,
        };
        let (built, carried_count, quarantined) =
            build_tables(carried, fetched.complete, records, code_system, deletions, &redo);
        counts.carried = carried_count;
        counts.quarantined = quarantined;
        counts.organisations = built.rows(Table::Organisations) as u64;
        let unmapped_roles = match &mapping {
            Some(_) => crate::pipeline::roles::unmapped_in(built.batches_of(Table::Organisations)),
            None => Vec::new(),
        };
        if !unmapped_roles.is_empty() {
            tracing::warn!(roles = ?unmapped_roles.iter().map(|u| &u.role_id).collect::<Vec<_>>(), "primary roles with no rule in the role mapping");
        }
        let watermark_after = self.watermark_after(mode, &pending, &fetched, watermark_before);
        counts.pending = pending.iter().cloned().collect();
        let manifest = self.manifest(
            step,
            &fetched,
            &counts,
            &unmapped_roles,
            &code_system_changes,
            watermark_after,
            derivation,
        );
        laps.lap(Stage::BuildTables);
        let staged = store.stage(&built, manifest).map_err(|e| (Stage::Commit, e.into()))?;
        // The tables are on disk now; the later stages read the files, so the batches go (at
        // national scale they are gigabytes the merge would otherwise sit beside).
        let table_rows: BTreeMap<String, u64> = built
            .batches
            .iter()
            .map(|(n, b)| (n.as_str().to_owned(), b.iter().map(|p| p.num_rows() as u64).sum()))
            .collect();
        let content_hash = built.content_hash;
        drop(built.batches);
        laps.lap(Stage::WriteSnapshot);
        self.publish(
            step,
            Snapshotted {
                staged,
                content_hash,
                table_rows,
                counts,
                watermark_after,
                unmapped_roles,
                code_system_changes,
                fetched,
            },
            laps,
            txn,
        )
    }

    /// What the previous snapshot keeps beside its tables: the deletions ODS announced (the
    /// record leaves the snapshot and stays as a tombstone; announced now, it is removed from
    /// `current`) and the role code system, compared with the fetched one.
    fn sidecars(
        &self,
        step: Step<'_>,
        fetched: &crate::sources::Fetched,
        current: &mut BTreeMap<String, RawRecord>,
        parsed: &mut BTreeMap<String, OrgRecord>,
        counts: &mut RecordCounts,
        mapped_roles: &[String],
    ) -> Result<Sidecars, (Stage, anyhow::Error)> {
        let Step {
            store, previous, mode, ..
        } = step;
        let baseline = matches!(mode, FetchMode::Baseline { .. });
        let tolerate = |what: &str, e| tolerate_damage(baseline, &self.pipeline.config.name, what, e);
        // Deletions ODS announced: the record leaves the snapshot and stays as a tombstone.
        let mut deletions = match previous.map(|m| store.read_deletions(m.version)) {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tolerate("tombstones", e)?;
                Vec::new()
            }
            None => Vec::new(),
        };
        for deletion in &fetched.deletions {
            if current.remove(&deletion.code).is_some() {
                parsed.remove(&deletion.code);
                counts.deleted_by_ods += 1;
            }
        }
        deletions.extend(fetched.deletions.iter().cloned());

        let code_system = fetched.code_system.clone().unwrap_or_default();
        let (code_system_changes, code_system_same) = match (previous, &fetched.code_system) {
            (Some(m), Some(now)) => {
                let mut before = match store.read_code_system(m.version) {
                    Ok(b) => b,
                    Err(e) => {
                        tolerate("code system", e)?;
                        Vec::new()
                    }
                };
                let changes = self.code_system_changes(&before, now, mapped_roles);
                let mut now = now.clone();
                before.sort_by(|a, b| a.role_id.cmp(&b.role_id));
                now.sort_by(|a, b| a.role_id.cmp(&b.role_id));
                (changes, before == now)
            }
            (Some(m), None) => (
                Vec::new(),
                m.tables.get("code_system_roles").is_some_and(|t| t.rows == 0),
            ),
            _ => (Vec::new(), false),
        };
        Ok(Sidecars {
            deletions,
            code_system,
            code_system_changes,
            code_system_same,
        })
    }

    /// The watermark never moves past a change that was not applied: with records pending, it
    /// stays where it was (and the pending codes are asked for again next run).
    fn watermark_after(
        &self,
        mode: &FetchMode,
        pending: &BTreeSet<String>,
        fetched: &crate::sources::Fetched,
        watermark_before: Option<NaiveDate>,
    ) -> Option<NaiveDate> {
        match mode {
            FetchMode::Codes { .. } => watermark_before,
            _ if !pending.is_empty() => watermark_before,
            // A baseline from a dated release (TRUD) is as of its publication date: the deltas
            // start there, so nothing ODS changed since is missed.
            _ if self.source.supports_deltas() => fetched.as_of.or(Some(self.clock.today())),
            _ => None,
        }
    }

    /// The new version's manifest: where it came from, how it was derived, what the fetch
    /// counted (versions, tables and content hash are filled in when it is staged).
    #[allow(clippy::too_many_arguments)]
    fn manifest(
        &self,
        step: Step<'_>,
        fetched: &crate::sources::Fetched,
        counts: &RecordCounts,
        unmapped_roles: &[crate::pipeline::roles::UnmappedRole],
        code_system_changes: &[crate::pipeline::roles::CodeSystemChange],
        watermark_after: Option<NaiveDate>,
        derivation: String,
    ) -> Manifest {
        let Step {
            source, mode, run_id, ..
        } = step;
        let config = &self.pipeline.config;
        let fetch_summary = serde_json::json!({
            "listed": fetched.metrics.listed,
            "total_count_header": fetched.metrics.total_count_header,
            "records_fetched": fetched.metrics.records_fetched,
            "records_failed": fetched.metrics.records_failed,
            "records": counts,
            "relationships": fetched.metrics.relationships,
            "unmapped_roles": unmapped_roles,
            "code_system_changes": code_system_changes,
        });
        Manifest {
            manifest_format: crate::snapshot::MANIFEST_FORMAT,
            pipeline: config.name.clone(),
            version: 0,
            previous_version: None,
            run_id: run_id.to_owned(),
            created_at: self.clock.now(),
            mode: mode.name().to_owned(),
            source: SourceInfo {
                kind: source.kind(),
                location: fetched.location.clone(),
                parameters: fetched.parameters.clone(),
            },
            watermark: watermark_after,
            schema_version: crate::model::SCHEMA_VERSION,
            derivation: Some(derivation),
            odsync_version: env!("CARGO_PKG_VERSION").to_owned(),
            content_hash: String::new(),
            tables: BTreeMap::new(),
            summary: fetch_summary,
        }
    }

    /// The role code system against the previous snapshot's: vanished or renamed role codes
    /// (warned about when the pipeline uses them).
    fn code_system_changes(
        &self,
        before: &[tables::CodeSystemRole],
        now: &[tables::CodeSystemRole],
        mapped_roles: &[String],
    ) -> Vec<crate::pipeline::roles::CodeSystemChange> {
        let scope = &self.pipeline.config.scope;
        let used = |id: &str| {
            scope.primary_roles.iter().chain(&scope.roles).any(|r| r == id) || mapped_roles.iter().any(|r| r == id)
        };
        let changes = crate::pipeline::roles::compare_code_systems(before, now, &used);
        for c in changes
            .iter()
            .filter(|c| c.change != crate::model::states::CodeChange::Added)
        {
            tracing::warn!(
                role = %c.role_id,
                change = %c.change,
                old = c.old_name.as_deref().unwrap_or(""),
                new = c.new_name.as_deref().unwrap_or(""),
                used_by_pipeline = c.used_by_pipeline,
                "the ODS role code system changed"
            );
        }
        changes
    }
}

/// The records a snapshot is built from.
struct Records {
    current: BTreeMap<String, RawRecord>,
    parsed: BTreeMap<String, OrgRecord>,
    quarantine: Vec<Quarantined>,
}

/// The snapshot's tables: the parsed records' rows merged in key order with the rows `carried`
/// forward, or (with nothing carried, or when a key collides with a carried one) every record
/// derived again (`redo` parses the ones not parsed yet). Also returns how many organisations
/// were carried and how many records are quarantined.
fn build_tables(
    carried: Option<tables::Carried>,
    complete: bool,
    mut records: Records,
    code_system: Vec<tables::CodeSystemRole>,
    deletions: Vec<crate::model::Deletion>,
    redo: &dyn Fn(&mut Records),
) -> (tables::SnapshotTables, u64, u64) {
    if let Some(carried) = carried {
        let carried_count = carried.keep.len() as u64;
        let Records {
            current,
            parsed,
            quarantine,
        } = &records;
        // A whole file read every record again: its raw rows are today's (their origin, the file
        // and line, moves), not the previous snapshot's.
        let new_raw: Vec<RawRecord> = if complete {
            current.values().cloned().collect()
        } else {
            parsed.keys().filter_map(|c| current.get(c).cloned()).collect()
        };
        let attempt = tables::build_carried(
            Some(carried),
            parsed.values().cloned().collect(),
            new_raw,
            quarantine.clone(),
            code_system.clone(),
            deletions.clone(),
        );
        if let Some(built) = attempt {
            return (built, carried_count, quarantine.len() as u64);
        }
        tracing::warn!("a fetched record repeats a row id another organisation has: every record is derived again");
        redo(&mut records);
    }
    let quarantined = records.quarantine.len() as u64;
    let built = tables::build(
        records.parsed.into_values().collect(),
        records.current.into_values().collect(),
        records.quarantine,
        code_system,
        deletions,
    );
    (built, 0, quarantined)
}

/// Whether a delta brought nothing new: every record it fetched is byte-identical to its copy in
/// the previous snapshot, nothing failed, was withdrawn or left the scope, nothing left the
/// quarantine (it holds as many rows as before, and nothing was added to it), and the code system
/// is the same. With the previous rows derived the same way (`carry_from`), every table would come
/// out as the previous snapshot's.
fn brings_nothing_new(
    prev: &Manifest,
    fetched: &crate::sources::Fetched,
    counts: &RecordCounts,
    pending: &BTreeSet<String>,
    code_system_same: bool,
) -> bool {
    !fetched.complete
        && code_system_same
        && counts.fetched == counts.unchanged
        && fetched.failures.is_empty()
        && fetched.deletions.is_empty()
        && counts.out_of_scope == 0
        && pending.is_empty()
        && prev
            .tables
            .get("quarantine")
            .is_some_and(|t| t.rows == counts.quarantined)
}

/// The previous snapshot as this run's result: `unchanged`, with the counts and unmapped roles a
/// rebuild would report (the organisations and unmapped roles are the previous version's).
fn previous_unchanged(
    prev: &Manifest,
    mut counts: RecordCounts,
    watermark_after: Option<NaiveDate>,
    code_system_changes: Vec<crate::pipeline::roles::CodeSystemChange>,
    fetched: crate::sources::Fetched,
) -> Snapshotted {
    counts.organisations = prev.tables.get("organisations").map_or(0, |t| t.rows);
    counts.pending = Vec::new();
    let unmapped_roles: Vec<crate::pipeline::roles::UnmappedRole> =
        serde_json::from_value(prev.summary["unmapped_roles"].clone()).unwrap_or_default();
    if !unmapped_roles.is_empty() {
        tracing::warn!(roles = ?unmapped_roles.iter().map(|u| &u.role_id).collect::<Vec<_>>(), "primary roles with no rule in the role mapping");
    }
    Snapshotted {
        staged: crate::snapshot::Staged::Unchanged { version: prev.version },
        content_hash: prev.content_hash.clone(),
        table_rows: prev.tables.iter().map(|(n, t)| (n.clone(), t.rows)).collect(),
        counts,
        watermark_after,
        unmapped_roles,
        code_system_changes,
        fetched,
    }
}

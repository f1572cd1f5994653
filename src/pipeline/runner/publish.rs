//! The stages after the snapshot is staged: the diff and its guard, the history, the merge, and
//! the commit that publishes them together; then the run's summary.

use super::*;

/// What the snapshot stages hand to the publishing ones.
pub(super) struct Snapshotted {
    pub(super) staged: Staged,
    pub(super) content_hash: String,
    pub(super) table_rows: BTreeMap<String, u64>,
    pub(super) counts: RecordCounts,
    pub(super) watermark_after: Option<NaiveDate>,
    pub(super) unmapped_roles: Vec<crate::pipeline::roles::UnmappedRole>,
    pub(super) code_system_changes: Vec<crate::pipeline::roles::CodeSystemChange>,
    /// The fetch (its records taken): where from, with which parameters and metrics.
    pub(super) fetched: crate::sources::Fetched,
}

impl Runner<'_> {
    /// Diff, guard, history, merge, then the staged version into the transaction and the summary.
    ///
    /// Long on purpose: it sequences four stages that share the staged version and the timings;
    /// each stage's work lives in its own module (`diff_stage`, `history`, `merge`).
    pub(super) fn publish(
        &self,
        step: Step<'_>,
        snapshot: Snapshotted,
        mut laps: StageTimes,
        txn: &mut crate::warehouse::Txn,
    ) -> WorkResult {
        let Step {
            store,
            source,
            previous,
            mode,
            run_id,
            watermark_before,
            accept_shift,
            ..
        } = step;
        let Snapshotted {
            staged,
            content_hash,
            table_rows,
            counts,
            watermark_after,
            unmapped_roles,
            code_system_changes,
            fetched,
        } = snapshot;
        let config = &self.pipeline.config;
        // The diff reads the staged version before it is published: if it (or the shift guard)
        // fails, the run fails with nothing committed.
        let DiffStage {
            summary: diff,
            changes_dir,
            changed_rows,
            accepted_shift,
        } = match (&staged, previous) {
            (Staged::New(new), Some(prev)) => diff_stage(DiffInputs {
                store,
                new,
                prev,
                source_kind: source.kind(),
                guard: &config.guard,
                parameters: &fetched.parameters,
                left_window: counts.left_window,
                accept_shift,
                pipeline: &config.name,
                run_id,
                today: self.clock.today(),
                txn,
            })?,
            _ => DiffStage::default(),
        };
        laps.lap(Stage::Diff);
        if let Staged::New(new) = &staged {
            let changes = changes_dir.as_ref().map(|d| d.join("changes.parquet"));
            crate::history::update(
                &self.warehouse,
                &config.name,
                &crate::history::HistoryUpdate {
                    version: new.version,
                    previous: previous.map(|m| m.version),
                    org_dir: &new.dir,
                    changes: changes.as_deref(),
                    run_id,
                    snapshot_date: self.clock.today(),
                },
                txn,
            )
            .map_err(|e| (Stage::History, e.into()))?;
        }
        laps.lap(Stage::History);
        // Merge before publishing too: a merge failure fails the run with nothing committed.
        let ods_input = match &staged {
            Staged::New(new) => crate::merge::OdsInput {
                version: new.version,
                tables: new.tables(),
                content_hash: content_hash.clone(),
                changed: None,
            }
            .with_changed(changed_rows),
            Staged::Unchanged { version } => {
                crate::merge::OdsInput::published(store, *version).map_err(|e| (Stage::Merge, e.into()))?
            }
        };
        let settings = crate::merge::MergeSettings::resolve(&config.merge, &config.name, &self.pipeline.path);
        let merge = crate::merge::merge(
            &self.warehouse,
            &config.name,
            &settings,
            &ods_input,
            run_id,
            &self.clock,
            txn,
        )
        .map_err(|e| (Stage::Merge, e.into()))?;
        laps.lap(Stage::Merge);
        let outcome = match staged {
            Staged::Unchanged { version } => CommitOutcome::Unchanged { version },
            Staged::New(new) => CommitOutcome::Committed {
                version: new.into_txn(txn).map_err(|e| (Stage::Commit, e.into()))?,
            },
        };
        let (status, version) = match outcome {
            CommitOutcome::Committed { version } => (crate::model::states::RunStatus::Succeeded, version),
            CommitOutcome::Unchanged { version } => (crate::model::states::RunStatus::Unchanged, version),
        };
        let summary = RunSummary {
            run_id: run_id.to_owned(),
            pipeline: config.name.clone(),
            status,
            mode: mode.name().to_owned(),
            mode_reason: String::new(),
            snapshot_version: version,
            previous_version: previous.map(|m| m.version),
            snapshot_path: store.manifest_path(version),
            watermark_before,
            watermark_after,
            records: counts,
            tables: table_rows,
            fetch: fetched.metrics,
            content_hash,
            diff,
            merge: Some(merge),
            accepted_shift,
            unmapped_roles,
            code_system_changes,
            stages: laps.finish(),
            duration_ms: 0,
            report: None,
        };
        Ok((summary, fetched.location))
    }
}

//! The diff stage of a run: the staged snapshot against the previous one, the publication-shift
//! guard's verdict (stop, or label and record an accepted shift), and the `changes` output staged
//! in the run's transaction.

use super::*;
use crate::model::states::Table;

/// What the diff stage reads.
pub(super) struct DiffInputs<'a, 't> {
    pub(super) store: &'a SnapshotStore,
    pub(super) new: &'a crate::snapshot::StagedVersion,
    pub(super) prev: &'a Manifest,
    pub(super) source_kind: crate::model::states::SourceKind,
    pub(super) guard: &'a crate::diff::ShiftLimits,
    pub(super) parameters: &'a serde_json::Value,
    pub(super) left_window: u64,
    pub(super) accept_shift: bool,
    pub(super) pipeline: &'a str,
    pub(super) run_id: &'a str,
    pub(super) today: NaiveDate,
    pub(super) txn: &'t mut crate::warehouse::Txn,
}

/// What it hands the later stages (all empty on a first or unchanged run).
#[derive(Default)]
pub(super) struct DiffStage {
    pub(super) summary: Option<crate::diff::DiffSummary>,
    /// The staged `changes` folder, which the history reads.
    pub(super) changes_dir: Option<PathBuf>,
    /// The organisation rows the diff read, handed to the merge.
    pub(super) changed_rows: Option<crate::diff::ChangedRows>,
    /// The shift texts `--accept-shift` let through.
    pub(super) accepted_shift: Vec<String>,
}

pub(super) fn diff_stage(i: DiffInputs<'_, '_>) -> Result<DiffStage, (Stage, anyhow::Error)> {
    let DiffInputs {
        store,
        new,
        prev,
        source_kind,
        guard,
        parameters,
        left_window,
        accept_shift,
        pipeline,
        run_id,
        today,
        txn,
    } = i;
    let mut diff = crate::diff::diff_tables(
        &store.tables(prev.version),
        &new.tables(),
        prev.version,
        new.version,
        today,
        [prev.source.kind, source_kind],
    )
    .map_err(|e| (Stage::Diff, e.into()))?;
    let history = store.layout().table_file(Table::History, prev.version);
    let verdict = crate::pipeline::guard::assess(
        &diff,
        guard,
        prev,
        parameters,
        &store.tables(prev.version),
        Some(&history),
        left_window,
    );
    let mut accepted_shift = Vec::new();
    if !verdict.reasons.is_empty() {
        if !accept_shift {
            return Err((Stage::ShiftGuard, verdict.error().into()));
        }
        let texts: Vec<String> = verdict
            .reasons
            .iter()
            .map(|(_, text)| text.clone())
            .chain(verdict.explanation.iter().cloned())
            .collect();
        crate::diff::label_shift(&mut diff, &verdict.label_keys);
        new.annotate("accepted_shift", serde_json::json!(texts))
            .map_err(|e| (Stage::ShiftGuard, e.into()))?;
        accepted_shift = texts;
    }
    let changes_dir = crate::snapshot::stage_output(
        txn,
        pipeline,
        crate::warehouse::Output::Changes,
        new.version,
        &[(crate::model::states::Table::Changes, &diff.changes)],
        &serde_json::to_value(&diff.summary).expect("serialises"),
        &[("odsync.run_id", run_id)],
    )
    .map_err(|e| (Stage::Diff, e.into()))?;
    Ok(DiffStage {
        summary: Some(diff.summary),
        changes_dir: Some(changes_dir),
        changed_rows: diff.org_rows,
        accepted_shift,
    })
}

//! A merge outside a run (`odsync merge`, `conflicts resolve --merge`): the latest snapshot into
//! the trust table, in a transaction of its own. Runs merge as their last stage instead
//! (`runner/publish.rs`); both go through [`crate::merge::merge`].

use super::Pipeline;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::error::UserError;
use crate::merge::{MergeReport, MergeSettings, OdsInput, merge};
use crate::snapshot::SnapshotStore;
use crate::warehouse::PipelineLock;
use std::path::Path;

/// The run id of a merge outside a run: `<time>-<pipeline>-merge`.
pub fn merge_run_id(clock: &Clock, pipeline: &str) -> String {
    format!("{}-{pipeline}-merge", clock.now().format("%Y%m%dT%H%M%SZ"))
}

/// Merges the latest snapshot of `pipeline`, for a caller holding its lock (the `_lock` argument
/// says so: `conflicts resolve --merge` keeps the lock it recorded the resolutions under, so no
/// run can come between).
pub fn merge_latest(
    pipeline: &Pipeline,
    warehouse: &Path,
    clock: &Clock,
    _lock: &PipelineLock,
) -> anyhow::Result<MergeReport> {
    let config = &pipeline.config;
    let run_id = merge_run_id(clock, &config.name);
    crate::warehouse::recover(warehouse, &config.name)?;
    let store = SnapshotStore::new(warehouse, &config.name);
    let version = *store.versions()?.last().ok_or_else(|| {
        UserError(format!(
            "no snapshots for `{}` yet\nHelp: run `odsync run {}` first",
            config.name, config.name
        ))
    })?;
    let settings = MergeSettings::resolve(&config.merge, &config.name, &pipeline.path);
    let mut txn = crate::warehouse::Txn::new(warehouse, &config.name, &run_id);
    let report = merge(
        warehouse,
        &config.name,
        &settings,
        &OdsInput::published(&store, version)?,
        &run_id,
        clock,
        &mut txn,
    )?;
    txn.commit()?;
    crate::warehouse::failpoint("merge:committed");
    // The merge is committed; a catalog held by a reader only delays its views.
    if let Err(e) = Catalog::open(warehouse).and_then(|c| c.refresh_views()) {
        tracing::warn!("the merge is committed, but the catalog views were not refreshed: {e:#}");
    }
    Ok(report)
}

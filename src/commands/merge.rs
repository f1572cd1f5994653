//! `odsync merge <pipeline>`: merge the latest snapshot into the trust table now.

use super::Globals;
use crate::catalog::Catalog;
use crate::error::UserError;
use crate::merge::{MergeReport, MergeSettings, OdsInput, merge};
use crate::snapshot::SnapshotStore;

pub fn run(globals: &Globals, name: &str) -> anyhow::Result<MergeReport> {
    let pipeline = globals.load(name)?;
    let warehouse = globals.warehouse(Some(&pipeline));
    let run_id = merge_run_id(globals, &pipeline.config.name);
    let lock = crate::warehouse::lock_pipeline(&warehouse, &pipeline.config.name, &run_id)?;
    run_locked(globals, &pipeline, &lock)
}

fn merge_run_id(globals: &Globals, name: &str) -> String {
    format!("{}-{name}-merge", globals.clock.now().format("%Y%m%dT%H%M%SZ"))
}

/// The merge, for a caller holding the pipeline lock (`conflicts resolve --merge` keeps the lock
/// it appended the resolutions under).
pub fn run_locked(
    globals: &Globals,
    pipeline: &crate::pipeline::Pipeline,
    _lock: &crate::warehouse::PipelineLock,
) -> anyhow::Result<MergeReport> {
    let config = &pipeline.config;
    let warehouse = globals.warehouse(Some(pipeline));
    let run_id = merge_run_id(globals, &config.name);
    crate::warehouse::recover(&warehouse, &config.name)?;
    let store = SnapshotStore::new(&warehouse, &config.name);
    let version = *store.versions()?.last().ok_or_else(|| {
        UserError(format!(
            "no snapshots for `{}` yet\nHelp: run `odsync run {}` first",
            config.name, config.name
        ))
    })?;
    let settings = MergeSettings::resolve(&config.merge, &config.name, &pipeline.path);
    let mut txn = crate::warehouse::Txn::new(&warehouse, &config.name, &run_id);
    let report = merge(
        &warehouse,
        &config.name,
        &settings,
        &OdsInput::published(&store, version)?,
        &run_id,
        &globals.clock,
        &mut txn,
    )?;
    txn.commit()?;
    crate::warehouse::failpoint("merge:committed");
    // The merge is committed; a catalog held by a reader only delays its views.
    if let Err(e) = Catalog::open(&warehouse).and_then(|c| c.refresh_views()) {
        tracing::warn!("the merge is committed, but the catalog views were not refreshed: {e:#}");
    }
    globals.printer.emit(&report, human)?;
    Ok(report)
}

pub fn human(r: &MergeReport) -> String {
    if r.status == "unchanged" {
        return format!("merge unchanged: same inputs as merged version {}\n", r.merged_version);
    }
    let rules: Vec<String> = r.rules.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let v = |x: &Option<String>| x.clone().unwrap_or_else(|| "∅".into());
    let opened: String = r
        .new_conflicts
        .iter()
        .map(|c| {
            format!(
                "    new conflict {} {} ({}): yours {} / ODS {}\n",
                c.code,
                c.field,
                c.kind,
                v(&c.local_value),
                v(&c.ods_value)
            )
        })
        .collect();
    let more = (r.conflicts_new as usize).saturating_sub(r.new_conflicts.len());
    let opened = if more > 0 {
        format!("{opened}    … {more} more (open_conflicts)\n")
    } else {
        opened
    };
    let head = format!(
        "merged version {} (snapshot {} over base {}): {} rows, {} touched, {} not in ODS\n  rules: {}\n  conflicts: {} open ({} new), {} resolved, {} superseded, {} ignored\n",
        r.merged_version,
        r.ods_version,
        r.base_version.map_or("none".into(), |v| v.to_string()),
        r.rows,
        r.touched,
        r.not_in_ods,
        rules.join(", "),
        r.conflicts_open,
        r.conflicts_new,
        r.conflicts_resolved,
        r.conflicts_superseded,
        r.conflicts_ignored
    );
    head + &opened
}

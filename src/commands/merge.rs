//! `odsync merge <pipeline>`: merge the latest snapshot into the trust table now.

use super::Globals;
use crate::catalog::Catalog;
use crate::error::UserError;
use crate::merge::{MergeReport, MergeSettings, OdsInput, merge};
use crate::snapshot::SnapshotStore;

pub fn run(globals: &Globals, name: &str) -> anyhow::Result<MergeReport> {
    let pipeline = globals.load(name)?;
    let config = &pipeline.config;
    let warehouse = globals.warehouse(Some(&pipeline));
    let store = SnapshotStore::new(&warehouse, &config.name);
    let run_id = format!("{}-{}-merge", globals.clock.now().format("%Y%m%dT%H%M%SZ"), config.name);
    let _lock = store.lock(&run_id)?;
    let version = *store.versions()?.last().ok_or_else(|| {
        UserError(format!(
            "no snapshots for `{}` yet\nHelp: run `odsync run {}` first",
            config.name, config.name
        ))
    })?;
    let settings = MergeSettings::resolve(&config.merge, &config.name, &pipeline.path);
    let report = merge(
        &warehouse,
        &config.name,
        &settings,
        &OdsInput::published(&store, version)?,
        &run_id,
        &globals.clock,
    )?;
    Catalog::open(&warehouse)?.refresh_views()?;
    globals.printer.emit(&report, human)?;
    Ok(report)
}

pub fn human(r: &MergeReport) -> String {
    if r.status == "unchanged" {
        return format!("merge unchanged: same inputs as merged version {}\n", r.merged_version);
    }
    let rules: Vec<String> = r.rules.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(
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
    )
}

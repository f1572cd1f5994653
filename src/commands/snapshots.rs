//! `odsync snapshots list|show <pipeline>`.

use super::{Globals, display_path};
use crate::cli::SnapshotsCommand;
use crate::error::UserError;
use crate::snapshot::{Manifest, SnapshotStore};
use serde::Serialize;
use std::process::ExitCode;

#[derive(Serialize)]
struct VersionRow {
    version: u64,
    created_at: String,
    run_id: String,
    mode: String,
    organisations: u64,
    quarantined: u64,
    content_hash: String,
    path: String,
}

pub fn run(globals: &Globals, cmd: &SnapshotsCommand) -> anyhow::Result<ExitCode> {
    let name = match cmd {
        SnapshotsCommand::List { pipeline } | SnapshotsCommand::Show { pipeline, .. } => pipeline,
    };
    // The pipeline file is optional here: snapshots of a removed pipeline can still be listed.
    let pipeline = globals.load_known(name)?;
    let pipeline_name = pipeline.as_ref().map_or(name.as_str(), |p| p.config.name.as_str());
    let store = SnapshotStore::new(&globals.warehouse(pipeline.as_ref()), pipeline_name);
    match cmd {
        SnapshotsCommand::List { .. } => {
            let rows = store
                .versions()?
                .into_iter()
                .map(|v| {
                    let m = store.manifest(v)?;
                    let rows = |t: &str| m.tables.get(t).map_or(0, |i| i.rows);
                    Ok(VersionRow {
                        version: v,
                        created_at: m.created_at.to_rfc3339(),
                        run_id: m.run_id.clone(),
                        mode: m.mode.clone(),
                        organisations: rows("organisations"),
                        quarantined: rows("quarantine"),
                        content_hash: m.content_hash[..12].to_owned(),
                        path: display_path(&store.manifest_path(v)),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            globals.printer.emit(&rows, |rows| {
                if rows.is_empty() {
                    return format!(
                        "no snapshots for `{pipeline_name}` under {}\n",
                        display_path(store.root())
                    );
                }
                let mut out = format!(
                    "{:>7}  {:<25}  {:<11}  {:>13}  {:>11}  {}\n",
                    "version", "created_at", "mode", "organisations", "quarantined", "content"
                );
                for r in rows {
                    out.push_str(&format!(
                        "{:>7}  {:<25}  {:<11}  {:>13}  {:>11}  {}\n",
                        r.version, r.created_at, r.mode, r.organisations, r.quarantined, r.content_hash
                    ));
                }
                out
            })?;
        }
        SnapshotsCommand::Show { version, .. } => {
            let version = match version {
                Some(v) => *v,
                None => *store.versions()?.last().ok_or_else(|| {
                    UserError(format!(
                        "no snapshots for `{pipeline_name}` yet\nHelp: run `odsync run {pipeline_name}` first"
                    ))
                })?,
            };
            let manifest = store.manifest(version)?;
            // The manifest is already JSON: --json or not, print it as it is.
            globals.printer.emit(&manifest, |m: &Manifest| {
                serde_json::to_string_pretty(m).expect("manifest serialises")
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

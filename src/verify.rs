//! `odsync verify`: checks a pipeline's warehouse folder against what its manifests promise, and
//! `--repair` moves damaged latest versions aside so the next run rebuilds them.
//!
//! Checked: an unfinished commit journal; snapshot versions without gaps; every manifest
//! parses and names its own version; every table file's size and sha256 against the manifest and
//! its Parquet footer; the derived outputs (history for every version, changes for every version
//! after the first, each merge's ODS snapshot) present for published versions and absent for
//! unpublished ones, their Parquet footers readable; the resolutions log and the state file parse.

use crate::model::tables::sha256_hex;
use crate::snapshot::{Manifest, SnapshotStore};
use crate::warehouse::{Layout, Output, version_dir_name};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub problem: String,
    /// The command that repairs it.
    pub repair: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub pipeline: String,
    pub versions: Vec<u64>,
    pub files_checked: u64,
    pub problems: Vec<Problem>,
    /// Versions `--repair` moved aside (into `<pipeline>/damaged/`).
    pub repaired: Vec<String>,
}

fn footer_ok(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    parquet::file::reader::SerializedFileReader::new(file)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub fn verify(warehouse: &Path, pipeline: &str, repair: bool) -> VerifyReport {
    let dir = warehouse.join(pipeline);
    let store = SnapshotStore::new(warehouse, pipeline);
    let shown = |p: &Path| p.strip_prefix(warehouse).unwrap_or(p).display().to_string();
    let mut problems = Vec::new();
    let mut files_checked = 0u64;
    let mut problem = |path: &Path, what: String, fix: String| {
        problems.push(Problem {
            path: shown(path),
            problem: what,
            repair: fix,
        })
    };
    let layout = store.layout();
    if crate::warehouse::layout::needs_migration(warehouse, pipeline) {
        problem(
            &dir,
            "the pipeline's outputs are in the layout of odsync before one directory per table".into(),
            format!("`odsync migrate {pipeline}` (or the next `odsync run {pipeline}`) moves them"),
        );
    }
    let journal = dir.join(crate::warehouse::JOURNAL);
    if journal.exists() {
        problem(
            &journal,
            "a commit was interrupted after its commit point".into(),
            format!("`odsync merge {pipeline}` or the next `odsync run {pipeline}` finishes it"),
        );
    }
    let versions = layout.versions_present(Output::Snapshot);
    for (i, v) in versions.iter().enumerate() {
        // `odsync gc` removes the oldest versions, so the sequence may start after 1, but it
        // never has a gap.
        if i > 0 && *v != versions[i - 1] + 1 {
            problem(
                &store.manifest_path(*v),
                format!("versions are not contiguous: version {v} follows {}", versions[i - 1]),
                "restore the missing version folders from a backup".into(),
            );
            break;
        }
    }
    let mut damaged: Vec<u64> = Vec::new();
    for v in &versions {
        let mpath = store.manifest_path(*v);
        let manifest: Manifest = match std::fs::read_to_string(&mpath)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => {
                problem(
                    &mpath,
                    format!("unreadable manifest: {e}"),
                    repair_hint(pipeline, *v, &versions),
                );
                damaged.push(*v);
                continue;
            }
        };
        if manifest.version != *v {
            problem(
                &mpath,
                format!("the manifest says version {}", manifest.version),
                repair_hint(pipeline, *v, &versions),
            );
            damaged.push(*v);
        }
        for (table, info) in &manifest.tables {
            let path = layout.table_file(table, *v);
            files_checked += 1;
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    problem(
                        &path,
                        format!("table `{table}` cannot be read: {e}"),
                        repair_hint(pipeline, *v, &versions),
                    );
                    damaged.push(*v);
                    continue;
                }
            };
            if bytes.len() as u64 != info.bytes || sha256_hex(&bytes) != info.sha256 {
                problem(
                    &path,
                    format!(
                        "table `{table}` does not match its manifest ({} bytes, the manifest says {}; sha256 differs): the file was changed or damaged",
                        bytes.len(),
                        info.bytes
                    ),
                    repair_hint(pipeline, *v, &versions),
                );
                damaged.push(*v);
            } else if let Err(e) = footer_ok(&path) {
                problem(
                    &path,
                    format!("unreadable Parquet footer: {e}"),
                    repair_hint(pipeline, *v, &versions),
                );
                damaged.push(*v);
            }
        }
    }
    let latest = versions.last().copied().unwrap_or(0);
    for output in [Output::Changes, Output::History, Output::Merged] {
        let kind = output.name();
        let main = output.tables()[0];
        let outs = layout.versions_present(output);
        for o in &outs {
            let odir = layout.table_dir(main).join(version_dir_name(*o));
            if output != Output::Merged && !versions.contains(o) {
                let folders: Vec<String> = layout.version_folders(output, *o).iter().map(|p| shown(p)).collect();
                problem(
                    &odir,
                    format!("{kind} of version {o}, which is not a published snapshot"),
                    format!("remove {} (it belongs to no version)", folders.join(", ")),
                );
            }
            for table in output.tables() {
                let p = layout.table_file(table, *o);
                if !p.exists() {
                    continue;
                }
                files_checked += 1;
                if let Err(err) = footer_ok(&p) {
                    problem(
                        &p,
                        format!("unreadable Parquet footer: {err}"),
                        format!("`odsync run {pipeline} --full` writes the outputs again"),
                    );
                }
            }
            if output == Output::Merged {
                match crate::merge::read_report(warehouse, pipeline, *o) {
                    Some(r) if !versions.contains(&r.ods_version) => problem(
                        &odir,
                        format!(
                            "merged version {o} was made on snapshot version {}, which is not published",
                            r.ods_version
                        ),
                        "restore the snapshot from a backup".into(),
                    ),
                    Some(_) => {}
                    None => problem(
                        &layout.meta_path(output, *o).unwrap_or_else(|| odir.clone()),
                        "missing or unreadable merge summary".into(),
                        format!("`odsync merge {pipeline}`"),
                    ),
                }
            } else if !layout.table_file(main, *o).exists() {
                problem(
                    &odir,
                    format!("no {main} table"),
                    format!("`odsync run {pipeline} --full`"),
                );
            }
        }
        if output == Output::History {
            for v in &versions {
                if !outs.contains(v) {
                    problem(
                        &layout.table_dir(main).join(version_dir_name(*v)),
                        format!("no history for published version {v}"),
                        format!("`odsync run {pipeline} --full` rebuilds the history"),
                    );
                }
            }
        }
        if output == Output::Changes {
            for v in versions.iter().skip(1) {
                if !outs.contains(v) {
                    problem(
                        &layout.table_dir(main).join(version_dir_name(*v)),
                        format!("no changes for published version {v}"),
                        format!("`odsync diff {pipeline}` shows them; `odsync run {pipeline} --full` writes the next"),
                    );
                }
            }
        }
        let _ = latest;
    }
    let resolutions = crate::merge::resolutions::path(warehouse, pipeline);
    if resolutions.exists()
        && let Err(e) = crate::merge::resolutions::read(&resolutions)
    {
        problem(
            &resolutions,
            format!("unreadable resolutions log: {e}"),
            "fix the named line (the log is a CSV you may edit)".into(),
        );
    }
    let state = dir.join(crate::warehouse::STATE);
    if state.exists() && crate::warehouse::read_state(warehouse, pipeline).is_none() {
        problem(
            &state,
            "unreadable state file".into(),
            format!("delete it: the next `odsync run {pipeline}` is then a baseline"),
        );
    }
    damaged.sort_unstable();
    damaged.dedup();
    let mut repaired = Vec::new();
    if repair && !damaged.is_empty() {
        repaired = move_aside(warehouse, pipeline, &versions, &damaged);
    }
    VerifyReport {
        pipeline: pipeline.to_owned(),
        versions,
        files_checked,
        problems,
        repaired,
    }
}

fn repair_hint(pipeline: &str, version: u64, versions: &[u64]) -> String {
    if versions.last() == Some(&version) {
        format!(
            "`odsync verify {pipeline} --repair` moves the damaged version aside, then `odsync run {pipeline} --full` rebuilds it from the source"
        )
    } else {
        "restore this version folder from a backup (later versions were derived from it)".into()
    }
}

/// Moves the damaged versions at the end of the sequence (and the outputs of those versions)
/// into `<pipeline>/damaged/`, and clears the watermark so the next run is a baseline. Damaged
/// versions with good ones after them are left: removing them would break the sequence.
fn move_aside(warehouse: &Path, pipeline: &str, versions: &[u64], damaged: &[u64]) -> Vec<String> {
    let dir = warehouse.join(pipeline);
    let mut moved = Vec::new();
    let Ok(_lock) = crate::warehouse::lock_pipeline(warehouse, pipeline, "verify-repair") else {
        tracing::warn!("another odsync process holds the pipeline: nothing was repaired");
        return moved;
    };
    let mut tail: Vec<u64> = Vec::new();
    for v in versions.iter().rev() {
        if damaged.contains(v) {
            tail.push(*v);
        } else {
            break;
        }
    }
    let layout = Layout::new(warehouse, pipeline);
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut move_version = |output: Output, v: u64| {
        // The meta folder first: the version stops being listed before its files go.
        for from in layout.version_folders(output, v) {
            let what = from
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let what = if what == output.name() {
                format!("{what}-meta")
            } else {
                what
            };
            let to: PathBuf = dir
                .join("damaged")
                .join(format!("{what}-{}-{stamp}", version_dir_name(v)));
            if std::fs::create_dir_all(dir.join("damaged"))
                .and_then(|()| std::fs::rename(&from, &to))
                .is_ok()
            {
                moved.push(to.strip_prefix(warehouse).unwrap_or(&to).display().to_string());
            }
        }
    };
    for v in tail {
        for output in [Output::Snapshot, Output::Changes, Output::History] {
            move_version(output, v);
        }
    }
    for m in layout.versions_present(Output::Merged) {
        if crate::merge::read_report(warehouse, pipeline, m)
            .is_some_and(|r| !store_has(warehouse, pipeline, r.ods_version))
        {
            move_version(Output::Merged, m);
        }
    }
    if !moved.is_empty() {
        // The watermark came with the damaged version: the next run must be a baseline.
        let mut txn = crate::warehouse::Txn::new(warehouse, pipeline, "verify-repair");
        let state = crate::warehouse::PipelineState {
            run_id: "verify-repair".into(),
            watermark: None,
            snapshot_version: layout.versions(Output::Snapshot).last().copied(),
        };
        if txn.stage_state(&state).and_then(|()| txn.commit()).is_err() {
            tracing::warn!("could not reset the watermark; run the next run with --full");
        }
    }
    moved
}

fn store_has(warehouse: &Path, pipeline: &str, version: u64) -> bool {
    SnapshotStore::new(warehouse, pipeline).manifest_path(version).exists()
}

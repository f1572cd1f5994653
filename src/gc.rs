//! `odsync gc`: removes old versions of a pipeline, keeping the last N versions and/or those
//! younger than D days, and always what later work needs:
//! - the latest snapshot (the next run diffs against it and applies deltas to its raw records);
//! - the snapshot every kept merged version was made on (the next merge's base, and the ODS
//!   values the open conflicts quote);
//! - the latest history version (each history version holds the whole history, so older ones are
//!   redundant) and the latest merged version.
//!
//! A version's outputs (changes, history, merged tables made on it) go with it, and so do the run
//! reports (`_reports/<run>.html`, `.json`) of runs older than the oldest snapshot kept: they
//! describe data that is gone. `latest.html` stays. Each version
//! folder is first renamed to a `.tmp-gc-…` name, its meta folder (manifest, summary) first so
//! the version stops being listed before its tables go; a crash leaves only what recovery removes.

use crate::snapshot::SnapshotStore;
use crate::warehouse::{Output, PipelineLock, WarehouseError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    pub pipeline: String,
    pub dry_run: bool,
    /// Folders removed (or, with --dry-run, that would be), relative to the warehouse.
    pub removed: Vec<String>,
    /// Run reports removed (or that would be): those of runs before the oldest snapshot kept.
    pub reports_removed: Vec<String>,
    /// Snapshot versions kept, each with why.
    pub kept: Vec<(u64, String)>,
}

pub struct GcPolicy {
    pub keep_versions: Option<u64>,
    pub keep_days: Option<u64>,
    pub dry_run: bool,
}

pub fn gc(
    warehouse: &Path,
    pipeline: &str,
    policy: &GcPolicy,
    now: DateTime<Utc>,
    _lock: &PipelineLock,
) -> Result<GcReport, WarehouseError> {
    crate::warehouse::recover(warehouse, pipeline)?;
    let store = SnapshotStore::new(warehouse, pipeline);
    let layout = store.layout();
    let versions = layout.versions(Output::Snapshot);
    let merged = layout.versions(Output::Merged);
    let latest = versions.last().copied();
    let latest_merged = merged.last().copied();
    let mut kept: Vec<(u64, String)> = Vec::new();
    let mut keep = BTreeSet::new();
    for (i, v) in versions.iter().enumerate() {
        let mut why = Vec::new();
        if Some(*v) == latest {
            why.push("the latest version".to_owned());
        }
        if let Some(n) = policy.keep_versions
            && (versions.len() - i) as u64 <= n
        {
            why.push(format!("one of the last {n}"));
        }
        if let Some(d) = policy.keep_days {
            match store.manifest(*v) {
                Ok(m) if (now - m.created_at).num_days() < d as i64 => why.push(format!("younger than {d} days")),
                Ok(_) => {}
                // Never remove what cannot be judged.
                Err(_) => why.push("its manifest cannot be read (see `odsync verify`)".into()),
            }
        }
        if policy.keep_versions.is_none() && policy.keep_days.is_none() {
            why.push("no --keep or --keep-days given".into());
        }
        if !why.is_empty() {
            keep.insert(*v);
            kept.push((*v, why.join(", ")));
        }
    }
    // Merged versions kept: the latest, and those made on a kept snapshot. Their snapshots stay.
    let mut merged_keep = BTreeSet::new();
    for m in &merged {
        let base = crate::merge::read_report(warehouse, pipeline, *m).map(|r| r.ods_version);
        if Some(*m) == latest_merged || base.is_some_and(|b| keep.contains(&b)) {
            merged_keep.insert(*m);
            if let Some(b) = base
                && keep.insert(b)
            {
                kept.push((
                    b,
                    format!("the snapshot merged version {m} was made on (its base and its conflicts' values)"),
                ));
            }
        }
    }
    kept.sort();
    let history = layout.versions(Output::History);
    let latest_history = history.last().copied();
    let mut doomed: Vec<std::path::PathBuf> = Vec::new();
    for v in versions.iter().filter(|v| !keep.contains(v)) {
        for output in [Output::Snapshot, Output::Changes] {
            doomed.extend(layout.version_folders(output, *v));
        }
    }
    for h in history {
        if Some(h) != latest_history && !keep.contains(&h) {
            doomed.extend(layout.version_folders(Output::History, h));
        }
    }
    for m in merged.iter().filter(|m| !merged_keep.contains(m)) {
        doomed.extend(layout.version_folders(Output::Merged, *m));
    }
    let reports = stale_reports(warehouse, pipeline, &store, &keep);
    let shown = |paths: &[PathBuf]| -> Vec<String> {
        paths
            .iter()
            .map(|p| p.strip_prefix(warehouse).unwrap_or(p).display().to_string())
            .collect()
    };
    let (removed, reports_removed) = (shown(&doomed), shown(&reports));
    if !policy.dry_run {
        for p in &doomed {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = p.with_file_name(format!(".tmp-gc-{name}"));
            std::fs::rename(p, &tmp).map_err(io(p))?;
            std::fs::remove_dir_all(&tmp).map_err(io(p))?;
        }
        for p in &reports {
            std::fs::remove_file(p).map_err(io(p))?;
        }
        let mut parents: Vec<&Path> = doomed.iter().chain(&reports).filter_map(|p| p.parent()).collect();
        parents.sort();
        parents.dedup();
        for parent in parents {
            crate::warehouse::sync_dir(parent)?;
        }
    }
    Ok(GcReport {
        pipeline: pipeline.to_owned(),
        dry_run: policy.dry_run,
        removed,
        reports_removed,
        kept,
    })
}

/// A failed removal of `path`: what stays is still usable.
fn io(path: &Path) -> impl Fn(std::io::Error) -> WarehouseError + '_ {
    move |e| WarehouseError {
        path: path.to_owned(),
        message: e.to_string(),
        help: "check the warehouse permissions; what was not removed stays usable",
    }
}

/// The reports of runs before the run that made the oldest snapshot kept. Run ids start with the
/// run's UTC time (`20250716T020000Z-<pipeline>-0002`), so within a pipeline they sort in time
/// order. Nothing is removed when that manifest cannot be read (never remove what cannot be
/// judged) or when the folder does not exist.
fn stale_reports(warehouse: &Path, pipeline: &str, store: &SnapshotStore, keep: &BTreeSet<u64>) -> Vec<PathBuf> {
    let Some(oldest) = keep.first() else {
        return Vec::new();
    };
    let Ok(manifest) = store.manifest(*oldest) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(warehouse.join(pipeline).join(crate::report::REPORTS)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let run = name.strip_suffix(".html").or_else(|| name.strip_suffix(".json"));
            run.is_some_and(|r| r != "latest" && !r.starts_with('.') && r < manifest.run_id.as_str())
        })
        .collect();
    out.sort();
    out
}

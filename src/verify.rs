//! `odsync verify`: checks a pipeline's warehouse folder against what its manifests promise, and
//! `--repair` moves damaged latest versions aside so the next run rebuilds them.
//!
//! Checked: an unfinished commit journal; snapshot versions without gaps; every manifest
//! parses and names its own version; every table file's size and sha256 against the manifest and
//! its Parquet footer; the derived outputs (history for every version, changes for every version
//! after the first, each merge's ODS snapshot) present for published versions and absent for
//! unpublished ones, their Parquet footers readable; the resolutions log and the state file parse.

use crate::model::states::Table;
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

/// What one `verify` walks through, collecting problems as it goes.
struct Checker<'a> {
    warehouse: &'a Path,
    pipeline: &'a str,
    store: SnapshotStore,
    layout: Layout,
    versions: Vec<u64>,
    problems: Vec<Problem>,
    files_checked: u64,
    /// Snapshot versions with a damaged file (what `--repair` moves aside).
    damaged: Vec<u64>,
}

/// Checks `pipeline`; with `repair`, moves damaged versions aside into folders stamped with the
/// clock's time (`ODSYNC_NOW` pins it, as for runs).
pub fn verify(warehouse: &Path, pipeline: &str, repair: bool, clock: &crate::clock::Clock) -> VerifyReport {
    let store = SnapshotStore::new(warehouse, pipeline);
    let layout = store.layout();
    let versions = layout.versions_present(Output::Snapshot);
    let mut c = Checker {
        warehouse,
        pipeline,
        store,
        layout,
        versions,
        problems: Vec::new(),
        files_checked: 0,
        damaged: Vec::new(),
    };
    c.check_folder();
    c.check_sequence();
    for v in c.versions.clone() {
        c.check_snapshot(v);
    }
    for output in [Output::Changes, Output::History, Output::Merged] {
        c.check_output(output);
    }
    c.check_logs();
    c.damaged.sort_unstable();
    c.damaged.dedup();
    let mut repaired = Vec::new();
    if repair && !c.damaged.is_empty() {
        repaired = move_aside(warehouse, pipeline, &c.versions, &c.damaged, clock);
    }
    VerifyReport {
        pipeline: pipeline.to_owned(),
        versions: c.versions,
        files_checked: c.files_checked,
        problems: c.problems,
        repaired,
    }
}

impl Checker<'_> {
    fn problem(&mut self, path: &Path, what: String, fix: String) {
        self.problems.push(Problem {
            path: self.shown(path),
            problem: what,
            repair: fix,
        })
    }

    fn shown(&self, p: &Path) -> String {
        p.strip_prefix(self.warehouse).unwrap_or(p).display().to_string()
    }

    /// A problem with snapshot version `v`'s own files: the version is damaged.
    fn damaged(&mut self, v: u64, path: &Path, what: String) {
        let hint = repair_hint(self.pipeline, v, &self.versions);
        self.problem(path, what, hint);
        self.damaged.push(v);
    }

    /// The folder's layout and an interrupted commit.
    fn check_folder(&mut self) {
        let pipeline = self.pipeline;
        let dir = self.warehouse.join(pipeline);
        if crate::warehouse::layout::needs_migration(self.warehouse, pipeline) {
            self.problem(
                &dir,
                "the pipeline's outputs are in the layout of odsync before one directory per table".into(),
                format!("`odsync migrate {pipeline}` (or the next `odsync run {pipeline}`) moves them"),
            );
        }
        let journal = dir.join(crate::warehouse::JOURNAL);
        if journal.exists() {
            self.problem(
                &journal,
                "a commit was interrupted after its commit point".into(),
                format!("`odsync merge {pipeline}` or the next `odsync run {pipeline}` finishes it"),
            );
        }
    }

    /// `odsync gc` removes the oldest versions, so the sequence may start after 1, but it never
    /// has a gap.
    fn check_sequence(&mut self) {
        let gap = self
            .versions
            .windows(2)
            .find(|w| w[1] != w[0] + 1)
            .map(|w| (w[0], w[1]));
        if let Some((before, v)) = gap {
            let path = self.store.manifest_path(v);
            self.problem(
                &path,
                format!("versions are not contiguous: version {v} follows {before}"),
                "restore the missing version folders from a backup".into(),
            );
        }
    }

    /// Snapshot version `v`: its manifest, and every table file against it (size, sha256,
    /// Parquet footer).
    fn check_snapshot(&mut self, v: u64) {
        let mpath = self.store.manifest_path(v);
        let manifest: Manifest = match std::fs::read_to_string(&mpath)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => return self.damaged(v, &mpath, format!("unreadable manifest: {e}")),
        };
        if manifest.version != v {
            self.damaged(v, &mpath, format!("the manifest says version {}", manifest.version));
        }
        for (name, info) in &manifest.tables {
            let Ok(table) = name.parse::<Table>() else {
                self.damaged(
                    v,
                    &mpath,
                    format!("the manifest lists a table `{name}` odsync does not write"),
                );
                continue;
            };
            let path = self.layout.table_file(table, v);
            self.files_checked += 1;
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    self.damaged(v, &path, format!("table `{table}` cannot be read: {e}"));
                    continue;
                }
            };
            if bytes.len() as u64 != info.bytes || sha256_hex(&bytes) != info.sha256 {
                let what = format!(
                    "table `{table}` does not match its manifest ({} bytes, the manifest says {}; sha256 differs): the file was changed or damaged",
                    bytes.len(),
                    info.bytes
                );
                self.damaged(v, &path, what);
            } else if let Err(e) = footer_ok(&path) {
                self.damaged(v, &path, format!("unreadable Parquet footer: {e}"));
            }
        }
    }

    /// A derived output: every version of it belongs to a published snapshot and reads; history
    /// exists for every snapshot version, changes for every one after the first.
    fn check_output(&mut self, output: Output) {
        let pipeline = self.pipeline;
        let kind = output.name();
        let main = output.tables()[0];
        let outs = self.layout.versions_present(output);
        for o in &outs {
            let odir = self.layout.table_dir(main).join(version_dir_name(*o));
            if output != Output::Merged && !self.versions.contains(o) {
                let folders: Vec<String> = self
                    .layout
                    .version_folders(output, *o)
                    .iter()
                    .map(|p| self.shown(p))
                    .collect();
                self.problem(
                    &odir,
                    format!("{kind} of version {o}, which is not a published snapshot"),
                    format!("remove {} (it belongs to no version)", folders.join(", ")),
                );
            }
            for &table in output.tables() {
                let p = self.layout.table_file(table, *o);
                if !p.exists() {
                    continue;
                }
                self.files_checked += 1;
                if let Err(err) = footer_ok(&p) {
                    self.problem(
                        &p,
                        format!("unreadable Parquet footer: {err}"),
                        format!("`odsync run {pipeline} --full` writes the outputs again"),
                    );
                }
            }
            if output == Output::Merged {
                self.check_merge(*o, &odir);
            } else if !self.layout.table_file(main, *o).exists() {
                self.problem(
                    &odir,
                    format!("no {main} table"),
                    format!("`odsync run {pipeline} --full`"),
                );
            }
        }
        let (expected, fix): (&[u64], String) = match output {
            Output::History => (
                &self.versions,
                format!("`odsync run {pipeline} --full` rebuilds the history"),
            ),
            Output::Changes => (
                self.versions.get(1..).unwrap_or_default(),
                format!("`odsync diff {pipeline}` shows them; `odsync run {pipeline} --full` writes the next"),
            ),
            _ => (&[], String::new()),
        };
        let missing: Vec<u64> = expected.iter().copied().filter(|v| !outs.contains(v)).collect();
        for v in missing {
            let what = if output == Output::History {
                Table::History
            } else {
                Table::Changes
            };
            let path = self.layout.table_dir(main).join(version_dir_name(v));
            self.problem(&path, format!("no {what} for published version {v}"), fix.clone());
        }
    }

    /// Merged version `o` was made on a published snapshot and has its summary.
    fn check_merge(&mut self, o: u64, odir: &Path) {
        match crate::merge::read_report(self.warehouse, self.pipeline, o) {
            Some(r) if !self.versions.contains(&r.ods_version) => self.problem(
                odir,
                format!(
                    "merged version {o} was made on snapshot version {}, which is not published",
                    r.ods_version
                ),
                "restore the snapshot from a backup".into(),
            ),
            Some(_) => {}
            None => {
                let path = self
                    .layout
                    .meta_path(Output::Merged, o)
                    .unwrap_or_else(|| odir.to_owned());
                self.problem(
                    &path,
                    "missing or unreadable merge summary".into(),
                    format!("`odsync merge {}`", self.pipeline),
                )
            }
        }
    }

    /// The resolutions log and the state file parse.
    fn check_logs(&mut self) {
        let pipeline = self.pipeline;
        let resolutions = crate::merge::resolutions::path(self.warehouse, pipeline);
        if resolutions.exists()
            && let Err(e) = crate::merge::resolutions::read(&resolutions)
        {
            self.problem(
                &resolutions,
                format!("unreadable resolutions log: {e}"),
                "fix the named line (the log is a CSV you may edit)".into(),
            );
        }
        let state = self.warehouse.join(pipeline).join(crate::warehouse::STATE);
        if state.exists() && crate::warehouse::read_state(self.warehouse, pipeline).is_none() {
            self.problem(
                &state,
                "unreadable state file".into(),
                format!("delete it: the next `odsync run {pipeline}` is then a baseline"),
            );
        }
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
fn move_aside(
    warehouse: &Path,
    pipeline: &str,
    versions: &[u64],
    damaged: &[u64],
    clock: &crate::clock::Clock,
) -> Vec<String> {
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
    let stamp = clock.now().format("%Y%m%dT%H%M%SZ");
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

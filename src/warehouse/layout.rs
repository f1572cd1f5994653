//! Where every output lives in a pipeline folder: one directory per table, Hive-partitioned by
//! version, with the manifests and summaries kept apart from the data files:
//!
//! ```text
//! <warehouse>/<pipeline>/<table>/version=NNNNNN/part-0.parquet    every table (snapshot tables,
//!                                                                 changes, history, merged tables)
//! <warehouse>/<pipeline>/_meta/ods/version=NNNNNN/manifest.json   the snapshot's manifest
//! <warehouse>/<pipeline>/_meta/changes/version=NNNNNN/summary.json
//! <warehouse>/<pipeline>/_meta/merged/version=NNNNNN/summary.json
//! ```
//!
//! So `pyarrow.dataset(<table dir>, partitioning='hive')`, `spark.read.parquet(<table dir>)` and
//! one `CREATE EXTERNAL TABLE … LOCATION '<table dir>'` each read a table with its `version`
//! column; readers skip `_meta` and `.tmp-*` (names starting `_` or `.` are hidden to Spark,
//! pyarrow and Hive).
//!
//! A version of an output is committed when its meta file is in place: the commit moves the
//! data files first and the meta file last (see [`super::Txn::stage_version`]), and
//! [`Layout::versions`] lists meta files. History has no meta file; its versions are its table's.
//!
//! The first layout (`<pipeline>/ods/version=N/<table>.parquet` and `manifest.json`,
//! `merged/version=N/…`, `changes/version=N/changes.parquet`, `history/version=N/history.parquet`)
//! is moved to this one by [`migrate`], through the same journal as a run's commit.

use super::{Journal, Move, WarehouseError, apply, io_err, sync_dir, versions_in};
use crate::model::states::Table;
use std::path::{Path, PathBuf};

/// The data file of a table version.
pub const PART: &str = "part-0.parquet";
/// The folder of manifests and summaries.
pub const META: &str = "_meta";

/// The outputs a pipeline folder holds, each a set of tables sharing version numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The ODS snapshot (`manifest.json`).
    Snapshot,
    /// The field-level diff of a snapshot against the previous one (`summary.json`).
    Changes,
    /// The SCD2 history as of a snapshot.
    History,
    /// The merged trust table and its conflicts, provenance and sources (`summary.json`).
    Merged,
}

impl Output {
    pub const ALL: [Output; 4] = [Output::Snapshot, Output::Changes, Output::History, Output::Merged];

    /// Its name in `_meta/`, temporary folders and journals (the folder names of the first layout).
    pub fn name(self) -> &'static str {
        match self {
            Output::Snapshot => "ods",
            Output::Changes => "changes",
            Output::History => "history",
            Output::Merged => "merged",
        }
    }

    pub fn tables(self) -> &'static [Table] {
        match self {
            Output::Snapshot => &crate::model::tables::SNAPSHOT_TABLES,
            Output::Changes => &[Table::Changes],
            Output::History => &[Table::History],
            Output::Merged => &[Table::Trusts, Table::Conflicts, Table::Provenance, Table::Sources],
        }
    }

    /// The file that marks a version committed and describes it.
    pub fn meta_file(self) -> Option<&'static str> {
        match self {
            Output::Snapshot => Some("manifest.json"),
            Output::Changes | Output::Merged => Some("summary.json"),
            Output::History => None,
        }
    }
}

pub fn version_dir_name(version: u64) -> String {
    format!("version={version:06}")
}

/// The paths of one pipeline folder.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn new(warehouse: &Path, pipeline: &str) -> Self {
        Layout {
            dir: warehouse.join(pipeline),
        }
    }

    /// The layout of the pipeline folder `dir`.
    pub fn of(dir: &Path) -> Self {
        Layout { dir: dir.to_owned() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The dataset directory of a table (`<pipeline>/<table>`).
    pub fn table_dir(&self, table: Table) -> PathBuf {
        self.dir.join(table.as_str())
    }

    pub fn table_file(&self, table: Table, version: u64) -> PathBuf {
        self.table_dir(table).join(version_dir_name(version)).join(PART)
    }

    pub fn meta_dir(&self, output: Output, version: u64) -> PathBuf {
        self.dir.join(META).join(output.name()).join(version_dir_name(version))
    }

    /// The manifest (snapshots) or summary (changes, merged) of a version.
    pub fn meta_path(&self, output: Output, version: u64) -> Option<PathBuf> {
        output.meta_file().map(|f| self.meta_dir(output, version).join(f))
    }

    /// Committed versions of an output, ascending.
    pub fn versions(&self, output: Output) -> Vec<u64> {
        match output.meta_file() {
            Some(file) => versions_in(&self.dir.join(META).join(output.name()))
                .into_iter()
                .filter(|v| self.meta_dir(output, *v).join(file).exists())
                .collect(),
            None => versions_in(&self.table_dir(output.tables()[0]))
                .into_iter()
                .filter(|v| self.table_file(output.tables()[0], *v).exists())
                .collect(),
        }
    }

    /// Versions of an output of which any trace is on disk (a meta folder or a table's version
    /// folder), committed or not: what `odsync verify` checks.
    pub fn versions_present(&self, output: Output) -> Vec<u64> {
        let mut out: Vec<u64> = output
            .tables()
            .iter()
            .flat_map(|t| versions_in(&self.table_dir(*t)))
            .collect();
        if output.meta_file().is_some() {
            out.extend(versions_in(&self.dir.join(META).join(output.name())));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The folders holding one version of an output (its meta folder first), existing ones only.
    pub fn version_folders(&self, output: Output, version: u64) -> Vec<PathBuf> {
        let meta = output.meta_file().map(|_| self.meta_dir(output, version));
        meta.into_iter()
            .chain(
                output
                    .tables()
                    .iter()
                    .map(|t| self.table_dir(*t).join(version_dir_name(version))),
            )
            .filter(|p| p.exists())
            .collect()
    }

    /// The committed tables of a version.
    pub fn tables(&self, version: u64) -> Tables {
        Tables::Committed {
            layout: self.clone(),
            version,
        }
    }

    /// Folders that may hold `.tmp-*` leftovers of an interrupted run or gc.
    pub fn temp_parents(&self) -> Vec<PathBuf> {
        let mut out = vec![self.dir.clone()];
        for output in Output::ALL {
            out.extend(output.tables().iter().map(|t| self.table_dir(*t)));
            out.push(self.dir.join(META).join(output.name()));
            // Leftovers of the first layout.
            out.push(self.dir.join(output.name()));
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Where the tables of one version of an output are: committed in the layout, or a folder of
/// flat `<table>.parquet` files (a version staged by a run in progress, read by the later stages
/// of the same run before anything is committed).
#[derive(Debug, Clone)]
pub enum Tables {
    Flat(PathBuf),
    Committed { layout: Layout, version: u64 },
}

impl Tables {
    pub fn file(&self, table: Table) -> PathBuf {
        match self {
            Tables::Flat(dir) => dir.join(format!("{table}.parquet")),
            Tables::Committed { layout, version } => layout.table_file(table, *version),
        }
    }
}

/// The pipeline folders of a warehouse (in either layout), sorted.
pub fn pipelines_in(warehouse: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(warehouse)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            let p = e.path();
            p.join(META).is_dir() || p.join(super::STATE).exists() || p.join("ods").is_dir()
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// What [`migrate`] moved.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Migration {
    pub pipeline: String,
    /// Files moved to the table-per-directory layout.
    pub files_moved: usize,
    /// Versions moved, per output (`ods`, `changes`, `history`, `merged`).
    pub versions: std::collections::BTreeMap<String, usize>,
}

/// Migrates every pipeline of the warehouse still in the first layout: `held` (whose lock the
/// caller holds) and each other one whose lock is free, so the catalog views, which read only
/// the current layout, lose no pipeline. A busy pipeline is migrated by its own next command.
pub fn migrate_warehouse(warehouse: &Path, held: &str) -> Result<Vec<Migration>, WarehouseError> {
    let mut out = Vec::new();
    if let Some(m) = migrate(warehouse, held)? {
        out.push(m);
    }
    for other in pipelines_in(warehouse) {
        if other == held || !needs_migration(warehouse, &other) {
            continue;
        }
        match super::lock_pipeline(warehouse, &other, "migrate-layout") {
            Ok(_lock) => {
                super::finish_interrupted(warehouse, &other)?;
                if let Some(m) = migrate(warehouse, &other)? {
                    out.push(m);
                }
            }
            Err(e) => tracing::warn!(pipeline = %other, "not moved to the current layout now: {e}"),
        }
    }
    Ok(out)
}

/// Whether the pipeline folder still holds outputs in the first layout.
pub fn needs_migration(warehouse: &Path, pipeline: &str) -> bool {
    let layout = Layout::new(warehouse, pipeline);
    Output::ALL.iter().any(|o| {
        let old = layout.dir().join(o.name());
        versions_in(&old).iter().any(|v| {
            let vdir = old.join(version_dir_name(*v));
            // A snapshot manifest is copied (rewritten), so its original stays until the old
            // folders are removed: it counts only while the new one is missing.
            o.tables().iter().any(|t| vdir.join(format!("{t}.parquet")).exists())
                || o.meta_file()
                    .is_some_and(|m| vdir.join(m).exists() && !layout.meta_path(*o, *v).is_some_and(|p| p.exists()))
        })
    })
}

/// Moves a pipeline written by odsync before the table-per-directory layout into it. Call it
/// holding the pipeline's lock, after [`super::recover`]. Every move goes through one journal:
/// a crash leaves the old layout or finishes into the new one on the next command. Manifests
/// are rewritten so that their `tables.*.file` name the new paths.
pub fn migrate(warehouse: &Path, pipeline: &str) -> Result<Option<Migration>, WarehouseError> {
    if !needs_migration(warehouse, pipeline) {
        remove_old_folders(warehouse, pipeline);
        return Ok(None);
    }
    let layout = Layout::new(warehouse, pipeline);
    let dir = layout.dir().to_owned();
    let run_id = "migrate-layout";
    let mut moves: Vec<Move> = Vec::new();
    let mut meta_moves: Vec<Move> = Vec::new();
    let mut report = Migration {
        pipeline: pipeline.to_owned(),
        ..Migration::default()
    };
    let rel = |p: &Path| p.strip_prefix(&dir).unwrap_or(p).to_string_lossy().into_owned();
    for output in Output::ALL {
        let old = dir.join(output.name());
        let mut count = 0;
        for v in versions_in(&old) {
            let vdir = old.join(version_dir_name(v));
            let mut any = false;
            for t in output.tables() {
                let from = vdir.join(format!("{t}.parquet"));
                if from.exists() {
                    moves.push(Move {
                        from: rel(&from),
                        to: rel(&layout.table_file(*t, v)),
                        replace: false,
                    });
                    any = true;
                }
            }
            if let Some(path) = layout.meta_path(output, v)
                && let Some(name) = output.meta_file()
                && vdir.join(name).exists()
            {
                let from = vdir.join(name);
                let from = if output == Output::Snapshot {
                    // The manifest names its files: rewritten beside the old one, then moved.
                    let tmp = vdir.join(format!(".tmp-{run_id}-{name}"));
                    rewrite_manifest(&from, &tmp, &layout, v)?;
                    tmp
                } else {
                    from
                };
                meta_moves.push(Move {
                    from: rel(&from),
                    to: rel(&path),
                    replace: false,
                });
                any = true;
            }
            count += usize::from(any);
        }
        if count > 0 {
            report.versions.insert(output.name().to_owned(), count);
        }
    }
    // Data first, meta files last: a version is listed only once its files are in place.
    moves.extend(meta_moves);
    report.files_moved = moves.len();
    let journal = Journal {
        run_id: run_id.to_owned(),
        moves,
    };
    let path = dir.join(super::JOURNAL);
    let tmp = dir.join(format!(".tmp-{run_id}-journal"));
    let text = serde_json::to_string_pretty(&journal).expect("journal serialises");
    super::write_synced(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(&dir)?;
    super::failpoint("migrate:journal");
    apply(&dir, &journal)?;
    remove_old_folders(warehouse, pipeline);
    tracing::info!(
        pipeline,
        files = report.files_moved,
        "moved the pipeline's outputs to the table-per-directory layout"
    );
    Ok(Some(report))
}

fn rewrite_manifest(from: &Path, to: &Path, layout: &Layout, version: u64) -> Result<(), WarehouseError> {
    let text = std::fs::read_to_string(from).map_err(io_err(from))?;
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&text) else {
        // A damaged manifest moves as it is; `odsync verify` reports it.
        std::fs::copy(from, to).map_err(io_err(to))?;
        return Ok(());
    };
    if let Some(tables) = value.get_mut("tables").and_then(|t| t.as_object_mut()) {
        for (name, info) in tables.iter_mut() {
            // (A table this version does not know keeps the file name it had.)
            if let Some(obj) = info.as_object_mut()
                && let Ok(table) = name.parse::<Table>()
            {
                let path = layout.table_file(table, version);
                let rel = path.strip_prefix(layout.dir()).unwrap_or(&path);
                obj.insert("file".into(), rel.to_string_lossy().into_owned().into());
            }
        }
    }
    let mut text = serde_json::to_string_pretty(&value).expect("manifest serialises");
    text.push('\n');
    super::write_synced(to, text.as_bytes())
}

/// Removes the first layout's folders once nothing but emptied version folders and the moved
/// manifests' originals are left in them (never a data file).
fn remove_old_folders(warehouse: &Path, pipeline: &str) {
    let dir = warehouse.join(pipeline);
    for output in Output::ALL {
        let old = dir.join(output.name());
        let is_table_dir = output.tables().iter().any(|t| t.as_str() == output.name());
        for v in versions_in(&old) {
            let vdir = old.join(version_dir_name(v));
            let Ok(entries) = std::fs::read_dir(&vdir) else {
                continue;
            };
            let leftovers: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
            let only_old_meta = leftovers.iter().all(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (Some(name.as_str()) == output.meta_file()) || (is_table_dir && name == PART)
            });
            if !only_old_meta {
                continue;
            }
            for p in leftovers {
                if p.file_name().is_some_and(|n| n != PART) {
                    let _ = std::fs::remove_file(&p);
                }
            }
            if !is_table_dir {
                let _ = std::fs::remove_dir(&vdir);
            }
        }
        if !is_table_dir {
            let _ = std::fs::remove_dir(&old);
        }
    }
}

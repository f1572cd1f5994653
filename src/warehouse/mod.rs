//! The warehouse's write discipline, shared by every stage: one lock per pipeline, and one commit
//! point for everything a run (or a merge) produces.
//!
//! Layout of a pipeline folder ([`layout`]): one directory per table (`<table>/version=NNNNNN/
//! part-0.parquet`), `_meta/` (manifests and summaries), `resolutions.csv`, `state.json` (the
//! committed watermark), `.lock`, and while a commit is being applied `.commit-journal.json`.
//!
//! The commit protocol ([`Txn`]):
//! 1. Every stage writes its output into a temporary folder (`.tmp-<run id>-<output>-…`), files
//!    and folders fsynced. Readers never look at `.tmp-*` names, so nothing is visible yet.
//! 2. **The commit point**: the journal (`.commit-journal.json`: every move from a temporary
//!    name to its final name) is written to a temporary file, fsynced and renamed into place, and
//!    the pipeline folder is fsynced. Before this step a crash leaves nothing; after it, the run
//!    is committed.
//! 3. The moves are applied in order (each idempotent: a move whose source is gone and whose
//!    target exists is done), parents fsynced, then the journal is removed.
//!
//! [`recover`] runs under the lock at the start of every writing command: a journal left by a
//! crash is applied to the end (roll forward), then every `.tmp-*` left by a crash before the
//! commit point is removed (roll back). After a kill at any point the warehouse is therefore the
//! one before the run or the one after it, never a mixture.
//!
//! `ODSYNC_FAILPOINT=<name>` makes a debug build abort (as `kill -9` would: no destructor runs)
//! at the named step, so tests can crash the real binary at each step of the protocol; release
//! builds ignore it.

pub mod layout;
pub mod lock;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use layout::{Layout, Output, Tables, version_dir_name};
pub use lock::{PipelineLock, lock_pipeline};

pub const JOURNAL: &str = ".commit-journal.json";
pub const STATE: &str = "state.json";

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}\nHelp: {help}")]
pub struct WarehouseError {
    pub path: PathBuf,
    pub message: String,
    pub help: &'static str,
}

const HELP_IO: &str =
    "check that the warehouse is writable and the disk is not full; nothing was committed, and the next run cleans up";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WarehouseError + '_ {
    move |e| WarehouseError {
        path: path.to_owned(),
        message: e.to_string(),
        help: HELP_IO,
    }
}

/// Aborts the process at a named step when `ODSYNC_FAILPOINT` names it (debug builds only).
pub fn failpoint(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var(crate::env_vars::ODSYNC_FAILPOINT).is_ok_and(|v| v.split(',').any(|p| p.trim() == name)) {
        eprintln!("odsync: failpoint `{name}` reached: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// One move of the journal, paths relative to the pipeline folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Move {
    pub from: String,
    pub to: String,
    /// A derived output (or a file) may replace an older copy; a snapshot version never does.
    pub replace: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    run_id: String,
    moves: Vec<Move>,
}

/// The committed pipeline state beside the versions: the watermark the next incremental run
/// starts from. Written in the same commit as the versions, so it moves if and only if they do.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PipelineState {
    pub run_id: String,
    pub watermark: Option<chrono::NaiveDate>,
    pub snapshot_version: Option<u64>,
}

pub fn read_state(warehouse: &Path, pipeline: &str) -> Option<PipelineState> {
    let text = std::fs::read_to_string(warehouse.join(pipeline).join(STATE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Everything a run stages, made visible together by [`Txn::commit`]. Dropped uncommitted, it
/// removes what it staged.
pub struct Txn {
    dir: PathBuf,
    run_id: String,
    moves: Vec<Move>,
    /// Temporary folders made by [`Txn::temp_dir`]: emptied by the commit, removed after it.
    temps: Vec<PathBuf>,
    done: bool,
}

impl Txn {
    pub fn new(warehouse: &Path, pipeline: &str, run_id: &str) -> Self {
        Txn {
            dir: warehouse.join(pipeline),
            run_id: run_id.to_owned(),
            moves: Vec::new(),
            temps: Vec::new(),
            done: false,
        }
    }

    /// A temporary folder for a version of `output` (created empty), to stage into.
    pub fn temp_dir(&mut self, output: Output, version: u64) -> Result<PathBuf, WarehouseError> {
        let dir = self.dir.join(format!(
            ".tmp-{}-{}-{}",
            self.run_id,
            output.name(),
            version_dir_name(version)
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        self.temps.push(dir.clone());
        Ok(dir)
    }

    /// Makes a temporary folder made elsewhere (the snapshot store's) this transaction's: removed
    /// after the commit, or with everything staged when the transaction is dropped uncommitted.
    pub fn adopt_temp(&mut self, dir: &Path) {
        self.temps.push(dir.to_owned());
    }

    /// Registers a fully written (and fsynced) temporary folder of flat `<table>.parquet` files
    /// and the output's meta file as `version` of `output`: each table file goes to
    /// `<table>/version=N/part-0.parquet`, the meta file to `_meta/<output>/version=N/` last, so
    /// the version is listed only once its data is in place.
    pub fn stage_version(
        &mut self,
        tmp: &Path,
        output: Output,
        version: u64,
        replace: bool,
    ) -> Result<(), WarehouseError> {
        let layout = Layout::of(&self.dir);
        let mut names: Vec<String> = std::fs::read_dir(tmp)
            .map_err(io_err(tmp))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut meta = None;
        for name in names {
            if let Some(table) = name.strip_suffix(".parquet").and_then(|t| t.parse().ok())
                && output.tables().contains(&table)
            {
                self.stage(&tmp.join(&name), &layout.table_file(table, version), replace)?;
            } else if Some(name.as_str()) == output.meta_file() {
                meta = Some(name);
            } else {
                return Err(WarehouseError {
                    path: tmp.join(&name),
                    message: format!("is not a file of the `{}` output", output.name()),
                    help: "this is a bug in odsync; please report it",
                });
            }
        }
        if let (Some(name), Some(path)) = (meta, layout.meta_path(output, version)) {
            self.stage(&tmp.join(name), &path, replace)?;
        }
        Ok(())
    }

    /// Registers a fully written (and fsynced) folder or file to be moved to `to` at commit.
    pub fn stage(&mut self, from: &Path, to: &Path, replace: bool) -> Result<(), WarehouseError> {
        let rel = |p: &Path| -> Result<String, WarehouseError> {
            p.strip_prefix(&self.dir)
                .map(|r| r.to_string_lossy().into_owned())
                .map_err(|_| WarehouseError {
                    path: p.to_owned(),
                    message: format!("is not inside the pipeline folder {}", self.dir.display()),
                    help: "this is a bug in odsync; please report it",
                })
        };
        self.moves.push(Move {
            from: rel(from)?,
            to: rel(to)?,
            replace,
        });
        Ok(())
    }

    /// Stages `bytes` as the new content of the file `to` (e.g. `resolutions.csv`).
    pub fn stage_file(&mut self, to: &Path, bytes: &[u8]) -> Result<(), WarehouseError> {
        let name = to
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = to.parent().unwrap_or(&self.dir).to_owned();
        std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let tmp = parent.join(format!(".tmp-{}-{name}", self.run_id));
        write_synced(&tmp, bytes)?;
        self.stage(&tmp, to, true)
    }

    /// Stages the pipeline's committed state (watermark).
    pub fn stage_state(&mut self, state: &PipelineState) -> Result<(), WarehouseError> {
        let mut text = serde_json::to_string_pretty(state).expect("state serialises");
        text.push('\n');
        let to = self.dir.join(STATE);
        self.stage_file(&to, text.as_bytes())
    }

    /// The commit point, then the moves. Returns once everything is in place and durable.
    pub fn commit(mut self) -> Result<(), WarehouseError> {
        if self.moves.is_empty() {
            self.done = true;
            return Ok(());
        }
        failpoint("commit:staged");
        let journal = Journal {
            run_id: self.run_id.clone(),
            moves: self.moves.clone(),
        };
        let path = self.dir.join(JOURNAL);
        let tmp = self.dir.join(format!(".tmp-{}-journal", self.run_id));
        let text = serde_json::to_string_pretty(&journal).expect("journal serialises");
        write_synced(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        // Committed: from here a failure is finished by the next command's recovery.
        self.done = true;
        failpoint("commit:journal");
        apply(&self.dir, &journal)?;
        for t in &self.temps {
            let _ = std::fs::remove_dir_all(t);
        }
        Ok(())
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        if !self.done {
            for m in &self.moves {
                let p = self.dir.join(&m.from);
                if p.is_dir() {
                    let _ = std::fs::remove_dir_all(&p);
                } else {
                    let _ = std::fs::remove_file(&p);
                }
            }
            for t in &self.temps {
                let _ = std::fs::remove_dir_all(t);
            }
        }
    }
}

fn apply(dir: &Path, journal: &Journal) -> Result<(), WarehouseError> {
    for (i, m) in journal.moves.iter().enumerate() {
        let from = dir.join(&m.from);
        let to = dir.join(&m.to);
        if from.exists() {
            if to.exists() {
                if !m.replace {
                    return Err(WarehouseError {
                        path: to.clone(),
                        message: format!(
                            "already exists; the commit of run `{}` wanted to put a new version there",
                            journal.run_id
                        ),
                        help: "another process wrote this pipeline without its lock; run `odsync verify` and keep the copy it names",
                    });
                }
                if to.is_dir() {
                    std::fs::remove_dir_all(&to).map_err(io_err(&to))?;
                } else {
                    std::fs::remove_file(&to).map_err(io_err(&to))?;
                }
            }
            let parent = to.parent().unwrap_or(dir);
            // A new `<table>/version=N/` folder: created, and its parents' entries made durable.
            let created = !parent.exists();
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            std::fs::rename(&from, &to).map_err(io_err(&to))?;
            sync_dir(parent)?;
            if created {
                let mut p = parent;
                while let Some(up) = p.parent() {
                    sync_dir(up)?;
                    if up == dir {
                        break;
                    }
                    p = up;
                }
            }
        } else if !to.exists() {
            // Neither side: something removed a staged output after the commit point.
            return Err(WarehouseError {
                path: from,
                message: format!(
                    "the commit of run `{}` lists this staged output, but it is gone",
                    journal.run_id
                ),
                help: "something outside odsync removed it; run `odsync verify` and restore the pipeline folder from a backup",
            });
        }
        if i == 0 {
            failpoint("commit:first-move");
        }
    }
    failpoint("commit:moved");
    let path = dir.join(JOURNAL);
    std::fs::remove_file(&path).map_err(io_err(&path))?;
    sync_dir(dir)
}

/// What [`recover`] found and did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Recovery {
    /// A commit that a crash interrupted after its commit point, finished now.
    pub rolled_forward: Option<String>,
    /// Temporary outputs of runs that never reached their commit point, removed.
    pub removed: Vec<String>,
    /// Pipelines moved from the first layout to one directory per table.
    pub migrated: Vec<layout::Migration>,
}

/// Finishes or removes what a crash left in `pipeline`'s folder, then moves the warehouse's
/// pipelines still in the first layout to the current one ([`layout::migrate_warehouse`]). Call
/// it holding `pipeline`'s lock.
pub fn recover(warehouse: &Path, pipeline: &str) -> Result<Recovery, WarehouseError> {
    let mut out = finish_interrupted(warehouse, pipeline)?;
    out.migrated = layout::migrate_warehouse(warehouse, pipeline)?;
    Ok(out)
}

/// The crash recovery of one pipeline folder (journal roll-forward, `.tmp-*` removal).
fn finish_interrupted(warehouse: &Path, pipeline: &str) -> Result<Recovery, WarehouseError> {
    let dir = warehouse.join(pipeline);
    let mut out = Recovery::default();
    let path = dir.join(JOURNAL);
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        match serde_json::from_str::<Journal>(&text) {
            Ok(journal) => {
                tracing::warn!(run_id = %journal.run_id, "finishing the commit of a run that was interrupted after its commit point");
                apply(&dir, &journal)?;
                out.rolled_forward = Some(journal.run_id);
            }
            // The journal is renamed into place whole, so a torn one means the disk lies;
            // refuse rather than guess.
            Err(e) => {
                return Err(WarehouseError {
                    path,
                    message: format!("unreadable commit journal: {e}"),
                    help: "run `odsync verify` and restore the pipeline folder from a backup; odsync will not guess which half of that commit to keep",
                });
            }
        }
    }
    for folder in Layout::of(&dir).temp_parents() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") || name == "resolutions.csv.tmp" {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                out.removed
                    .push(p.strip_prefix(warehouse).unwrap_or(&p).display().to_string());
            }
        }
    }
    if !out.removed.is_empty() {
        tracing::warn!(removed = ?out.removed, "removed the uncommitted outputs of an interrupted run");
    }
    Ok(out)
}

/// The `version=N` folders under `dir`, ascending (none when `dir` does not exist).
pub fn versions_in(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("version=")?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), WarehouseError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

pub fn sync_dir(dir: &Path) -> Result<(), WarehouseError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// fsyncs every file under `dir` and `dir` itself (outputs written by DuckDB's COPY).
pub fn sync_tree(dir: &Path) -> Result<(), WarehouseError> {
    for e in std::fs::read_dir(dir).map_err(io_err(dir))?.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            sync_tree(&p)?;
        } else {
            std::fs::File::open(&p).and_then(|f| f.sync_all()).map_err(io_err(&p))?;
        }
    }
    sync_dir(dir)
}

impl crate::error::Classify for WarehouseError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Environment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_stages_vanish_and_a_journal_rolls_forward() {
        let w = tempfile::tempdir().unwrap();
        let p = w.path().join("p");
        std::fs::create_dir_all(&p).unwrap();
        {
            let mut txn = Txn::new(w.path(), "p", "r1");
            let tmp = txn.temp_dir(Output::Changes, 1).unwrap();
            std::fs::write(tmp.join("changes.parquet"), b"x").unwrap();
            std::fs::write(tmp.join("summary.json"), b"{}").unwrap();
            txn.stage_version(&tmp, Output::Changes, 1, false).unwrap();
            // dropped without commit
        }
        assert_eq!(
            std::fs::read_dir(&p).unwrap().count(),
            0,
            "nothing left by an uncommitted txn"
        );

        // A journal written but not applied (a crash right after the commit point).
        let tmp = p.join(".tmp-r2-changes-version=000001");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("changes.parquet"), b"y").unwrap();
        std::fs::write(tmp.join("summary.json"), b"{}").unwrap();
        let journal = Journal {
            run_id: "r2".into(),
            moves: vec![
                Move {
                    from: ".tmp-r2-changes-version=000001/changes.parquet".into(),
                    to: "changes/version=000001/part-0.parquet".into(),
                    replace: false,
                },
                Move {
                    from: ".tmp-r2-changes-version=000001/summary.json".into(),
                    to: "_meta/changes/version=000001/summary.json".into(),
                    replace: true,
                },
            ],
        };
        std::fs::write(p.join(JOURNAL), serde_json::to_vec(&journal).unwrap()).unwrap();
        std::fs::create_dir_all(p.join(".tmp-r3-merged-version=000001")).unwrap();
        std::fs::create_dir_all(p.join("trusts/.tmp-gc-version=000001")).unwrap();
        let r = recover(w.path(), "p").unwrap();
        assert_eq!(r.rolled_forward.as_deref(), Some("r2"));
        let layout = Layout::new(w.path(), "p");
        assert_eq!(
            std::fs::read(layout.table_file(crate::model::states::Table::Changes, 1)).unwrap(),
            b"y"
        );
        assert_eq!(layout.versions(Output::Changes), [1]);
        assert!(!p.join(JOURNAL).exists());
        assert!(!tmp.exists(), "the emptied staging folder is removed");
        assert!(
            !p.join(".tmp-r3-merged-version=000001").exists() && !p.join("trusts/.tmp-gc-version=000001").exists(),
            "uncommitted output of another run and a gc leftover removed"
        );
        // Applying the same journal again is a no-op (moves are idempotent).
        std::fs::write(p.join(JOURNAL), serde_json::to_vec(&journal).unwrap()).unwrap();
        recover(w.path(), "p").unwrap();
        assert_eq!(
            std::fs::read(layout.table_file(crate::model::states::Table::Changes, 1)).unwrap(),
            b"y"
        );
    }
}

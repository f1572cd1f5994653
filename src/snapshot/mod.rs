//! The versioned snapshot store: `<warehouse>/<pipeline>/<table>/version=NNNNNN/part-0.parquet`
//! for every snapshot table, and `<pipeline>/_meta/ods/version=NNNNNN/manifest.json`
//! (`warehouse::layout`), readable as-is by DuckDB, Polars, pyarrow and Spark with Hive
//! partitioning.
//!
//! Invariants:
//! - Versions are immutable and numbered 1, 2, 3 … (zero-padded to six digits).
//! - A version is written into `.tmp-<run id>-ods/`, every file fsynced, then moved into place by
//!   the run's journal (`warehouse::Txn`); a crash leaves the old state or the new one, never half
//!   a version. Leftover `.tmp-*` folders are ignored by readers and removed by the next command.
//! - A snapshot whose content hash equals the latest version's is not written (`unchanged`).
//! - One writer per pipeline at a time (`warehouse::lock`); a run's outputs appear together
//!   (`warehouse::Txn`).

use crate::model::states::Table;
use crate::model::tables::{SNAPSHOT_TABLES, SnapshotTables};
use crate::model::{Quarantined, RawFormat, RawRecord};
use arrow::array::{Array, BinaryArray, RecordBatch, StringArray};
use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::warehouse::{Layout, Output, Tables};

mod writer;
pub use writer::{write_parquet, write_parquet_hashed};

/// Version of the manifest's own layout (not of the data).
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("{path}: invalid manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error(
        "no snapshot version {version} for pipeline `{pipeline}`\nHelp: `odsync snapshots list {pipeline}` shows the versions"
    )]
    NoSuchVersion { pipeline: String, version: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableInfo {
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceInfo {
    pub kind: crate::model::states::SourceKind,
    /// URL or path, never with credentials.
    pub location: String,
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub manifest_format: u32,
    pub pipeline: String,
    pub version: u64,
    pub previous_version: Option<u64>,
    pub run_id: String,
    pub created_at: DateTime<Utc>,
    /// baseline, incremental or codes.
    pub mode: String,
    pub source: SourceInfo,
    /// The date the next incremental run syncs from (before the overlap is subtracted).
    pub watermark: Option<NaiveDate>,
    pub schema_version: u32,
    /// What the derived columns depend on besides the raw records (the role mapping's sha256):
    /// a delta carries rows forward only from a snapshot derived the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation: Option<String>,
    pub odsync_version: String,
    pub content_hash: String,
    pub tables: BTreeMap<String, TableInfo>,
    /// The run's stage summaries (fetch metrics, parse counts …).
    pub summary: serde_json::Value,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CommitOutcome {
    Committed {
        version: u64,
    },
    /// Same content as the latest version; nothing written.
    Unchanged {
        version: u64,
    },
}

/// The outcome of [`SnapshotStore::stage`].
pub enum Staged {
    Unchanged { version: u64 },
    New(StagedVersion),
}

/// A fully written version in its temporary folder; dropped without `publish`, it is removed.
pub struct StagedVersion {
    /// The temporary folder holding the new version's files.
    pub dir: PathBuf,
    pub version: u64,
    published: bool,
}

impl StagedVersion {
    /// Adds `summary.<key>` to the staged manifest (e.g. an accepted publication shift).
    pub fn annotate(&self, key: &str, value: serde_json::Value) -> Result<(), SnapshotError> {
        let path = self.dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut manifest: Manifest = serde_json::from_str(&text).map_err(|e| SnapshotError::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if !manifest.summary.is_object() {
            manifest.summary = serde_json::json!({});
        }
        manifest.summary[key] = value;
        let mut text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        text.push('\n');
        write_synced(&path, text.as_bytes())
    }

    /// Hands the staged folder to the run's transaction: it becomes `version=NNNNNN` when the
    /// transaction commits (with every other output of the run), and is removed if it does not.
    pub fn into_txn(mut self, txn: &mut crate::warehouse::Txn) -> Result<u64, crate::warehouse::WarehouseError> {
        txn.stage_version(&self.dir, Output::Snapshot, self.version, false)?;
        txn.adopt_temp(&self.dir);
        self.published = true;
        Ok(self.version)
    }

    /// The staged tables, for the later stages of the same run.
    pub fn tables(&self) -> Tables {
        Tables::Flat(self.dir.clone())
    }
}

impl Drop for StagedVersion {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub struct SnapshotStore {
    pipeline: String,
    root: PathBuf,
}

impl SnapshotStore {
    pub fn new(warehouse: &Path, pipeline: &str) -> Self {
        SnapshotStore {
            pipeline: pipeline.to_owned(),
            root: warehouse.join(pipeline),
        }
    }

    /// The pipeline folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn layout(&self) -> Layout {
        Layout::of(&self.root)
    }

    /// The committed tables of a version.
    pub fn tables(&self, version: u64) -> Tables {
        self.layout().tables(version)
    }

    pub fn manifest_path(&self, version: u64) -> PathBuf {
        self.layout()
            .meta_path(Output::Snapshot, version)
            .expect("snapshots have a manifest")
    }

    /// Committed versions, ascending.
    pub fn versions(&self) -> Result<Vec<u64>, SnapshotError> {
        Ok(self.layout().versions(Output::Snapshot))
    }

    pub fn manifest(&self, version: u64) -> Result<Manifest, SnapshotError> {
        let path = self.manifest_path(version);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SnapshotError::NoSuchVersion {
                    pipeline: self.pipeline.clone(),
                    version,
                });
            }
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_str(&text).map_err(|e| SnapshotError::Manifest {
            path,
            message: e.to_string(),
        })
    }

    pub fn latest(&self) -> Result<Option<Manifest>, SnapshotError> {
        match self.versions()?.last() {
            Some(v) => self.manifest(*v).map(Some),
            None => Ok(None),
        }
    }

    /// One table of a version, batch by batch in file order, checked against the columns the
    /// table is declared with.
    pub fn read_table_batches(&self, version: u64, table: Table) -> Result<Vec<RecordBatch>, SnapshotError> {
        let path = self.tables(version).file(table);
        let schema = crate::model::tables::schema(table).ok_or_else(|| SnapshotError::Parquet {
            path: path.clone(),
            message: format!("`{table}` is not a snapshot table"),
        })?;
        self.read_batches(version, table)?
            .into_iter()
            .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SnapshotError::Parquet {
                path: path.clone(),
                message: format!("its columns are not those of `{table}`: {e}"),
            })
    }

    fn read_batches(&self, version: u64, table: Table) -> Result<Vec<RecordBatch>, SnapshotError> {
        let path = self.tables(version).file(table);
        let file = std::fs::File::open(&path).map_err(io(&path))?;
        let perr = |e: parquet::errors::ParquetError| SnapshotError::Parquet {
            path: path.clone(),
            message: e.to_string(),
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(perr)?
            .build()
            .map_err(perr)?;
        reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SnapshotError::Parquet {
                path: path.clone(),
                message: e.to_string(),
            })
    }

    /// The raw records of a version (the input for applying a delta, and for replay) and the `raw` table's batches they point into: each record's
    /// payload is a slice of the decoded column, not a copy (371k ORD records are ~400 MB), and
    /// the batches serve again when a delta carries the untouched records' rows forward.
    pub fn read_raw_columns(&self, version: u64) -> Result<(Vec<RawRecord>, Vec<RecordBatch>), SnapshotError> {
        let path = self.tables(version).file(Table::Raw);
        let batches = self.read_table_batches(version, Table::Raw)?;
        let mut out = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
        for batch in &batches {
            let code = string_col(batch, "code", &path)?;
            let format = string_col(batch, "format", &path)?;
            let origin = string_col(batch, "origin", &path)?;
            let payload = binary_col(batch, "payload", &path)?;
            let (offsets, values) = (payload.value_offsets(), payload.values());
            for i in 0..batch.num_rows() {
                let fmt = RawFormat::parse(format.value(i)).ok_or_else(|| SnapshotError::Parquet {
                    path: path.clone(),
                    message: format!("unknown raw format `{}`", format.value(i)),
                })?;
                let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
                out.push(RawRecord {
                    code: code.value(i).to_owned(),
                    format: fmt,
                    origin: origin.value(i).to_owned(),
                    payload: values.slice_with_length(start, end - start),
                });
            }
        }
        Ok((out, batches))
    }

    /// The tombstones of a version (absent in snapshots written before deletions were tracked).
    pub fn read_deletions(&self, version: u64) -> Result<Vec<crate::model::Deletion>, SnapshotError> {
        let path = self.tables(version).file(Table::Deletions);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for batch in self.read_batches(version, Table::Deletions)? {
            let text = |name: &str| string_col(&batch, name, &path).cloned();
            let (code, reason_code, reason, at) = (
                text("code")?,
                text("reason_code")?,
                text("reason")?,
                text("deleted_at")?,
            );
            let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
            for i in 0..batch.num_rows() {
                out.push(crate::model::Deletion {
                    code: code.value(i).to_owned(),
                    reason_code: opt(&reason_code, i),
                    reason: opt(&reason, i),
                    deleted_at: opt(&at, i),
                });
            }
        }
        Ok(out)
    }

    /// The ORD `/roles` code system stored with a version (empty for sources that have none).
    pub fn read_code_system(&self, version: u64) -> Result<Vec<crate::model::tables::CodeSystemRole>, SnapshotError> {
        let path = self.tables(version).file(Table::CodeSystemRoles);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for batch in self.read_batches(version, Table::CodeSystemRoles)? {
            let (role_id, code, name) = (
                string_col(&batch, "role_id", &path)?,
                string_col(&batch, "code", &path)?,
                string_col(&batch, "display_name", &path)?,
            );
            let primary = batch
                .column_by_name("primary_role")
                .and_then(|c| c.as_any().downcast_ref::<arrow::array::BooleanArray>())
                .ok_or_else(|| SnapshotError::Parquet {
                    path: path.clone(),
                    message: "missing boolean column `primary_role`".into(),
                })?;
            let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
            for i in 0..batch.num_rows() {
                out.push(crate::model::tables::CodeSystemRole {
                    role_id: role_id.value(i).to_owned(),
                    code: opt(code, i),
                    display_name: opt(name, i),
                    primary_role: primary.value(i),
                });
            }
        }
        Ok(out)
    }

    pub fn read_quarantine(&self, version: u64) -> Result<Vec<Quarantined>, SnapshotError> {
        let path = self.tables(version).file(Table::Quarantine);
        let mut out = Vec::new();
        for batch in self.read_batches(version, Table::Quarantine)? {
            let code = string_col(&batch, "code", &path)?;
            let source = string_col(&batch, "source", &path)?;
            let reason = string_col(&batch, "reason", &path)?;
            let raw = binary_col(&batch, "raw", &path)?;
            for i in 0..batch.num_rows() {
                out.push(Quarantined {
                    code: (!code.is_null(i)).then(|| code.value(i).to_owned()),
                    source: source.value(i).to_owned(),
                    reason: reason.value(i).to_owned(),
                    raw: raw.value(i).to_vec(),
                });
            }
        }
        Ok(out)
    }

    /// Writes the next version into its temporary folder without publishing it, so later stages
    /// (the diff) can read it and still abort the run with nothing committed.
    pub fn stage(&self, tables: &SnapshotTables, mut manifest: Manifest) -> Result<Staged, SnapshotError> {
        let latest = self.latest()?;
        if let Some(latest) = &latest
            && latest.content_hash == tables.content_hash
        {
            return Ok(Staged::Unchanged {
                version: latest.version,
            });
        }
        let version = latest.as_ref().map_or(1, |m| m.version + 1);
        manifest.version = version;
        manifest.previous_version = latest.map(|m| m.version);
        manifest.content_hash = tables.content_hash.clone();
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        self.remove_stale_temporaries(&manifest.run_id);

        let tmp = self.root.join(format!(".tmp-{}-ods", manifest.run_id));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let staged = StagedVersion {
            dir: tmp,
            version,
            published: false,
        };
        self.write_version(&staged.dir, tables, &mut manifest, version)?;
        Ok(Staged::New(staged))
    }

    fn write_version(
        &self,
        dir: &Path,
        tables: &SnapshotTables,
        manifest: &mut Manifest,
        version: u64,
    ) -> Result<(), SnapshotError> {
        // The tables are independent files: they are encoded and written on every core.
        use rayon::prelude::*;
        let version_text = version.to_string();
        let schema_text = manifest.schema_version.to_string();
        let written: Vec<(String, TableInfo)> = tables
            .batches
            .par_iter()
            .map(|(name, batch)| {
                let path = dir.join(format!("{name}.parquet"));
                // The manifest names each file where the commit puts it, relative to the
                // pipeline folder.
                let target = Layout::of(&self.root).table_file(*name, version);
                let file = target
                    .strip_prefix(&self.root)
                    .unwrap_or(&target)
                    .to_string_lossy()
                    .into_owned();
                let started = std::time::Instant::now();
                let (bytes, sha256) = write_parquet_hashed(
                    &path,
                    batch,
                    &[
                        ("odsync.pipeline", &self.pipeline),
                        ("odsync.table", name.as_str()),
                        ("odsync.snapshot_version", &version_text),
                        ("odsync.run_id", &manifest.run_id),
                        ("odsync.schema_version", &schema_text),
                        ("odsync.version", env!("CARGO_PKG_VERSION")),
                    ],
                )?;
                tracing::trace!(
                    ms = started.elapsed().as_millis() as u64,
                    table = name.as_str(),
                    bytes,
                    "table written"
                );
                let info = TableInfo {
                    file,
                    rows: batch.iter().map(|b| b.num_rows() as u64).sum(),
                    bytes,
                    sha256,
                };
                Ok((name.as_str().to_owned(), info))
            })
            .collect::<Result<_, SnapshotError>>()?;
        manifest.tables.extend(written);
        debug_assert_eq!(manifest.tables.len(), SNAPSHOT_TABLES.len());
        let path = dir.join("manifest.json");
        let mut text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        text.push('\n');
        write_synced(&path, text.as_bytes())?;
        sync_dir(dir)
    }

    /// Snapshot temporaries of earlier runs (a run's own later stages are not staged yet).
    fn remove_stale_temporaries(&self, run_id: &str) {
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") && name.ends_with("-ods") && !name.starts_with(&format!(".tmp-{run_id}-"))
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// Stages a derived output version (changes, merged tables, history) next to the snapshots:
/// written and fsynced in a temporary folder, it becomes `<warehouse>/<pipeline>/<kind>/
/// version=NNNNNN/` when the run's transaction commits. An existing folder for that version is
/// replaced then: outputs are derived, so re-deriving them is allowed (snapshots never are).
/// Returns the temporary folder, which later stages of the same run read.
#[allow(clippy::too_many_arguments)]
pub fn stage_output(
    txn: &mut crate::warehouse::Txn,
    pipeline: &str,
    output: Output,
    version: u64,
    tables: &[(Table, &RecordBatch)],
    summary: &serde_json::Value,
    metadata: &[(&str, &str)],
) -> Result<PathBuf, SnapshotError> {
    let tmp = txn.temp_dir(output, version).map_err(|e| SnapshotError::Io {
        path: e.path.clone(),
        source: std::io::Error::other(e.message.clone()),
    })?;
    let version_text = version.to_string();
    let mut meta: Vec<(&str, &str)> = vec![
        ("odsync.pipeline", pipeline),
        ("odsync.snapshot_version", &version_text),
    ];
    meta.extend_from_slice(metadata);
    for (name, batch) in tables {
        write_parquet(&tmp.join(format!("{name}.parquet")), batch, &meta)?;
    }
    let mut text = serde_json::to_string_pretty(summary).expect("summary serialises");
    text.push('\n');
    write_synced(&tmp.join("summary.json"), text.as_bytes())?;
    sync_dir(&tmp)?;
    txn.stage_version(&tmp, output, version, true)
        .map_err(|e| SnapshotError::Io {
            path: e.path.clone(),
            source: std::io::Error::other(e.message.clone()),
        })?;
    Ok(tmp)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn string_col<'a>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a StringArray, SnapshotError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| SnapshotError::Parquet {
            path: path.to_owned(),
            message: format!("missing text column `{name}`"),
        })
}

fn binary_col<'a>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a BinaryArray, SnapshotError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        .ok_or_else(|| SnapshotError::Parquet {
            path: path.to_owned(),
            message: format!("missing binary column `{name}`"),
        })
}

impl crate::error::Classify for SnapshotError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            // Unreadable, unwritable or damaged files: `odsync verify` says which.
            SnapshotError::Io { .. } | SnapshotError::Parquet { .. } | SnapshotError::Manifest { .. } => {
                crate::error::ErrorClass::Environment
            }
            SnapshotError::NoSuchVersion { .. } => crate::error::ErrorClass::User,
        }
    }
}

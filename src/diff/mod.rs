//! Field-level diff between two snapshot versions → the long-format `changes` table.
//!
//! How it stays fast (1M organisations in well under a second): every snapshot row carries a
//! `row_hash`. Polars reads only the key and hash columns of both versions, full-joins them and
//! classifies each key as added, deleted or changed (hash differs) — the only work proportional to
//! the whole table. Then the field columns of the changed rows alone are read (Parquet row
//! selection, page index) and compared column by column with Arrow's `distinct` kernel, which
//! treats two nulls as equal. Rows are never compared one by one in Rust loops. When most rows
//! moved (more than [`HANDOFF_MAX_ROWS`], a publication shift) they are read in chunks, text as
//! string views, reading the next chunk while comparing this one.
//!
//! Engines: this module is Polars' job in odsync (the in-memory columnar diff); DuckDB defines the
//! merge, views and reports in `sql/` and never recomputes a diff.

mod changes;
mod compare;
mod kinds;
mod read;
mod shift;
mod summary;

#[cfg(feature = "testkit")]
pub use kinds::RECODING_MIN_ORGS;
pub use kinds::{Recoding, label_shift};

use changes::*;
use compare::*;
use read::*;
pub use shift::{ShiftLimits, ShiftStats, check_shift};
pub use summary::DiffSummary;
use summary::*;

use crate::model::states::{ChangeKind, Table};
use crate::snapshot::SnapshotStore;
use crate::warehouse::Tables;
use arrow::array::{Array, ArrayRef, BooleanArray, Date32Array, RecordBatch, StringArray, UInt32Array};
use arrow::compute::kernels::cmp::distinct;
use arrow::compute::{cast, concat, filter};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use polars::prelude::{DataFrame, DataFrameJoinOps, IdxCa, JoinArgs, JoinType, ParquetReader, RowIndex, SerReader};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("diff of `{path}`: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{0}")]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error(
        "pipeline `{pipeline}` has {count} snapshot version(s); a diff needs two\nHelp: run `odsync run {pipeline}` again after ODS changes, or name versions with --from and --to"
    )]
    NotEnoughVersions { pipeline: String, count: usize },
}

/// Relationship types that point from a child to its parent: a change in one of these is a
/// `reparented` change (ORD codes, and the parent columns of the bulk CSV files).
pub const PARENT_REL_TYPES: [&str; 8] = [
    "RE2",
    "RE3",
    "RE4",
    "RE5",
    "RE6",
    "NATIONAL_GROUPING",
    "HIGH_LEVEL_HEALTH_GEOGRAPHY",
    "COMMISSIONER",
];

/// Fields that describe a release rather than the organisation (the bulk files' Amended Record
/// Indicator flips on most rows between releases): diffed as kind `metadata`, never counted as
/// a publication shift.
pub const METADATA_FIELDS: [&str; 1] = ["amended_record"];

/// Which tables are diffed, by which key, comparing which fields.
struct TableSpec {
    table: Table,
    key: &'static str,
}

const SPECS: [TableSpec; 4] = [
    TableSpec {
        table: Table::Organisations,
        key: "code",
    },
    TableSpec {
        table: Table::Roles,
        key: "row_key",
    },
    TableSpec {
        table: Table::Relationships,
        key: "row_key",
    },
    TableSpec {
        table: Table::Successors,
        key: "row_key",
    },
];

/// The `changes` table and its summary.
pub struct Diff {
    pub changes: RecordBatch,
    pub summary: DiffSummary,
    /// The organisation rows the diff read (every column), handed to the merge so it does not
    /// find and read them again. `None` when more than [`HANDOFF_MAX_ROWS`] rows moved.
    pub org_rows: Option<ChangedRows>,
    /// Each change row's qualifier (a relationship row's type, else null), in `changes` order:
    /// what [`label_shift`] matches `relationships.target_code[TYPE]` keys on.
    pub qualifiers: ArrayRef,
}

/// Organisation rows that differ between two snapshot versions, as read by the diff.
#[derive(Debug, Clone)]
pub struct ChangedRows {
    pub from_version: u64,
    pub to_version: u64,
    /// Rows of the new version that were added or changed.
    pub new: RecordBatch,
    /// Rows of the old version that were deleted or changed.
    pub old: RecordBatch,
}

/// Changed rows up to this many are read in one pass per file (and kept for the merge); beyond
/// it (a publication shift, a recoding) they are read in chunks so memory stays bounded.
pub const HANDOFF_MAX_ROWS: usize = 262_144;

thread_local! {
    /// Moved rows above which a table is diffed in chunks of this many rows: [`HANDOFF_MAX_ROWS`],
    /// lowered by tests so that small data takes the chunked path too.
    static CHUNK_ROWS: std::cell::Cell<usize> = const { std::cell::Cell::new(HANDOFF_MAX_ROWS) };
}

/// Runs `f` with diffs on this thread chunked at `rows` moved rows.
impl crate::error::Classify for DiffError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            DiffError::Read { .. } => crate::error::ErrorClass::Environment,
            DiffError::Snapshot(e) => e.class(),
            DiffError::NotEnoughVersions { .. } => crate::error::ErrorClass::User,
        }
    }
}

#[cfg(all(test, feature = "testkit"))]
pub(crate) fn with_chunk_rows<T>(rows: usize, f: impl FnOnce() -> T) -> T {
    let before = CHUNK_ROWS.with(|c| c.replace(rows));
    let out = f();
    CHUNK_ROWS.with(|c| c.set(before));
    out
}

/// Diffs two committed versions of a pipeline. `today` decides what counts as future-dated.
pub fn diff_versions(store: &SnapshotStore, from: u64, to: u64, today: NaiveDate) -> Result<Diff, DiffError> {
    let old = store.manifest(from)?;
    let new = store.manifest(to)?;
    diff_tables(
        &store.tables(from),
        &store.tables(to),
        from,
        to,
        today,
        [old.source.kind, new.source.kind],
    )
}

/// Child tables a source kind does not fill: comparing them across a change of source would
/// report every row of the other side as deleted or added.
pub fn unsupplied(kind: crate::model::states::SourceKind) -> &'static [Table] {
    use crate::model::states::SourceKind;
    match kind {
        // Successions are on no documented FHIR resource; the bulk CSV files have none either.
        SourceKind::Fhir | SourceKind::Csv => &[Table::Successors],
        SourceKind::Ord | SourceKind::TrudXml => &[],
    }
}

/// Diffs two snapshot versions (committed, or staged by a run). `sources` are the source kinds
/// of the old and new snapshot: a table either does not supply is not compared.
pub fn diff_tables(
    old_dir: &Tables,
    new_dir: &Tables,
    from: u64,
    to: u64,
    today: NaiveDate,
    sources: [crate::model::states::SourceKind; 2],
) -> Result<Diff, DiffError> {
    let mut changes = Changes::default();
    let mut not_compared = Vec::new();
    for spec in &SPECS {
        if let Some(kind) = sources.iter().find(|k| unsupplied(**k).contains(&spec.table)) {
            // Only worth saying when the other side does supply it.
            if sources.iter().any(|k| !unsupplied(*k).contains(&spec.table)) {
                not_compared.push(format!(
                    "{}: the {kind} source does not supply them",
                    spec.table.as_str()
                ));
            }
            continue;
        }
        let old_path = old_dir.file(spec.table);
        let new_path = new_dir.file(spec.table);
        let t = std::time::Instant::now();
        let classified = classify(&old_path, &new_path, spec.key)?;
        if spec.table == Table::Organisations {
            let rows = |p: &Path| -> Result<u64, DiffError> {
                let file = std::fs::File::open(p).map_err(|e| read_err(p)(e.to_string()))?;
                let reader =
                    parquet::file::reader::SerializedFileReader::new(file).map_err(|e| read_err(p)(e.to_string()))?;
                Ok(parquet::file::reader::FileReader::metadata(&reader)
                    .file_metadata()
                    .num_rows() as u64)
            };
            let shift = &mut changes.shift;
            shift.old_organisations = rows(&old_path)?;
            shift.new_organisations = rows(&new_path)?;
            shift.added = classified.added.len() as u64;
            shift.deleted = classified.deleted.len() as u64;
            shift.shared = shift.old_organisations - shift.deleted;
        }
        let t1 = t.elapsed();
        diff_table(spec, &old_path, &new_path, &classified, today, &mut changes)?;
        tracing::debug!(
            table = spec.table.as_str(),
            classify_ms = t1.as_millis() as u64,
            total_ms = t.elapsed().as_millis() as u64,
            "diffed"
        );
    }
    not_compared.extend(
        changes
            .one_sided
            .iter()
            .map(|f| format!("{f}: only version {to} has this column (version {from} was written by an older odsync)")),
    );
    let mut diff = finish(changes, from, to, today)?;
    diff.summary.not_compared = not_compared;
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::UInt64Array;

    fn keys_file(dir: &Path, name: &str, rows: &[(&str, u64)]) -> PathBuf {
        keys_file_grouped(dir, name, rows, 1024)
    }

    fn keys_file_grouped(dir: &Path, name: &str, rows: &[(&str, u64)], group_rows: usize) -> PathBuf {
        let path = dir.join(name);
        let schema = Arc::new(Schema::new(vec![
            Field::new("code", DataType::Utf8, false),
            Field::new("row_hash", DataType::UInt64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(UInt64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(group_rows))
            .build();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        path
    }

    #[test]
    fn keys_are_classified_with_and_without_the_aligned_shortcut() {
        let dir = tempfile::tempdir().unwrap();
        let old = keys_file(dir.path(), "old.parquet", &[("A", 1), ("B", 2), ("C", 3), ("D", 4)]);
        // Every row changed, same keys in the same order: the key join is skipped.
        let all = keys_file(dir.path(), "all.parquet", &[("A", 11), ("B", 12), ("C", 13), ("D", 14)]);
        let c = classify(&old, &all, "code").unwrap();
        assert_eq!(c.changed, vec![(0, 0), (1, 1), (2, 2), (3, 3)]);
        assert!(c.added.is_empty() && c.deleted.is_empty());
        // As many rows, but B left and X came: joined by key, not paired by position.
        let swap = keys_file(
            dir.path(),
            "swap.parquet",
            &[("A", 11), ("C", 13), ("D", 14), ("X", 15)],
        );
        let c = classify(&old, &swap, "code").unwrap();
        assert_eq!(c.changed, vec![(0, 0), (2, 1), (3, 2)]);
        assert_eq!((c.added, c.deleted), (vec![3], vec![1]));
        // Some rows unchanged (same hash): only the others are paired.
        let some = keys_file(dir.path(), "some.parquet", &[("A", 1), ("B", 12), ("C", 3), ("D", 14)]);
        let c = classify(&old, &some, "code").unwrap();
        assert_eq!(c.changed, vec![(1, 1), (3, 3)]);
        assert!(c.added.is_empty() && c.deleted.is_empty());
    }

    #[test]
    fn rows_are_read_from_the_row_groups_that_hold_them() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<(String, u64)> = (0..10).map(|i| (format!("C{i}"), i)).collect();
        let rows: Vec<(&str, u64)> = rows.iter().map(|(c, h)| (c.as_str(), *h)).collect();
        // Row groups of 3: [0 1 2] [3 4 5] [6 7 8] [9].
        let path = keys_file_grouped(dir.path(), "groups.parquet", &rows, 3);
        for (wanted, views) in [
            (vec![3u32, 5, 9], false),
            (vec![0, 1, 2, 7], true),
            (vec![8], true),
            (vec![], false),
        ] {
            let plain = ["row_hash"];
            let batch = read_rows_as(&path, &wanted, None, views.then_some(&plain[..])).unwrap();
            let codes = text(col(&batch, "code"));
            let codes = codes.as_any().downcast_ref::<StringArray>().unwrap();
            let expected: Vec<String> = wanted.iter().map(|r| format!("C{r}")).collect();
            assert_eq!(
                codes.iter().map(|c| c.unwrap().to_owned()).collect::<Vec<_>>(),
                expected
            );
        }
    }
}

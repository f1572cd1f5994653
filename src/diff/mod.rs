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

mod kinds;

pub use kinds::{RECODING_MIN_ORGS, Recoding, label_shift};

use crate::model::tables::TABLE_NAMES;
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
    table: &'static str,
    key: &'static str,
}

const SPECS: [TableSpec; 4] = [
    TableSpec {
        table: "organisations",
        key: "code",
    },
    TableSpec {
        table: "roles",
        key: "row_key",
    },
    TableSpec {
        table: "relationships",
        key: "row_key",
    },
    TableSpec {
        table: "successors",
        key: "row_key",
    },
];

/// Counts of a diff: what `odsync diff`, `--json`, the run record and tests read.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct DiffSummary {
    pub from_version: u64,
    pub to_version: u64,
    /// Rows of `changes`.
    pub changes: u64,
    /// Distinct organisations per change kind: an organisation counts once in each kind it has
    /// (a renamed and reparented trust is one `renamed` and one `reparented`); the rows of an
    /// added or deleted organisation count only as that.
    pub by_kind: BTreeMap<String, u64>,
    /// Of `by_kind`, the organisations whose changes of that kind an accepted publication shift
    /// explains (every row marked `publication_shift`): the rest is organisational change.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_kind_publication_shift: BTreeMap<String, u64>,
    /// Changed values per `table.field` (row-level added/deleted rows count under `table.*`).
    pub by_field: BTreeMap<String, u64>,
    /// Organisations whose change takes effect after the diff's date.
    pub future_dated: u64,
    /// What the publication-shift guard looks at.
    pub shift: ShiftStats,
    /// Parent recodings: many organisations moved from one code to another in this diff.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recodings: Vec<Recoding>,
    /// Tables left out because one side's source does not supply them (e.g. `successors` when
    /// either snapshot came from FHIR), with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_compared: Vec<String>,
}

/// Row movements of a diff, for the publication-shift guard (`check_shift`).
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ShiftStats {
    pub old_organisations: u64,
    pub new_organisations: u64,
    pub added: u64,
    pub deleted: u64,
    /// Organisations present in both versions.
    pub shared: u64,
    /// Changed values of shared rows per `table.field` (relationships per type:
    /// `relationships.target_code[HIGH_LEVEL_HEALTH_GEOGRAPHY]`).
    pub field_changes: BTreeMap<String, u64>,
}

/// Limits of the publication-shift guard (pipeline `[guard]`).
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShiftLimits {
    /// Largest share of organisations that may appear at once.
    #[serde(default = "ten_percent")]
    pub max_added_share: f64,
    /// Largest share of organisations that may vanish at once.
    #[serde(default = "ten_percent")]
    pub max_vanished_share: f64,
    /// Largest share of shared organisations on which one field may change.
    #[serde(default = "half")]
    pub max_field_change_share: f64,
}

fn ten_percent() -> f64 {
    0.10
}
fn half() -> f64 {
    0.50
}

impl Default for ShiftLimits {
    fn default() -> Self {
        ShiftLimits {
            max_added_share: ten_percent(),
            max_vanished_share: ten_percent(),
            max_field_change_share: half(),
        }
    }
}

/// Why a diff looks like a change of publication profile rather than organisational change
/// (docs/ods-reference.md 4.8): each reason names the movement, its count and share. Empty when the diff
/// is within the limits.
pub fn check_shift(stats: &ShiftStats, limits: &ShiftLimits) -> Vec<(String, String)> {
    let mut reasons = Vec::new();
    let share = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    let old = stats.old_organisations;
    if old > 0 && share(stats.added, old) > limits.max_added_share {
        reasons.push((
            "organisations.*".to_owned(),
            format!(
                "{} organisations appeared ({:.1}% of {old})",
                stats.added,
                100.0 * share(stats.added, old)
            ),
        ));
    }
    if old > 0 && share(stats.deleted, old) > limits.max_vanished_share {
        reasons.push((
            "organisations.*".to_owned(),
            format!(
                "{} organisations vanished ({:.1}% of {old})",
                stats.deleted,
                100.0 * share(stats.deleted, old)
            ),
        ));
    }
    let mut fields: Vec<(&String, &u64)> = stats
        .field_changes
        .iter()
        .filter(|(_, n)| stats.shared > 0 && share(**n, stats.shared) > limits.max_field_change_share)
        .collect();
    fields.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (field, n) in fields {
        reasons.push((
            field.clone(),
            format!(
                "{field} changed on {n} of {} shared organisations ({:.1}%)",
                stats.shared,
                100.0 * share(*n, stats.shared)
            ),
        ));
    }
    reasons
}

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
#[cfg(test)]
pub(crate) fn with_chunk_rows<T>(rows: usize, f: impl FnOnce() -> T) -> T {
    let before = CHUNK_ROWS.with(|c| c.replace(rows));
    let out = f();
    CHUNK_ROWS.with(|c| c.set(before));
    out
}

pub fn changes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("field", DataType::Utf8, true),
        Field::new("old_value", DataType::Utf8, true),
        Field::new("new_value", DataType::Utf8, true),
        Field::new("change_kind", DataType::Utf8, false),
        Field::new("effective_date", DataType::Date32, true),
        Field::new("future_dated", DataType::Boolean, false),
        Field::new("publication_shift", DataType::Boolean, false),
        Field::new("from_version", DataType::UInt32, false),
        Field::new("to_version", DataType::UInt32, false),
        // The recoding event (`<old>><new>`) the row belongs to, see `diff::kinds`.
        Field::new("event", DataType::Utf8, true),
    ]))
}

/// Accumulates change rows as Arrow arrays, one chunk per (table, field) comparison.
#[derive(Default)]
struct Changes {
    /// The eight columns of `changes` that vary per row, then the row's qualifier (the
    /// relationship type of a relationship row, else null), which the shift labels match on.
    chunks: Vec<[ArrayRef; 9]>,
    shift: ShiftStats,
    /// `table.field` columns only the new side has (a snapshot written by an older odsync):
    /// not compared, and said so.
    one_sided: std::collections::BTreeSet<String>,
    org_rows: Option<(RecordBatch, RecordBatch)>,
}

impl Changes {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        code: ArrayRef,
        table: &str,
        key: ArrayRef,
        field: Option<&str>,
        old: ArrayRef,
        new: ArrayRef,
        kind: ArrayRef,
        effective: ArrayRef,
        qualifier: Option<ArrayRef>,
    ) {
        let n = code.len();
        if n == 0 {
            return;
        }
        let repeat = |v: Option<&str>| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
        let qualifier = qualifier.map_or_else(|| null_strings(n), |q| text(&q));
        self.chunks.push([
            code,
            repeat(Some(table)),
            key,
            repeat(field),
            old,
            new,
            kind,
            effective,
            qualifier,
        ]);
    }
}

fn read_err(path: &Path) -> impl Fn(String) -> DiffError + '_ {
    move |message| DiffError::Read {
        path: path.to_owned(),
        message,
    }
}

/// Reads `key` and `row_hash` with a row index, named for one side of the join.
fn read_keys(path: &Path, key: &str, side: &str) -> Result<DataFrame, DiffError> {
    let err = read_err(path);
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut df = ParquetReader::new(file)
        .with_columns(Some(vec![key.to_owned(), "row_hash".to_owned()]))
        .with_row_index(Some(RowIndex {
            name: format!("idx_{side}").into(),
            offset: 0,
        }))
        .finish()
        .map_err(|e| err(e.to_string()))?;
    // Keys are unique in every table odsync writes (its rows are sorted by key, so a repeat is
    // next to its twin); a repeated key would pair rows twice. Refused here, named, not a panic.
    {
        let keys = df
            .column(key)
            .and_then(|c| c.str().cloned())
            .map_err(|e| err(e.to_string()))?;
        let mut previous: Option<&str> = None;
        for k in keys.iter() {
            if k.is_some() && k == previous {
                return Err(err(format!(
                    "the key `{key}` = `{}` appears twice: this version was written by an older odsync from records that repeat an id\nHelp: run the pipeline with --full to write a version without it, then diff from that version",
                    k.unwrap_or_default()
                )));
            }
            previous = k;
        }
    }
    df.rename(key, format!("key_{side}").into())
        .map_err(|e| err(e.to_string()))?;
    df.rename("row_hash", format!("hash_{side}").into())
        .map_err(|e| err(e.to_string()))?;
    Ok(df)
}

/// Row indices of each side: (added new rows, deleted old rows, changed (old, new) pairs).
struct Classified {
    added: Vec<u32>,
    deleted: Vec<u32>,
    changed: Vec<(u32, u32)>,
}

fn classify(old_path: &Path, new_path: &Path, key: &str) -> Result<Classified, DiffError> {
    use polars::prelude::ChunkFilter;
    let started = std::time::Instant::now();
    let (old, new) = rayon::join(|| read_keys(old_path, key, "old"), || read_keys(new_path, key, "new"));
    let (old, new) = (old?, new?);
    let read_ms = started.elapsed().as_millis() as u64;
    let err = read_err(new_path);
    let pe = |e: polars::prelude::PolarsError| err(e.to_string());
    let idx = |df: &DataFrame, name: &str| -> Result<IdxCa, DiffError> {
        Ok(df.column(name).map_err(pe)?.idx().map_err(pe)?.clone())
    };
    let values = |ca: &IdxCa| -> Vec<u32> { ca.into_no_null_iter().collect() };

    // 1. A row whose hash appears on both sides is unchanged (the hash covers the key too). A left
    //    join of the two narrow (hash, index) columns sets those aside; only the rest — a few
    //    percent on a normal day — goes on to the key join.
    let old_h = old.select(["hash_old", "idx_old"]).map_err(pe)?;
    let new_h = new.select(["hash_new", "idx_new"]).map_err(pe)?;
    let by_hash = old_h
        .join(&new_h, ["hash_old"], ["hash_new"], JoinArgs::new(JoinType::Left), None)
        .map_err(pe)?;
    let matched_new = idx(&by_hash, "idx_new")?;
    let old_rest_idx = idx(&by_hash, "idx_old")?.filter(&matched_new.is_null()).map_err(pe)?;
    let mut seen = vec![false; new.height()];
    matched_new.iter().flatten().for_each(|i| seen[i as usize] = true);
    let new_rest: Vec<polars::prelude::IdxSize> = (0..new.height())
        .filter(|i| !seen[*i])
        .map(|i| i as polars::prelude::IdxSize)
        .collect();
    let old_rest = old.take(&old_rest_idx).map_err(pe)?;
    let new_rest = new.take(&IdxCa::from_vec("idx".into(), new_rest)).map_err(pe)?;

    // 2. The rest, joined by key: matched keys changed, unmatched old keys were deleted, unmatched
    //    new keys were added. When every row moved but no key came or went (a publication shift
    //    recoding a field everywhere), both sides hold the same keys in the same (file) order: one
    //    columnar comparison of the two key columns finds that and spares the join (~150 ms at 1M).
    let aligned = old_rest.height() == new_rest.height() && old_rest.height() > 0 && {
        use polars::prelude::ChunkCompareEq;
        let a = old_rest.column("key_old").map_err(pe)?.as_materialized_series();
        let b = new_rest.column("key_new").map_err(pe)?.as_materialized_series();
        a.equal_missing(b).map_err(pe)?.all()
    };
    let (mut added, mut deleted, mut changed): (Vec<u32>, Vec<u32>, Vec<(u32, u32)>) = if aligned {
        let pairs = values(&idx(&old_rest, "idx_old")?)
            .into_iter()
            .zip(values(&idx(&new_rest, "idx_new")?))
            .collect();
        (Vec::new(), Vec::new(), pairs)
    } else {
        let by_key = old_rest
            .join(&new_rest, ["key_old"], ["key_new"], JoinArgs::new(JoinType::Left), None)
            .map_err(pe)?;
        let key_new = idx(&by_key, "idx_new")?;
        let key_old = idx(&by_key, "idx_old")?;
        let deleted = values(&key_old.filter(&key_new.is_null()).map_err(pe)?);
        let present = key_new.is_not_null();
        let changed: Vec<(u32, u32)> = values(&key_old.filter(&present).map_err(pe)?)
            .into_iter()
            .zip(values(&key_new.filter(&present).map_err(pe)?))
            .collect();
        let mut changed_new = vec![false; new.height()];
        changed.iter().for_each(|p| changed_new[p.1 as usize] = true);
        let added: Vec<u32> = values(&idx(&new_rest, "idx_new")?)
            .into_iter()
            .filter(|&i| !changed_new[i as usize])
            .collect();
        (added, deleted, changed)
    };
    tracing::debug!(
        read_ms,
        total_ms = started.elapsed().as_millis() as u64,
        rest = old_rest.height() + new_rest.height(),
        "classified keys"
    );
    added.sort_unstable();
    deleted.sort_unstable();
    changed.sort_unstable();
    Ok(Classified {
        added,
        deleted,
        changed,
    })
}

/// Reads the given rows (ascending indices) of a Parquet file, only the named columns.
fn read_rows(path: &Path, rows: &[u32], columns: Option<&[&str]>) -> Result<RecordBatch, DiffError> {
    read_rows_as(path, rows, columns, None)
}

/// [`read_rows`], with the text columns other than `views_except` decoded as string views. A
/// shift-sized diff compares every field of most rows: Arrow's `distinct` on plain strings calls
/// `memcmp` once per value (15% of a 1M-row worst case), while on views it compares the length and
/// first bytes held inline, and short values (≤ 12 bytes) whole; decoding to views also copies no
/// text. Worst case 2.0–2.2 s → 1.55–1.8 s measured side by side.
fn read_rows_as(
    path: &Path,
    rows: &[u32],
    columns: Option<&[&str]>,
    views_except: Option<&[&str]>,
) -> Result<RecordBatch, DiffError> {
    let err = read_err(path);
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let options = ArrowReaderOptions::new().with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
    let mut meta = ArrowReaderMetadata::load(&file, options.clone()).map_err(|e| err(e.to_string()))?;
    if let Some(plain) = views_except {
        let fields: Vec<Field> = meta
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 if !plain.contains(&f.name().as_str()) => {
                    f.as_ref().clone().with_data_type(DataType::Utf8View)
                }
                _ => f.as_ref().clone(),
            })
            .collect();
        // The footer just read, with the views as the schema to decode into.
        meta = ArrowReaderMetadata::try_new(
            Arc::clone(meta.metadata()),
            options.with_schema(Arc::new(Schema::new(fields))),
        )
        .map_err(|e| err(e.to_string()))?;
    }
    // Only the row groups holding a wanted row are opened (a chunk of a shift-sized diff lies in
    // two or three of them); rows are numbered within those groups.
    let mut groups = Vec::new();
    let mut ranges = Vec::with_capacity(rows.len());
    let (mut group_start, mut selected) = (0usize, 0usize);
    for (g, group) in meta.metadata().row_groups().iter().enumerate() {
        let group_rows = group.num_rows() as usize;
        let end = group_start + group_rows;
        let from = rows.partition_point(|&r| (r as usize) < group_start);
        let to = rows.partition_point(|&r| (r as usize) < end);
        if from < to {
            groups.push(g);
            let offset = selected;
            ranges.extend(rows[from..to].iter().map(|&r| {
                let at = r as usize - group_start + offset;
                at..at + 1
            }));
            selected += group_rows;
        }
        group_start = end;
    }
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
    let schema = builder.schema().clone();
    let mask = match columns {
        Some(cols) => ProjectionMask::columns(builder.parquet_schema(), cols.iter().copied()),
        None => ProjectionMask::all(),
    };
    let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), selected);
    let reader = builder
        .with_row_groups(groups)
        .with_projection(mask)
        .with_row_selection(selection)
        // Changed rows are scattered (2% of rows means a selected row every ~50): skipping between
        // them beats decoding whole batches and filtering them (the `Auto` choice), 2× at 1M rows.
        .with_row_selection_policy(parquet::arrow::arrow_reader::RowSelectionPolicy::Selectors)
        // One batch for the whole selection: no concatenation copy afterwards.
        .with_batch_size(rows.len().max(1))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().map_err(|e| err(e.to_string()))?;
    if batches.len() == 1 {
        return Ok(batches.pop().expect("one batch"));
    }
    let out_schema = batches.first().map_or_else(
        || {
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .filter(|f| columns.is_none_or(|c| c.contains(&f.name().as_str())))
                .map(|f| f.as_ref().clone())
                .collect();
            Arc::new(Schema::new(fields))
        },
        |b| b.schema(),
    );
    arrow::compute::concat_batches(&out_schema, &batches).map_err(|e| err(e.to_string()))
}

fn text(array: &ArrayRef) -> ArrayRef {
    cast(array, &DataType::Utf8).expect("every snapshot column casts to text")
}

fn col<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("snapshot tables have column `{name}`"))
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
        [old.source.kind.as_str(), new.source.kind.as_str()],
    )
}

/// Child tables a source kind does not fill: comparing them across a change of source would
/// report every row of the other side as deleted or added.
pub fn unsupplied(kind: &str) -> &'static [&'static str] {
    match kind {
        // Successions are on no documented FHIR resource; the bulk CSV files have none either.
        "fhir" | "csv" => &["successors"],
        _ => &[],
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
    sources: [&str; 2],
) -> Result<Diff, DiffError> {
    debug_assert!(TABLE_NAMES.contains(&"organisations"));
    let mut changes = Changes::default();
    let mut not_compared = Vec::new();
    for spec in &SPECS {
        if let Some(kind) = sources.iter().find(|k| unsupplied(k).contains(&spec.table)) {
            // Only worth saying when the other side does supply it.
            if sources.iter().any(|k| !unsupplied(k).contains(&spec.table)) {
                not_compared.push(format!("{}: the {kind} source does not supply them", spec.table));
            }
            continue;
        }
        let old_path = old_dir.file(spec.table);
        let new_path = new_dir.file(spec.table);
        let t = std::time::Instant::now();
        let classified = classify(&old_path, &new_path, spec.key)?;
        if spec.table == "organisations" {
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
            table = spec.table,
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

fn null_strings(n: usize) -> ArrayRef {
    Arc::new(StringArray::from(vec![None::<&str>; n]))
}

fn null_dates(n: usize) -> ArrayRef {
    Arc::new(Date32Array::from(vec![None; n]))
}

fn constant(value: &str, n: usize) -> ArrayRef {
    Arc::new(StringArray::from(vec![Some(value); n]))
}

/// A one-line description of a child row for row-level changes: `RE5:QM7`, `RO197`, …
fn child_label(table: &str, batch: &RecordBatch) -> ArrayRef {
    let s = |name: &str| batch.column_by_name(name).map(text);
    let (a, b) = match table {
        "roles" => (s("role_id"), None),
        "relationships" => (s("rel_type"), s("target_code")),
        _ => (s("type"), s("target_code")),
    };
    let a = a.expect("label column");
    let a = a.as_any().downcast_ref::<StringArray>().expect("text");
    match b {
        None => Arc::new(a.clone()),
        Some(b) => {
            let b = b.as_any().downcast_ref::<StringArray>().expect("text").clone();
            Arc::new(
                a.iter()
                    .zip(b.iter())
                    .map(|(x, y)| Some(format!("{}:{}", x.unwrap_or_default(), y.unwrap_or_default())))
                    .collect::<StringArray>(),
            )
        }
    }
}

/// The change kind of a child-table change.
fn child_kind(table: &str, batch: &RecordBatch, added: bool) -> ArrayRef {
    let n = batch.num_rows();
    match table {
        "relationships" => {
            let types = text(col(batch, "rel_type"));
            let types = types.as_any().downcast_ref::<StringArray>().expect("text");
            Arc::new(
                types
                    .iter()
                    .map(|t| {
                        Some(if t.is_some_and(|t| PARENT_REL_TYPES.contains(&t)) {
                            "reparented"
                        } else {
                            "changed"
                        })
                    })
                    .collect::<StringArray>(),
            )
        }
        "successors" if added => {
            let types = text(col(batch, "type"));
            let types = types.as_any().downcast_ref::<StringArray>().expect("text");
            Arc::new(
                types
                    .iter()
                    .map(|t| Some(if t == Some("Successor") { "succeeded" } else { "changed" }))
                    .collect::<StringArray>(),
            )
        }
        _ => constant("changed", n),
    }
}

fn diff_table(
    spec: &TableSpec,
    old_path: &Path,
    new_path: &Path,
    c: &Classified,
    today: NaiveDate,
    out: &mut Changes,
) -> Result<(), DiffError> {
    let moved = c.added.len() + c.deleted.len() + c.changed.len();
    let chunk_rows = CHUNK_ROWS.with(std::cell::Cell::get);
    if moved > chunk_rows {
        return diff_table_chunked(spec, old_path, new_path, c, today, out, chunk_rows);
    }
    // One pass over each file (the two in parallel): every row the diff needs from it.
    let changed_old: Vec<u32> = c.changed.iter().map(|p| p.0).collect();
    let mut changed_new: Vec<u32> = c.changed.iter().map(|p| p.1).collect();
    changed_new.sort_unstable();
    let old_rows = sorted_union(&c.deleted, &changed_old);
    let new_rows = sorted_union(&c.added, &changed_new);
    let t = std::time::Instant::now();
    let (old, new) = rayon::join(
        || read_rows(old_path, &old_rows, None),
        || read_rows(new_path, &new_rows, None),
    );
    let (old, new) = (old?, new?);
    tracing::debug!(ms = t.elapsed().as_millis() as u64, rows = moved, "read moved rows");
    let pick = |batch: &RecordBatch, from: &[u32], wanted: &[u32]| -> RecordBatch {
        let positions: UInt32Array = wanted
            .iter()
            .map(|r| from.binary_search(r).expect("row was read") as u32)
            .collect();
        arrow::compute::take_record_batch(batch, &positions).expect("in range")
    };
    if !c.added.is_empty() {
        emit_added(spec, &pick(&new, &new_rows, &c.added), out);
    }
    if !c.deleted.is_empty() {
        emit_deleted(spec, &pick(&old, &old_rows, &c.deleted), new_path, out)?;
    }
    if !c.changed.is_empty() {
        let pairs_new: Vec<u32> = c.changed.iter().map(|p| p.1).collect();
        compare(
            spec,
            &pick(&old, &old_rows, &changed_old),
            &pick(&new, &new_rows, &pairs_new),
            today,
            out,
        );
    }
    if spec.table == "organisations" {
        out.org_rows = Some((old, new));
    }
    Ok(())
}

/// Ascending union of two ascending, disjoint index lists.
fn sorted_union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut all = Vec::with_capacity(a.len() + b.len());
    all.extend_from_slice(a);
    all.extend_from_slice(b);
    all.sort_unstable();
    all
}

/// Added rows: every non-null field of an added organisation (so the diff can be applied), one
/// labelled row per added child row.
fn emit_added(spec: &TableSpec, batch: &RecordBatch, out: &mut Changes) {
    let code = col(batch, "code").clone();
    let key = col(batch, spec.key).clone();
    if spec.table == "organisations" {
        let effective = col(batch, "operational_start").clone();
        for field in field_names(batch, spec) {
            let values = text(col(batch, &field));
            let keep = arrow::compute::is_not_null(&values).expect("mask");
            let f = |a: &ArrayRef| filter(a, &keep).expect("same length");
            let n = keep.true_count();
            out.push(
                f(&code),
                spec.table,
                f(&key),
                Some(&field),
                null_strings(n),
                f(&values),
                constant("added", n),
                f(&effective),
                None,
            );
        }
    } else {
        let n = batch.num_rows();
        let kind = child_kind(spec.table, batch, true);
        out.push(
            code,
            spec.table,
            key,
            None,
            null_strings(n),
            child_label(spec.table, batch),
            kind,
            null_dates(n),
            qualifier_of(spec.table, batch),
        );
    }
}

fn emit_deleted(spec: &TableSpec, batch: &RecordBatch, new_path: &Path, out: &mut Changes) -> Result<(), DiffError> {
    let is_org = spec.table == "organisations";
    let n = batch.num_rows();
    let kind = if is_org {
        constant("deleted", n)
    } else {
        child_kind(spec.table, batch, false)
    };
    let old = if is_org {
        null_strings(n)
    } else {
        child_label(spec.table, batch)
    };
    // A deletion ODS announced carries its reason; a code that merely vanished has none.
    let new = if is_org {
        deletion_reasons(new_path, col(batch, "code"))?
    } else {
        null_strings(n)
    };
    out.push(
        col(batch, "code").clone(),
        spec.table,
        col(batch, spec.key).clone(),
        None,
        old,
        new,
        kind,
        null_dates(n),
        qualifier_of(spec.table, batch),
    );
    Ok(())
}

/// The relationship type of each row of a relationships batch (what the shift guard counts
/// relationship changes by); `None` for other tables.
fn qualifier_of(table: &str, batch: &RecordBatch) -> Option<ArrayRef> {
    (table == "relationships").then(|| col(batch, "rel_type").clone())
}

/// The same diff for a shift-sized change (most rows moved): changed rows are read in chunks so
/// memory stays bounded, and nothing is kept for the merge.
fn diff_table_chunked(
    spec: &TableSpec,
    old_path: &Path,
    new_path: &Path,
    c: &Classified,
    today: NaiveDate,
    out: &mut Changes,
    chunk_rows: usize,
) -> Result<(), DiffError> {
    if !c.added.is_empty() {
        emit_added(spec, &read_rows(new_path, &c.added, None)?, out);
    }
    if !c.deleted.is_empty() {
        emit_deleted(spec, &read_rows(old_path, &c.deleted, None)?, new_path, out)?;
    }
    // Reading chunk k + 1 overlaps comparing chunk k (at most two chunks in memory).
    let read = |chunk: &[(u32, u32)]| -> Result<(RecordBatch, RecordBatch), DiffError> {
        let t = std::time::Instant::now();
        let old_rows: Vec<u32> = chunk.iter().map(|p| p.0).collect();
        let mut new_rows: Vec<u32> = chunk.iter().map(|p| p.1).collect();
        // Pairs are in old-file order; read new rows ascending, then put them in pair order.
        let order: UInt32Array = {
            let mut positions: Vec<u32> = (0..new_rows.len() as u32).collect();
            positions.sort_by_key(|&i| new_rows[i as usize]);
            let mut inverse = vec![0u32; positions.len()];
            for (sorted_pos, &pair_pos) in positions.iter().enumerate() {
                inverse[pair_pos as usize] = sorted_pos as u32;
            }
            new_rows.sort_unstable();
            UInt32Array::from(inverse)
        };
        let plain = ["code", spec.key];
        let (old, new) = rayon::join(
            || read_rows_as(old_path, &old_rows, None, Some(&plain)),
            || read_rows_as(new_path, &new_rows, None, Some(&plain)),
        );
        let (old, new) = (old?, new?);
        // Both files are sorted by key, so pairs are usually in new-file order too: no reordering.
        let in_order = order.values().iter().enumerate().all(|(i, &p)| p as usize == i);
        let new = if in_order {
            new
        } else {
            arrow::compute::take_record_batch(&new, &order).expect("in range")
        };
        tracing::debug!(ms = t.elapsed().as_millis() as u64, rows = chunk.len(), "read chunk");
        Ok((old, new))
    };
    let mut chunks = c.changed.chunks(chunk_rows);
    let mut current = chunks.next().map(read).transpose()?;
    while let Some((old, new)) = current.take() {
        let upcoming = chunks.next();
        let (next, ()) = rayon::join(
            || upcoming.map(read).transpose(),
            || {
                let t = std::time::Instant::now();
                compare(spec, &old, &new, today, out);
                tracing::debug!(ms = t.elapsed().as_millis() as u64, "compared chunk");
            },
        );
        current = next?;
    }
    Ok(())
}

/// For deleted organisations: `deleted from ODS: <reason> (reason <code>)` where the new
/// snapshot's `deletions` table has the code, else null.
fn deletion_reasons(new_orgs: &Path, codes: &ArrayRef) -> Result<ArrayRef, DiffError> {
    let path = new_orgs.with_file_name("deletions.parquet");
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    if path.exists() {
        let all = {
            let file = std::fs::File::open(&path).map_err(|e| read_err(&path)(e.to_string()))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.build())
                .map_err(|e| read_err(&path)(e.to_string()))?;
            reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| read_err(&path)(e.to_string()))?
        };
        for b in all {
            let s = |n: &str| {
                text(col(&b, n))
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("text")
                    .clone()
            };
            let (code, reason, reason_code) = (s("code"), s("reason"), s("reason_code"));
            for i in 0..b.num_rows() {
                let why = if reason.is_valid(i) {
                    reason.value(i)
                } else {
                    "no reason given"
                };
                let number = if reason_code.is_valid(i) {
                    format!(" (reason {})", reason_code.value(i))
                } else {
                    String::new()
                };
                reasons.insert(code.value(i).to_owned(), format!("deleted from ODS: {why}{number}"));
            }
        }
    }
    let codes = text(codes);
    let codes = codes.as_any().downcast_ref::<StringArray>().expect("text");
    Ok(Arc::new(
        codes
            .iter()
            .map(|c| c.and_then(|c| reasons.get(c).cloned()))
            .collect::<StringArray>(),
    ))
}

/// The fields a diff compares: everything but the key, the code and the bookkeeping columns.
fn field_names(batch: &RecordBatch, spec: &TableSpec) -> Vec<String> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != "code" && n != spec.key && n != "row_hash" && n != "row_key")
        .collect()
}

/// One field's changes within a batch of changed rows.
struct FieldChanges {
    field: String,
    qualifier: Option<ArrayRef>,
    mask: BooleanArray,
    code: ArrayRef,
    key: ArrayRef,
    old_values: ArrayRef,
    new_values: ArrayRef,
    kind: ArrayRef,
    effective: ArrayRef,
}

fn compare(spec: &TableSpec, old: &RecordBatch, new: &RecordBatch, today: NaiveDate, out: &mut Changes) {
    use rayon::prelude::*;
    let code = col(new, "code");
    let key = col(new, spec.key);
    let is_org = spec.table == "organisations";
    let new_end = if is_org {
        Some(col(new, "operational_end").clone())
    } else {
        None
    };
    // Fields are independent: compared on every core, then pushed in column order so the output
    // does not depend on scheduling.
    let (fields, one_sided): (Vec<String>, Vec<String>) = field_names(new, spec)
        .into_iter()
        .partition(|f| old.schema().index_of(f).is_ok());
    out.one_sided
        .extend(one_sided.into_iter().map(|f| format!("{}.{f}", spec.table)));
    let found: Vec<FieldChanges> = fields
        .into_par_iter()
        .filter_map(|field| {
            let (a, b) = (col(old, &field), col(new, &field));
            let mask: BooleanArray = distinct(a, b).expect("same types");
            let n = mask.true_count();
            if n == 0 {
                return None;
            }
            let f = |x: &ArrayRef| filter(x, &mask).expect("same length");
            let (old_values, new_values) = (text(&f(a)), text(&f(b)));
            let qualifier = (spec.table == "relationships").then(|| f(col(new, "rel_type")));
            let (kind, effective): (ArrayRef, ArrayRef) = if is_org {
                org_kind(&field, &old_values, &new_values, &f(new_end.as_ref().expect("org")))
            } else {
                let changed = filter_record_batch(new, &mask);
                (child_kind(spec.table, &changed, false), null_dates(n))
            };
            Some(FieldChanges {
                qualifier,
                code: f(code),
                key: f(key),
                field,
                mask,
                old_values,
                new_values,
                kind,
                effective,
            })
        })
        .collect();
    for c in found {
        count_field_changes(spec.table, &c.field, new, &c.mask, &mut out.shift);
        out.push(
            c.code,
            spec.table,
            c.key,
            Some(&c.field),
            c.old_values,
            c.new_values,
            c.kind,
            c.effective,
            c.qualifier,
        );
    }
    let _ = today;
}

/// Counts changed values per field for the shift guard; relationships per relationship type.
fn count_field_changes(table: &str, field: &str, new: &RecordBatch, mask: &BooleanArray, shift: &mut ShiftStats) {
    if table == "relationships" {
        let types = text(&filter(col(new, "rel_type"), mask).expect("same length"));
        let types = types.as_any().downcast_ref::<StringArray>().expect("text");
        for t in types.iter().flatten() {
            *shift.field_changes.entry(format!("{table}.{field}[{t}]")).or_default() += 1;
        }
    } else if !METADATA_FIELDS.contains(&field) {
        *shift.field_changes.entry(format!("{table}.{field}")).or_default() += mask.true_count() as u64;
    }
}

fn filter_record_batch(batch: &RecordBatch, mask: &BooleanArray) -> RecordBatch {
    arrow::compute::filter_record_batch(batch, mask).expect("same length")
}

/// Kind and effective date of an organisation field change.
fn org_kind(field: &str, old: &ArrayRef, new: &ArrayRef, new_end: &ArrayRef) -> (ArrayRef, ArrayRef) {
    let old = old.as_any().downcast_ref::<StringArray>().expect("text");
    let new = new.as_any().downcast_ref::<StringArray>().expect("text");
    let n = new.len();
    let per_row = |kind: &dyn Fn(Option<&str>, Option<&str>) -> &'static str| -> ArrayRef {
        Arc::new(
            old.iter()
                .zip(new.iter())
                .map(|(o, v)| Some(kind(o, v)))
                .collect::<StringArray>(),
        )
    };
    let kinds: ArrayRef = match field {
        "name" => constant("renamed", n),
        "parent_code" => constant("reparented", n),
        "status" => per_row(&|o, v| match (o, v) {
            (_, Some("Inactive")) => "closed",
            (Some("Inactive"), _) => "reopened",
            _ => "changed",
        }),
        // The finer status (Active, Dormant, Proposed, Closed): a move between the open states
        // (a practice going dormant) is `changed`, with its true old and new values.
        "status_detail" => per_row(&|o, v| match (o, v) {
            (_, Some("Closed")) => "closed",
            (Some("Closed"), _) => "reopened",
            (Some("Proposed"), _) => "opened",
            _ => "changed",
        }),
        // A flag about the release, not the organisation (see `Organisation::amended_record`).
        "amended_record" => constant("metadata", n),
        "operational_end" => per_row(&|_, v| if v.is_some() { "closed" } else { "reopened" }),
        _ => constant("changed", n),
    };
    // A close takes effect on the (new) operational end date, which may lie in the future.
    let effective: ArrayRef = match field {
        "status" | "status_detail" | "operational_end" => new_end.clone(),
        _ => null_dates(n),
    };
    (kinds, effective)
}

fn finish(mut changes: Changes, from: u64, to: u64, today: NaiveDate) -> Result<Diff, DiffError> {
    let org_rows = changes.org_rows.take();
    let schema = changes_schema();
    let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type().clone()).collect();
    let n: usize = changes.chunks.iter().map(|c| c[0].len()).sum();
    let column = |i: usize| -> ArrayRef {
        let parts: Vec<&dyn Array> = changes.chunks.iter().map(|c| c[i].as_ref()).collect();
        if parts.is_empty() {
            arrow::array::new_empty_array(if i == 8 { &DataType::Utf8 } else { &types[i] })
        } else {
            concat(&parts).expect("same types")
        }
    };
    let strings = |a: ArrayRef| a.as_any().downcast_ref::<StringArray>().expect("text").clone();
    let (code, table, field) = (strings(column(0)), strings(column(1)), strings(column(3)));
    let (old, new, kind, qualifier) = (
        strings(column(4)),
        strings(column(5)),
        strings(column(6)),
        strings(column(8)),
    );
    let rows = kinds::Rows {
        code: &code,
        table: &table,
        field: &field,
        old: &old,
        new: &new,
        kind: &kind,
        qualifier: &qualifier,
    };
    let kind = kinds::relabel(&rows);
    let (recodings, events) = kinds::recodings(&rows);
    let effective = column(7);
    let effective = effective.as_any().downcast_ref::<Date32Array>().expect("dates").clone();
    let today_days = (today - NaiveDate::from_ymd_opt(1970, 1, 1).expect("date")).num_days() as i32;
    let future: BooleanArray = effective
        .iter()
        .map(|d| Some(d.is_some_and(|d| d > today_days)))
        .collect();
    // The qualifier rides along as a last column through the sort, then leaves the table.
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("qualifier", DataType::Utf8, true));
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        vec![
            Arc::new(code),
            Arc::new(table),
            column(2),
            Arc::new(field),
            Arc::new(old),
            Arc::new(new),
            kind,
            Arc::new(effective),
            Arc::new(future),
            Arc::new(BooleanArray::from(vec![false; n])),
            Arc::new(UInt32Array::from(vec![from as u32; n])),
            Arc::new(UInt32Array::from(vec![to as u32; n])),
            events,
            Arc::new(qualifier),
        ],
    )
    .expect("columns match the schema");
    let t = std::time::Instant::now();
    let mut batch = sort_changes(&batch);
    let qualifiers = batch.remove_column(batch.num_columns() - 1);
    let batch = RecordBatch::try_new(schema, batch.columns().to_vec()).expect("columns match the schema");
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        rows = batch.num_rows(),
        "sorted changes"
    );
    let mut summary = summarise(&batch, &changes.chunks, from, to);
    summary.shift = changes.shift;
    summary.recodings = recodings;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "summarised");
    Ok(Diff {
        changes: batch,
        summary,
        org_rows: org_rows.map(|(old, new)| ChangedRows {
            from_version: from,
            to_version: to,
            new,
            old,
        }),
        qualifiers,
    })
}

/// Sorted by code, then table, then key and field in the order they were produced: same inputs,
/// same bytes.
fn sort_changes(batch: &RecordBatch) -> RecordBatch {
    use rayon::prelude::*;
    // Chunks of changes are laid out one after another (tables in SPECS order; added, deleted,
    // then changed fields in column order), each in key order. A stable sort by code keeps that
    // order per organisation. Most chunks are already sorted runs, which the merge sort finds, and
    // it runs on every core; so does the gather of each column.
    let codes = col(batch, "code").as_any().downcast_ref::<StringArray>().expect("text");
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.par_sort_by(|&a, &b| codes.value(a as usize).cmp(codes.value(b as usize)));
    let indices = UInt32Array::from(order);
    let columns: Vec<ArrayRef> = batch
        .columns()
        .par_iter()
        .map(|c| arrow::compute::take(c, &indices, None).expect("in range"))
        .collect();
    RecordBatch::try_new(batch.schema(), columns).expect("same shape")
}

fn summarise(batch: &RecordBatch, chunks: &[[ArrayRef; 9]], from: u64, to: u64) -> DiffSummary {
    // Per field: each chunk holds one (table, field).
    let mut by_field: BTreeMap<String, u64> = BTreeMap::new();
    for chunk in chunks {
        let label = |a: &ArrayRef| {
            let a = a.as_any().downcast_ref::<StringArray>().expect("text");
            if a.is_valid(0) {
                a.value(0).to_owned()
            } else {
                "*".to_owned()
            }
        };
        *by_field
            .entry(format!("{}.{}", label(&chunk[1]), label(&chunk[3])))
            .or_default() += chunk[0].len() as u64;
    }
    // Per kind, distinct organisations: rows are sorted by code, so one pass with the set of
    // kinds seen for the current code (a bit per kind) counts each (kind, code) once.
    let s = |name: &str| {
        col(batch, name)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("text")
            .clone()
    };
    let (code, kind) = (s("code"), s("change_kind"));
    let future = col(batch, "future_dated")
        .as_any()
        .downcast_ref::<BooleanArray>()
        .expect("bool")
        .clone();
    let mut kind_names: Vec<&str> = Vec::new();
    let mut kind_counts: Vec<u64> = Vec::new();
    let (mut seen, mut future_seen, mut future_dated) = (0u64, false, 0u64);
    for i in 0..batch.num_rows() {
        let c = code.value(i);
        if i == 0 || code.value(i - 1) != c {
            seen = 0;
            future_seen = false;
        }
        let k = kind.value(i);
        let bit = match kind_names.iter().position(|n| *n == k) {
            Some(p) => p,
            None => {
                kind_names.push(k);
                kind_counts.push(0);
                kind_names.len() - 1
            }
        };
        if seen & (1 << bit) == 0 {
            seen |= 1 << bit;
            kind_counts[bit] += 1;
        }
        if future.value(i) && !future_seen {
            future_seen = true;
            future_dated += 1;
        }
    }
    DiffSummary {
        from_version: from,
        to_version: to,
        changes: batch.num_rows() as u64,
        by_kind: kind_names
            .into_iter()
            .zip(kind_counts)
            .map(|(k, n)| (k.to_owned(), n))
            .collect(),
        by_field,
        future_dated,
        by_kind_publication_shift: BTreeMap::new(),
        shift: ShiftStats::default(),
        recodings: Vec::new(),
        not_compared: Vec::new(),
    }
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

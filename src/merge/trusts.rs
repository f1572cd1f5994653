//! The trust table's rows that this merge does not decide again (almost all of them on a nightly
//! run) go from the previous version's `trusts.parquet` to the new one without passing through
//! SQL: [`split_previous`] reads the previous file once (row groups in parallel), hands the rows of
//! the touched organisations to DuckDB (table `prev_touched_rows`, for the rules) and keeps the
//! rest; [`trust_rows`] merges those, already in code order, with the rows the SQL decided (view
//! `decided_trusts`, ordered by code), and [`Ordered::write`] encodes the columns of each row group
//! in parallel.
//!
//! Why not `COPY … ORDER BY code` in DuckDB: at 1M rows that re-sort and single-file write took
//! ~1.3 s of a 2.7 s merge, for rows that did not change. Which rows stay and what their values
//! are is still decided by the SQL alone; this module only moves rows.

use super::{MergeError, sql_err};
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, new_null_array};
use arrow::compute::{cast, filter_record_batch, interleave};
use arrow::datatypes::SchemaRef;
use duckdb::Connection;
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Rows per row group of the written table (as in snapshots: one row group per DuckDB thread, and
/// min/max statistics on the sorted code let readers skip row groups).
const ROW_GROUP_ROWS: usize = 131_072;

/// What the trust table holds, for the merge report.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub rows: u64,
    pub not_in_ods: u64,
}

/// The shape of the trust table this merge writes (DuckDB's `prev_trusts_shape`).
pub fn shape(conn: &Connection) -> Result<SchemaRef, MergeError> {
    let mut stmt = conn
        .prepare("SELECT * FROM prev_trusts_shape LIMIT 0")
        .map_err(sql_err("trust table shape"))?;
    let arrow = stmt.query_arrow([]).map_err(sql_err("trust table shape"))?;
    Ok(arrow.get_schema())
}

/// Reads the previous trust table (if any), loads the rows of `touched` codes into the DuckDB
/// table `prev_touched_rows`, and returns the other rows, in file order, in the shape `shape`.
pub fn split_previous(
    conn: &Connection,
    previous: Option<&Path>,
    shape: &SchemaRef,
) -> Result<Vec<RecordBatch>, MergeError> {
    conn.execute_batch("CREATE TEMP TABLE prev_touched_rows AS SELECT * FROM prev_trusts_shape LIMIT 0;")
        .map_err(sql_err("previous trust table"))?;
    let Some(path) = previous else {
        return Ok(Vec::new());
    };
    let touched: HashSet<String> = {
        let mut stmt = conn
            .prepare("SELECT code FROM touched")
            .map_err(sql_err("previous trust table"))?;
        stmt.query_map([], |r| r.get::<_, String>(0))
            .map_err(sql_err("previous trust table"))?
            .collect::<Result<_, _>>()
            .map_err(sql_err("previous trust table"))?
    };
    let input_err = |message: String| MergeError::Input {
        path: path.to_owned(),
        message: format!(
            "{message}\nHelp: the previous merged version is unreadable; remove that version folder to rebuild the trust table from ODS"
        ),
    };
    let file = std::fs::File::open(path).map_err(|e| input_err(e.to_string()))?;
    let meta = ArrowReaderMetadata::load(&file, Default::default()).map_err(|e| input_err(e.to_string()))?;
    let groups: Vec<(Vec<RecordBatch>, Vec<RecordBatch>)> = (0..meta.metadata().num_row_groups())
        .into_par_iter()
        .map(|group| -> Result<_, MergeError> {
            let file = std::fs::File::open(path).map_err(|e| input_err(e.to_string()))?;
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
                .with_row_groups(vec![group])
                .with_batch_size(ROW_GROUP_ROWS)
                .build()
                .map_err(|e| input_err(e.to_string()))?;
            let (mut kept, mut touched_rows) = (Vec::new(), Vec::new());
            for batch in reader {
                let batch = conform(&batch.map_err(|e| input_err(e.to_string()))?, shape)
                    .map_err(|e| input_err(e.to_string()))?;
                let codes = code_column(&batch).map_err(input_err)?;
                let is_touched: BooleanArray = codes
                    .iter()
                    .map(|c| Some(c.is_some_and(|c| touched.contains(c))))
                    .collect();
                let not_touched = arrow::compute::not(&is_touched).expect("same length");
                touched_rows.push(filter_record_batch(&batch, &is_touched).expect("same length"));
                kept.push(filter_record_batch(&batch, &not_touched).expect("same length"));
            }
            Ok((kept, touched_rows))
        })
        .collect::<Result<_, _>>()?;
    let mut appender = conn
        .appender("prev_touched_rows")
        .map_err(sql_err("previous trust table"))?;
    let mut kept = Vec::with_capacity(groups.len());
    for (k, t) in groups {
        for batch in t.into_iter().filter(|b| b.num_rows() > 0) {
            appender
                .append_record_batch(batch)
                .map_err(sql_err("previous trust table"))?;
        }
        kept.extend(k.into_iter().filter(|b| b.num_rows() > 0));
    }
    appender.flush().map_err(sql_err("previous trust table"))?;
    Ok(kept)
}

/// Casts a batch of the previous table to this merge's shape by column name: a column added to the
/// pipeline since reads as NULL, a column dropped since is left out.
fn conform(batch: &RecordBatch, shape: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = shape
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(Arc::clone(c)),
            Some(c) => cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(Arc::clone(shape), columns)
}

fn code_column(batch: &RecordBatch) -> Result<&StringArray, String> {
    batch
        .column_by_name("code")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| "the trust table has no text column `code`".to_owned())
}

/// Rows ready to encode: `order` picks (batch, row) from `batches`.
pub struct Ordered {
    batches: Vec<RecordBatch>,
    order: Vec<(usize, usize)>,
    schema: SchemaRef,
}

impl Ordered {
    /// Encodes the rows into a Parquet file (see [`encode`]).
    pub fn write(&self, path: &Path) -> Result<(), MergeError> {
        encode(&self.batches, &self.order, &self.schema, path)
    }
}

/// The new trust table's rows: the kept rows of the previous table and the rows DuckDB decided
/// (`decided_trusts`), merged in code order.
pub fn trust_rows(
    conn: &Connection,
    kept: Vec<RecordBatch>,
    shape: &SchemaRef,
) -> Result<(Ordered, Written), MergeError> {
    let decided: Vec<RecordBatch> = {
        let mut stmt = conn
            .prepare("SELECT * FROM decided_trusts ORDER BY code")
            .map_err(sql_err("build_trusts.sql"))?;
        let arrow = stmt.query_arrow([]).map_err(sql_err("build_trusts.sql"))?;
        arrow
            .map(|b| conform(&b, shape))
            .collect::<Result<_, _>>()
            .map_err(|e| MergeError::Sql {
                step: "build_trusts.sql".into(),
                message: e.to_string(),
            })?
    };
    let mut batches: Vec<RecordBatch> = kept.into_iter().filter(|b| b.num_rows() > 0).collect();
    let n_kept = batches.len();
    batches.extend(decided.into_iter().filter(|b| b.num_rows() > 0));
    let order = merge_order(&batches, n_kept)?;
    let not_in_ods = match shape.index_of("not_in_ods") {
        Ok(i) => batches
            .iter()
            .filter_map(|b| b.column(i).as_any().downcast_ref::<BooleanArray>())
            .map(|c| c.true_count() as u64)
            .sum(),
        Err(_) => 0,
    };
    let written = Written {
        rows: order.len() as u64,
        not_in_ods,
    };
    Ok((
        Ordered {
            batches,
            order,
            schema: Arc::clone(shape),
        },
        written,
    ))
}

/// The rows of a query, in the order it gives them.
pub fn query_rows(conn: &Connection, step: &str, sql: &str) -> Result<Ordered, MergeError> {
    let mut stmt = conn.prepare(sql).map_err(sql_err(step))?;
    let arrow = stmt.query_arrow([]).map_err(sql_err(step))?;
    let schema = arrow.get_schema();
    let batches: Vec<RecordBatch> = arrow.filter(|b| b.num_rows() > 0).collect();
    let order: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
        .collect();
    Ok(Ordered { batches, order, schema })
}

/// Encodes the rows `order` picks from `batches` into a Parquet file: row groups of
/// [`ROW_GROUP_ROWS`], the columns of each encoded in parallel, zstd level 1 (LZ4 was measured:
/// 1M-row merge ~0.05 s faster, files 56 MB instead of 34 MB; a version is kept per run, so zstd).
fn encode(
    batches: &[RecordBatch],
    order: &[(usize, usize)],
    schema: &SchemaRef,
    path: &Path,
) -> Result<(), MergeError> {
    let io_err = |e: String| MergeError::Input {
        path: path.to_owned(),
        message: e,
    };
    let mut props =
        WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level")));
    for (i, f) in schema.fields().iter().enumerate() {
        if mostly_distinct(batches, order, i) {
            props = props.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), false);
        }
    }
    let props = Arc::new(props.build());
    let parquet_schema = ArrowSchemaConverter::new()
        .convert(schema)
        .map_err(|e| io_err(e.to_string()))?;
    let file = std::fs::File::create(path).map_err(|e| io_err(e.to_string()))?;
    let mut writer =
        SerializedFileWriter::new(file, parquet_schema.root_schema_ptr(), props).map_err(|e| io_err(e.to_string()))?;
    let factory = ArrowRowGroupWriterFactory::new(&writer, Arc::clone(schema));
    for (group, rows) in order.chunks(ROW_GROUP_ROWS).enumerate() {
        let writers = factory
            .create_column_writers(group)
            .map_err(|e| io_err(e.to_string()))?;
        let encoded: Vec<ArrowColumnChunk> = writers
            .into_par_iter()
            .enumerate()
            .map(|(i, mut writer)| -> Result<_, String> {
                let sources: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
                let column = interleave(&sources, rows).map_err(|e| e.to_string())?;
                for leaf in compute_leaves(schema.field(i), &column).map_err(|e| e.to_string())? {
                    writer.write(&leaf).map_err(|e| e.to_string())?;
                }
                writer.close().map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()
            .map_err(io_err)?;
        let mut row_group = writer.next_row_group().map_err(|e| io_err(e.to_string()))?;
        for chunk in encoded {
            chunk
                .append_to_row_group(&mut row_group)
                .map_err(|e| io_err(e.to_string()))?;
        }
        row_group.close().map_err(|e| io_err(e.to_string()))?;
    }
    writer.close().map_err(|e| io_err(e.to_string()))?;
    Ok(())
}

/// Whether a text column is mostly distinct values (codes, names, addresses), judged on an even
/// sample of up to 4,096 rows. Dictionary encoding is left off for those: it would hash every
/// value and give up once the dictionary page is full, for no smaller file.
fn mostly_distinct(batches: &[RecordBatch], order: &[(usize, usize)], col: usize) -> bool {
    let step = (order.len() / 4096).max(1);
    let mut seen = HashSet::new();
    let mut sampled = 0usize;
    for &(b, r) in order.iter().step_by(step) {
        let Some(text) = batches[b].column(col).as_any().downcast_ref::<StringArray>() else {
            return false;
        };
        if text.is_valid(r) {
            sampled += 1;
            seen.insert(text.value(r));
        }
    }
    sampled >= 64 && seen.len() * 2 > sampled
}

/// (batch, row) of every output row in code order. The kept rows (`batches[..n_kept]`) come from
/// a table written in code order and the decided ones are ordered by the query, so each decided
/// row is placed by binary search; codes are unique across the two (the kept rows exclude every
/// touched code).
fn merge_order(batches: &[RecordBatch], n_kept: usize) -> Result<Vec<(usize, usize)>, MergeError> {
    let codes = batches
        .iter()
        .map(code_column)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|message| MergeError::Sql {
            step: "build_trusts.sql".into(),
            message,
        })?;
    let rows = |range: std::ops::Range<usize>| -> Vec<(usize, usize)> {
        range
            .flat_map(|b| (0..batches[b].num_rows()).map(move |r| (b, r)))
            .collect()
    };
    let code = |(b, r): (usize, usize)| codes[b].value(r);
    let mut kept = rows(0..n_kept);
    let decided = rows(n_kept..batches.len());
    // Guard, not expected: a previous table out of order (e.g. written by another tool) is sorted.
    if !kept.is_sorted_by(|a, b| code(*a) <= code(*b)) {
        kept.sort_by(|a, b| code(*a).cmp(code(*b)));
    }
    // Few decided rows among many kept ones: find each one's place by binary search.
    let mut out = Vec::with_capacity(kept.len() + decided.len());
    let mut i = 0;
    for &d in &decided {
        let at = i + kept[i..].partition_point(|k| code(*k) < code(d));
        out.extend_from_slice(&kept[i..at]);
        out.push(d);
        i = at;
    }
    out.extend_from_slice(&kept[i..]);
    Ok(out)
}

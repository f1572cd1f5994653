//! The trust table's rows that this merge does not decide again (almost all of them on a nightly
//! run) go from the previous version's `trusts.parquet` to the new one without passing through
//! SQL: [`read_previous`] starts reading the previous file (row groups in parallel) while DuckDB
//! loads the other inputs, [`split_previous`] hands the rows of the touched organisations to DuckDB
//! (table `prev_touched_rows`, for the rules) and keeps the others as runs of rows between them;
//! [`trust_rows`] merges those runs, already in code order, with the rows the SQL decided (view
//! `decided_trusts`, ordered by code), and [`Ordered::write`] assembles each row group run by run
//! and encodes its columns in parallel.
//!
//! Why not `COPY … ORDER BY code` in DuckDB: at 1M rows that re-sort and single-file write took
//! ~1.3 s of a 2.7 s merge, for rows that did not change. Which rows stay and what their values
//! are is still decided by the SQL alone; this module only moves rows.

use super::{MergeError, sql_err};
use arrow::array::{
    Array, ArrayData, ArrayRef, BooleanArray, MutableArrayData, RecordBatch, StringArray, UInt32Array, make_array,
    new_null_array,
};
use arrow::compute::{cast, take_record_batch};
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
use std::path::{Path, PathBuf};
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

/// A stretch of consecutive rows of one batch, the unit in which rows are moved: kept rows come
/// in long runs between touched ones, so they are copied with a few memcpys instead of row by row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub batch: usize,
    pub start: usize,
    pub len: usize,
}

/// Appends `run` to `runs`, joining it to the last one when it continues it.
fn push_run(runs: &mut Vec<Run>, run: Run) {
    if run.len == 0 {
        return;
    }
    match runs.last_mut() {
        Some(last) if last.batch == run.batch && last.start + last.len == run.start => last.len += run.len,
        _ => runs.push(run),
    }
}

/// The previous trust table's rows this merge keeps: whole decoded batches (nothing is copied to
/// drop the touched rows) and the runs of rows between the touched ones, in code order.
pub struct Kept {
    batches: Vec<RecordBatch>,
    runs: Vec<Run>,
}

/// The first index in `0..n` for which `less(i)` is false (`less` is true on a prefix).
fn lower_bound(n: usize, less: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if less(mid) { lo = mid + 1 } else { hi = mid }
    }
    lo
}

/// Rows of `codes` whose code is in `touched` (sorted), ascending. The previous table is written
/// in code order, so each touched code is found by binary search; a batch out of order (a file
/// written by another tool) is checked row by row.
fn touched_positions(codes: &StringArray, touched: &[String]) -> Vec<u32> {
    let n = codes.len();
    if n == 0 || touched.is_empty() {
        return Vec::new();
    }
    let sorted = codes.null_count() == 0 && (1..n).all(|i| codes.value(i - 1) <= codes.value(i));
    if !sorted {
        let set: HashSet<&str> = touched.iter().map(String::as_str).collect();
        return (0..n)
            .filter(|&i| codes.is_valid(i) && set.contains(codes.value(i)))
            .map(|i| i as u32)
            .collect();
    }
    let (first, last) = (codes.value(0), codes.value(n - 1));
    let lo = touched.partition_point(|t| t.as_str() < first);
    let hi = touched.partition_point(|t| t.as_str() <= last);
    let mut out = Vec::with_capacity(hi - lo);
    let mut from = 0;
    for t in &touched[lo..hi] {
        let at = from + lower_bound(n - from, |i| codes.value(from + i) < t.as_str());
        if at < n && codes.value(at) == t {
            out.push(at as u32);
        }
        from = at;
    }
    out
}

/// The previous trust table, being read on other threads while DuckDB loads the inputs and
/// finds the touched organisations (reading it needs nothing from them).
pub struct PreviousRead {
    path: PathBuf,
    rows: std::thread::JoinHandle<Result<Vec<RecordBatch>, MergeError>>,
}

fn unreadable(path: &Path, message: String) -> MergeError {
    MergeError::Input {
        path: path.to_owned(),
        message: format!(
            "{message}\nHelp: the previous merged version is unreadable; remove that version folder to rebuild the trust table from ODS"
        ),
    }
}

/// Starts reading the previous trust table (row groups in parallel), in the shape `shape`.
pub fn read_previous(path: &Path, shape: &SchemaRef) -> PreviousRead {
    let (path, shape) = (path.to_owned(), Arc::clone(shape));
    let reading = path.clone();
    let rows = std::thread::spawn(move || {
        let path = reading.as_path();
        let input_err = |message: String| unreadable(path, message);
        let file = std::fs::File::open(path).map_err(|e| input_err(e.to_string()))?;
        let meta = ArrowReaderMetadata::load(&file, Default::default()).map_err(|e| input_err(e.to_string()))?;
        let groups: Vec<Vec<RecordBatch>> = (0..meta.metadata().num_row_groups())
            .into_par_iter()
            .map(|group| -> Result<_, MergeError> {
                let file = std::fs::File::open(path).map_err(|e| input_err(e.to_string()))?;
                ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
                    .with_row_groups(vec![group])
                    .with_batch_size(ROW_GROUP_ROWS)
                    .build()
                    .map_err(|e| input_err(e.to_string()))?
                    .map(|batch| {
                        conform(&batch.map_err(|e| input_err(e.to_string()))?, &shape)
                            .map_err(|e| input_err(e.to_string()))
                    })
                    .collect()
            })
            .collect::<Result<_, _>>()?;
        Ok(groups.into_iter().flatten().filter(|b| b.num_rows() > 0).collect())
    });
    PreviousRead { path, rows }
}

/// Loads the rows of the previous trust table (if any) whose code is in the DuckDB table `touched`
/// into the table `prev_touched_rows`, and returns the other rows, in code order.
pub fn split_previous(conn: &Connection, previous: Option<PreviousRead>) -> Result<Kept, MergeError> {
    conn.execute_batch("CREATE TEMP TABLE prev_touched_rows AS SELECT * FROM prev_trusts_shape LIMIT 0;")
        .map_err(sql_err("previous trust table"))?;
    let mut kept = Kept {
        batches: Vec::new(),
        runs: Vec::new(),
    };
    let Some(previous) = previous else {
        return Ok(kept);
    };
    let mut touched: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT code FROM touched")
            .map_err(sql_err("previous trust table"))?;
        stmt.query_map([], |r| r.get::<_, String>(0))
            .map_err(sql_err("previous trust table"))?
            .collect::<Result<_, _>>()
            .map_err(sql_err("previous trust table"))?
    };
    // Rust's byte order, which the binary searches below and in `merge_runs` rely on.
    touched.sort_unstable();
    let path = previous.path.as_path();
    let batches = previous
        .rows
        .join()
        .map_err(|_| unreadable(path, "reading the file failed".into()))??;
    let positions: Vec<Vec<u32>> = batches
        .par_iter()
        .map(|batch| Ok(touched_positions(code_column(batch)?, &touched)))
        .collect::<Result<_, String>>()
        .map_err(|e| unreadable(path, e))?;
    let mut appender = conn
        .appender("prev_touched_rows")
        .map_err(sql_err("previous trust table"))?;
    for (batch, positions) in batches.into_iter().zip(positions) {
        if !positions.is_empty() {
            let rows = take_record_batch(&batch, &UInt32Array::from(positions.clone()))
                .map_err(|e| unreadable(path, e.to_string()))?;
            appender
                .append_record_batch(rows)
                .map_err(sql_err("previous trust table"))?;
        }
        let b = kept.batches.len();
        let mut start = 0;
        for p in positions.into_iter().map(|p| p as usize).chain([batch.num_rows()]) {
            push_run(
                &mut kept.runs,
                Run {
                    batch: b,
                    start,
                    len: p - start,
                },
            );
            start = p + 1;
        }
        kept.batches.push(batch);
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

/// Rows ready to encode: `runs` pick them from `batches`, in output order.
pub struct Ordered {
    batches: Vec<RecordBatch>,
    runs: Vec<Run>,
    schema: SchemaRef,
}

impl Ordered {
    /// Encodes the rows into a Parquet file (see [`encode`]).
    pub fn write(&self, path: &Path) -> Result<(), MergeError> {
        encode(&self.batches, &self.runs, &self.schema, path)
    }
}

/// The new trust table's rows: the kept rows of the previous table and the rows DuckDB decided
/// (`decided_trusts`), merged in code order.
pub fn trust_rows(conn: &Connection, kept: Kept, shape: &SchemaRef) -> Result<(Ordered, Written), MergeError> {
    let decided: Vec<RecordBatch> = {
        let mut stmt = conn
            .prepare("SELECT * FROM decided_trusts ORDER BY code")
            .map_err(sql_err("build_trusts.sql"))?;
        let arrow = stmt.query_arrow([]).map_err(sql_err("build_trusts.sql"))?;
        arrow
            .filter(|b| b.num_rows() > 0)
            .map(|b| conform(&b, shape))
            .collect::<Result<_, _>>()
            .map_err(|e| MergeError::Sql {
                step: "build_trusts.sql".into(),
                message: e.to_string(),
            })?
    };
    let Kept { mut batches, runs } = kept;
    let n_kept = batches.len();
    batches.extend(decided);
    let runs = merge_runs(&batches, runs, n_kept)?;
    let rows = runs.iter().map(|r| r.len as u64).sum();
    let not_in_ods = match shape.index_of("not_in_ods") {
        Ok(i) => runs
            .iter()
            .filter_map(|r| {
                let column = batches[r.batch].column(i).slice(r.start, r.len);
                column
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .map(|c| c.true_count() as u64)
            })
            .sum(),
        Err(_) => 0,
    };
    Ok((
        Ordered {
            batches,
            runs,
            schema: Arc::clone(shape),
        },
        Written { rows, not_in_ods },
    ))
}

/// Splits `runs` into row groups of `size` rows.
fn row_groups(runs: &[Run], size: usize) -> Vec<Vec<Run>> {
    let mut groups = Vec::new();
    let (mut group, mut filled) = (Vec::new(), 0);
    for &run in runs {
        let mut run = run;
        while run.len > 0 {
            let take = run.len.min(size - filled);
            group.push(Run { len: take, ..run });
            (run.start, run.len, filled) = (run.start + take, run.len - take, filled + take);
            if filled == size {
                groups.push(std::mem::take(&mut group));
                filled = 0;
            }
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// Encodes the rows `runs` pick from `batches` into a Parquet file: row groups of
/// [`ROW_GROUP_ROWS`], the columns of each assembled run by run and encoded in parallel, zstd
/// level 1 (LZ4 was measured: 1M-row merge ~0.05 s faster, files 56 MB instead of 34 MB; a version
/// is kept per run, so zstd).
fn encode(batches: &[RecordBatch], runs: &[Run], schema: &SchemaRef, path: &Path) -> Result<(), MergeError> {
    let io_err = |e: String| MergeError::Input {
        path: path.to_owned(),
        message: e,
    };
    let mut props =
        WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level")));
    for (i, f) in schema.fields().iter().enumerate() {
        if mostly_distinct(batches, runs, i) {
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
    for (group, group_runs) in row_groups(runs, ROW_GROUP_ROWS).iter().enumerate() {
        let rows: usize = group_runs.iter().map(|r| r.len).sum();
        let writers = factory
            .create_column_writers(group)
            .map_err(|e| io_err(e.to_string()))?;
        let encoded: Vec<ArrowColumnChunk> = writers
            .into_par_iter()
            .enumerate()
            .map(|(i, mut writer)| -> Result<_, String> {
                let sources: Vec<ArrayData> = batches.iter().map(|b| b.column(i).to_data()).collect();
                let use_nulls = sources.iter().any(|d| d.null_count() > 0);
                let mut column = MutableArrayData::new(sources.iter().collect(), use_nulls, rows);
                for r in group_runs {
                    column.extend(r.batch, r.start, r.start + r.len);
                }
                let column = make_array(column.freeze());
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
fn mostly_distinct(batches: &[RecordBatch], runs: &[Run], col: usize) -> bool {
    let total: usize = runs.iter().map(|r| r.len).sum();
    let step = (total / 4096).max(1);
    let mut seen = HashSet::new();
    let mut sampled = 0usize;
    let rows = runs
        .iter()
        .flat_map(|r| (r.start..r.start + r.len).map(move |row| (r.batch, row)));
    for (b, r) in rows.step_by(step) {
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

/// The output rows in code order: the kept runs (`batches[..n_kept]`, from a table written in code
/// order) with the decided rows (the other batches, ordered by the query) placed between them by
/// binary search. Codes are unique across the two: the kept rows exclude every touched code.
fn merge_runs(batches: &[RecordBatch], kept: Vec<Run>, n_kept: usize) -> Result<Vec<Run>, MergeError> {
    let codes = batches
        .iter()
        .map(code_column)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|message| MergeError::Sql {
            step: "build_trusts.sql".into(),
            message,
        })?;
    let code = |b: usize, r: usize| codes[b].value(r);
    let in_order = kept
        .iter()
        .all(|r| (r.start + 1..r.start + r.len).all(|i| code(r.batch, i - 1) <= code(r.batch, i)))
        && kept
            .windows(2)
            .all(|w| code(w[0].batch, w[0].start + w[0].len - 1) <= code(w[1].batch, w[1].start));
    // Guard, not expected: a previous table out of order (e.g. written by another tool) is sorted.
    let kept = if in_order {
        kept
    } else {
        let mut rows: Vec<(usize, usize)> = kept
            .iter()
            .flat_map(|r| (r.start..r.start + r.len).map(move |i| (r.batch, i)))
            .collect();
        rows.sort_by(|a, b| code(a.0, a.1).cmp(code(b.0, b.1)));
        let mut runs = Vec::new();
        for (batch, start) in rows {
            push_run(&mut runs, Run { batch, start, len: 1 });
        }
        runs
    };
    let decided: Vec<(usize, usize)> = (n_kept..batches.len())
        .flat_map(|b| (0..batches[b].num_rows()).map(move |r| (b, r)))
        .collect();
    let mut out = Vec::with_capacity(kept.len() + 2 * decided.len());
    let mut d = 0;
    for run in kept {
        let (mut start, end) = (run.start, run.start + run.len);
        while let Some(&(db, dr)) = decided.get(d) {
            let next = code(db, dr);
            let at = start + lower_bound(end - start, |i| code(run.batch, start + i) < next);
            if at == end {
                break;
            }
            push_run(
                &mut out,
                Run {
                    batch: run.batch,
                    start,
                    len: at - start,
                },
            );
            push_run(
                &mut out,
                Run {
                    batch: db,
                    start: dr,
                    len: 1,
                },
            );
            d += 1;
            start = at;
        }
        push_run(
            &mut out,
            Run {
                batch: run.batch,
                start,
                len: end - start,
            },
        );
    }
    for &(batch, start) in &decided[d..] {
        push_run(&mut out, Run { batch, start, len: 1 });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};

    fn codes(values: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("code", DataType::Utf8, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(values.to_vec()))]).unwrap()
    }

    fn touched(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    /// The codes `runs` pick, in order.
    fn picked(batches: &[RecordBatch], runs: &[Run]) -> Vec<String> {
        runs.iter()
            .flat_map(|r| {
                let c = code_column(&batches[r.batch]).unwrap();
                (r.start..r.start + r.len).map(move |i| c.value(i).to_owned())
            })
            .collect()
    }

    #[test]
    fn touched_rows_are_found_in_sorted_and_unsorted_batches() {
        let wanted = touched(&["A", "C", "E", "Z"]);
        let sorted = codes(&["A", "B", "C", "D", "E"]);
        assert_eq!(touched_positions(code_column(&sorted).unwrap(), &wanted), vec![0, 2, 4]);
        // A touched code missing from the batch, and a batch starting past the first touched code.
        let later = codes(&["B", "D", "E", "F"]);
        assert_eq!(touched_positions(code_column(&later).unwrap(), &wanted), vec![2]);
        // Written by another tool, out of order: found row by row.
        let unsorted = codes(&["E", "B", "A", "C"]);
        assert_eq!(
            touched_positions(code_column(&unsorted).unwrap(), &wanted),
            vec![0, 2, 3]
        );
        assert!(touched_positions(code_column(&sorted).unwrap(), &[]).is_empty());
    }

    #[test]
    fn decided_rows_are_placed_between_kept_runs_in_code_order() {
        // Kept: two batches of the previous table with B and F taken out (touched).
        let batches = vec![
            codes(&["B", "C", "D", "F", "G"]),
            codes(&["H", "K"]),
            // Decided by the SQL, ordered by code: before, between, inside a run, and after all.
            codes(&["A", "E", "F", "J", "M"]),
        ];
        let kept = vec![
            Run {
                batch: 0,
                start: 1,
                len: 2,
            },
            Run {
                batch: 0,
                start: 4,
                len: 1,
            },
            Run {
                batch: 1,
                start: 0,
                len: 2,
            },
        ];
        let runs = merge_runs(&batches, kept, 2).unwrap();
        assert_eq!(
            picked(&batches, &runs),
            ["A", "C", "D", "E", "F", "G", "H", "J", "K", "M"]
        );
        // Consecutive decided rows of one batch are one run.
        assert!(runs.contains(&Run {
            batch: 2,
            start: 1,
            len: 2
        }));
    }

    #[test]
    fn a_kept_table_out_of_order_is_sorted_first() {
        let batches = vec![codes(&["D", "B", "C"]), codes(&["A"])];
        let kept = vec![Run {
            batch: 0,
            start: 0,
            len: 3,
        }];
        let runs = merge_runs(&batches, kept, 1).unwrap();
        assert_eq!(picked(&batches, &runs), ["A", "B", "C", "D"]);
    }

    #[test]
    fn runs_are_cut_into_row_groups() {
        let runs = [
            Run {
                batch: 0,
                start: 0,
                len: 5,
            },
            Run {
                batch: 1,
                start: 3,
                len: 4,
            },
        ];
        let groups = row_groups(&runs, 4);
        assert_eq!(
            groups,
            vec![
                vec![Run {
                    batch: 0,
                    start: 0,
                    len: 4
                }],
                vec![
                    Run {
                        batch: 0,
                        start: 4,
                        len: 1
                    },
                    Run {
                        batch: 1,
                        start: 3,
                        len: 3
                    }
                ],
                vec![Run {
                    batch: 1,
                    start: 6,
                    len: 1
                }],
            ]
        );
    }
}

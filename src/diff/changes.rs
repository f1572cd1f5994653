//! The long-format `changes` table: its schema, the columns built while comparing, and the
//! finished, sorted batch with its summary.

use super::*;

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
pub(super) struct Changes {
    /// The eight columns of `changes` that vary per row, then the row's qualifier (the
    /// relationship type of a relationship row, else null), which the shift labels match on.
    pub(super) chunks: Vec<[ArrayRef; 9]>,
    pub(super) shift: ShiftStats,
    /// `table.field` columns only the new side has (a snapshot written by an older odsync):
    /// not compared, and said so.
    pub(super) one_sided: std::collections::BTreeSet<String>,
    pub(super) org_rows: Option<(RecordBatch, RecordBatch)>,
}

impl Changes {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push(
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

pub(super) fn finish(mut changes: Changes, from: u64, to: u64, today: NaiveDate) -> Result<Diff, DiffError> {
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
pub(super) fn sort_changes(batch: &RecordBatch) -> RecordBatch {
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

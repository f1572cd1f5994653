//! Comparing tables: added and deleted rows, and the changed fields of changed rows column by
//! column (Arrow's `distinct`), chunked when most rows moved.

use super::*;

pub(super) fn null_strings(n: usize) -> ArrayRef {
    Arc::new(StringArray::from(vec![None::<&str>; n]))
}

pub(super) fn null_dates(n: usize) -> ArrayRef {
    Arc::new(Date32Array::from(vec![None; n]))
}

/// A one-line description of a child row for row-level changes: `RE5:QM7`, `RO197`, …
pub(super) fn child_label(table: Table, batch: &RecordBatch) -> ArrayRef {
    let s = |name: &str| batch.column_by_name(name).map(text);
    let (a, b) = match table {
        Table::Roles => (s("role_id"), None),
        Table::Relationships => (s("rel_type"), s("target_code")),
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
pub(super) fn child_kind(table: Table, batch: &RecordBatch, added: bool) -> ArrayRef {
    let n = batch.num_rows();
    match table {
        Table::Relationships => {
            let types = text(col(batch, "rel_type"));
            let types = types.as_any().downcast_ref::<StringArray>().expect("text");
            ChangeKind::column(types.iter().map(|t| {
                if t.is_some_and(|t| PARENT_REL_TYPES.contains(&t)) {
                    ChangeKind::Reparented
                } else {
                    ChangeKind::Changed
                }
            }))
        }
        Table::Successors if added => {
            let types = text(col(batch, "type"));
            let types = types.as_any().downcast_ref::<StringArray>().expect("text");
            ChangeKind::column(types.iter().map(|t| {
                if t == Some("Successor") {
                    ChangeKind::Succeeded
                } else {
                    ChangeKind::Changed
                }
            }))
        }
        _ => ChangeKind::Changed.repeat(n),
    }
}

pub(super) fn diff_table(
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
    if spec.table == Table::Organisations {
        out.org_rows = Some((old, new));
    }
    Ok(())
}

/// Ascending union of two ascending, disjoint index lists.
pub(super) fn sorted_union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut all = Vec::with_capacity(a.len() + b.len());
    all.extend_from_slice(a);
    all.extend_from_slice(b);
    all.sort_unstable();
    all
}

/// Added rows: every non-null field of an added organisation (so the diff can be applied), one
/// labelled row per added child row.
pub(super) fn emit_added(spec: &TableSpec, batch: &RecordBatch, out: &mut Changes) {
    let code = col(batch, "code").clone();
    let key = col(batch, spec.key).clone();
    if spec.table == Table::Organisations {
        let effective = col(batch, "operational_start").clone();
        for field in field_names(batch, spec) {
            let values = text(col(batch, &field));
            let keep = arrow::compute::is_not_null(&values).expect("mask");
            let f = |a: &ArrayRef| filter(a, &keep).expect("same length");
            let n = keep.true_count();
            out.push(
                f(&code),
                spec.table.as_str(),
                f(&key),
                Some(&field),
                null_strings(n),
                f(&values),
                ChangeKind::Added.repeat(n),
                f(&effective),
                None,
            );
        }
    } else {
        let n = batch.num_rows();
        let kind = child_kind(spec.table, batch, true);
        out.push(
            code,
            spec.table.as_str(),
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

pub(super) fn emit_deleted(
    spec: &TableSpec,
    batch: &RecordBatch,
    new_path: &Path,
    out: &mut Changes,
) -> Result<(), DiffError> {
    let is_org = spec.table == Table::Organisations;
    let n = batch.num_rows();
    let kind = if is_org {
        ChangeKind::Deleted.repeat(n)
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
        spec.table.as_str(),
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
pub(super) fn qualifier_of(table: Table, batch: &RecordBatch) -> Option<ArrayRef> {
    (table == Table::Relationships).then(|| col(batch, "rel_type").clone())
}

/// The same diff for a shift-sized change (most rows moved): changed rows are read in chunks so
/// memory stays bounded, and nothing is kept for the merge.
pub(super) fn diff_table_chunked(
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
pub(super) fn deletion_reasons(new_orgs: &Path, codes: &ArrayRef) -> Result<ArrayRef, DiffError> {
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
pub(super) fn field_names(batch: &RecordBatch, spec: &TableSpec) -> Vec<String> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != "code" && n != spec.key && n != "row_hash" && n != "row_key")
        .collect()
}

/// One field's changes within a batch of changed rows.
pub(super) struct FieldChanges {
    pub(super) field: String,
    pub(super) qualifier: Option<ArrayRef>,
    pub(super) mask: BooleanArray,
    pub(super) code: ArrayRef,
    pub(super) key: ArrayRef,
    pub(super) old_values: ArrayRef,
    pub(super) new_values: ArrayRef,
    pub(super) kind: ArrayRef,
    pub(super) effective: ArrayRef,
}

pub(super) fn compare(spec: &TableSpec, old: &RecordBatch, new: &RecordBatch, today: NaiveDate, out: &mut Changes) {
    use rayon::prelude::*;
    let code = col(new, "code");
    let key = col(new, spec.key);
    let is_org = spec.table == Table::Organisations;
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
        .extend(one_sided.into_iter().map(|f| format!("{}.{f}", spec.table.as_str())));
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
            let qualifier = (spec.table == Table::Relationships).then(|| f(col(new, "rel_type")));
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
            spec.table.as_str(),
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
pub(super) fn count_field_changes(
    table: Table,
    field: &str,
    new: &RecordBatch,
    mask: &BooleanArray,
    shift: &mut ShiftStats,
) {
    if table == Table::Relationships {
        let types = text(&filter(col(new, "rel_type"), mask).expect("same length"));
        let types = types.as_any().downcast_ref::<StringArray>().expect("text");
        for t in types.iter().flatten() {
            *shift.field_changes.entry(format!("{table}.{field}[{t}]")).or_default() += 1;
        }
    } else if !METADATA_FIELDS.contains(&field) {
        *shift.field_changes.entry(format!("{table}.{field}")).or_default() += mask.true_count() as u64;
    }
}

pub(super) fn filter_record_batch(batch: &RecordBatch, mask: &BooleanArray) -> RecordBatch {
    arrow::compute::filter_record_batch(batch, mask).expect("same length")
}

/// Kind and effective date of an organisation field change.
pub(super) fn org_kind(field: &str, old: &ArrayRef, new: &ArrayRef, new_end: &ArrayRef) -> (ArrayRef, ArrayRef) {
    let old = old.as_any().downcast_ref::<StringArray>().expect("text");
    let new = new.as_any().downcast_ref::<StringArray>().expect("text");
    let n = new.len();
    let per_row = |kind: &dyn Fn(Option<&str>, Option<&str>) -> ChangeKind| -> ArrayRef {
        ChangeKind::column(old.iter().zip(new.iter()).map(|(o, v)| kind(o, v)))
    };
    let kinds: ArrayRef = match field {
        "name" => ChangeKind::Renamed.repeat(n),
        "parent_code" => ChangeKind::Reparented.repeat(n),
        "status" => per_row(&|o, v| match (o, v) {
            (_, Some("Inactive")) => ChangeKind::Closed,
            (Some("Inactive"), _) => ChangeKind::Reopened,
            _ => ChangeKind::Changed,
        }),
        // The finer status (Active, Dormant, Proposed, Closed): a move between the open states
        // (a practice going dormant) is `changed`, with its true old and new values.
        "status_detail" => per_row(&|o, v| match (o, v) {
            (_, Some("Closed")) => ChangeKind::Closed,
            (Some("Closed"), _) => ChangeKind::Reopened,
            (Some("Proposed"), _) => ChangeKind::Opened,
            _ => ChangeKind::Changed,
        }),
        // A flag about the release, not the organisation (see `Organisation::amended_record`).
        "amended_record" => ChangeKind::Metadata.repeat(n),
        "operational_end" => per_row(&|_, v| {
            if v.is_some() {
                ChangeKind::Closed
            } else {
                ChangeKind::Reopened
            }
        }),
        _ => ChangeKind::Changed.repeat(n),
    };
    // A close takes effect on the (new) operational end date, which may lie in the future.
    let effective: ArrayRef = match field {
        "status" | "status_detail" | "operational_end" => new_end.clone(),
        _ => null_dates(n),
    };
    (kinds, effective)
}

//! The rules: which organisations are decided again and how, in the SQL of `sql/merge/`, with
//! the field lists it needs rendered from the pipeline's fields.

use super::*;

/// Runs select_touched, decide_fields, detect_conflicts and build_trusts; returns the rows of the
/// previous trust table that stay as they were (read once: the touched ones went to DuckDB).
pub(super) fn decide(
    conn: &Connection,
    fields: &[(String, &'static str, bool)],
    previous_read: Option<trusts::PreviousRead>,
) -> Result<trusts::Kept, MergeError> {
    let field_names: Vec<&str> = fields.iter().map(|(f, _, _)| f.as_str()).collect();
    let ods_cols: String = ODS_FIELDS
        .iter()
        .map(|(f, _)| format!("CAST({f} AS VARCHAR) AS {f}"))
        .collect::<Vec<_>>()
        .join(", ");
    let field_list = field_names
        .iter()
        .map(|f| format!("'{f}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let merged_columns = fields
        .iter()
        .map(|(f, t, _)| format!("CASE WHEN w.{f}_n > 0 THEN CAST(w.{f}_v AS {t}) ELSE p.{f} END AS {f}"))
        .collect::<Vec<_>>()
        .join(", ");
    let all_columns = field_names.join(", ");
    // Per field: its ODS, base and previous value as three columns (NULL for ODS and base of a
    // team-owned field), and the unpivot list that turns them back into rows (decide_fields.sql).
    let cell_columns = fields
        .iter()
        .map(|(f, _, local)| {
            if *local {
                format!("NULL::VARCHAR AS {f}_ods, NULL::VARCHAR AS {f}_base, p.{f} AS {f}_prev")
            } else {
                format!("o.{f} AS {f}_ods, b.{f} AS {f}_base, p.{f} AS {f}_prev")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let cell_structs = field_names
        .iter()
        .map(|f| {
            format!(
                "CASE WHEN all_fields OR {f}_ods IS DISTINCT FROM {f}_base OR list_contains(marked, '{f}') \
                 THEN {{'ods': {f}_ods, 'base': {f}_base, 'prev': {f}_prev}} END AS {f}"
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    // A fresh organisation's row (build_trusts.sql): its ODS values.
    let fresh_columns = fields
        .iter()
        .map(|(f, t, local)| {
            if *local {
                format!("CAST(NULL AS {t}) AS {f}")
            } else {
                format!("CAST(CAST(o.{f} AS VARCHAR) AS {t}) AS {f}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    // The fresh cells' rule counts (decide_fields.sql): filled ODS cells, and how many of each kind.
    let fresh_filled = fields
        .iter()
        .filter(|(_, _, local)| !*local)
        .map(|(f, _, _)| format!("count(o.{f})"))
        .collect::<Vec<_>>();
    let ods_fields = fresh_filled.len().to_string();
    let local_fields = (fields.len() - fresh_filled.len()).to_string();
    let fresh_filled = if fresh_filled.is_empty() {
        "0".to_owned()
    } else {
        fresh_filled.join(" + ")
    };
    let lists = [
        ("fresh_filled", fresh_filled.as_str()),
        ("ods_fields", ods_fields.as_str()),
        ("local_fields", local_fields.as_str()),
        ("ods_casts", ods_cols.as_str()),
        ("all_columns", all_columns.as_str()),
        ("cell_columns", cell_columns.as_str()),
        ("cell_structs", cell_structs.as_str()),
    ];
    run_step(
        conn,
        "select_touched.sql",
        &crate::sql::render_raw(SQL_SELECT_TOUCHED, &lists),
    )?;
    // The previous trust table is read once: touched rows to DuckDB, the rest kept for the write.
    let started = std::time::Instant::now();
    let kept_rows = trusts::split_previous(conn, previous_read)?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "previous trust table split");
    run_step(
        conn,
        "decide_fields.sql",
        &crate::sql::render_raw(SQL_DECIDE_FIELDS, &lists),
    )?;
    run_step(conn, "detect_conflicts.sql", SQL_DETECT_CONFLICTS)?;
    run_step(
        conn,
        "build_trusts.sql",
        &crate::sql::render_raw(
            SQL_BUILD_TRUSTS,
            &[
                ("field_list", &field_list),
                ("merged_columns", &merged_columns),
                ("fresh_columns", &fresh_columns),
            ],
        ),
    )?;
    Ok(kept_rows)
}

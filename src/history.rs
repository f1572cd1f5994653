//! SCD2 history of each pipeline's ODS organisations (`sql/history/update_history.sql`), one
//! version per snapshot in `<warehouse>/<pipeline>/history/version=N/part-0.parquet`, maintained from the diff rather
//! than recomputed, plus the as-of views in the catalog.

use crate::model::ODS_FIELDS;
use crate::model::states::Table;
use crate::sql::{SQL_UPDATE_HISTORY, quote_path};
use crate::warehouse::{Layout, Output};
use chrono::NaiveDate;
use duckdb::params;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("history ({step}): {message}")]
pub struct HistoryError {
    step: &'static str,
    message: String,
}

/// One history update: the new snapshot version and where its inputs are.
pub struct HistoryUpdate<'a> {
    pub version: u64,
    pub previous: Option<u64>,
    /// Folder holding the new snapshot's `organisations.parquet` (possibly still staged).
    pub org_dir: &'a Path,
    /// The diff into this version (`changes.parquet`); absent for the first version.
    pub changes: Option<&'a Path>,
    pub run_id: &'a str,
    pub snapshot_date: NaiveDate,
}

/// Writes history version `update.version` from the previous one, the new snapshot's
/// organisations and the diff into it.
/// The new version is staged in `txn` and appears when the run commits.
pub fn update(
    warehouse: &Path,
    pipeline: &str,
    update: &HistoryUpdate<'_>,
    txn: &mut crate::warehouse::Txn,
) -> Result<(), HistoryError> {
    let HistoryUpdate {
        version,
        previous,
        org_dir,
        changes,
        run_id,
        snapshot_date,
    } = *update;
    let err = |step: &'static str| {
        move |e: duckdb::Error| HistoryError {
            step,
            message: crate::engine::explain(e),
        }
    };
    let (conn, _spill) = crate::engine::session(warehouse, pipeline, "history", run_id).map_err(err("open"))?;
    let fields: String = ODS_FIELDS.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ");
    let layout = Layout::new(warehouse, pipeline);
    let mut sql = format!(
        "CREATE TEMP VIEW new_org AS SELECT code, {fields} FROM read_parquet({}, hive_partitioning = false);\n\
         CREATE TEMP TABLE history_params (version BIGINT, run_id VARCHAR, snapshot_date DATE);\n",
        quote_path(&org_dir.join("organisations.parquet"))
    );
    let prev_file = previous
        .map(|p| layout.table_file(Table::History, p))
        .filter(|p| p.exists());
    match &prev_file {
        Some(p) => sql.push_str(&format!("CREATE TEMP VIEW prev_history AS SELECT * FROM read_parquet({}, hive_partitioning = false);\n", quote_path(p))),
        None => sql.push_str(
            "CREATE TEMP TABLE prev_history AS SELECT *, NULL::DATE AS valid_from, NULL::DATE AS valid_to, NULL::BIGINT AS snapshot_version, \
             NULL::VARCHAR AS run_id, []::VARCHAR[] AS changed_fields, NULL::VARCHAR AS change_kind, NULL::BOOLEAN AS is_current FROM new_org LIMIT 0;\n",
        ),
    }
    match changes {
        Some(c) => sql.push_str(&format!(
            "CREATE TEMP TABLE changes AS SELECT * FROM read_parquet({}, hive_partitioning = false);\n",
            quote_path(c)
        )),
        None => sql.push_str(
            "CREATE TEMP TABLE changes (code VARCHAR, \"table\" VARCHAR, field VARCHAR, change_kind VARCHAR);\n",
        ),
    }
    conn.execute_batch(&sql).map_err(err("load inputs"))?;
    conn.execute(
        "INSERT INTO history_params VALUES (?, ?, CAST(? AS DATE))",
        params![version as i64, run_id, snapshot_date.to_string()],
    )
    .map_err(err("load inputs"))?;
    conn.execute_batch(SQL_UPDATE_HISTORY)
        .map_err(err("update_history.sql"))?;
    let wh = |e: crate::warehouse::WarehouseError| HistoryError {
        step: "write",
        message: e.to_string(),
    };
    let tmp = txn.temp_dir(Output::History, version).map_err(wh)?;
    conn.execute_batch(&format!(
        // `history` is a view ending in ORDER BY (update_history.sql): COPY writes its rows in
        // that order (DuckDB preserves a query's order into COPY).
        "COPY history TO {} (FORMAT parquet, COMPRESSION zstd);",
        quote_path(&tmp.join("history.parquet"))
    ))
    .map_err(err("write"))?;
    drop(conn);
    crate::warehouse::sync_tree(&tmp).map_err(wh)?;
    txn.stage_version(&tmp, Output::History, version, true).map_err(wh)?;
    Ok(())
}

impl crate::error::Classify for HistoryError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::engine::class_of(&self.message)
    }
}

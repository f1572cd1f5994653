//! The run catalog: `<warehouse>/catalog.duckdb`, an embedded DuckDB database holding the `runs`
//! table and views over every snapshot (`snapshot_<table>`, `latest_<table>`,
//! `snapshot_manifests`, `latest_snapshots`). It is an index: the Parquet snapshots and their
//! manifests are the data, and the views can be recreated from them at any time.
//!
//! The connection is opened per operation, not held for a whole run, so an analyst's
//! `duckdb snapshots/catalog.duckdb` session only conflicts with odsync for milliseconds.

pub mod sql;

use crate::model::tables::TABLE_NAMES;
use chrono::{DateTime, NaiveDate, Utc};
use duckdb::{Connection, params};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog `{path}`: {message}\nHelp: {help}")]
    Db {
        path: PathBuf,
        message: String,
        help: &'static str,
    },
}

const HELP: &str =
    "if another program (a duckdb shell, a notebook) has the catalog open for writing, close it and run again";

pub const CATALOG_FILE: &str = "catalog.duckdb";

/// Derived outputs and their views: (folder under the pipeline, table file, all-versions view,
/// latest-version view).
pub const OUTPUT_VIEWS: [(&str, &str, &str, &str); 5] = [
    ("history", "history", "history_versions", "latest_history"),
    ("changes", "changes", "snapshot_changes", "changes_latest"),
    ("merged", "trusts", "merged_trusts", "latest_trusts"),
    ("merged", "conflicts", "merged_conflicts", "conflicts_latest"),
    ("merged", "provenance", "provenance_log", "provenance_by_merge"),
];

/// Whether `<warehouse>/*/<kind>/version=*/<file>` exists for any pipeline.
fn any_output(warehouse: &Path, kind: &str, file: &str) -> bool {
    std::fs::read_dir(warehouse)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|p| {
            std::fs::read_dir(p.path().join(kind))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .any(|v| v.file_name().to_string_lossy().starts_with("version=") && v.path().join(file).exists())
        })
}

/// A run as stored in the `runs` table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub pipeline: String,
    pub run_number: u64,
    pub mode: String,
    pub mode_reason: Option<String>,
    pub source: String,
    pub source_location: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub watermark_before: Option<NaiveDate>,
    pub watermark_after: Option<NaiveDate>,
    pub records_fetched: Option<i64>,
    pub records_unchanged: Option<i64>,
    pub records_quarantined: Option<i64>,
    pub snapshot_version: Option<i64>,
    pub error: Option<String>,
    /// Publication shifts let through with --accept-shift.
    pub accepted_shift: Option<String>,
}

/// A query's result with every value as text.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

pub struct Catalog {
    conn: Connection,
    path: PathBuf,
    warehouse: PathBuf,
}

fn ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

impl Catalog {
    pub fn open(warehouse: &Path) -> Result<Self, CatalogError> {
        std::fs::create_dir_all(warehouse).map_err(|e| CatalogError::Db {
            path: warehouse.to_owned(),
            message: e.to_string(),
            help: "check that the warehouse directory can be created and written",
        })?;
        let warehouse = warehouse.canonicalize().unwrap_or_else(|_| warehouse.to_owned());
        let path = warehouse.join(CATALOG_FILE);
        let conn = Connection::open(&path).map_err(|e| CatalogError::Db {
            path: path.clone(),
            message: e.to_string(),
            help: HELP,
        })?;
        let catalog = Catalog { conn, path, warehouse };
        catalog.exec(sql::CREATE_RUNS)?;
        Ok(catalog)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: duckdb::Error) -> CatalogError {
        CatalogError::Db {
            path: self.path.clone(),
            message: e.to_string(),
            help: HELP,
        }
    }

    fn exec(&self, sql: &str) -> Result<(), CatalogError> {
        self.conn.execute_batch(sql).map_err(|e| self.err(e))
    }

    /// Sequence number for the next run of a pipeline (part of the run id).
    pub fn next_run_number(&self, pipeline: &str) -> Result<u64, CatalogError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(max(run_number), 0) FROM runs WHERE pipeline = ?",
                params![pipeline],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(n as u64 + 1)
    }

    /// The watermark of the latest successful run: runs that failed never move it.
    pub fn watermark(&self, pipeline: &str) -> Result<Option<NaiveDate>, CatalogError> {
        let value: Option<String> = self
            .conn
            .query_row(
                "SELECT CAST(watermark_after AS VARCHAR) FROM runs
                 WHERE pipeline = ? AND status IN ('succeeded', 'unchanged') AND watermark_after IS NOT NULL
                 ORDER BY run_number DESC LIMIT 1",
                params![pipeline],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                duckdb::Error::QueryReturnedNoRows => Ok(None),
                e => Err(self.err(e)),
            })?;
        Ok(value.and_then(|v| v.parse().ok()))
    }

    /// Records the start of a run; earlier `running` rows of the pipeline (killed runs: the
    /// snapshot lock guarantees none is still active) become `abandoned`.
    pub fn start_run(&self, run: &RunRecord, started_at: &DateTime<Utc>) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "UPDATE runs SET status = 'abandoned' WHERE pipeline = ? AND status = 'running'",
                params![run.pipeline],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .execute(
                "INSERT INTO runs (run_id, pipeline, run_number, mode, mode_reason, source, source_location, started_at, status, watermark_before)
                 VALUES (?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), 'running', CAST(? AS DATE))",
                params![
                    run.run_id,
                    run.pipeline,
                    run.run_number as i64,
                    run.mode,
                    run.mode_reason,
                    run.source,
                    run.source_location,
                    ts(started_at),
                    run.watermark_before.map(|d| d.to_string()),
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn finish_run(&self, run: &RunRecord, finished_at: &DateTime<Utc>) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "UPDATE runs SET mode = ?, mode_reason = ?, finished_at = CAST(? AS TIMESTAMP), status = ?,
                    watermark_after = CAST(? AS DATE), records_fetched = ?, records_unchanged = ?,
                    records_quarantined = ?, snapshot_version = ?, error = ?, accepted_shift = ?
                 WHERE run_id = ?",
                params![
                    run.mode,
                    run.mode_reason,
                    ts(finished_at),
                    run.status,
                    run.watermark_after.map(|d| d.to_string()),
                    run.records_fetched,
                    run.records_unchanged,
                    run.records_quarantined,
                    run.snapshot_version,
                    run.error,
                    run.accepted_shift,
                    run.run_id,
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn runs(&self, pipeline: Option<&str>, limit: u64) -> Result<Vec<RunRecord>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT run_id, pipeline, run_number, mode, mode_reason, source, source_location,
                        CAST(started_at AS VARCHAR), CAST(finished_at AS VARCHAR), status,
                        CAST(watermark_before AS VARCHAR), CAST(watermark_after AS VARCHAR),
                        records_fetched, records_unchanged, records_quarantined, snapshot_version, error, accepted_shift
                 FROM runs WHERE (? IS NULL OR pipeline = ?)
                 ORDER BY pipeline, run_number DESC LIMIT ?",
            )
            .map_err(|e| self.err(e))?;
        let date = |s: Option<String>| s.and_then(|s| s.parse().ok());
        let rows = stmt
            .query_map(params![pipeline, pipeline, limit as i64], |r| {
                Ok(RunRecord {
                    run_id: r.get(0)?,
                    pipeline: r.get(1)?,
                    run_number: r.get::<_, i64>(2)? as u64,
                    mode: r.get(3)?,
                    mode_reason: r.get(4)?,
                    source: r.get(5)?,
                    source_location: r.get(6)?,
                    started_at: r.get(7)?,
                    finished_at: r.get(8)?,
                    status: r.get(9)?,
                    watermark_before: date(r.get(10)?),
                    watermark_after: date(r.get(11)?),
                    records_fetched: r.get(12)?,
                    records_unchanged: r.get(13)?,
                    records_quarantined: r.get(14)?,
                    snapshot_version: r.get(15)?,
                    error: r.get(16)?,
                    accepted_shift: r.get(17)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// (Re)creates the snapshot views. DuckDB binds a view when it is created, so they are only
    /// created once some snapshot exists; until then the catalog holds just `runs`.
    pub fn refresh_views(&self) -> Result<bool, CatalogError> {
        if !any_output(&self.warehouse, "ods", "manifest.json") {
            return Ok(false);
        }
        let warehouse = self.warehouse.to_string_lossy().into_owned();
        let mut script = sql::render(sql::CREATE_MANIFEST_VIEWS, &[("warehouse", &warehouse)]);
        for table in TABLE_NAMES {
            let vars = [("warehouse", warehouse.as_str()), ("table", table)];
            script.push_str(&sql::render(sql::CREATE_SNAPSHOT_VIEW, &vars));
            script.push_str(&sql::render(sql::CREATE_LATEST_VIEW, &vars));
        }
        for (kind, table, all_view, latest_view) in OUTPUT_VIEWS {
            if any_output(&self.warehouse, kind, &format!("{table}.parquet")) {
                let vars = [
                    ("warehouse", warehouse.as_str()),
                    ("kind", kind),
                    ("table", table),
                    ("all_view", all_view),
                    ("latest_view", latest_view),
                ];
                script.push_str(&sql::render(sql::CREATE_OUTPUT_VIEWS, &vars));
            }
        }
        script.push_str(sql::CREATE_SUCCESSOR_VIEWS);
        script.push_str(sql::CREATE_HIERARCHY_VIEWS);
        if any_output(&self.warehouse, "merged", "trusts.parquet") {
            script.push_str(sql::CREATE_MERGE_VIEWS);
        }
        if any_output(&self.warehouse, "history", "history.parquet") {
            script.push_str(sql::CREATE_HISTORY_VIEWS);
        }
        self.exec(&script)?;
        Ok(true)
    }

    /// Runs a query against the catalog; returns column names and every value as text
    /// (`COLUMNS(*)::VARCHAR` lets DuckDB do the formatting of every type).
    pub fn query_text(&self, sql: &str) -> Result<QueryResult, CatalogError> {
        let wrapped = format!("SELECT COLUMNS(*)::VARCHAR FROM ({})", sql.trim().trim_end_matches(';'));
        let mut stmt = self.conn.prepare(&wrapped).map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let n = row.as_ref().column_count();
            let values = (0..n)
                .map(|i| row.get::<_, Option<String>>(i))
                .collect::<Result<Vec<_>, _>>();
            out.push(values.map_err(|e| self.err(e))?);
        }
        drop(rows);
        let columns = stmt.column_names();
        Ok(QueryResult { columns, rows: out })
    }
}

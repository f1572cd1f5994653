//! The run catalog: `<warehouse>/catalog.duckdb`, an embedded DuckDB database holding the `runs`
//! table and views over every snapshot (`snapshot_<table>`, `latest_<table>`,
//! `snapshot_manifests`, `latest_snapshots`). It is an index: the Parquet snapshots and their
//! manifests are the data, and the views can be recreated from them at any time.
//!
//! The connection is opened per operation, not held for a whole run, so an analyst's
//! `duckdb snapshots/catalog.duckdb` session only conflicts with odsync for milliseconds.

use crate::sql;

use crate::model::states::Table;
use crate::model::tables::SNAPSHOT_TABLES;
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

/// Derived outputs and their views: (table, all-versions view, latest-version view).
pub const OUTPUT_VIEWS: [(Table, &str, &str); 5] = [
    (Table::History, "history_versions", "latest_history"),
    (Table::Changes, "snapshot_changes", "changes_latest"),
    (Table::Trusts, "merged_trusts", "latest_trusts"),
    (Table::Conflicts, "merged_conflicts", "conflicts_latest"),
    (Table::Provenance, "provenance_log", "provenance_by_merge"),
];

/// Whether `<warehouse>/*/<table>/version=*/part-0.parquet` exists for any pipeline.
fn any_table(warehouse: &Path, table: Table) -> bool {
    in_every_pipeline(warehouse, table.as_str()).any(|v| {
        v.file_name().to_string_lossy().starts_with("version=")
            && v.path().join(crate::warehouse::layout::PART).exists()
    })
}

/// The entries of `<warehouse>/<every pipeline>/<sub>/` (none where a folder is missing).
fn in_every_pipeline<'a>(warehouse: &'a Path, sub: &'a str) -> impl Iterator<Item = std::fs::DirEntry> + 'a {
    std::fs::read_dir(warehouse)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .flat_map(move |p| {
            std::fs::read_dir(p.path().join(sub))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
        })
}

/// Every `<warehouse>/*/_meta/ods/version=*/manifest.json` that parses as a manifest, sorted.
fn readable_manifests(warehouse: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for v in in_every_pipeline(warehouse, "_meta/ods") {
        if !v.file_name().to_string_lossy().starts_with("version=") {
            continue;
        }
        let m = v.path().join("manifest.json");
        match std::fs::read_to_string(&m).map(|t| serde_json::from_str::<crate::snapshot::Manifest>(&t)) {
            Ok(Ok(_)) => out.push(m),
            Ok(Err(e)) => {
                tracing::warn!(manifest = %m.display(), "left out of the catalog views: not a valid manifest ({e}); run `odsync verify`")
            }
            Err(_) => {}
        }
    }
    out.sort();
    out
}

/// A run as stored in the `runs` table.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub pipeline: String,
    pub run_number: u64,
    pub mode: String,
    pub mode_reason: Option<String>,
    pub source: crate::model::states::SourceKind,
    pub source_location: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: crate::model::states::RunStatus,
    pub watermark_before: Option<NaiveDate>,
    pub watermark_after: Option<NaiveDate>,
    pub records_fetched: Option<i64>,
    pub records_unchanged: Option<i64>,
    pub records_quarantined: Option<i64>,
    pub snapshot_version: Option<i64>,
    pub error: Option<String>,
    /// Publication shifts let through with --accept-shift.
    pub accepted_shift: Option<String>,
    /// Records left pending (previous version kept, asked for again by the next run).
    pub records_pending: Option<i64>,
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

/// How long a command waits for another process (a run of another pipeline, a reader) to let
/// go of `catalog.duckdb` before giving up (`ODSYNC_CATALOG_WAIT_SECS`, default 30).
fn wait_limit() -> std::time::Duration {
    let secs = std::env::var(crate::env_vars::ODSYNC_CATALOG_WAIT_SECS)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(30.0);
    std::time::Duration::from_secs_f64(secs.max(0.0))
}

/// DuckDB refuses a second process with "Could not set lock": another process has the file.
fn is_lock_conflict(e: &duckdb::Error) -> bool {
    let text = e.to_string();
    text.contains("lock") || text.contains("Conflicting")
}

fn connect(path: &Path, read_only: bool) -> Result<Connection, duckdb::Error> {
    if read_only {
        let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?;
        Connection::open_with_flags(path, config)
    } else {
        Connection::open(path)
    }
}

/// Opens the catalog, retrying while another process holds it (bounded by [`wait_limit`]).
fn connect_waiting(path: &Path, read_only: bool, wait: std::time::Duration) -> Result<Connection, CatalogError> {
    let deadline = std::time::Instant::now() + wait;
    let mut pause = std::time::Duration::from_millis(20);
    let mut warned = false;
    loop {
        match connect(path, read_only) {
            Ok(c) => return Ok(c),
            Err(e) if is_lock_conflict(&e) && std::time::Instant::now() < deadline => {
                if !warned && pause >= std::time::Duration::from_millis(300) {
                    tracing::warn!(catalog = %path.display(), "another process holds the catalog; waiting for it: {e}");
                    warned = true;
                }
                std::thread::sleep(pause.min(deadline.saturating_duration_since(std::time::Instant::now())));
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            Err(e) => {
                return Err(CatalogError::Db {
                    path: path.to_owned(),
                    message: e.to_string(),
                    help: HELP,
                });
            }
        }
    }
}

/// Where a committed run's row waits when the catalog could not be written (a reader held it):
/// `<warehouse>/<pipeline>/.pending-runs/<run id>.json`, moved into `runs` by the next command
/// that opens the catalog for writing.
fn pending_dir(warehouse: &Path, pipeline: &str) -> PathBuf {
    warehouse.join(pipeline).join(".pending-runs")
}

fn pending_rows(warehouse: &Path) -> Vec<(PathBuf, RunRecord)> {
    let mut out = Vec::new();
    for f in in_every_pipeline(warehouse, ".pending-runs") {
        let path = f.path();
        // `.tmp-*` files are rows still being written (renamed into place when whole).
        if path.extension().is_some_and(|e| e == "json")
            && !f.file_name().to_string_lossy().starts_with(".tmp-")
            && let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(rec) = serde_json::from_str::<RunRecord>(&text)
        {
            out.push((path, rec));
        }
    }
    out.sort_by(|a, b| (&a.1.pipeline, a.1.run_number).cmp(&(&b.1.pipeline, b.1.run_number)));
    out
}

/// Records a finished run in the catalog and refreshes the views. Never fails: the run is
/// already committed (or already failed cleanly), so a catalog held by a reader only delays its
/// row, which waits in a pending file and is moved in by the next command.
pub fn record_run(warehouse: &Path, record: &RunRecord) {
    let attempt = Catalog::open(warehouse).and_then(|c| {
        c.finish_run(record)?;
        c.refresh_views()?;
        Ok(())
    });
    if let Err(e) = attempt {
        let dir = pending_dir(warehouse, &record.pipeline);
        let path = dir.join(format!("{}.json", record.run_id));
        let written = std::fs::create_dir_all(&dir).map_err(|e| e.to_string()).and_then(|()| {
            let text = serde_json::to_string_pretty(record).expect("run record serialises");
            let tmp = dir.join(format!(".tmp-{}.json", record.run_id));
            crate::warehouse::write_synced(&tmp, text.as_bytes()).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
        });
        match written {
            Ok(()) => tracing::warn!(
                "run `{}` ({}) is recorded in {}: the catalog could not be written ({e}); the next odsync command moves it into `runs`",
                record.run_id,
                record.status,
                path.display()
            ),
            Err(w) => tracing::warn!(
                "run `{}` ({}) could not be recorded in the catalog ({e}) nor in {} ({w})",
                record.run_id,
                record.status,
                path.display()
            ),
        }
    }
}

impl Catalog {
    /// Opens the catalog for writing (waiting a bounded time for other processes), creates the
    /// `runs` table, and moves in the rows of runs that could not write theirs.
    pub fn open(warehouse: &Path) -> Result<Self, CatalogError> {
        std::fs::create_dir_all(warehouse).map_err(|e| CatalogError::Db {
            path: warehouse.to_owned(),
            message: e.to_string(),
            help: "check that the warehouse directory can be created and written",
        })?;
        let warehouse = warehouse.canonicalize().unwrap_or_else(|_| warehouse.to_owned());
        Self::open_waiting(warehouse, wait_limit())
    }

    fn open_waiting(warehouse: PathBuf, wait: std::time::Duration) -> Result<Self, CatalogError> {
        let path = warehouse.join(CATALOG_FILE);
        let conn = connect_waiting(&path, false, wait)?;
        let catalog = Catalog { conn, path, warehouse };
        catalog.exec(sql::CREATE_RUNS)?;
        catalog.apply_pending()?;
        Ok(catalog)
    }

    /// Opens the catalog to read: for writing when that works (so pending rows move in), else
    /// read-only (a read-only warehouse, or another process reading it).
    pub fn open_read(warehouse: &Path) -> Result<Self, CatalogError> {
        let warehouse = warehouse.canonicalize().unwrap_or_else(|_| warehouse.to_owned());
        // Writable at once if nobody holds it (pending rows then move in); otherwise read-only,
        // which works beside other readers and on a read-only warehouse.
        if warehouse.join(CATALOG_FILE).exists() || std::fs::metadata(&warehouse).is_ok() {
            match Self::open_waiting(warehouse.clone(), std::time::Duration::ZERO) {
                Ok(c) => return Ok(c),
                Err(e) => tracing::debug!("catalog not writable now, reading it read-only: {e}"),
            }
        }
        let path = warehouse.join(CATALOG_FILE);
        if !path.exists() {
            // A new warehouse: create it (and its empty catalog) as before.
            return Self::open(&warehouse);
        }
        let conn = connect_waiting(&path, true, wait_limit())?;
        Ok(Catalog { conn, path, warehouse })
    }

    /// Read-only, without creating or changing anything (a dry run): `None` when the warehouse
    /// has no catalog yet.
    pub fn open_existing_read_only(warehouse: &Path) -> Result<Option<Self>, CatalogError> {
        let warehouse = warehouse.canonicalize().unwrap_or_else(|_| warehouse.to_owned());
        let path = warehouse.join(CATALOG_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let conn = connect_waiting(&path, true, wait_limit())?;
        Ok(Some(Catalog { conn, path, warehouse }))
    }

    /// For the start of a run: writable when possible; read-only when another process holds
    /// the catalog (the run's row is then written at its end, or left pending).
    pub fn open_for_run(warehouse: &Path) -> Result<(Self, bool), CatalogError> {
        match Self::open(warehouse) {
            Ok(c) => Ok((c, true)),
            Err(e) => match Self::open_read(warehouse) {
                Ok(c) => {
                    tracing::warn!("the catalog is busy ({e}); the run goes on and records itself at the end");
                    Ok((c, false))
                }
                Err(_) => Err(e),
            },
        }
    }

    fn apply_pending(&self) -> Result<(), CatalogError> {
        let rows = pending_rows(&self.warehouse);
        if rows.is_empty() {
            return Ok(());
        }
        for (path, rec) in &rows {
            self.finish_run(rec)?;
            let _ = std::fs::remove_file(path);
        }
        tracing::info!(rows = rows.len(), "moved pending run rows into the catalog");
        self.refresh_views()?;
        Ok(())
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

    /// Sequence number for the next run of a pipeline (part of the run id), counting runs whose
    /// rows are still pending.
    pub fn next_run_number(&self, pipeline: &str) -> Result<u64, CatalogError> {
        let pending = pending_rows(&self.warehouse)
            .iter()
            .filter(|(_, r)| r.pipeline == pipeline)
            .map(|(_, r)| r.run_number)
            .max()
            .unwrap_or(0);
        Ok(self.max_run_number(pipeline)?.max(pending) + 1)
    }

    fn max_run_number(&self, pipeline: &str) -> Result<u64, CatalogError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(max(run_number), 0) FROM runs WHERE pipeline = ?",
                params![pipeline],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
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
    /// Records the start of a run. Earlier `running` rows of the pipeline belong to killed runs
    /// (the lock guarantees none is still active): the one the committed state names reached its
    /// commit point and becomes `succeeded`; the others are `abandoned`.
    pub fn start_run(
        &self,
        run: &RunRecord,
        started_at: &DateTime<Utc>,
        committed: Option<&crate::warehouse::PipelineState>,
    ) -> Result<(), CatalogError> {
        if let Some(state) = committed {
            self.conn
                .execute(
                    "UPDATE runs SET status = 'succeeded', snapshot_version = ?, watermark_after = CAST(? AS DATE),
                        error = 'killed after its commit point; its outputs are complete (recorded by the next run)'
                     WHERE pipeline = ? AND status = 'running' AND run_id = ?",
                    params![
                        state.snapshot_version.map(|v| v as i64),
                        state.watermark.map(|d| d.to_string()),
                        run.pipeline,
                        state.run_id
                    ],
                )
                .map_err(|e| self.err(e))?;
        }
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
                    run.source.as_str(),
                    run.source_location,
                    ts(started_at),
                    run.watermark_before.map(|d| d.to_string()),
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Writes a run's final row (replacing its `running` row, or inserting it when the start
    /// could not be recorded).
    pub fn finish_run(&self, run: &RunRecord) -> Result<(), CatalogError> {
        let ts_of = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| ts(&t.with_timezone(&Utc)))
        };
        self.conn
            .execute("DELETE FROM runs WHERE run_id = ?", params![run.run_id])
            .map_err(|e| self.err(e))?;
        self.conn
            .execute(
                "INSERT INTO runs (run_id, pipeline, run_number, mode, mode_reason, source, source_location, started_at,
                    finished_at, status, watermark_before, watermark_after, records_fetched, records_unchanged,
                    records_quarantined, snapshot_version, error, accepted_shift, records_pending)
                 VALUES (?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP), ?, CAST(? AS DATE), CAST(? AS DATE),
                    ?, ?, ?, ?, ?, ?, ?)",
                params![
                    run.run_id,
                    run.pipeline,
                    run.run_number as i64,
                    run.mode,
                    run.mode_reason,
                    run.source.as_str(),
                    run.source_location,
                    ts_of(&Some(run.started_at.clone())),
                    ts_of(&run.finished_at),
                    run.status.as_str(),
                    run.watermark_before.map(|d| d.to_string()),
                    run.watermark_after.map(|d| d.to_string()),
                    run.records_fetched,
                    run.records_unchanged,
                    run.records_quarantined,
                    run.snapshot_version,
                    run.error,
                    run.accepted_shift,
                    run.records_pending,
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
                        records_fetched, records_unchanged, records_quarantined, snapshot_version, error, accepted_shift,
                        records_pending
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
                    source: r.get::<_, String>(5)?.parse().map_err(|e: String| {
                        duckdb::Error::FromSqlConversionFailure(5, duckdb::types::Type::Text, e.into())
                    })?,
                    source_location: r.get(6)?,
                    started_at: r.get(7)?,
                    finished_at: r.get(8)?,
                    status: r.get::<_, String>(9)?.parse().map_err(|e: String| {
                        duckdb::Error::FromSqlConversionFailure(9, duckdb::types::Type::Text, e.into())
                    })?,
                    watermark_before: date(r.get(10)?),
                    watermark_after: date(r.get(11)?),
                    records_fetched: r.get(12)?,
                    records_unchanged: r.get(13)?,
                    records_quarantined: r.get(14)?,
                    snapshot_version: r.get(15)?,
                    error: r.get(16)?,
                    accepted_shift: r.get(17)?,
                    records_pending: r.get(18)?,
                })
            })
            .map_err(|e| self.err(e))?;
        let mut rows = rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))?;
        // Rows still waiting to be moved in (read-only catalog): shown all the same.
        for (_, rec) in pending_rows(&self.warehouse) {
            if pipeline.is_none_or(|p| p == rec.pipeline) && !rows.iter().any(|r| r.run_id == rec.run_id) {
                rows.push(rec);
            }
        }
        rows.sort_by(|a, b| {
            (&a.pipeline, std::cmp::Reverse(a.run_number)).cmp(&(&b.pipeline, std::cmp::Reverse(b.run_number)))
        });
        rows.truncate(limit as usize);
        Ok(rows)
    }

    /// (Re)creates the snapshot views. DuckDB binds a view when it is created, so they are only
    /// created once some snapshot exists; until then the catalog holds just `runs`.
    pub fn refresh_views(&self) -> Result<bool, CatalogError> {
        let warehouse = self.warehouse.to_string_lossy().into_owned();
        // The manifests view lists the manifests that parse, by name: one damaged manifest
        // (which `odsync verify` reports) must not break every view of every pipeline.
        let manifests = readable_manifests(&self.warehouse);
        if manifests.is_empty() {
            return Ok(false);
        }
        let list = manifests
            .iter()
            .map(|p| sql::quote_path(p))
            .collect::<Vec<_>>()
            .join(", ");
        let mut script = sql::render_raw(sql::CREATE_MANIFEST_VIEWS, &[("manifests", &list)]);
        for table in SNAPSHOT_TABLES {
            if !any_table(&self.warehouse, table) {
                continue;
            }
            let vars = [("warehouse", warehouse.as_str()), ("table", table.as_str())];
            script.push_str(&sql::render(sql::CREATE_SNAPSHOT_VIEW, &vars));
            script.push_str(&sql::render(sql::CREATE_LATEST_VIEW, &vars));
        }
        for (table, all_view, latest_view) in OUTPUT_VIEWS {
            if any_table(&self.warehouse, table) {
                let vars = [
                    ("warehouse", warehouse.as_str()),
                    ("table", table.as_str()),
                    ("all_view", all_view),
                    ("latest_view", latest_view),
                ];
                script.push_str(&sql::render(sql::CREATE_OUTPUT_VIEWS, &vars));
            }
        }
        script.push_str(sql::CREATE_SUCCESSOR_VIEWS);
        script.push_str(sql::CREATE_HIERARCHY_VIEWS);
        if any_table(&self.warehouse, Table::Trusts) {
            let ods_fields = crate::model::ODS_FIELDS
                .iter()
                .map(|(f, _)| format!("'{f}'"))
                .collect::<Vec<_>>()
                .join(", ");
            let views = sql::render(sql::CREATE_MERGE_VIEWS, &[("warehouse", warehouse.as_str())]);
            script.push_str(&sql::render_raw(&views, &[("ods_fields", &ods_fields)]));
        }
        if any_table(&self.warehouse, Table::History) {
            script.push_str(sql::CREATE_HISTORY_VIEWS);
        }
        if any_table(&self.warehouse, Table::Changes) {
            script.push_str(sql::CREATE_RECODING_VIEWS);
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

/// The catalog is a file other programs may hold; a bad `odsync query` lands here too.
impl crate::error::Classify for CatalogError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Environment
    }
}

//! The three-way merge of ODS with the team's trust table, in DuckDB SQL (`sql/merge/*.sql`).
//!
//! Inputs: the new ODS snapshot, the snapshot the previous merge used (base), the previous merged
//! trust table, the local table file, the reviewed overrides and the recorded conflict
//! resolutions. Outputs, as one immutable version under `<warehouse>/<pipeline>/merged/`:
//! `trusts.parquet` (the merged table), `conflicts.parquet` (every conflict ever seen, with its
//! status), `provenance.parquet` (where each value decided by this merge came from),
//! `sources.parquet` (the cells whose value does not come from ODS, for the next merge) and
//! `summary.json` (the `MergeReport`, including the input hash that makes a repeated merge of the
//! same inputs a no-op).
//!
//! Rust only loads and validates inputs (naming file and line on bad rows) and writes outputs;
//! every rule lives in the SQL files, which analysts can read.

pub mod resolutions;
mod trusts;

use crate::clock::Clock;
use crate::model::tables::sha256_hex;
use crate::sql::{
    SQL_BUILD_PROVENANCE, SQL_BUILD_TRUSTS, SQL_DECIDE_FIELDS, SQL_DETECT_CONFLICTS, SQL_FIND_CHANGED,
    SQL_SELECT_TOUCHED, quote_path,
};
pub mod config;

use crate::snapshot::SnapshotStore;
use crate::warehouse::{Layout, Output, Tables};
pub use config::{MergeConfig, Ownership};
use duckdb::{Connection, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::model::ODS_FIELDS;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("`{path}` line {line}: {message}\nHelp: fix the line and run again; nothing was merged")]
    BadInput { path: PathBuf, line: u64, message: String },
    #[error("`{path}`: {message}")]
    Input { path: PathBuf, message: String },
    #[error("merge SQL ({step}): {message}")]
    Sql { step: String, message: String },
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
}

/// Runs one file of `sql/merge/`, statement by statement (each timed at trace level).
fn run_step(conn: &Connection, step: &str, sql: &str) -> Result<(), MergeError> {
    let started = std::time::Instant::now();
    for statement in sql.split(";\n").filter(|s| !s.trim().is_empty()) {
        let t = std::time::Instant::now();
        conn.execute_batch(statement).map_err(sql_err(step))?;
        let name = statement.lines().find(|l| l.starts_with("CREATE")).unwrap_or_default();
        tracing::trace!(step, ms = t.elapsed().as_millis() as u64, name, "merge statement");
    }
    tracing::debug!(step, ms = started.elapsed().as_millis() as u64, "merge step");
    Ok(())
}

fn sql_err(step: &str) -> impl Fn(duckdb::Error) -> MergeError + '_ {
    move |e| MergeError::Sql {
        step: step.to_owned(),
        message: crate::engine::explain(e),
    }
}

/// Resolved merge settings for one pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct MergeSettings {
    pub ownership: BTreeMap<String, Ownership>,
    pub local_fields: Vec<String>,
    pub local_table: Option<PathBuf>,
    pub overrides: Option<PathBuf>,
}

impl MergeSettings {
    /// From the pipeline's `[merge]` section; `pipeline_file` locates the default overrides file.
    pub fn resolve(config: &MergeConfig, name: &str, pipeline_file: &Path) -> Self {
        let ownership = ODS_FIELDS
            .iter()
            .map(|(f, _)| {
                (
                    (*f).to_owned(),
                    config.fields.get(*f).copied().unwrap_or(config.default_ownership),
                )
            })
            .collect();
        let default_overrides = pipeline_file.with_file_name(format!("{name}.overrides.csv"));
        MergeSettings {
            ownership,
            local_fields: config.local_fields.clone(),
            local_table: config.local_table.clone(),
            overrides: config
                .overrides
                .clone()
                .or_else(|| default_overrides.exists().then_some(default_overrides)),
        }
    }

    fn all_fields(&self) -> Vec<(String, &'static str, bool)> {
        ODS_FIELDS
            .iter()
            .map(|(f, t)| ((*f).to_owned(), *t, false))
            .chain(self.local_fields.iter().map(|f| (f.clone(), "VARCHAR", true)))
            .collect()
    }
}

/// What a merge did: printed, put in `summary.json`, and checked by tests.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MergeReport {
    /// `merged`, or `unchanged` when the inputs equal the previous merge's.
    pub status: String,
    pub merged_version: u64,
    pub ods_version: u64,
    pub base_version: Option<u64>,
    pub run_id: String,
    pub rows: u64,
    pub not_in_ods: u64,
    /// Organisations whose fields were decided again (the rest were copied).
    pub touched: u64,
    /// Of those, organisations new to the trust table that nothing of the team's points at: taken
    /// from their ODS row whole (every organisation of a first merge without team data).
    #[serde(default)]
    pub fresh: u64,
    /// Where the changed organisation rows came from: `diff` (handed over by the run's diff) or
    /// `snapshots` (found by comparing row hashes, sql/merge/find_changed.sql).
    #[serde(default)]
    pub changed_rows_from: String,
    /// Cells decided per rule (`ods_update`, `conflict`, `ods_wins`, …; `resolution:*` counted
    /// together). Cells of a touched organisation that nothing could change are not decided again.
    pub rules: BTreeMap<String, u64>,
    pub conflicts_open: u64,
    pub conflicts_new: u64,
    pub conflicts_resolved: u64,
    pub conflicts_superseded: u64,
    pub conflicts_ignored: u64,
    /// The first conflicts this merge opened, in code and field order (what a dry run shows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_conflicts: Vec<NewConflict>,
    /// sha256 over every input; equal hashes mean an identical merge.
    pub inputs_hash: String,
}

/// A conflict a merge opened: the cell and the two values that disagree.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct NewConflict {
    pub code: String,
    pub field: String,
    pub kind: String,
    pub local_value: Option<String>,
    pub ods_value: Option<String>,
}

/// How many opened conflicts a report lists (the `conflicts` table has them all).
pub const NEW_CONFLICTS_LISTED: usize = 20;

fn file_sha(path: Option<&Path>) -> Result<String, MergeError> {
    match path {
        None => Ok("-".into()),
        Some(p) if !p.exists() => Ok("-".into()),
        Some(p) => std::fs::read(p).map(|b| sha256_hex(&b)).map_err(|e| MergeError::Input {
            path: p.to_owned(),
            message: e.to_string(),
        }),
    }
}

/// Versions of the merged outputs, ascending.
pub fn merged_versions(warehouse: &Path, pipeline: &str) -> Vec<u64> {
    Layout::new(warehouse, pipeline).versions(Output::Merged)
}

pub fn read_report(warehouse: &Path, pipeline: &str, version: u64) -> Option<MergeReport> {
    let path = Layout::new(warehouse, pipeline).meta_path(Output::Merged, version)?;
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The ODS snapshot a merge takes: a published version, or one staged by a run in progress.
pub struct OdsInput {
    pub version: u64,
    /// Where its tables are.
    pub tables: Tables,
    pub content_hash: String,
    /// The organisation rows the run's diff found changed, when it diffed exactly the base of
    /// this merge against this version: the merge then reads no snapshot row a second time.
    pub changed: Option<crate::diff::ChangedRows>,
}

impl OdsInput {
    pub fn published(store: &SnapshotStore, version: u64) -> Result<Self, MergeError> {
        let manifest = store.manifest(version)?;
        Ok(OdsInput {
            version,
            tables: store.tables(version),
            content_hash: manifest.content_hash,
            changed: None,
        })
    }

    /// With the rows a diff of `changed.from_version` → this version found changed.
    pub fn with_changed(mut self, changed: Option<crate::diff::ChangedRows>) -> Self {
        self.changed = changed.filter(|c| c.to_version == self.version);
        self
    }
}

/// Merges an ODS snapshot into the trust table of `pipeline`.
pub fn merge(
    warehouse: &Path,
    pipeline: &str,
    settings: &MergeSettings,
    ods: &OdsInput,
    run_id: &str,
    clock: &Clock,
    txn: &mut crate::warehouse::Txn,
) -> Result<MergeReport, MergeError> {
    let store = SnapshotStore::new(warehouse, pipeline);
    let ods_version = ods.version;
    let previous = merged_versions(warehouse, pipeline).last().copied();
    let prev_report = previous.and_then(|v| read_report(warehouse, pipeline, v));
    let resolutions_path = resolutions::path(warehouse, pipeline);
    let today = clock.today();
    let fields = settings.all_fields();
    let field_names: Vec<&str> = fields.iter().map(|(f, _, _)| f.as_str()).collect();
    // Read (and validate) the small inputs first: what is in force today goes into the hash, so a
    // merge reruns when an override or an ignore lapses, and not merely because a day passed.
    let overrides = match &settings.overrides {
        Some(path) => read_overrides(path, &field_names, today)?,
        None => Vec::new(),
    };
    let all_resolutions = resolutions::read(&resolutions_path)?;
    let lapsed_ignores: Vec<&str> = all_resolutions
        .iter()
        .filter(|r| r.resolution == "ignore" && r.until.is_some_and(|u| u < today))
        .map(|r| r.conflict_id.as_str())
        .collect();

    let inputs_hash = sha256_hex(
        serde_json::json!({
            "ods": ods.content_hash,
            "ownership": settings.ownership,
            "local_fields": settings.local_fields,
            "local_table": file_sha(settings.local_table.as_deref())?,
            "overrides_in_force": overrides,
            "resolutions": file_sha(Some(&resolutions_path))?,
            "lapsed_ignores": lapsed_ignores,
            "schema": crate::model::SCHEMA_VERSION,
        })
        .to_string()
        .as_bytes(),
    );
    if let Some(prev) = &prev_report
        && prev.inputs_hash == inputs_hash
    {
        return Ok(MergeReport {
            status: "unchanged".into(),
            ..prev.clone()
        });
    }
    let merged_version = previous.map_or(1, |v| v + 1);
    let base_version = prev_report.as_ref().map(|r| r.ods_version);
    let (conn, _spill) = crate::engine::session(warehouse, pipeline, "merge", run_id).map_err(sql_err("open"))?;

    // --- inputs ---
    let ods_cols: String = ODS_FIELDS
        .iter()
        .map(|(f, _)| format!("CAST({f} AS VARCHAR) AS {f}"))
        .collect::<Vec<_>>()
        .join(", ");
    let org_path = |v: u64| store.tables(v).file("organisations");
    // The big inputs are views over the Parquet files, so DuckDB reads only the columns and rows
    // each step needs (the touched set is found from code and row_hash alone).
    let mut prelude = format!(
        "CREATE TEMP VIEW ods_raw AS SELECT * FROM read_parquet({}, hive_partitioning = false);\n",
        quote_path(&ods.tables.file("organisations"))
    );
    // The base must exist: merging over an empty base would reopen every resolved conflict and
    // invent new ones. (The commit protocol publishes a merge with its snapshot, so only damage
    // to the warehouse gets here.)
    if let Some(b) = base_version
        && !org_path(b).exists()
    {
        return Err(MergeError::Input {
            path: org_path(b),
            message: format!(
                "the previous merge (version {}) was made on ODS snapshot version {b}, which is missing\nHelp: run `odsync verify {pipeline}`; restore the snapshot folder from a backup (nothing was merged)",
                previous.unwrap_or_default()
            ),
        });
    }
    let base_present = base_version;
    match base_present {
        Some(b) => prelude.push_str(&format!(
            "CREATE TEMP VIEW base_raw AS SELECT * FROM read_parquet({}, hive_partitioning = false);\n",
            quote_path(&org_path(b))
        )),
        None => prelude.push_str("CREATE TEMP VIEW base_raw AS SELECT * FROM ods_raw LIMIT 0;\n"),
    }
    let typed_defs: String = fields
        .iter()
        .map(|(f, t, _)| format!("{f} {t}"))
        .collect::<Vec<_>>()
        .join(", ");
    prelude.push_str(&format!(
        "CREATE TEMP TABLE prev_trusts_shape (code VARCHAR, {typed_defs}, not_in_ods BOOLEAN);\n"
    ));
    prelude.push_str(
        "CREATE TEMP TABLE prev_conflicts (conflict_id VARCHAR, code VARCHAR, field VARCHAR, kind VARCHAR, base_value VARCHAR, local_value VARCHAR, ods_value VARCHAR, first_seen_run VARCHAR, last_seen_run VARCHAR, status VARCHAR, resolution VARCHAR, resolution_value VARCHAR, resolved_by VARCHAR, resolved_at VARCHAR, reason VARCHAR);\n\
         CREATE TEMP TABLE prev_sources (code VARCHAR, field VARCHAR, source VARCHAR);\n\
         CREATE TEMP TABLE local_long (code VARCHAR, field VARCHAR, value VARCHAR);\n\
         CREATE TEMP TABLE local_codes (code VARCHAR);\n\
         CREATE TEMP TABLE overrides_active (code VARCHAR, field VARCHAR, value VARCHAR, reason VARCHAR, author VARCHAR);\n\
         CREATE TEMP TABLE resolutions (conflict_id VARCHAR, resolution VARCHAR, value VARCHAR, reason VARCHAR, resolved_by VARCHAR, resolved_at VARCHAR, until DATE);\n\
         CREATE TEMP TABLE merge_fields (field VARCHAR, is_local_field BOOLEAN, ownership VARCHAR);\n\
         CREATE TEMP TABLE merge_params (run_id VARCHAR, ods_version BIGINT, merged_version BIGINT, merged_at VARCHAR);\n",
    );
    match previous {
        Some(prev) => {
            let dir = Layout::new(warehouse, pipeline).tables(prev);
            // UNION BY NAME against the current shape: a local field added since reads as NULL.
            prelude.push_str(&format!(
                "CREATE TEMP VIEW prev_trusts AS SELECT * FROM prev_trusts_shape UNION ALL BY NAME SELECT * FROM read_parquet({}, hive_partitioning = false);\n\
                 INSERT INTO prev_conflicts BY NAME SELECT * FROM read_parquet({}, hive_partitioning = false);\n\
                 INSERT INTO prev_sources SELECT code, field, source FROM read_parquet({}, hive_partitioning = false);\n",
                quote_path(&dir.file("trusts")),
                quote_path(&dir.file("conflicts")),
                quote_path(&dir.file("sources")),
            ));
        }
        None => prelude.push_str("CREATE TEMP VIEW prev_trusts AS SELECT * FROM prev_trusts_shape;\n"),
    }
    conn.execute_batch(&prelude).map_err(sql_err("load inputs"))?;
    // The previous trust table is read while DuckDB loads the other inputs and finds what changed.
    let shape = trusts::shape(&conn)?;
    let previous_read = previous.map(|v| {
        let path = Layout::new(warehouse, pipeline).table_file("trusts", v);
        trusts::read_previous(&path, &shape)
    });
    {
        let mut insert = conn
            .prepare("INSERT INTO merge_fields VALUES (?, ?, ?)")
            .map_err(sql_err("load inputs"))?;
        for (f, _, local) in &fields {
            let ownership = if *local {
                "local"
            } else {
                settings.ownership[f].as_str()
            };
            insert
                .execute(params![f, local, ownership])
                .map_err(sql_err("load inputs"))?;
        }
        conn.execute(
            "INSERT INTO merge_params VALUES (?, ?, ?, ?)",
            params![
                run_id,
                ods_version as i64,
                merged_version as i64,
                clock.now().to_rfc3339()
            ],
        )
        .map_err(sql_err("load inputs"))?;
    }
    if let Some(path) = &settings.local_table {
        load_local_table(&conn, path, &field_names)?;
    }
    {
        let mut insert = conn
            .prepare("INSERT INTO overrides_active VALUES (?, ?, ?, ?, ?)")
            .map_err(sql_err("load overrides"))?;
        for o in &overrides {
            insert
                .execute(params![o.code, o.field, o.value, o.reason, o.author])
                .map_err(sql_err("load overrides"))?;
        }
    }
    {
        let mut insert = conn
            .prepare("INSERT INTO resolutions VALUES (?, ?, ?, ?, ?, ?, CAST(? AS DATE))")
            .map_err(sql_err("load resolutions"))?;
        for r in &all_resolutions {
            insert
                .execute(params![
                    r.conflict_id,
                    r.resolution,
                    r.value,
                    r.reason,
                    r.by,
                    r.at,
                    r.until.map(|d| d.to_string())
                ])
                .map_err(sql_err("load resolutions"))?;
        }
    }
    // The newest resolution per conflict; an expired ignore no longer applies.
    conn.execute(
        "CREATE TEMP TABLE latest_resolutions AS
         SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY conflict_id ORDER BY resolved_at DESC, rowid DESC) AS n FROM resolutions)
         WHERE n = 1 AND NOT (resolution = 'ignore' AND until IS NOT NULL AND until < CAST(? AS DATE))",
        params![today.to_string()],
    )
    .map_err(sql_err("load resolutions"))?;

    // --- which organisations changed: from the run's diff when it compared this very base ---
    let started = std::time::Instant::now();
    let handoff = ods.changed.as_ref().filter(|c| base_present == Some(c.from_version));
    let changed_rows_from = if handoff.is_some() { "diff" } else { "snapshots" };
    match handoff {
        Some(changed) => {
            conn.execute_batch(
                "CREATE TABLE ods_changed AS SELECT * FROM ods_raw LIMIT 0;\n\
                 CREATE TABLE base_changed AS SELECT * FROM base_raw LIMIT 0;",
            )
            .map_err(sql_err("load changed rows"))?;
            for (table, batch) in [("ods_changed", &changed.new), ("base_changed", &changed.old)] {
                let mut appender = conn.appender(table).map_err(sql_err("load changed rows"))?;
                appender
                    .append_record_batch(batch.clone())
                    .map_err(sql_err("load changed rows"))?;
                appender.flush().map_err(sql_err("load changed rows"))?;
            }
        }
        None => conn
            .execute_batch(SQL_FIND_CHANGED)
            .map_err(sql_err("find_changed.sql"))?,
    }
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "changed rows");

    // --- the rules ---
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
    // A fresh organisation's cells (decide_fields.sql) and row (build_trusts.sql): its ODS values.
    let fresh_cells = fields
        .iter()
        .map(|(f, _, local)| {
            if *local {
                format!("NULL::VARCHAR AS {f}")
            } else {
                format!("CAST(o.{f} AS VARCHAR) AS {f}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
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
    let lists = [
        ("fresh_cells", fresh_cells.as_str()),
        ("ods_casts", ods_cols.as_str()),
        ("all_columns", all_columns.as_str()),
        ("cell_columns", cell_columns.as_str()),
        ("cell_structs", cell_structs.as_str()),
    ];
    run_step(
        &conn,
        "select_touched.sql",
        &crate::sql::render_raw(SQL_SELECT_TOUCHED, &lists),
    )?;
    // The previous trust table is read once: touched rows to DuckDB, the rest kept for the write.
    let started = std::time::Instant::now();
    let kept_rows = trusts::split_previous(&conn, previous_read)?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "previous trust table split");
    run_step(
        &conn,
        "decide_fields.sql",
        &crate::sql::render_raw(SQL_DECIDE_FIELDS, &lists),
    )?;
    run_step(&conn, "detect_conflicts.sql", SQL_DETECT_CONFLICTS)?;
    run_step(
        &conn,
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
    // --- outputs, then the report ---
    // The trust table, by far the largest output, is encoded on other threads while DuckDB builds
    // the provenance, writes the smaller tables and counts the report (nothing of which it needs).
    let tmp = output_folder(txn, merged_version)?;
    let started = std::time::Instant::now();
    let (trust_rows, written) = trusts::trust_rows(&conn, kept_rows, &shape)?;
    tracing::trace!(ms = started.elapsed().as_millis() as u64, "merge trust rows ready");
    let trusts_file = tmp.join("trusts.parquet");
    let mut report = MergeReport {
        status: "merged".into(),
        merged_version,
        ods_version,
        base_version,
        run_id: run_id.to_owned(),
        rows: written.rows,
        not_in_ods: written.not_in_ods,
        changed_rows_from: changed_rows_from.to_owned(),
        inputs_hash,
        ..MergeReport::default()
    };
    std::thread::scope(|scope| -> Result<(), MergeError> {
        let encoding = scope.spawn(|| trust_rows.write(&trusts_file));
        let rest = write_small_outputs(&conn, &tmp).and_then(|()| count_report(&conn, &mut report));
        // Closing the database frees every temporary table (~0.05 s at 1M rows): done while the
        // trust table is still being encoded.
        drop(conn);
        encoding.join().expect("encoding the trust table does not panic")?;
        rest
    })?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "merge outputs written");
    publish_outputs(&tmp, merged_version, &report, txn)?;
    Ok(report)
}

/// Builds the provenance (`build_provenance.sql`) and writes the merge's tables other than the
/// trust table into `tmp`, each sorted by key (by DuckDB: see below).
fn write_small_outputs(conn: &Connection, tmp: &Path) -> Result<(), MergeError> {
    run_step(conn, "build_provenance.sql", SQL_BUILD_PROVENANCE)?;
    // DuckDB writes them itself (sorted, zstd), as it writes the history: the provenance of a
    // baseline is one row per cell (6.25M at 250k organisations), and exporting it to Arrow to
    // encode it again took longer than DuckDB's own parallel Parquet writer.
    for (table, order) in [
        ("conflicts", "code, field, conflict_id"),
        ("provenance", "code, field"),
        ("sources", "code, field"),
    ] {
        conn.execute_batch(&format!(
            "COPY (SELECT * FROM {table} ORDER BY {order}) TO {} (FORMAT parquet, COMPRESSION zstd)",
            crate::sql::quote_path(&tmp.join(format!("{table}.parquet")))
        ))
        .map_err(sql_err("write outputs"))?;
    }
    Ok(())
}

/// Fills in the report's counts: touched organisations, decisions per rule and conflicts.
fn count_report(conn: &Connection, report: &mut MergeReport) -> Result<(), MergeError> {
    let count = |sql: &str| -> Result<u64, MergeError> {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sql_err("report"))
    };
    let mut stmt = conn
        .prepare(
            "SELECT CASE WHEN rule LIKE 'resolution:%' THEN 'resolution' ELSE rule END AS r, count(*) \
             FROM (SELECT rule FROM decisions WHERE in_ods OR NOT in_base UNION ALL SELECT rule FROM fresh_decisions) \
             GROUP BY r ORDER BY r",
        )
        .map_err(sql_err("report"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(sql_err("report"))?;
    for row in rows {
        let (rule, n) = row.map_err(sql_err("report"))?;
        report.rules.insert(rule, n as u64);
    }
    report.touched = count("SELECT count(*) FROM touched")?;
    report.fresh = count("SELECT count(*) FROM fresh")?;
    report.conflicts_open = count("SELECT count(*) FROM conflicts WHERE status = 'open'")?;
    report.conflicts_new = count(
        "SELECT count(*) FROM conflicts WHERE status IN ('open', 'ignored') AND first_seen_run = last_seen_run AND last_seen_run = (SELECT run_id FROM merge_params)",
    )?;
    report.conflicts_resolved = count(
        "SELECT count(*) FROM conflicts c WHERE status = 'resolved' AND conflict_id IN (SELECT conflict_id FROM prev_conflicts WHERE status IN ('open', 'ignored'))",
    )?;
    report.conflicts_superseded = count(
        "SELECT count(*) FROM conflicts c WHERE status = 'superseded' AND conflict_id IN (SELECT conflict_id FROM prev_conflicts WHERE status IN ('open', 'ignored'))",
    )?;
    report.conflicts_ignored = count("SELECT count(*) FROM conflicts WHERE status = 'ignored'")?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT code, field, kind, local_value, ods_value FROM conflicts WHERE status IN ('open', 'ignored') AND first_seen_run = last_seen_run AND last_seen_run = (SELECT run_id FROM merge_params) ORDER BY code, field LIMIT {NEW_CONFLICTS_LISTED}"
        ))
        .map_err(sql_err("report"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(NewConflict {
                code: r.get(0)?,
                field: r.get(1)?,
                kind: r.get(2)?,
                local_value: r.get(3)?,
                ods_value: r.get(4)?,
            })
        })
        .map_err(sql_err("report"))?;
    for row in rows {
        report.new_conflicts.push(row.map_err(sql_err("report"))?);
    }
    Ok(())
}

/// The version's temporary output folder, empty; [`publish_outputs`] adds the summary and renames
/// it into place. The trust table is written by [`trusts::Ordered::write`] from
/// [`trusts::trust_rows`], the other tables in the order DuckDB sorts them.
fn output_folder(txn: &mut crate::warehouse::Txn, version: u64) -> Result<PathBuf, MergeError> {
    txn.temp_dir(Output::Merged, version).map_err(|e| MergeError::Input {
        path: e.path.clone(),
        message: e.to_string(),
    })
}

/// Writes the summary, fsyncs the folder and stages it in the transaction: the merged version
/// appears when the run (or merge) commits.
fn publish_outputs(
    tmp: &Path,
    version: u64,
    report: &MergeReport,
    txn: &mut crate::warehouse::Txn,
) -> Result<(), MergeError> {
    let wh = |e: crate::warehouse::WarehouseError| MergeError::Input {
        path: e.path.clone(),
        message: e.to_string(),
    };
    let mut text = serde_json::to_string_pretty(report).expect("report serialises");
    text.push('\n');
    crate::warehouse::write_synced(&tmp.join("summary.json"), text.as_bytes()).map_err(wh)?;
    crate::warehouse::sync_tree(tmp).map_err(wh)?;
    txn.stage_version(tmp, Output::Merged, version, false).map_err(wh)
}

fn load_local_table(conn: &Connection, path: &Path, fields: &[&str]) -> Result<(), MergeError> {
    if !path.exists() {
        return Err(MergeError::Input {
            path: path.to_owned(),
            message: "the local table file does not exist\nHelp: fix `merge.local_table` in the pipeline file".into(),
        });
    }
    let is_parquet = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let source = if is_parquet {
        format!("read_parquet({}, hive_partitioning = false)", quote_path(path))
    } else {
        format!("read_csv({}, header = true, all_varchar = true)", quote_path(path))
    };
    let err = |e: duckdb::Error| MergeError::Input {
        path: path.to_owned(),
        message: e.to_string(),
    };
    conn.execute_batch(&format!("CREATE TEMP TABLE local_raw AS SELECT * FROM {source};"))
        .map_err(err)?;
    let columns: Vec<String> = conn
        .prepare("SELECT column_name FROM (DESCRIBE local_raw)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(err)?;
    if !columns.iter().any(|c| c == "code") {
        return Err(MergeError::Input {
            path: path.to_owned(),
            message: "no `code` column: the local table must be keyed by ODS code".into(),
        });
    }
    let unknown: Vec<&String> = columns
        .iter()
        .filter(|c| *c != "code" && !fields.contains(&c.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(MergeError::Input {
            path: path.to_owned(),
            message: format!(
                "columns {} are not trust table fields\nHelp: add team-owned columns to `merge.local_fields`, or drop them from the file",
                unknown.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    // An organisation the file lists is decided cell by cell even when all its cells are empty
    // (select_touched.sql: only organisations nothing local points at are `fresh`).
    conn.execute_batch(
        "INSERT INTO local_codes SELECT DISTINCT CAST(code AS VARCHAR) FROM local_raw WHERE code IS NOT NULL;",
    )
    .map_err(err)?;
    if columns.len() > 1 {
        // UNPIVOT drops NULLs: an empty cell is not a local value.
        conn.execute_batch(
            "CREATE TEMP VIEW local_wide AS SELECT code, COLUMNS(* EXCLUDE code)::VARCHAR FROM local_raw WHERE code IS NOT NULL;
             CREATE TEMP TABLE local_unpivoted AS UNPIVOT local_wide ON COLUMNS(* EXCLUDE code) INTO NAME field VALUE value;
             INSERT INTO local_long SELECT code, field, value FROM local_unpivoted WHERE value <> '';",
        )
        .map_err(err)?;
    }
    Ok(())
}

/// One row of the overrides file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Override {
    pub code: String,
    pub field: String,
    pub value: Option<String>,
    pub reason: String,
    pub author: String,
    pub expires: Option<chrono::NaiveDate>,
}

/// Opens a headed CSV input (overrides, resolutions), trimming cells.
pub(crate) fn open_csv(path: &Path) -> Result<csv::Reader<std::fs::File>, MergeError> {
    csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| MergeError::Input {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// Reads and validates the overrides file as a whole; expired overrides are dropped.
pub fn read_overrides(path: &Path, fields: &[&str], today: chrono::NaiveDate) -> Result<Vec<Override>, MergeError> {
    let mut reader = open_csv(path)?;
    let headers = reader
        .headers()
        .map_err(|e| MergeError::Input {
            path: path.to_owned(),
            message: e.to_string(),
        })?
        .clone();
    let expected = ["code", "field", "value", "reason", "author", "expires"];
    if headers.iter().collect::<Vec<_>>() != expected {
        return Err(MergeError::BadInput {
            path: path.to_owned(),
            line: 1,
            message: format!("the header must be `{}`", expected.join(",")),
        });
    }
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let bad = |message: String| MergeError::BadInput {
            path: path.to_owned(),
            line,
            message,
        };
        let row = row.map_err(|e| bad(e.to_string()))?;
        let get = |n: usize| row.get(n).unwrap_or_default().to_owned();
        let (code, field, reason, author) = (get(0), get(1), get(3), get(4));
        if code.is_empty() {
            return Err(bad("`code` is empty".into()));
        }
        if !fields.contains(&field.as_str()) {
            return Err(bad(format!(
                "`{field}` is not a trust table field ({})",
                fields.join(", ")
            )));
        }
        if reason.is_empty() || author.is_empty() {
            return Err(bad("an override needs a `reason` and an `author`".into()));
        }
        let expires = match get(5).as_str() {
            "" => None,
            d => Some(
                d.parse()
                    .map_err(|_| bad(format!("`expires`: `{d}` is not a YYYY-MM-DD date")))?,
            ),
        };
        if expires.is_some_and(|e| e < today) {
            continue;
        }
        let value = Some(get(2)).filter(|v| !v.is_empty());
        out.push(Override {
            code,
            field,
            value,
            reason,
            author,
            expires,
        });
    }
    Ok(out)
}

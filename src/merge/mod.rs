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

mod decide;
mod inputs;
mod outputs;
mod plan;
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
use plan::Plan;
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
    pub status: crate::model::states::MergeStatus,
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
    let job = Job {
        warehouse,
        pipeline,
        settings,
        ods,
        run_id,
        clock,
    };
    let plan = match plan::plan(&job)? {
        plan::Planned::Unchanged(report) => return Ok(report),
        plan::Planned::Merge(plan) => plan,
    };
    let (conn, _spill) = crate::engine::session(warehouse, pipeline, "merge", run_id).map_err(sql_err("open"))?;
    let inputs::Loaded {
        shape,
        previous_read,
        changed_rows_from,
    } = inputs::load(&conn, &job, &plan)?;
    let kept_rows = decide::decide(&conn, &plan.fields, previous_read)?;
    outputs::write(conn, &job, &plan, kept_rows, &shape, changed_rows_from, txn)
}

/// What one merge is asked to do: the arguments of [`merge`], handed to each of its stages.
#[derive(Clone, Copy)]
struct Job<'a> {
    warehouse: &'a Path,
    pipeline: &'a str,
    settings: &'a MergeSettings,
    ods: &'a OdsInput,
    run_id: &'a str,
    clock: &'a Clock,
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

impl crate::error::Classify for MergeError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            MergeError::BadInput { .. } | MergeError::Input { .. } => crate::error::ErrorClass::User,
            MergeError::Sql { message, .. } => crate::engine::class_of(message),
            MergeError::Snapshot(e) => e.class(),
        }
    }
}

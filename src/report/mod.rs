//! The run report: one self-contained HTML page per run (`<warehouse>/<pipeline>/_reports/
//! <run id>.html`, and `latest.html`), written after the run commits and on demand by
//! `odsync report`. It shows what was fetched and how the counts reconcile, the changes by kind and
//! by parent organisation with charts, the organisations behind the biggest changes, conflicts
//! opened and resolved, the publication-shift guard's verdict and the recent runs.
//!
//! The page is rendered by minijinja from `report.html.j2`; the charts are SVG drawn by plotters
//! and inlined, so nothing is fetched when the page is viewed. Every number taken from the run's
//! summary carries `data-key="<path in the --json summary>"`, which is how the tests check the page
//! against the summary. The run's `--json` summary is saved beside the page (`<run id>.json`) so
//! the report can be rendered again later; the page is redacted like every other output.

mod charts;

use crate::catalog::{Catalog, RunRecord};
use crate::model::states::ChangeKind;
use crate::model::states::Table;
use crate::sql::quote_path;
use crate::warehouse::{Layout, Output};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

const TEMPLATE: &str = include_str!("report.html.j2");
/// The folder of the reports in a pipeline folder (`_` keeps it out of table readers' way).
pub const REPORTS: &str = "_reports";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {message}\nHelp: {help}")]
    Io {
        path: PathBuf,
        message: String,
        help: &'static str,
    },
    #[error(
        "no report can be made for pipeline `{pipeline}`{run}: no saved run summary in {dir}\nHelp: reports exist for runs made by this version of odsync; run the pipeline (`odsync run {pipeline}`)"
    )]
    NoRun { pipeline: String, run: String, dir: String },
    #[error("rendering the report: {0}\nHelp: this is a bug in odsync; please report it")]
    Render(String),
}

fn io<'a>(path: &'a Path, help: &'static str) -> impl FnOnce(std::io::Error) -> ReportError + 'a {
    move |e| ReportError::Io {
        path: path.to_owned(),
        message: e.to_string(),
        help,
    }
}

pub fn reports_dir(warehouse: &Path, pipeline: &str) -> PathBuf {
    warehouse.join(pipeline).join(REPORTS)
}

/// Saves the run's summary and writes its report (and `latest.html`); returns the report's path.
pub fn write_for_run(warehouse: &Path, pipeline: &str, summary: &Value) -> Result<PathBuf, ReportError> {
    let run_id = summary["run_id"].as_str().unwrap_or("run").to_owned();
    let dir = reports_dir(warehouse, pipeline);
    std::fs::create_dir_all(&dir).map_err(io(&dir, "check that the warehouse is writable"))?;
    let mut text = serde_json::to_string_pretty(summary).expect("summary serialises");
    text.push('\n');
    write_atomic(&dir.join(format!("{run_id}.json")), &crate::redact::text(&text))?;
    let html = render(warehouse, pipeline, summary)?;
    let path = dir.join(format!("{run_id}.html"));
    write_atomic(&path, &html)?;
    write_atomic(&dir.join("latest.html"), &html)?;
    Ok(path)
}

/// The report of a saved run (the latest one by default), rendered now.
pub fn render_saved(warehouse: &Path, pipeline: &str, run: Option<&str>) -> Result<(String, String), ReportError> {
    let dir = reports_dir(warehouse, pipeline);
    let no_run = || ReportError::NoRun {
        pipeline: pipeline.to_owned(),
        run: run.map(|r| format!(" (run `{r}`)")).unwrap_or_default(),
        dir: dir.display().to_string(),
    };
    let path = match run {
        Some(r) => dir.join(format!("{r}.json")),
        None => {
            // The newest by run number (the run id ends in it).
            let mut saved: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .filter_map(|p| {
                    let stem = p.file_stem()?.to_string_lossy().into_owned();
                    Some((stem.rsplit('-').next()?.parse().ok()?, p))
                })
                .collect();
            saved.sort();
            saved.pop().ok_or_else(no_run)?.1
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|_| no_run())?;
    let summary: Value = serde_json::from_str(&text).map_err(|e| ReportError::Io {
        path: path.clone(),
        message: format!("not a run summary: {e}"),
        help: "remove the file; `odsync run` writes a new one",
    })?;
    let run_id = summary["run_id"].as_str().unwrap_or("run").to_owned();
    Ok((run_id, render(warehouse, pipeline, &summary)?))
}

pub fn write_atomic(path: &Path, text: &str) -> Result<(), ReportError> {
    let tmp = path.with_file_name(format!(
        ".tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, text).map_err(io(&tmp, "check that the folder is writable"))?;
    std::fs::rename(&tmp, path).map_err(io(path, "check that the folder is writable"))
}

/// An organisation behind one of the biggest changes.
#[derive(Debug, Serialize)]
struct Notable {
    code: String,
    name: Option<String>,
    /// `None` for a row-level change (a deleted organisation's row).
    field: Option<String>,
    old_value: Option<String>,
    new_value: Option<String>,
}

#[derive(Debug, Serialize)]
struct NotableGroup {
    kind: String,
    organisations: u64,
    items: Vec<Notable>,
}

#[derive(Debug, Serialize)]
struct ParentRow {
    parent: String,
    name: Option<String>,
    organisations: u64,
    kinds: String,
}

#[derive(Debug, Serialize)]
struct RecentRun {
    run_number: u64,
    run_id: String,
    started_at: String,
    status: String,
    seconds: Option<f64>,
    /// `seconds` as shown (one decimal).
    shown_seconds: String,
    fetched: Option<i64>,
    version: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Check {
    what: String,
    ok: bool,
    detail: String,
}

#[derive(Debug, Serialize)]
struct Extras {
    by_parent: Vec<ParentRow>,
    notable: Vec<NotableGroup>,
    runs: Vec<RecentRun>,
    checks: Vec<Check>,
    chart_kinds: Option<String>,
    chart_parents: Option<String>,
    chart_runs: Option<String>,
    /// Why the changes detail is missing, when it is (an unchanged run, a first run, gc).
    changes_note: Option<String>,
}

/// Renders the report of `summary` (a run's `--json` document) from the committed warehouse.
pub fn render(warehouse: &Path, pipeline: &str, summary: &Value) -> Result<String, ReportError> {
    let layout = Layout::new(warehouse, pipeline);
    let version = summary["snapshot_version"].as_u64();
    let t0 = std::time::Instant::now();
    let lap = |what: &str| tracing::trace!(ms = t0.elapsed().as_millis() as u64, what, "report");
    let runs = recent_runs(warehouse, pipeline);
    lap("recent runs");
    let checks = checks(&layout, summary);
    lap("checks");
    let mut extras = Extras {
        by_parent: Vec::new(),
        notable: Vec::new(),
        runs,
        checks,
        chart_kinds: None,
        chart_parents: None,
        chart_runs: None,
        changes_note: None,
    };
    let diff = &summary["diff"];
    match (version, diff.is_object()) {
        (Some(v), true) => {
            let changes = layout.table_file(Table::Changes, v);
            let from = diff["from_version"].as_u64().unwrap_or(0);
            if changes.exists() {
                match changes_detail(
                    &changes,
                    &layout.table_file(Table::Organisations, v),
                    &layout.table_file(Table::Organisations, from),
                ) {
                    Ok((parents, notable)) => {
                        extras.by_parent = parents;
                        extras.notable = notable;
                    }
                    Err(e) => extras.changes_note = Some(format!("the changes could not be read: {e}")),
                }
            } else {
                extras.changes_note = Some(format!(
                    "the changes of version {v} are no longer in the warehouse (removed by `odsync gc`)"
                ));
            }
        }
        _ => {
            extras.changes_note = Some(match summary["status"].as_str() {
                Some("unchanged") => "nothing changed: the snapshot equals the latest version".into(),
                _ => "a first version: nothing to compare with".into(),
            })
        }
    }
    lap("changes");
    if let Some(kinds) = diff["by_kind"].as_object()
        && !kinds.is_empty()
    {
        let (labels, values): (Vec<String>, Vec<u64>) =
            kinds.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).unzip();
        extras.chart_kinds = charts::bars("Organisations changed, by kind", &labels, &values).ok();
    }
    if !extras.by_parent.is_empty() {
        let top: Vec<&ParentRow> = extras.by_parent.iter().take(10).collect();
        let labels: Vec<String> = top.iter().map(|p| p.parent.clone()).collect();
        let values: Vec<u64> = top.iter().map(|p| p.organisations).collect();
        extras.chart_parents = charts::bars("Organisations changed, by parent", &labels, &values).ok();
    }
    if extras.runs.len() > 1 {
        let runs: Vec<&RecentRun> = extras.runs.iter().rev().collect();
        let labels: Vec<String> = runs.iter().map(|r| format!("#{}", r.run_number)).collect();
        let values: Vec<u64> = runs
            .iter()
            .map(|r| (r.seconds.unwrap_or(0.0) * 1000.0).round() as u64)
            .collect();
        extras.chart_runs = charts::bars("Run duration (ms), oldest to newest", &labels, &values).ok();
    }
    lap("charts");
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("report", TEMPLATE)
        .map_err(|e| ReportError::Render(e.to_string()))?;
    let html = env
        .get_template("report")
        .and_then(|t| {
            t.render(minijinja::context! {
                s => summary,
                x => extras,
                pipeline => pipeline,
                odsync_version => env!("CARGO_PKG_VERSION"),
            })
        })
        .map_err(|e| ReportError::Render(format!("{e:#}")))?;
    Ok(crate::redact::text(&html))
}

/// Reconciliation checks: the listing against the server's count, the snapshot's rows against its
/// manifest, the records accounted for.
fn checks(layout: &Layout, s: &Value) -> Vec<Check> {
    let mut out = Vec::new();
    let fetch = &s["fetch"];
    if let (Some(listed), Some(total)) = (fetch["listed"].as_u64(), fetch["total_count_header"].as_u64()) {
        out.push(Check {
            what: "listed codes against the server's X-Total-Count".into(),
            ok: listed <= total,
            detail: format!("{listed} listed, X-Total-Count {total} (duplicates across pages are listed once)"),
        });
    }
    if let Some(v) = s["snapshot_version"].as_u64()
        && let Some(path) = layout.meta_path(Output::Snapshot, v)
        && let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(manifest) = serde_json::from_str::<Value>(&text)
    {
        let in_manifest = manifest["tables"]["organisations"]["rows"].as_u64();
        let orgs = s["records"]["organisations"].as_u64();
        out.push(Check {
            what: format!("organisations against manifest of version {v}"),
            ok: in_manifest == orgs,
            detail: format!(
                "{} in the run, {} in the manifest",
                orgs.map_or("?".into(), |n| n.to_string()),
                in_manifest.map_or("?".into(), |n| n.to_string())
            ),
        });
    }
    out
}

fn recent_runs(warehouse: &Path, pipeline: &str) -> Vec<RecentRun> {
    let rows: Vec<RunRecord> = match Catalog::open_existing_read_only(warehouse) {
        Ok(Some(c)) => c.runs(Some(pipeline), 14).unwrap_or_default(),
        _ => Vec::new(),
    };
    let dir = reports_dir(warehouse, pipeline);
    rows.into_iter()
        .map(|r| {
            // The wall time the run measured (its saved summary); the run row's times are on the
            // run's clock, which a pinned ODSYNC_NOW stops.
            let measured = std::fs::read_to_string(dir.join(format!("{}.json", r.run_id)))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v["duration_ms"].as_u64())
                .map(|ms| ms as f64 / 1000.0);
            let seconds = measured.or_else(|| match (&r.finished_at, parse_ts(&r.started_at)) {
                (Some(f), Some(start)) => parse_ts(f).map(|end| (end - start).num_milliseconds() as f64 / 1000.0),
                _ => None,
            });
            RecentRun {
                run_number: r.run_number,
                run_id: r.run_id,
                started_at: r.started_at.chars().take(19).collect(),
                status: r.status.to_string(),
                seconds,
                shown_seconds: seconds.map(|s| format!("{s:.1}")).unwrap_or_default(),
                fetched: r.records_fetched,
                version: r.snapshot_version,
            }
        })
        .collect()
}

fn parse_ts(text: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok()
}

type Detail = (Vec<ParentRow>, Vec<NotableGroup>);

/// The changes by parent organisation, and the organisations behind the biggest kinds of change.
fn changes_detail(changes: &Path, new_orgs: &Path, old_orgs: &Path) -> Result<Detail, duckdb::Error> {
    let conn = duckdb::Connection::open_in_memory()?;
    let old = if old_orgs.exists() {
        format!(
            "SELECT code, name, parent_code FROM read_parquet({})",
            quote_path(old_orgs)
        )
    } else {
        "SELECT NULL::VARCHAR AS code, NULL::VARCHAR AS name, NULL::VARCHAR AS parent_code LIMIT 0".into()
    };
    // Tables, not views: the queries below read them several times, and a view would decode the
    // Parquet files for each. (The section takes ~0.4 s at 250k organisations either way: most
    // of it is reading the two organisations files once.)
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE changes AS SELECT * FROM read_parquet({});
         CREATE TEMP TABLE new_orgs AS SELECT code, name, parent_code FROM read_parquet({});
         CREATE TEMP TABLE old_orgs AS {old};
         CREATE TEMP TABLE orgs AS SELECT * FROM new_orgs
             UNION ALL SELECT * FROM old_orgs WHERE code NOT IN (SELECT code FROM new_orgs);",
        quote_path(changes),
        quote_path(new_orgs)
    ))?;
    let mut stmt = conn.prepare(
        "WITH c AS (SELECT DISTINCT code, change_kind FROM changes WHERE change_kind <> 'metadata')
         SELECT coalesce(o.parent_code, '(none)') AS parent, any_value(p.name) AS parent_name,
                count(DISTINCT c.code) AS organisations,
                string_agg(DISTINCT c.change_kind, ', ' ORDER BY c.change_kind) AS kinds
         FROM c LEFT JOIN orgs AS o USING (code) LEFT JOIN orgs AS p ON p.code = o.parent_code
         GROUP BY 1 ORDER BY organisations DESC, parent LIMIT 15",
    )?;
    let parents = stmt
        .query_map([], |r| {
            Ok(ParentRow {
                parent: r.get(0)?,
                name: r.get(1)?,
                organisations: r.get::<_, i64>(2)? as u64,
                kinds: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    // The organisations behind each kind, up to eight, in one query (there were two per kind).
    let kinds = [
        (ChangeKind::Closed, "status"),
        (ChangeKind::Succeeded, "target_code"),
        (ChangeKind::Renamed, "name"),
        (ChangeKind::Reparented, "parent_code"),
        (ChangeKind::Deleted, "name"),
        (ChangeKind::Added, "name"),
        (ChangeKind::Reopened, "status"),
        (ChangeKind::Opened, "status"),
    ];
    let preferred = kinds
        .iter()
        .map(|(k, f)| format!("('{}', '{f}')", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut stmt = conn.prepare(&format!(
        "WITH preferred(change_kind, field) AS (VALUES {preferred}),
         totals AS (
             SELECT change_kind, count(DISTINCT code) AS total
             FROM changes SEMI JOIN preferred USING (change_kind) GROUP BY change_kind),
         pick AS (
             SELECT c.change_kind, c.code, c.field, c.old_value, c.new_value,
                    row_number() OVER (PARTITION BY c.change_kind, c.code
                                       ORDER BY (c.\"table\" = 'organisations') DESC, (c.field = p.field) DESC, c.field,
                                                c.old_value, c.new_value) AS rn
             FROM changes AS c JOIN preferred AS p USING (change_kind)),
         firsts AS (
             SELECT *, row_number() OVER (PARTITION BY change_kind ORDER BY code) AS k FROM pick WHERE rn = 1)
         SELECT f.change_kind, t.total, f.code, coalesce(n.name, o.name), f.field, f.old_value, f.new_value
         FROM firsts AS f JOIN totals AS t USING (change_kind)
              LEFT JOIN new_orgs AS n USING (code) LEFT JOIN old_orgs AS o USING (code)
         WHERE f.k <= 8 ORDER BY f.change_kind, f.code"
    ))?;
    let mut by_kind: std::collections::BTreeMap<String, NotableGroup> = Default::default();
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            Notable {
                code: r.get(2)?,
                name: r.get(3)?,
                field: r.get(4)?,
                old_value: r.get(5)?,
                new_value: r.get(6)?,
            },
        ))
    })?;
    for row in rows {
        let (kind, total, item) = row?;
        by_kind
            .entry(kind.clone())
            .or_insert_with(|| NotableGroup {
                kind,
                organisations: total as u64,
                items: Vec::new(),
            })
            .items
            .push(item);
    }
    let notable = kinds.iter().filter_map(|(k, _)| by_kind.remove(k.as_str())).collect();
    Ok((parents, notable))
}

impl crate::error::Classify for ReportError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            ReportError::Io { .. } => crate::error::ErrorClass::Environment,
            ReportError::NoRun { .. } => crate::error::ErrorClass::User,
            ReportError::Render(_) => crate::error::ErrorClass::Bug,
        }
    }
}

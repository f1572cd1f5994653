//! `odsync conflicts list|show|resolve|apply`.

use super::Globals;
use super::query::render;
use crate::catalog::{Catalog, QueryResult};
use crate::cli::{ConflictsCommand, ResolveArgs};
use crate::error::UserError;
use crate::merge::resolutions::{self, Resolution};
use crate::sql::quote_text;
use std::collections::BTreeSet;
use std::process::ExitCode;

fn conflicts(globals: &Globals, pipeline: &str, filter: &str) -> anyhow::Result<QueryResult> {
    let p = globals.load_known(pipeline)?;
    let catalog = Catalog::open_read(&globals.warehouse(p.as_ref()))?;
    let has_view = catalog
        .query_text("SELECT count(*) FROM duckdb_views() WHERE view_name = 'conflicts_latest'")?
        .rows[0][0]
        .as_deref()
        == Some("1");
    if !has_view {
        return Err(UserError(format!(
            "no merge for `{pipeline}` yet\nHelp: run `odsync run {pipeline}` first"
        ))
        .into());
    }
    Ok(catalog.query_text(&format!(
        "SELECT conflict_id, code, field, kind, base_value, local_value, ods_value, status, first_seen_run, last_seen_run, resolution, resolution_value, resolved_by, reason
         FROM conflicts_latest WHERE pipeline = {} AND {filter} ORDER BY code, field",
        quote_text(pipeline)
    ))?)
}

/// Ids of conflicts that can take a resolution now.
fn resolvable(globals: &Globals, pipeline: &str) -> anyhow::Result<BTreeSet<String>> {
    let open = conflicts(globals, pipeline, "status IN ('open', 'ignored')")?;
    Ok(open.rows.into_iter().filter_map(|r| r[0].clone()).collect())
}

pub fn run(globals: &Globals, cmd: &ConflictsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConflictsCommand::List { pipeline, all } => {
            let filter = if *all { "true" } else { "status IN ('open', 'ignored')" };
            let result = conflicts(globals, pipeline, filter)?;
            globals.printer.emit(&result, render)?;
        }
        ConflictsCommand::Show { pipeline, id } => {
            let result = conflicts(globals, pipeline, &format!("conflict_id = {}", quote_text(id)))?;
            if result.rows.is_empty() {
                return Err(UserError(format!(
                    "no conflict `{id}` in `{pipeline}`\nHelp: `odsync conflicts list {pipeline} --all`"
                ))
                .into());
            }
            globals.printer.emit(&result, |r: &QueryResult| {
                r.columns
                    .iter()
                    .zip(&r.rows[0])
                    .map(|(c, v)| format!("{c:>16}: {}\n", v.as_deref().unwrap_or("∅")))
                    .collect()
            })?;
        }
        ConflictsCommand::Resolve(args) => {
            let resolution = from_args(globals, args)?;
            resolutions::validate(&resolution, &resolvable(globals, &args.pipeline)?).map_err(UserError)?;
            record(globals, &args.pipeline, &[resolution], args.merge)?;
        }
        ConflictsCommand::Apply {
            pipeline,
            file,
            by,
            merge,
        } => {
            let by = who(by.as_deref());
            let at = globals.clock.now().to_rfc3339();
            let list = resolutions::read_bulk(file, &resolvable(globals, pipeline)?, &by, &at)?;
            record(globals, pipeline, &list, *merge)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn who(by: Option<&str>) -> String {
    by.filter(|b| !b.is_empty()).unwrap_or("unknown").to_owned()
}

fn from_args(globals: &Globals, a: &ResolveArgs) -> anyhow::Result<Resolution> {
    use crate::model::states::ResolutionKind;
    let resolution = if a.accept_ods {
        ResolutionKind::AcceptOds
    } else if a.keep_local {
        ResolutionKind::KeepLocal
    } else if a.set.is_some() {
        ResolutionKind::Set
    } else {
        ResolutionKind::Ignore
    };
    Ok(Resolution {
        conflict_id: a.id.clone(),
        resolution,
        value: a.set.clone(),
        reason: a.reason.clone(),
        by: who(a.by.as_deref()),
        at: globals.clock.now().to_rfc3339(),
        until: a.until,
    })
}

fn record(globals: &Globals, pipeline: &str, list: &[Resolution], merge: bool) -> anyhow::Result<()> {
    let p = globals.load_known(pipeline)?;
    let name = p.as_ref().map_or(pipeline.to_owned(), |p| p.config.name.clone());
    let warehouse = globals.warehouse(p.as_ref());
    let path = resolutions::path(&warehouse, &name);
    let run_id = format!("{}-{name}-resolve", globals.clock.now().format("%Y%m%dT%H%M%SZ"));
    // The lock serialises appends (read, add, rename) with runs and other resolutions, and is
    // kept for the merge that applies them.
    let lock = crate::warehouse::lock_pipeline(&warehouse, &name, &run_id)?;
    resolutions::append(&path, list)?;
    crate::warehouse::failpoint("resolve:recorded");
    if !merge {
        let summary = serde_json::json!({ "recorded": list.len(), "log": path, "applies": "at the next merge" });
        globals.printer.emit(&summary, |_| {
            format!(
                "recorded {} resolution(s) in {}; they apply at the next merge (`odsync merge {name}`)\n",
                list.len(),
                path.display()
            )
        })?;
        return Ok(());
    }
    let pipeline = p.ok_or_else(|| {
        crate::error::UserError(format!(
            "pipeline `{pipeline}` not found: --merge needs its pipeline file"
        ))
    })?;
    let warehouse = globals.warehouse(Some(&pipeline));
    let report = crate::pipeline::merge_now::merge_latest(&pipeline, &warehouse, &globals.clock, &lock)?;
    globals.printer.emit(&report, super::merge_text)?;
    Ok(())
}

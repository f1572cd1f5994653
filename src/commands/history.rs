//! `odsync history <pipeline> [code] [--as-of DATE]`.

use super::Globals;
use super::query::render;
use crate::catalog::Catalog;
use crate::cli::HistoryArgs;
use crate::error::UserError;
use crate::sql::quote_text;
use std::process::ExitCode;

pub fn run(globals: &Globals, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let p = globals.load_known(&args.pipeline)?;
    let catalog = Catalog::open_read(&globals.warehouse(p.as_ref()))?;
    let code = args
        .code
        .as_deref()
        .map_or(String::new(), |c| format!(" AND code = {}", quote_text(c)));
    let columns = "code, name, status, operational_end, postcode, valid_from, valid_to, snapshot_version, change_kind, changed_fields, is_current";
    let sql = match args.as_of {
        // As of a date, `status_as_of` applies close dates ODS announced in advance.
        Some(d) => format!(
            "SELECT {columns}, status_as_of FROM organisations_as_of(DATE '{d}') WHERE pipeline = {}{code} ORDER BY code",
            quote_text(&args.pipeline)
        ),
        None if args.code.is_some() => format!(
            "SELECT {columns} FROM latest_history WHERE pipeline = {}{code} ORDER BY valid_from, snapshot_version",
            quote_text(&args.pipeline)
        ),
        None => return Err(UserError("give an organisation code, --as-of DATE, or both".into()).into()),
    };
    let result = catalog.query_text(&sql).map_err(|e| {
        UserError(format!(
            "{e}\nHelp: history exists once `odsync run {}` has committed a snapshot",
            args.pipeline
        ))
    })?;
    globals.printer.emit(&result, render)?;
    Ok(ExitCode::SUCCESS)
}

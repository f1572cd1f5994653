//! `odsync provenance <pipeline> <code> [--field F]`.

use super::Globals;
use super::query::render;
use crate::catalog::Catalog;
use crate::cli::ProvenanceArgs;
use crate::error::UserError;
use crate::sql::quote_text;
use std::process::ExitCode;

pub fn run(globals: &Globals, args: &ProvenanceArgs) -> anyhow::Result<ExitCode> {
    let p = globals.load_known(&args.pipeline)?;
    let catalog = Catalog::open_read(&globals.warehouse(p.as_ref()))?;
    let field = args
        .field
        .as_deref()
        .map_or(String::new(), |f| format!(" AND field = {}", quote_text(f)));
    let result = catalog
        .query_text(&format!(
            "SELECT field, value, source, snapshot_version, run_id, rule, set_at, merged_version FROM provenance_latest
             WHERE pipeline = {} AND code = {}{field} ORDER BY field",
            quote_text(&args.pipeline),
            quote_text(&args.code)
        ))
        .map_err(|e| {
            UserError(format!(
                "{e}\nHelp: provenance exists once `odsync run {}` has merged",
                args.pipeline
            ))
        })?;
    if result.rows.is_empty() {
        return Err(UserError(format!(
            "no provenance for `{}` in `{}`: is it in the trust table?",
            args.code, args.pipeline
        ))
        .into());
    }
    globals.printer.emit(&result, render)?;
    Ok(ExitCode::SUCCESS)
}

//! `odsync query "<sql>"`: the catalog from the command line, for users without the duckdb CLI.

use super::Globals;
use crate::catalog::{Catalog, QueryResult};
use crate::cli::QueryArgs;
use std::process::ExitCode;

pub fn run(globals: &Globals, args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::open_read(&globals.warehouse(None))?;
    let result = catalog.query_text(&args.sql)?;
    globals.printer.emit(&result, render)?;
    Ok(ExitCode::SUCCESS)
}

/// A plain aligned table; NULL shown as empty.
pub fn render(result: &QueryResult) -> String {
    let cell = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut widths: Vec<usize> = result.columns.iter().map(|c| c.chars().count()).collect();
    for row in &result.rows {
        for (w, v) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell(v).chars().count()).min(60);
        }
    }
    let line = |values: Vec<String>| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| {
                let v: String = v.chars().take(*w).collect();
                format!("{v:<w$}", w = *w)
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(result.columns.clone());
    out.push('\n');
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    out.push('\n');
    for row in &result.rows {
        out.push_str(&line(row.iter().map(cell).collect()));
        out.push('\n');
    }
    out.push_str(&format!("({} rows)\n", result.rows.len()));
    out
}

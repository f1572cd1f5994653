//! `odsync ddl <pipeline> --dialect …`: external-table statements or the table reference
//! (see `ddl`).

use super::Globals;
use crate::cli::{DdlArgs, DdlDialect};
use crate::ddl::Dialect;
use std::io::Write;
use std::process::ExitCode;

pub fn run(globals: &Globals, args: &DdlArgs) -> anyhow::Result<ExitCode> {
    let pipeline = globals.load_known(&args.pipeline)?;
    let name = pipeline
        .as_ref()
        .map_or(args.pipeline.clone(), |p| p.config.name.clone());
    let warehouse = globals.warehouse(pipeline.as_ref());
    let tables = crate::ddl::describe(&warehouse, &name)?;
    let location = match &args.location {
        Some(l) => l.clone(),
        None => {
            let dir = warehouse.join(&name);
            dir.canonicalize().unwrap_or(dir).display().to_string()
        }
    };
    let dialect = match args.dialect {
        DdlDialect::Duckdb => Dialect::Duckdb,
        DdlDialect::Spark => Dialect::Spark,
        DdlDialect::Trino => Dialect::Trino,
        DdlDialect::Bigquery => Dialect::Bigquery,
        DdlDialect::Markdown => Dialect::Markdown,
    };
    let text = crate::ddl::render(dialect, &name, &tables, &location, &args.schema)?;
    // Statements are the output whatever --json says: they go to a file or an engine as they are.
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

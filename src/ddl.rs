//! `odsync ddl`: external-table statements for every table directory of a pipeline (DuckDB, Spark,
//! Trino/Athena-style Hive tables, BigQuery), and the table reference `docs/tables.md`
//! (`--dialect markdown`). Both come from the columns the Parquet files really have (DuckDB reads
//! each table's latest version), so they cannot drift from the code; the meanings come from
//! `docs/columns.toml`, and a table or column without one is an error.

use crate::warehouse::{Layout, Output};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

const COLUMNS_TOML: &str = include_str!("../docs/columns.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Duckdb,
    Spark,
    Trino,
    Bigquery,
    Markdown,
}

#[derive(Debug, thiserror::Error)]
pub enum DdlError {
    #[error(
        "pipeline `{pipeline}` has no committed table in {path}\nHelp: run the pipeline first (`odsync run {pipeline}`)"
    )]
    Empty { pipeline: String, path: String },
    #[error("reading the columns of {path}: {message}\nHelp: run `odsync verify` on the pipeline")]
    Read { path: String, message: String },
    #[error(
        "column `{column}` of `{table}` has type {ty}, which odsync has no {dialect} type for\nHelp: this is a bug in odsync; please report it"
    )]
    Type {
        table: String,
        column: String,
        ty: String,
        dialect: &'static str,
    },
    #[error("docs/columns.toml is out of step with the tables:\n{}\nHelp: say what each new table or column means in docs/columns.toml, and remove what no longer exists", .0.join("\n"))]
    Undocumented(Vec<String>),
}

/// One column as DuckDB reads it from the Parquet file.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: String,
}

/// One table directory of a pipeline.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub name: &'static str,
    pub output: Output,
    /// The columns of its latest version, then the `version` partition column.
    pub columns: Vec<Column>,
}

/// The tables of a pipeline that have a committed version, with their columns.
pub fn describe(warehouse: &Path, pipeline: &str) -> Result<Vec<TableDef>, DdlError> {
    let layout = Layout::new(warehouse, pipeline);
    let conn = duckdb::Connection::open_in_memory().map_err(|e| DdlError::Read {
        path: "DuckDB".into(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for output in Output::ALL {
        let Some(version) = layout.versions(output).last().copied() else {
            continue;
        };
        for &table in output.tables() {
            let file = layout.table_file(table, version);
            if !file.exists() {
                continue;
            }
            let read = |e: duckdb::Error| DdlError::Read {
                path: file.display().to_string(),
                message: e.to_string(),
            };
            let sql = format!(
                "DESCRIBE SELECT * FROM read_parquet({}, hive_partitioning = false)",
                crate::sql::quote_path(&file)
            );
            let mut stmt = conn.prepare(&sql).map_err(read)?;
            let mut columns: Vec<Column> = stmt
                .query_map([], |r| {
                    Ok(Column {
                        name: r.get(0)?,
                        ty: r.get(1)?,
                    })
                })
                .map_err(read)?
                .collect::<Result<_, _>>()
                .map_err(read)?;
            columns.push(Column {
                name: "version".into(),
                ty: "BIGINT".into(),
            });
            out.push(TableDef {
                name: table.as_str(),
                output,
                columns,
            });
        }
    }
    if out.is_empty() {
        return Err(DdlError::Empty {
            pipeline: pipeline.to_owned(),
            path: layout.dir().display().to_string(),
        });
    }
    Ok(out)
}

/// Renders the statements (or the reference) for `tables`. `location` is the pipeline folder as
/// the engine sees it (a local path, `s3://…`, `gs://…`); `schema` the database/dataset name.
pub fn render(
    dialect: Dialect,
    pipeline: &str,
    tables: &[TableDef],
    location: &str,
    schema: &str,
) -> Result<String, DdlError> {
    let location = location.trim_end_matches('/');
    let mut out = String::new();
    if dialect == Dialect::Markdown {
        return reference(pipeline, tables);
    }
    out.push_str(&format!(
        "-- odsync {}: the tables of pipeline `{pipeline}` as external tables ({}).\n-- Each table is a Hive-partitioned directory <pipeline>/<table>/version=N/part-0.parquet; `version` is the partition column.\n",
        env!("CARGO_PKG_VERSION"),
        match dialect {
            Dialect::Duckdb => "DuckDB views",
            Dialect::Spark => "Spark SQL; run MSCK REPAIR TABLE after each odsync run to see new versions",
            Dialect::Trino => "Trino Hive connector; sync_partition_metadata after each odsync run",
            Dialect::Bigquery => "BigQuery external tables; columns are read from the Parquet files",
            Dialect::Markdown => unreachable!(),
        }
    ));
    for t in tables {
        let name = format!("{pipeline}_{}", t.name);
        let dir = format!("{location}/{}", t.name);
        let data_columns = &t.columns[..t.columns.len() - 1];
        let cols = |quote: fn(&str) -> String| -> Result<Vec<String>, DdlError> {
            data_columns
                .iter()
                .map(|c| {
                    Ok(format!(
                        "    {} {}",
                        quote(&c.name),
                        map_type(&c.ty, dialect, t.name, &c.name)?
                    ))
                })
                .collect()
        };
        out.push('\n');
        match dialect {
            Dialect::Duckdb => out.push_str(&format!(
                "CREATE OR REPLACE VIEW {}.{} AS\nSELECT * FROM read_parquet('{}/*/*.parquet', hive_partitioning = true, hive_types = {{'version': BIGINT}}, union_by_name = true);\n",
                dq(schema),
                dq(&name),
                sq(&dir)
            )),
            Dialect::Spark => {
                let mut c = cols(bq)?;
                c.push("    `version` BIGINT".into());
                out.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS {}.{} (\n{}\n)\nUSING PARQUET\nPARTITIONED BY (`version`)\nLOCATION '{}';\nMSCK REPAIR TABLE {}.{};\n",
                    bq(schema),
                    bq(&name),
                    c.join(",\n"),
                    sq(&dir),
                    bq(schema),
                    bq(&name)
                ));
            }
            Dialect::Trino => {
                let mut c = cols(dq)?;
                // Trino's Hive connector wants partition columns last.
                c.push("    \"version\" BIGINT".into());
                out.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS {}.{} (\n{}\n)\nWITH (format = 'PARQUET', external_location = '{}', partitioned_by = ARRAY['version']);\nCALL system.sync_partition_metadata('{}', '{}', 'FULL');\n",
                    dq(schema),
                    dq(&name),
                    c.join(",\n"),
                    sq(&dir),
                    sq(schema),
                    sq(&name)
                ));
            }
            Dialect::Bigquery => {
                // Checked anyway, so an unmapped type fails here and not in BigQuery.
                cols(bq)?;
                out.push_str(&format!(
                    "CREATE OR REPLACE EXTERNAL TABLE {}\nWITH PARTITION COLUMNS (`version` INT64)\nOPTIONS (format = 'PARQUET', uris = ['{}/*'], hive_partition_uri_prefix = '{}');\n",
                    bq(&format!("{schema}.{name}")),
                    sq(&dir),
                    sq(&dir)
                ));
            }
            Dialect::Markdown => unreachable!(),
        }
    }
    Ok(out)
}

fn dq(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
fn bq(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}
fn sq(s: &str) -> String {
    s.replace('\'', "''")
}

/// The engine's type for a DuckDB type read from odsync's Parquet files.
fn map_type(ty: &str, dialect: Dialect, table: &str, column: &str) -> Result<String, DdlError> {
    if let Some(inner) = ty.strip_suffix("[]") {
        let inner = map_type(inner, dialect, table, column)?;
        return Ok(match dialect {
            Dialect::Trino => format!("ARRAY({inner})"),
            _ => format!("ARRAY<{inner}>"),
        });
    }
    let spark_trino_bq = match ty {
        "VARCHAR" => ("STRING", "VARCHAR", "STRING"),
        "DATE" => ("DATE", "DATE", "DATE"),
        "BOOLEAN" => ("BOOLEAN", "BOOLEAN", "BOOL"),
        "BIGINT" => ("BIGINT", "BIGINT", "INT64"),
        "INTEGER" => ("INT", "INTEGER", "INT64"),
        // Unsigned Parquet integers: Spark reads UINT32 as BIGINT and UINT64 as DECIMAL(20,0).
        "UINTEGER" => ("BIGINT", "BIGINT", "INT64"),
        "UBIGINT" => ("DECIMAL(20,0)", "DECIMAL(20,0)", "NUMERIC"),
        "BLOB" => ("BINARY", "VARBINARY", "BYTES"),
        "DOUBLE" => ("DOUBLE", "DOUBLE", "FLOAT64"),
        "TIMESTAMP" | "TIMESTAMP WITH TIME ZONE" => ("TIMESTAMP", "TIMESTAMP(6)", "TIMESTAMP"),
        _ => {
            return Err(DdlError::Type {
                table: table.to_owned(),
                column: column.to_owned(),
                ty: ty.to_owned(),
                dialect: match dialect {
                    Dialect::Spark => "Spark",
                    Dialect::Trino => "Trino",
                    Dialect::Bigquery => "BigQuery",
                    Dialect::Duckdb | Dialect::Markdown => "DuckDB",
                },
            });
        }
    };
    Ok(match dialect {
        Dialect::Spark => spark_trino_bq.0,
        Dialect::Trino => spark_trino_bq.1,
        Dialect::Bigquery => spark_trino_bq.2,
        Dialect::Duckdb | Dialect::Markdown => ty,
    }
    .to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meanings {
    common: BTreeMap<String, String>,
    table: BTreeMap<String, TableMeaning>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableMeaning {
    output: String,
    about: String,
    #[serde(default)]
    columns: BTreeMap<String, String>,
}

fn meanings() -> Meanings {
    toml::from_str(COLUMNS_TOML).expect("docs/columns.toml parses (checked by the docs test)")
}

/// The catalog views over a table (all versions, latest), where there are some.
fn views(table: &str, output: Output) -> Vec<String> {
    if output == Output::Snapshot {
        return vec![format!("snapshot_{table}"), format!("latest_{table}")];
    }
    crate::catalog::OUTPUT_VIEWS
        .iter()
        .filter(|(t, _, _)| t.as_str() == table)
        .flat_map(|(_, all, latest)| [(*all).to_owned(), (*latest).to_owned()])
        .collect()
}

/// `docs/tables.md`: every table, column, type and meaning.
fn reference(pipeline: &str, tables: &[TableDef]) -> Result<String, DdlError> {
    let m = meanings();
    let mut missing = Vec::new();
    let mut used_common = std::collections::BTreeSet::new();
    let mut out = format!(
        "# Tables\n\n\
         <!-- Generated by `odsync ddl {pipeline} --dialect markdown` from the Parquet files of the `{pipeline}` pipeline and\n     \
         docs/columns.toml. Do not edit: a test regenerates it and fails on any difference\n     \
         (`ODSYNC_BLESS=1 cargo test docs_tables` rewrites it). -->\n\n\
         Every table is its own Hive-partitioned dataset directory,\n\
         `<warehouse>/<pipeline>/<table>/version=NNNNNN/part-0.parquet`; the manifests and summaries that\n\
         describe a version are under `<warehouse>/<pipeline>/_meta/<output>/version=NNNNNN/`. Point DuckDB,\n\
         Polars, pyarrow, Spark or a warehouse at a table directory and it reads every version with the\n\
         `version` column; `odsync ddl <pipeline> --dialect duckdb|spark|trino|bigquery` prints the\n\
         statements. The catalog (`<warehouse>/catalog.duckdb`) has views over every pipeline's tables,\n\
         with a `pipeline` column.\n\n\
         | table | output | what it holds | catalog views |\n|---|---|---|---|\n"
    );
    for t in tables {
        let about = m.table.get(t.name).map_or("", |x| x.about.as_str());
        if !m.table.contains_key(t.name) {
            missing.push(format!("  - the table `{}`", t.name));
        }
        let v: Vec<String> = views(t.name, t.output).iter().map(|v| format!("`{v}`")).collect();
        out.push_str(&format!(
            "| [`{0}`](#{0}) | {1} | {2} | {3} |\n",
            t.name,
            t.output.name(),
            about,
            if v.is_empty() { "—".to_owned() } else { v.join(", ") }
        ));
    }
    for t in tables {
        let Some(tm) = m.table.get(t.name) else { continue };
        if tm.output != t.output.name() {
            missing.push(format!(
                "  - `{}`: output is `{}`, not `{}`",
                t.name,
                t.output.name(),
                tm.output
            ));
        }
        let meta = match t.output.meta_file() {
            Some(f) => format!(" Described by `_meta/{}/version=N/{f}`.", t.output.name()),
            None => String::new(),
        };
        out.push_str(&format!(
            "\n## {}\n\n{}\n\n`<warehouse>/<pipeline>/{}/version=N/part-0.parquet`, one version per {}.{meta}\n\n| column | type | meaning |\n|---|---|---|\n",
            t.name,
            tm.about,
            t.name,
            match t.output {
                Output::Snapshot => "snapshot",
                Output::Changes => "snapshot after the first (the diff into it)",
                Output::History => "snapshot",
                Output::Merged => "merge (merged versions count on their own)",
            }
        ));
        for c in &t.columns {
            let meaning = match tm.columns.get(&c.name) {
                Some(x) => x,
                None => match m.common.get(&c.name) {
                    Some(x) => {
                        used_common.insert(c.name.clone());
                        x
                    }
                    None => {
                        missing.push(format!("  - `{}.{}`", t.name, c.name));
                        continue;
                    }
                },
            };
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                c.name,
                c.ty,
                meaning.replace('|', "\\|")
            ));
        }
        for name in tm.columns.keys() {
            if !t.columns.iter().any(|c| &c.name == name) {
                missing.push(format!(
                    "  - `{}.{name}` is described but the table has no such column",
                    t.name
                ));
            }
        }
    }
    for name in m.common.keys() {
        if !used_common.contains(name) {
            missing.push(format!("  - `[common] {name}` is used by no table"));
        }
    }
    for name in m.table.keys() {
        if !tables.iter().any(|t| t.name == name) {
            missing.push(format!("  - `[table.{name}]`: the pipeline has no such table"));
        }
    }
    if !missing.is_empty() {
        return Err(DdlError::Undocumented(missing));
    }
    Ok(out)
}

impl crate::error::Classify for DdlError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            DdlError::Empty { .. } => crate::error::ErrorClass::User,
            DdlError::Read { .. } => crate::error::ErrorClass::Environment,
            DdlError::Type { .. } | DdlError::Undocumented(_) => crate::error::ErrorClass::Bug,
        }
    }
}

//! The SQL files under `sql/`, embedded at build time so the binary is self-contained while the
//! SQL stays readable in the repository, and the quoting and rendering every SQL stage uses. A
//! leaf module: the stages (merge, history, catalog, engine) import it, it imports none of them.
//! A test checks that every file on disk is listed here.

pub const CREATE_RUNS: &str = include_str!("../sql/catalog/create_runs.sql");
pub const CREATE_SNAPSHOT_VIEW: &str = include_str!("../sql/catalog/create_snapshot_view.sql");
pub const CREATE_MANIFEST_VIEWS: &str = include_str!("../sql/catalog/create_manifest_views.sql");
pub const CREATE_LATEST_VIEW: &str = include_str!("../sql/catalog/create_latest_view.sql");
pub const CREATE_OUTPUT_VIEWS: &str = include_str!("../sql/catalog/create_output_views.sql");
pub const CREATE_MERGE_VIEWS: &str = include_str!("../sql/report/create_merge_views.sql");
pub const CREATE_HISTORY_VIEWS: &str = include_str!("../sql/report/create_history_views.sql");
pub const CREATE_SUCCESSOR_VIEWS: &str = include_str!("../sql/report/create_successor_views.sql");
pub const CREATE_HIERARCHY_VIEWS: &str = include_str!("../sql/report/create_hierarchy_views.sql");
pub const CREATE_RECODING_VIEWS: &str = include_str!("../sql/report/create_recoding_views.sql");
pub const SQL_UPDATE_HISTORY: &str = include_str!("../sql/history/update_history.sql");
pub const SQL_FIND_CHANGED: &str = include_str!("../sql/merge/find_changed.sql");
pub const SQL_SELECT_TOUCHED: &str = include_str!("../sql/merge/select_touched.sql");
pub const SQL_DECIDE_FIELDS: &str = include_str!("../sql/merge/decide_fields.sql");
pub const SQL_DETECT_CONFLICTS: &str = include_str!("../sql/merge/detect_conflicts.sql");
pub const SQL_BUILD_TRUSTS: &str = include_str!("../sql/merge/build_trusts.sql");
pub const SQL_BUILD_PROVENANCE: &str = include_str!("../sql/merge/build_provenance.sql");

/// Every embedded file with its path under `sql/` (the parse test walks it).
#[cfg(test)]
const ALL: [(&str, &str); 17] = [
    ("report/create_recoding_views.sql", CREATE_RECODING_VIEWS),
    ("report/create_hierarchy_views.sql", CREATE_HIERARCHY_VIEWS),
    ("report/create_successor_views.sql", CREATE_SUCCESSOR_VIEWS),
    ("history/update_history.sql", SQL_UPDATE_HISTORY),
    ("report/create_history_views.sql", CREATE_HISTORY_VIEWS),
    ("report/create_merge_views.sql", CREATE_MERGE_VIEWS),
    ("merge/find_changed.sql", SQL_FIND_CHANGED),
    ("merge/select_touched.sql", SQL_SELECT_TOUCHED),
    ("merge/decide_fields.sql", SQL_DECIDE_FIELDS),
    ("merge/detect_conflicts.sql", SQL_DETECT_CONFLICTS),
    ("merge/build_trusts.sql", SQL_BUILD_TRUSTS),
    ("merge/build_provenance.sql", SQL_BUILD_PROVENANCE),
    ("catalog/create_runs.sql", CREATE_RUNS),
    ("catalog/create_snapshot_view.sql", CREATE_SNAPSHOT_VIEW),
    ("catalog/create_manifest_views.sql", CREATE_MANIFEST_VIEWS),
    ("catalog/create_latest_view.sql", CREATE_LATEST_VIEW),
    ("catalog/create_output_views.sql", CREATE_OUTPUT_VIEWS),
];

/// A SQL string literal: single quotes doubled.
pub fn quote_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A path as a SQL string literal (for `read_parquet`, `COPY … TO`).
pub fn quote_path(path: &std::path::Path) -> String {
    quote_text(&path.to_string_lossy())
}

/// Fills `{name}` placeholders with SQL fragments odsync built itself from validated names
/// (column lists); unlike [`render`] nothing is quoted.
pub fn render_raw(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter()
        .fold(template.to_owned(), |sql, (k, v)| sql.replace(&format!("{{{k}}}"), v))
}

/// Fills `{name}` placeholders. Values are paths and table names that odsync controls; single
/// quotes are doubled anyway so a path with a quote cannot break out of its SQL string.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(template.to_owned(), |sql, (k, v)| {
        sql.replace(&format!("{{{k}}}"), &v.replace('\'', "''"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sql_file_on_disk_is_embedded() {
        // At run time: a test binary reused from a shared target dir may come from another clone.
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
        let root = std::path::Path::new(&manifest).join("sql");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "sql") {
                    on_disk.push(p.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut registered: Vec<String> = ALL.iter().map(|(p, _)| (*p).to_owned()).collect();
        registered.sort();
        assert_eq!(on_disk, registered);
    }

    /// Every query in the SQL files parses: the body of each `CREATE … AS`, view and query is
    /// handed to DuckDB's parser (`json_serialize_sql`), with `{placeholders}` filled by a name.
    /// DDL and DML statements (`CREATE TABLE (…)`, `INSERT`, `COPY`) are bound when they run, in
    /// the stage tests. A typo in a rule then fails here, naming the file and the statement.
    #[test]
    fn every_query_in_the_sql_files_parses() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let placeholder = regex::Regex::new(r"\{[a-z_]+\}").unwrap();
        let create_as = regex::Regex::new(
            r"(?is)^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP\s+|TEMPORARY\s+)?(?:TABLE|VIEW)\s+[\w.]+\s+AS\s+(.*)$",
        )
        .unwrap();
        let query_start = regex::Regex::new(r"(?i)^\s*(SELECT|WITH|PIVOT|UNPIVOT|FROM)\b").unwrap();
        let mut parsed = 0;
        for (file, sql) in ALL {
            let sql = placeholder.replace_all(sql, "x");
            for statement in sql.split(";\n") {
                let body: String = statement
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let query = match create_as.captures(&body) {
                    Some(c) => c[1].to_owned(),
                    None if query_start.is_match(&body) => body.clone(),
                    None => continue,
                };
                let query = query.trim().trim_end_matches(';').to_owned();
                let out: String = conn
                    .query_row("SELECT json_serialize_sql(CAST(? AS VARCHAR))", [&query], |r| r.get(0))
                    .unwrap();
                assert!(out.contains("\"error\":false"), "{file}: {out}\n{query}");
                parsed += 1;
            }
        }
        // (Counted so that a change to the splitting cannot make the test check nothing.)
        assert!(parsed >= 40, "only {parsed} queries were checked");
    }
}

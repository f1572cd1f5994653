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

/// Every embedded file with its path under `sql/`.
pub const ALL: [(&str, &str); 17] = [
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
}

//! The SQL files under `sql/`, embedded at build time so the binary is self-contained while the
//! SQL stays readable in the repository. A test checks that every file on disk is listed here.

pub const CREATE_RUNS: &str = include_str!("../../sql/catalog/create_runs.sql");
pub const CREATE_SNAPSHOT_VIEW: &str = include_str!("../../sql/catalog/create_snapshot_view.sql");
pub const CREATE_MANIFEST_VIEWS: &str = include_str!("../../sql/catalog/create_manifest_views.sql");
pub const CREATE_LATEST_VIEW: &str = include_str!("../../sql/catalog/create_latest_view.sql");

/// Every embedded file with its path under `sql/`.
pub const ALL: [(&str, &str); 4] = [
    ("catalog/create_runs.sql", CREATE_RUNS),
    ("catalog/create_snapshot_view.sql", CREATE_SNAPSHOT_VIEW),
    ("catalog/create_manifest_views.sql", CREATE_MANIFEST_VIEWS),
    ("catalog/create_latest_view.sql", CREATE_LATEST_VIEW),
];

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
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
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

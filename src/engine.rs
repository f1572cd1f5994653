//! DuckDB sessions for the SQL stages (merge, history): in memory, with a bounded memory limit
//! and a spill folder inside the pipeline's folder, so a national-scale merge spills to disk
//! instead of taking most of the machine (DuckDB's default is 80% of RAM, which a 1M-row baseline
//! merge reached). The spill folder is a `.tmp-*` name: a crash leaves nothing recovery keeps.

use duckdb::Connection;
use std::path::{Path, PathBuf};

/// The memory limit of each SQL stage's DuckDB session (`ODSYNC_DUCKDB_MEMORY`, DuckDB syntax
/// such as `2GB`; default 1GB).
pub fn memory_limit() -> String {
    std::env::var(crate::env_vars::ODSYNC_DUCKDB_MEMORY)
        .ok()
        .filter(|v| {
            let v = v.trim();
            !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == ' ')
        })
        .unwrap_or_else(|| "1GB".into())
}

/// Removes the spill folder when the stage is done (or fails).
pub struct SpillGuard(PathBuf);

impl Drop for SpillGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An in-memory DuckDB session for one stage of one run, spilling into
/// `<warehouse>/<pipeline>/.tmp-spill-<stage>-<run_id>`.
pub fn session(
    warehouse: &Path,
    pipeline: &str,
    stage: &str,
    run_id: &str,
) -> duckdb::Result<(Connection, SpillGuard)> {
    let spill = warehouse.join(pipeline).join(format!(".tmp-spill-{stage}-{run_id}"));
    let conn = Connection::open_in_memory()?;
    let guard = SpillGuard(spill.clone());
    conn.execute_batch(&format!(
        "SET memory_limit = '{}'; SET temp_directory = {};",
        memory_limit(),
        crate::catalog::sql::quote_path(&spill)
    ))?;
    Ok((conn, guard))
}

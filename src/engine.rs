//! DuckDB sessions for the SQL stages (merge, history): in memory, with a bounded memory limit
//! and a spill folder inside the pipeline's folder, so a large merge spills to disk instead of
//! taking most of the machine (DuckDB's default is 80% of RAM, which a 1M-row baseline merge
//! reached). The spill folder is a `.tmp-*` name: a crash leaves nothing recovery keeps.

use duckdb::Connection;
use std::path::{Path, PathBuf};

/// The memory limit of each SQL stage's DuckDB session: `ODSYNC_DUCKDB_MEMORY` (DuckDB syntax
/// such as `4GB`), else half the machine's memory, at least 2 GB. (A fixed 1 GB failed the
/// national-scale baseline merge: DuckDB's PIVOT does not spill.)
pub fn memory_limit() -> String {
    if let Some(v) = std::env::var(crate::env_vars::ODSYNC_DUCKDB_MEMORY)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
    {
        return v;
    }
    let total_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        })
        .map_or(4096, |kb| kb / 1024);
    format!("{}MB", (total_mb / 2).max(2048))
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
        crate::sql::quote_path(&spill)
    ))?;
    Ok((conn, guard))
}

/// DuckDB's error text, with what to do when it ran out of its memory limit.
/// The class of a failed SQL stage from DuckDB's message: memory, disk and file problems are the
/// machine's; anything else in odsync's own SQL is a bug.
pub fn class_of(message: &str) -> crate::error::ErrorClass {
    const MACHINE: [&str; 6] = [
        "Out of Memory",
        "IO Error",
        "No space left",
        "Permission denied",
        "Could not set lock",
        "Conflicting lock",
    ];
    if MACHINE.iter().any(|m| message.contains(m)) {
        crate::error::ErrorClass::Environment
    } else {
        crate::error::ErrorClass::Bug
    }
}

pub fn explain(e: duckdb::Error) -> String {
    let text = e.to_string();
    if text.contains("Out of Memory") {
        let first = text.lines().next().unwrap_or_default();
        format!(
            "{first}\nHelp: DuckDB reached its memory limit ({}); set ODSYNC_DUCKDB_MEMORY higher (e.g. 8GB) and run again. Nothing was committed",
            memory_limit()
        )
    } else {
        text
    }
}

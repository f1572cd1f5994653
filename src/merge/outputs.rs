//! A merge's outputs: the trust table (encoded by `trusts.rs` while DuckDB writes the rest), the
//! conflicts, provenance and sources tables, and the report; staged as one version.

use super::*;
use crate::model::states::Table;
use arrow::datatypes::SchemaRef;

pub(super) fn write(
    conn: Connection,
    job: &Job<'_>,
    plan: &Plan,
    kept_rows: trusts::Kept,
    shape: &SchemaRef,
    changed_rows_from: &str,
    txn: &mut crate::warehouse::Txn,
) -> Result<MergeReport, MergeError> {
    let (merged_version, base_version) = (plan.merged_version, plan.base_version);
    let (ods_version, run_id) = (job.ods.version, job.run_id);
    let inputs_hash = plan.inputs_hash.clone();
    // The trust table, by far the largest output, is encoded on other threads while DuckDB builds
    // the provenance, writes the smaller tables and counts the report (nothing of which it needs).
    let tmp = output_folder(txn, merged_version)?;
    let started = std::time::Instant::now();
    let (trust_rows, written) = trusts::trust_rows(&conn, kept_rows, shape)?;
    tracing::trace!(ms = started.elapsed().as_millis() as u64, "merge trust rows ready");
    let trusts_file = tmp.join("trusts.parquet");
    let mut report = MergeReport {
        status: crate::model::states::MergeStatus::Merged,
        merged_version,
        ods_version,
        base_version,
        run_id: run_id.to_owned(),
        rows: written.rows,
        not_in_ods: written.not_in_ods,
        changed_rows_from: changed_rows_from.to_owned(),
        inputs_hash,
        ..MergeReport::default()
    };
    std::thread::scope(|scope| -> Result<(), MergeError> {
        let encoding = scope.spawn(|| trust_rows.write(&trusts_file));
        let rest = write_small_outputs(&conn, &tmp).and_then(|()| count_report(&conn, &mut report));
        // Closing the database frees every temporary table (~0.05 s at 1M rows): done while the
        // trust table is still being encoded.
        drop(conn);
        encoding.join().expect("encoding the trust table does not panic")?;
        rest
    })?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "merge outputs written");
    publish_outputs(&tmp, merged_version, &report, txn)?;
    Ok(report)
}

/// Builds the provenance (`build_provenance.sql`) and writes the merge's tables other than the
/// trust table into `tmp`, each sorted by key (by DuckDB: see below).
fn write_small_outputs(conn: &Connection, tmp: &Path) -> Result<(), MergeError> {
    run_step(conn, "build_provenance.sql", SQL_BUILD_PROVENANCE)?;
    // DuckDB writes them itself (sorted, zstd), as it writes the history: the provenance of a
    // baseline is one row per cell (6.25M at 250k organisations), and exporting it to Arrow to
    // encode it again took longer than DuckDB's own parallel Parquet writer.
    for (table, order) in [
        (Table::Conflicts, "code, field, conflict_id"),
        (Table::Provenance, "code, field"),
        (Table::Sources, "code, field"),
    ] {
        let started = std::time::Instant::now();
        conn.execute_batch(&format!(
            "COPY (SELECT * FROM {table} ORDER BY {order}) TO {} (FORMAT parquet, COMPRESSION zstd)",
            crate::sql::quote_path(&tmp.join(format!("{table}.parquet")))
        ))
        .map_err(sql_err("write outputs"))?;
        tracing::trace!(
            ms = started.elapsed().as_millis() as u64,
            table = table.as_str(),
            "merge output written"
        );
    }
    Ok(())
}

/// Fills in the report's counts: touched organisations, decisions per rule and conflicts.
fn count_report(conn: &Connection, report: &mut MergeReport) -> Result<(), MergeError> {
    let count = |sql: &str| -> Result<u64, MergeError> {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sql_err("report"))
    };
    let mut stmt = conn
        .prepare(
            "SELECT r, sum(n)::BIGINT FROM ( \
                 SELECT CASE WHEN rule LIKE 'resolution:%' THEN 'resolution' ELSE rule END AS r, count(*) AS n \
                 FROM decisions WHERE in_ods OR NOT in_base GROUP BY r \
                 UNION ALL SELECT rule, n FROM fresh_rule_counts) \
             GROUP BY r ORDER BY r",
        )
        .map_err(sql_err("report"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(sql_err("report"))?;
    for row in rows {
        let (rule, n) = row.map_err(sql_err("report"))?;
        report.rules.insert(rule, n as u64);
    }
    report.touched = count("SELECT count(*) FROM touched")?;
    report.fresh = count("SELECT count(*) FROM fresh")?;
    report.conflicts_open = count("SELECT count(*) FROM conflicts WHERE status = 'open'")?;
    report.conflicts_new = count(
        "SELECT count(*) FROM conflicts WHERE status IN ('open', 'ignored') AND first_seen_run = last_seen_run AND last_seen_run = (SELECT run_id FROM merge_params)",
    )?;
    report.conflicts_resolved = count(
        "SELECT count(*) FROM conflicts c WHERE status = 'resolved' AND conflict_id IN (SELECT conflict_id FROM prev_conflicts WHERE status IN ('open', 'ignored'))",
    )?;
    report.conflicts_superseded = count(
        "SELECT count(*) FROM conflicts c WHERE status = 'superseded' AND conflict_id IN (SELECT conflict_id FROM prev_conflicts WHERE status IN ('open', 'ignored'))",
    )?;
    report.conflicts_ignored = count("SELECT count(*) FROM conflicts WHERE status = 'ignored'")?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT code, field, kind, local_value, ods_value FROM conflicts WHERE status IN ('open', 'ignored') AND first_seen_run = last_seen_run AND last_seen_run = (SELECT run_id FROM merge_params) ORDER BY code, field LIMIT {NEW_CONFLICTS_LISTED}"
        ))
        .map_err(sql_err("report"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(NewConflict {
                code: r.get(0)?,
                field: r.get(1)?,
                kind: r.get(2)?,
                local_value: r.get(3)?,
                ods_value: r.get(4)?,
            })
        })
        .map_err(sql_err("report"))?;
    for row in rows {
        report.new_conflicts.push(row.map_err(sql_err("report"))?);
    }
    Ok(())
}

/// The version's temporary output folder, empty; [`publish_outputs`] adds the summary and renames
/// it into place. The trust table is written by [`trusts::Ordered::write`] from
/// [`trusts::trust_rows`], the other tables in the order DuckDB sorts them.
fn output_folder(txn: &mut crate::warehouse::Txn, version: u64) -> Result<PathBuf, MergeError> {
    txn.temp_dir(Output::Merged, version).map_err(|e| MergeError::Input {
        path: e.path.clone(),
        message: e.to_string(),
    })
}

/// Writes the summary, fsyncs the folder and stages it in the transaction: the merged version
/// appears when the run (or merge) commits.
fn publish_outputs(
    tmp: &Path,
    version: u64,
    report: &MergeReport,
    txn: &mut crate::warehouse::Txn,
) -> Result<(), MergeError> {
    let wh = |e: crate::warehouse::WarehouseError| MergeError::Input {
        path: e.path.clone(),
        message: e.to_string(),
    };
    let mut text = serde_json::to_string_pretty(report).expect("report serialises");
    text.push('\n');
    crate::warehouse::write_synced(&tmp.join("summary.json"), text.as_bytes()).map_err(wh)?;
    crate::warehouse::sync_tree(tmp).map_err(wh)?;
    txn.stage_version(tmp, Output::Merged, version, false).map_err(wh)
}

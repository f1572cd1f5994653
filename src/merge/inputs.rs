//! A merge's inputs in DuckDB: views over the snapshots and the previous outputs, the small
//! inputs as tables, and the organisation rows that changed since the base.

use super::*;
use crate::model::states::Table;
use arrow::datatypes::SchemaRef;

/// What loading leaves besides DuckDB's tables.
pub(super) struct Loaded {
    /// The trust table's Arrow shape (the previous table is cast to it).
    pub shape: SchemaRef,
    /// The previous trust table, being read on other threads.
    pub previous_read: Option<trusts::PreviousRead>,
    /// `diff` (handed over by the run) or `snapshots` (found by find_changed.sql).
    pub changed_rows_from: &'static str,
}

pub(super) fn load(conn: &Connection, job: &Job<'_>, plan: &Plan) -> Result<Loaded, MergeError> {
    load_big_inputs(conn, job, plan)?;
    // The previous trust table is read while DuckDB loads the other inputs and finds what changed.
    let shape = trusts::shape(conn)?;
    let previous_read = plan.previous.map(|v| {
        let path = Layout::new(job.warehouse, job.pipeline).table_file(Table::Trusts, v);
        trusts::read_previous(&path, &shape)
    });
    load_small_inputs(conn, job, plan)?;
    let changed_rows_from = load_changed_rows(conn, job.ods, plan.base_version)?;
    Ok(Loaded {
        shape,
        previous_read,
        changed_rows_from,
    })
}

/// The snapshots and the previous merge's outputs, as views (so DuckDB reads only the columns and
/// rows each step needs: the touched set is found from code and row_hash alone), and the empty
/// tables the small inputs go into.
fn load_big_inputs(conn: &Connection, job: &Job<'_>, plan: &Plan) -> Result<(), MergeError> {
    let Job {
        warehouse,
        pipeline,
        ods,
        ..
    } = *job;
    let store = SnapshotStore::new(warehouse, pipeline);
    let (previous, base_version, fields) = (plan.previous, plan.base_version, &plan.fields);
    let org_path = |v: u64| store.tables(v).file(Table::Organisations);
    let mut prelude = format!(
        "CREATE TEMP VIEW ods_raw AS SELECT * FROM read_parquet({}, hive_partitioning = false);\n",
        quote_path(&ods.tables.file(Table::Organisations))
    );
    // The base must exist: merging over an empty base would reopen every resolved conflict and
    // invent new ones. (The commit protocol publishes a merge with its snapshot, so only damage
    // to the warehouse gets here.)
    if let Some(b) = base_version
        && !org_path(b).exists()
    {
        return Err(MergeError::Input {
            path: org_path(b),
            message: format!(
                "the previous merge (version {}) was made on ODS snapshot version {b}, which is missing\nHelp: run `odsync verify {pipeline}`; restore the snapshot folder from a backup (nothing was merged)",
                previous.unwrap_or_default()
            ),
        });
    }
    match base_version {
        Some(b) => prelude.push_str(&format!(
            "CREATE TEMP VIEW base_raw AS SELECT * FROM read_parquet({}, hive_partitioning = false);\n",
            quote_path(&org_path(b))
        )),
        None => prelude.push_str("CREATE TEMP VIEW base_raw AS SELECT * FROM ods_raw LIMIT 0;\n"),
    }
    let typed_defs: String = fields
        .iter()
        .map(|(f, t, _)| format!("{f} {t}"))
        .collect::<Vec<_>>()
        .join(", ");
    prelude.push_str(&format!(
        "CREATE TEMP TABLE prev_trusts_shape (code VARCHAR, {typed_defs}, not_in_ods BOOLEAN);\n"
    ));
    prelude.push_str(
        "CREATE TEMP TABLE prev_conflicts (conflict_id VARCHAR, code VARCHAR, field VARCHAR, kind VARCHAR, base_value VARCHAR, local_value VARCHAR, ods_value VARCHAR, first_seen_run VARCHAR, last_seen_run VARCHAR, status VARCHAR, resolution VARCHAR, resolution_value VARCHAR, resolved_by VARCHAR, resolved_at VARCHAR, reason VARCHAR);\n\
         CREATE TEMP TABLE prev_sources (code VARCHAR, field VARCHAR, source VARCHAR);\n\
         CREATE TEMP TABLE local_long (code VARCHAR, field VARCHAR, value VARCHAR);\n\
         CREATE TEMP TABLE local_codes (code VARCHAR);\n\
         CREATE TEMP TABLE overrides_active (code VARCHAR, field VARCHAR, value VARCHAR, reason VARCHAR, author VARCHAR);\n\
         CREATE TEMP TABLE resolutions (conflict_id VARCHAR, resolution VARCHAR, value VARCHAR, reason VARCHAR, resolved_by VARCHAR, resolved_at VARCHAR, until DATE);\n\
         CREATE TEMP TABLE merge_fields (field VARCHAR, is_local_field BOOLEAN, ownership VARCHAR);\n\
         CREATE TEMP TABLE merge_params (run_id VARCHAR, ods_version BIGINT, merged_version BIGINT, merged_at VARCHAR);\n",
    );
    match previous {
        Some(prev) => {
            let dir = Layout::new(warehouse, pipeline).tables(prev);
            // UNION BY NAME against the current shape: a local field added since reads as NULL.
            prelude.push_str(&format!(
                "CREATE TEMP VIEW prev_trusts AS SELECT * FROM prev_trusts_shape UNION ALL BY NAME SELECT * FROM read_parquet({}, hive_partitioning = false);\n\
                 INSERT INTO prev_conflicts BY NAME SELECT * FROM read_parquet({}, hive_partitioning = false);\n\
                 INSERT INTO prev_sources SELECT code, field, source FROM read_parquet({}, hive_partitioning = false);\n",
                quote_path(&dir.file(Table::Trusts)),
                quote_path(&dir.file(Table::Conflicts)),
                quote_path(&dir.file(Table::Sources)),
            ));
        }
        None => prelude.push_str("CREATE TEMP VIEW prev_trusts AS SELECT * FROM prev_trusts_shape;\n"),
    }
    conn.execute_batch(&prelude).map_err(sql_err("load inputs"))
}

/// The fields and their ownership, the run's parameters, the local table, the overrides in force
/// and the recorded resolutions (the newest per conflict, an expired ignore left out).
fn load_small_inputs(conn: &Connection, job: &Job<'_>, plan: &Plan) -> Result<(), MergeError> {
    let Job {
        settings,
        ods,
        run_id,
        clock,
        ..
    } = *job;
    let (ods_version, merged_version, today) = (ods.version, plan.merged_version, plan.today);
    let (fields, overrides, all_resolutions) = (&plan.fields, &plan.overrides, &plan.all_resolutions);
    let field_names = plan.field_names();
    {
        let mut insert = conn
            .prepare("INSERT INTO merge_fields VALUES (?, ?, ?)")
            .map_err(sql_err("load inputs"))?;
        for (f, _, local) in fields {
            let ownership = if *local {
                "local"
            } else {
                settings.ownership[f].as_str()
            };
            insert
                .execute(params![f, local, ownership])
                .map_err(sql_err("load inputs"))?;
        }
        conn.execute(
            "INSERT INTO merge_params VALUES (?, ?, ?, ?)",
            params![
                run_id,
                ods_version as i64,
                merged_version as i64,
                clock.now().to_rfc3339()
            ],
        )
        .map_err(sql_err("load inputs"))?;
    }
    if let Some(path) = &settings.local_table {
        load_local_table(conn, path, &field_names)?;
    }
    {
        let mut insert = conn
            .prepare("INSERT INTO overrides_active VALUES (?, ?, ?, ?, ?)")
            .map_err(sql_err("load overrides"))?;
        for o in overrides {
            insert
                .execute(params![o.code, o.field, o.value, o.reason, o.author])
                .map_err(sql_err("load overrides"))?;
        }
    }
    {
        let mut insert = conn
            .prepare("INSERT INTO resolutions VALUES (?, ?, ?, ?, ?, ?, CAST(? AS DATE))")
            .map_err(sql_err("load resolutions"))?;
        for r in all_resolutions {
            insert
                .execute(params![
                    r.conflict_id,
                    r.resolution.as_str(),
                    r.value,
                    r.reason,
                    r.by,
                    r.at,
                    r.until.map(|d| d.to_string())
                ])
                .map_err(sql_err("load resolutions"))?;
        }
    }
    // The newest resolution per conflict; an expired ignore no longer applies.
    conn.execute(
        "CREATE TEMP TABLE latest_resolutions AS
         SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY conflict_id ORDER BY resolved_at DESC, rowid DESC) AS n FROM resolutions)
         WHERE n = 1 AND NOT (resolution = 'ignore' AND until IS NOT NULL AND until < CAST(? AS DATE))",
        params![today.to_string()],
    )
    .map_err(sql_err("load resolutions"))?;
    Ok(())
}

/// Which organisation rows changed since the base: handed over by the run's diff when it compared
/// this very base (`diff`), else found by find_changed.sql (`snapshots`).
fn load_changed_rows(conn: &Connection, ods: &OdsInput, base_version: Option<u64>) -> Result<&'static str, MergeError> {
    let started = std::time::Instant::now();
    let handoff = ods.changed.as_ref().filter(|c| base_version == Some(c.from_version));
    let changed_rows_from = if handoff.is_some() { "diff" } else { "snapshots" };
    match handoff {
        Some(changed) => {
            conn.execute_batch(
                "CREATE TABLE ods_changed AS SELECT * FROM ods_raw LIMIT 0;\n\
                 CREATE TABLE base_changed AS SELECT * FROM base_raw LIMIT 0;",
            )
            .map_err(sql_err("load changed rows"))?;
            for (table, batch) in [("ods_changed", &changed.new), ("base_changed", &changed.old)] {
                let mut appender = conn.appender(table).map_err(sql_err("load changed rows"))?;
                appender
                    .append_record_batch(batch.clone())
                    .map_err(sql_err("load changed rows"))?;
                appender.flush().map_err(sql_err("load changed rows"))?;
            }
        }
        None => conn
            .execute_batch(SQL_FIND_CHANGED)
            .map_err(sql_err("find_changed.sql"))?,
    }
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "changed rows");
    Ok(changed_rows_from)
}

fn load_local_table(conn: &Connection, path: &Path, fields: &[&str]) -> Result<(), MergeError> {
    if !path.exists() {
        return Err(MergeError::Input {
            path: path.to_owned(),
            message: "the local table file does not exist\nHelp: fix `merge.local_table` in the pipeline file".into(),
        });
    }
    let is_parquet = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let source = if is_parquet {
        format!("read_parquet({}, hive_partitioning = false)", quote_path(path))
    } else {
        format!("read_csv({}, header = true, all_varchar = true)", quote_path(path))
    };
    let err = |e: duckdb::Error| MergeError::Input {
        path: path.to_owned(),
        message: e.to_string(),
    };
    conn.execute_batch(&format!("CREATE TEMP TABLE local_raw AS SELECT * FROM {source};"))
        .map_err(err)?;
    let columns: Vec<String> = conn
        .prepare("SELECT column_name FROM (DESCRIBE local_raw)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(err)?;
    if !columns.iter().any(|c| c == "code") {
        return Err(MergeError::Input {
            path: path.to_owned(),
            message: "no `code` column: the local table must be keyed by ODS code".into(),
        });
    }
    let unknown: Vec<&String> = columns
        .iter()
        .filter(|c| *c != "code" && !fields.contains(&c.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(MergeError::Input {
            path: path.to_owned(),
            message: format!(
                "columns {} are not trust table fields\nHelp: add team-owned columns to `merge.local_fields`, or drop them from the file",
                unknown.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    // An organisation the file lists is decided cell by cell even when all its cells are empty
    // (select_touched.sql: only organisations nothing local points at are `fresh`).
    conn.execute_batch(
        "INSERT INTO local_codes SELECT DISTINCT CAST(code AS VARCHAR) FROM local_raw WHERE code IS NOT NULL;",
    )
    .map_err(err)?;
    if columns.len() > 1 {
        // UNPIVOT drops NULLs: an empty cell is not a local value.
        conn.execute_batch(
            "CREATE TEMP VIEW local_wide AS SELECT code, COLUMNS(* EXCLUDE code)::VARCHAR FROM local_raw WHERE code IS NOT NULL;
             CREATE TEMP TABLE local_unpivoted AS UNPIVOT local_wide ON COLUMNS(* EXCLUDE code) INTO NAME field VALUE value;
             INSERT INTO local_long SELECT code, field, value FROM local_unpivoted WHERE value <> '';",
        )
        .map_err(err)?;
    }
    Ok(())
}

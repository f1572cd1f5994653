//! Snapshots as analysts read them: DuckDB over the Parquet files (Hive partitioning) and the
//! catalog's views and runs table, opened without odsync.

use crate::common::TestContext;
use duckdb::Connection;

#[test]
fn snapshots_are_readable_by_duckdb_with_hive_partitioning() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    ctx.run_ok("2025-07-10T02:00:00Z", "trusts", &[]);
    ctx.server().set_state("demo-2025-07").unwrap();
    ctx.run_ok("2025-07-16T02:00:00Z", "trusts", &[]);

    let conn = Connection::open_in_memory().unwrap();
    let glob = ctx.warehouse().join("trusts/organisations/*/part-0.parquet");
    let sql = format!(
        "SELECT CAST(version AS BIGINT), count(*) FROM read_parquet('{}', hive_partitioning = true) GROUP BY ALL ORDER BY 1",
        glob.display()
    );
    let mut stmt = conn.prepare(&sql).unwrap();
    let counts: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(counts, [(1, 220), (2, 221)]);

    // Rows are sorted by key and the file carries odsync's metadata.
    let file = ctx
        .warehouse()
        .join("trusts/organisations/version=000002/part-0.parquet");
    let codes: Vec<String> = conn
        .prepare(&format!("SELECT code FROM read_parquet('{}')", file.display()))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(codes, sorted);
    let run_id: String = conn
        .query_row(
            &format!(
                "SELECT decode(value) FROM parquet_kv_metadata('{}') WHERE decode(key) = 'odsync.run_id'",
                file.display()
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(run_id, "20250716T020000Z-trusts-0002");
}

#[test]
fn the_catalog_opens_without_odsync_and_its_views_match_the_runs() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    ctx.run_ok("2025-07-10T02:00:00Z", "trusts", &[]);
    ctx.server().set_state("demo-2025-07").unwrap();
    ctx.run_ok("2025-07-16T02:00:00Z", "trusts", &[]);
    ctx.run_ok("2025-07-16T03:00:00Z", "trusts", &[]);

    // A plain DuckDB connection, from a different working directory.
    let conn = Connection::open(ctx.warehouse().join("catalog.duckdb")).unwrap();
    let runs: Vec<(String, String, Option<i64>)> = conn
        .prepare("SELECT mode, status, snapshot_version FROM runs ORDER BY run_number")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        runs,
        [
            ("baseline".into(), "succeeded".into(), Some(1)),
            ("incremental".into(), "succeeded".into(), Some(2)),
            ("incremental".into(), "unchanged".into(), Some(2)),
        ]
    );
    let latest: (i64, i64) = conn
        .query_row(
            "SELECT max(version), count(*) FROM latest_organisations WHERE pipeline = 'trusts'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(latest, (2, 221));
    let roles: i64 = conn
        .query_row(
            "SELECT count(*) FROM latest_code_system_roles WHERE role_id = 'RO197' AND display_name = 'NHS TRUST'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(roles, 1);
}

/// A minimal ORD record with successions: `(kind, target)` pairs.
fn ord_record(code: &str, status: &str, succs: &[(&str, &str)]) -> String {
    let succ: Vec<String> = succs
        .iter()
        .enumerate()
        .map(|(i, (kind, target))| {
            format!(
                r#"{{"uniqueSuccId": "{code}{i}", "Date": [{{"Type": "Legal", "Start": "2020-04-0{}"}}], "Type": "{kind}", "Target": {{"OrgId": {{"extension": "{target}"}}, "PrimaryRoleId": {{"id": "RO197"}}}}}}"#,
                i + 1
            )
        })
        .collect();
    format!(
        r#"{{"Organisation": {{"Name": "TRUST {code}", "OrgId": {{"extension": "{code}"}}, "Status": "{status}", "LastChangeDate": "2020-04-01",
            "Date": [{{"Type": "Operational", "Start": "2000-04-01"}}],
            "Roles": {{"Role": [{{"id": "RO197", "uniqueRoleId": "r{code}", "primaryRole": true, "Status": "{status}"}}]}},
            "Succs": {{"Succ": [{}]}}}}}}"#,
        succ.join(",")
    )
}

#[test]
fn successor_chains_resolve_to_the_active_successor_and_report_cycles_and_ambiguity() {
    let dir = tempfile::tempdir().unwrap();
    let records = [
        // A → B → C, C active (B also lists A as its predecessor: the same edge, once).
        ("A", "Inactive", vec![("Successor", "B")]),
        ("B", "Inactive", vec![("Predecessor", "A"), ("Successor", "C")]),
        ("C", "Active", vec![("Predecessor", "B")]),
        // X → Y → X: a cycle of closed bodies.
        ("X", "Inactive", vec![("Successor", "Y")]),
        ("Y", "Inactive", vec![("Successor", "X")]),
        // P split into Q and R, both active.
        ("P", "Inactive", vec![("Successor", "Q"), ("Successor", "R")]),
        ("Q", "Active", vec![]),
        ("R", "Active", vec![]),
    ];
    let state = dir.path().join("succ");
    std::fs::create_dir_all(&state).unwrap();
    let mut files = Vec::new();
    for (code, status, succs) in &records {
        std::fs::write(state.join(format!("{code}.json")), ord_record(code, status, succs)).unwrap();
        files.push(format!("\"{code}.json\""));
    }
    std::fs::write(
        state.join("state.toml"),
        format!(
            "served_on = \"2025-07-10\"\ndata_date = \"2025-07-01\"\nroles = \"{}\"\njson_records = [{}]\n",
            crate::common::fixtures().join("ods/roles-2022.json").display(),
            files.join(", ")
        ),
    )
    .unwrap();
    let ctx = TestContext::with_server_in(dir.path(), "succ");
    ctx.ord_pipeline("trusts", &["RO197"]);
    ctx.run_ok("2025-07-10T02:00:00Z", "trusts", &[]);
    let rows = ctx.cells(
        "SELECT code, successor_code, active_successor_code, resolution, CAST(active_candidates AS VARCHAR), in_cycle
         FROM active_successors WHERE pipeline = 'trusts' ORDER BY code",
    );
    assert_eq!(
        rows,
        [
            vec!["A", "B", "C", "resolved", "[C]", "false"],
            vec!["B", "C", "C", "resolved", "[C]", "false"],
            vec!["P", "R", "∅", "ambiguous", "[Q, R]", "false"],
            vec!["X", "Y", "∅", "none", "∅", "true"],
            vec!["Y", "X", "∅", "none", "∅", "true"],
        ]
    );
    let mergers = ctx.cells(
        "SELECT old_code, new_code, CAST(effective_date AS VARCHAR), active_successor_code FROM mergers WHERE pipeline = 'trusts' AND old_code IN ('A', 'P') ORDER BY old_code, new_code",
    );
    assert_eq!(
        mergers,
        [
            vec!["A", "B", "2020-04-01", "C"],
            vec!["P", "Q", "2020-04-01", "∅"],
            vec!["P", "R", "2020-04-02", "∅"],
        ]
    );
}

#[test]
fn the_hierarchy_follows_re6_for_sites_and_re5_to_the_icb_for_trusts_with_dated_history() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    ctx.run_ok("2025-07-10T02:00:00Z", "trusts", &[]);
    let parents = ctx.cells(
        "SELECT code, parent_code, parent_relationship FROM latest_trusts WHERE pipeline = 'trusts' AND code IN ('RVVKC', 'RWR') ORDER BY code",
    );
    assert_eq!(
        parents,
        [
            vec!["RVVKC", "RVV", "RE6 is operated by"],
            vec!["RWR", "QM7", "RE5 in the geography of (ICB)"]
        ]
    );
    // The real RWR record keeps every earlier parent with its dates.
    let history = ctx.query(
        "SELECT parent_code, parent_primary_role, CAST(valid_from AS VARCHAR), CAST(valid_to AS VARCHAR), status
         FROM hierarchy WHERE pipeline = 'trusts' AND child_code = 'RWR' ORDER BY valid_from, parent_code",
    );
    assert_eq!(history.len(), 7, "{history:?}");
    let last = &history[6];
    assert_eq!(last[0].as_deref(), Some("QM7"));
    assert_eq!(last[2].as_deref(), Some("2020-04-01"));
    assert_eq!(last[3], None);
    assert!(
        history[..6].iter().all(|r| r[3].is_some()),
        "earlier parents are closed: {history:?}"
    );
    let provenance = ctx.query(
        "SELECT source FROM provenance_latest WHERE pipeline = 'trusts' AND code = 'RWR' AND field = 'parent_code'",
    );
    assert_eq!(provenance[0][0].as_deref(), Some("derived"));
}

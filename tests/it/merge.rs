//! Golden cases for the three-way merge: every rule, conflicts and each resolution kind,
//! provenance, idempotence and byte-identical outputs. ODS is a hand-made etr.csv per step.

use crate::common::TestContext;
use std::path::Path;

/// One etr.csv line: code, name, postcode, telephone (27 fields).
fn etr(code: &str, name: &str, postcode: &str, tel: &str) -> String {
    let mut f = vec![String::new(); 27];
    f[0] = code.into();
    f[1] = name.into();
    f[2] = "Y56".into();
    f[3] = "QMJ".into();
    f[4] = "1 ROAD".into();
    f[7] = "LONDON".into();
    f[9] = postcode.into();
    f[10] = "20000401".into();
    f[17] = tel.into();
    f[21] = "0".into();
    f[23] = "H".into();
    f.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(",")
}

fn write(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\r\n") + "\r\n").unwrap();
}

fn setup(ctx: &TestContext) {
    let dir = ctx.path();
    std::fs::write(
        dir.join("pipelines/trusts.toml"),
        format!(
            "name = \"trusts\"\n[source]\ntype = \"csv\"\nkind = \"etr\"\nlocation = \"{}\"\n\
             [merge]\nlocal_fields = [\"trust_type\"]\nlocal_table = \"{}\"\n\
             [merge.fields]\npostcode = \"ods\"\ntelephone = \"local\"\n\
             [guard]\nmax_added_share = 1.0\nmax_vanished_share = 1.0\nmax_field_change_share = 1.0\n",
            dir.join("etr.csv").display(),
            dir.join("local.csv").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("local.csv"), "code,name,trust_type\n").unwrap();
}

fn ods_v1() -> Vec<String> {
    vec![
        etr("A1", "ALPHA", "AA1 1AA", "0111"),
        etr("B1", "BETA", "BB1 1BB", "0111"),
        etr("C1", "GAMMA", "CC1 1CC", "0300"),
        etr("D1", "DELTA", "DD1 1DD", "0111"),
        etr("G1", "GEE", "GG1 1GG", "0111"),
        etr("H1", "AITCH", "HH1 1HH", "0111"),
        etr("I1", "EYE", "II1 1II", "0111"),
        etr("J1", "JAY", "JJ1 1JJ", "0111"),
        etr("K1", "KAY", "KK1 1KK", "0111"),
        etr("L1", "ELL", "LL1 1LL", "0111"),
    ]
}

fn ods_v2() -> Vec<String> {
    vec![
        etr("A1", "ALPHA NEW", "AA9 9AA", "0111"), // name conflicts with a local edit; postcode is safe
        etr("B1", "BETA", "BB1 1BB", "0111"),
        etr("C1", "GAMMA", "CC1 1CC", "0200"), // telephone: local-owned field, overridden locally
        // D1 deleted, unmodified → leaves the table
        etr("E1", "EPSILON", "EE1 1EE", "0111"), // new
        etr("G1", "GEE NEW", "GG1 1GG", "0111"), // converges with the local edit
        // H1 deleted while locally modified → delete_vs_modify
        etr("I1", "EYE", "II9 9II", "0111"), // postcode owned by ODS: overwrites the local edit
        etr("J1", "JAY NEW", "JJ1 1JJ", "0111"),
        etr("K1", "KAY NEW", "KK1 1KK", "0111"),
        etr("L1", "ELL NEW", "LL1 1LL", "0111"),
    ]
}

type Rows = Vec<Vec<Option<String>>>;

fn value(ctx: &TestContext, code: &str, field: &str) -> Option<String> {
    value_of(ctx, "trusts", code, field)
}

fn provenance(ctx: &TestContext, code: &str, field: &str) -> (String, String) {
    let rows = ctx.query(&format!(
        "SELECT source, rule FROM provenance_latest WHERE pipeline = 'trusts' AND code = '{code}' AND field = '{field}'"
    ));
    (rows[0][0].clone().unwrap(), rows[0][1].clone().unwrap())
}

fn open_conflicts(ctx: &TestContext) -> Rows {
    ctx.query("SELECT code, field, kind, conflict_id, status FROM conflicts_latest WHERE pipeline = 'trusts' AND status IN ('open', 'ignored') ORDER BY code, field")
}

fn conflict_id(rows: &Rows, code: &str) -> String {
    rows.iter().find(|r| r[0].as_deref() == Some(code)).unwrap()[3]
        .clone()
        .unwrap()
}

/// Runs v1, applies local edits, runs v2. Returns the open conflicts after v2.
fn two_runs(ctx: &TestContext) -> Rows {
    setup(ctx);
    write(&ctx.path().join("etr.csv"), &ods_v1());
    let first = ctx.run_ok("2025-07-01", "trusts", &[]);
    assert_eq!(first["merge"]["rows"], 10);
    assert_eq!(first["merge"]["conflicts_open"], 0);
    assert!(
        first["merge"]["rules"]["ods_update"].as_u64().unwrap() >= 10 * 8,
        "{}",
        first["merge"]
    );
    std::fs::write(
        ctx.path().join("local.csv"),
        "code,name,postcode,trust_type\nA1,ALPHA LOCAL,,\nB1,,,Acute\nF1,EFF LOCAL ONLY,,Community\nG1,GEE NEW,,\nI1,,LOCAL PC,\nJ1,JAY LOCAL,,\nK1,KAY LOCAL,,\nL1,ELL LOCAL,,\n",
    )
    .unwrap();
    std::fs::write(
        ctx.path().join("pipelines/trusts.overrides.csv"),
        "code,field,value,reason,author,expires\nC1,telephone,0100,switchboard number,ops,\nH1,name,AITCH (LOCAL),local name,ops,\nB1,town,OLD OVERRIDE,expired,ops,2020-01-01\n",
    )
    .unwrap();
    write(&ctx.path().join("etr.csv"), &ods_v2());
    let second = ctx.run_ok("2025-07-02", "trusts", &[]);
    assert_eq!(second["merge"]["status"], "merged");
    open_conflicts(ctx)
}

#[test]
fn every_merge_rule_applies_and_a_conflict_never_blocks_other_fields() {
    let ctx = TestContext::new();
    let conflicts = two_runs(&ctx);
    let summary: Vec<(String, String, String)> = conflicts
        .iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap(), r[2].clone().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("A1".into(), "name".into(), "field".into()),
            ("H1".into(), "_row".into(), "delete_vs_modify".into()),
            ("J1".into(), "name".into(), "field".into()),
            ("K1".into(), "name".into(), "field".into()),
            ("L1".into(), "name".into(), "field".into()),
        ]
    );
    // A conflict keeps the local value; the safe postcode update on the same row goes through.
    assert_eq!(value(&ctx, "A1", "name").as_deref(), Some("ALPHA LOCAL"));
    assert_eq!(
        provenance(&ctx, "A1", "name"),
        ("local_table".into(), "conflict".into())
    );
    assert_eq!(value(&ctx, "A1", "postcode").as_deref(), Some("AA9 9AA"));
    assert_eq!(provenance(&ctx, "A1", "postcode"), ("ods".into(), "ods_update".into()));
    // Local field; ODS-unchanged fields keep their value.
    assert_eq!(value(&ctx, "B1", "trust_type").as_deref(), Some("Acute"));
    assert_eq!(
        provenance(&ctx, "B1", "trust_type"),
        ("local_table".into(), "local_field".into())
    );
    // An expired override does nothing.
    assert_eq!(value(&ctx, "B1", "town").as_deref(), Some("LONDON"));
    // A locally owned field: the override wins over the ODS change.
    assert_eq!(value(&ctx, "C1", "telephone").as_deref(), Some("0100"));
    assert_eq!(
        provenance(&ctx, "C1", "telephone"),
        ("override".into(), "local_wins".into())
    );
    // Deleted from ODS and unmodified: gone. New in ODS: inserted. Only local: kept, flagged.
    assert_eq!(value(&ctx, "D1", "name"), None);
    assert_eq!(value(&ctx, "E1", "name").as_deref(), Some("EPSILON"));
    assert_eq!(value(&ctx, "F1", "not_in_ods").as_deref(), Some("true"));
    assert_eq!(value(&ctx, "F1", "name").as_deref(), Some("EFF LOCAL ONLY"));
    // Converged edit: no conflict.
    assert_eq!(provenance(&ctx, "G1", "name"), ("ods".into(), "converged".into()));
    // Deleted while modified: kept with the local value.
    assert_eq!(value(&ctx, "H1", "name").as_deref(), Some("AITCH (LOCAL)"));
    // ODS-owned field: ODS overwrites the local edit.
    assert_eq!(value(&ctx, "I1", "postcode").as_deref(), Some("II9 9II"));
    assert_eq!(provenance(&ctx, "I1", "postcode"), ("ods".into(), "ods_wins".into()));
}

#[test]
fn each_resolution_kind_applies_and_conflict_ids_are_stable() {
    let ctx = TestContext::new();
    let conflicts = two_runs(&ctx);
    let (a1, j1, k1, l1) = (
        conflict_id(&conflicts, "A1"),
        conflict_id(&conflicts, "J1"),
        conflict_id(&conflicts, "K1"),
        conflict_id(&conflicts, "L1"),
    );

    // The same disagreement in the next run keeps its id.
    let again = ctx.run_ok("2025-07-03", "trusts", &["--full"]);
    assert_eq!(again["status"], "unchanged");
    assert_eq!(open_conflicts(&ctx), conflicts);

    ctx.odsync(
        "2025-07-03",
        &[
            "conflicts",
            "resolve",
            "trusts",
            &a1,
            "--set",
            "ALPHA CUSTOM",
            "--reason",
            "board name",
            "--by",
            "alice",
        ],
    )
    .ok();
    ctx.odsync(
        "2025-07-03",
        &["conflicts", "resolve", "trusts", &j1, "--accept-ods", "--by", "alice"],
    )
    .ok();
    ctx.odsync(
        "2025-07-03",
        &["conflicts", "resolve", "trusts", &k1, "--keep-local", "--by", "bob"],
    )
    .ok();
    let merged = ctx
        .odsync(
            "2025-07-03",
            &[
                "conflicts",
                "resolve",
                "trusts",
                &l1,
                "--ignore",
                "--reason",
                "awaiting ODS fix",
                "--until",
                "2025-12-31",
                "--merge",
                "--json",
            ],
        )
        .ok()
        .json();
    assert_eq!(merged["conflicts_resolved"], 3);
    assert_eq!(merged["conflicts_ignored"], 1);

    assert_eq!(value(&ctx, "A1", "name").as_deref(), Some("ALPHA CUSTOM"));
    assert_eq!(
        provenance(&ctx, "A1", "name"),
        ("resolution".into(), format!("resolution:{a1}"))
    );
    assert_eq!(value(&ctx, "J1", "name").as_deref(), Some("JAY NEW"));
    assert_eq!(value(&ctx, "K1", "name").as_deref(), Some("KAY LOCAL"));
    assert_eq!(value(&ctx, "L1", "name").as_deref(), Some("ELL LOCAL"));
    let statuses = ctx.query(
        "SELECT code, status, resolution, resolved_by FROM conflicts_latest WHERE pipeline = 'trusts' AND code IN ('A1', 'J1', 'K1', 'L1') ORDER BY code",
    );
    let statuses: Vec<Vec<Option<&str>>> = statuses
        .iter()
        .map(|r| r.iter().map(|v| v.as_deref()).collect())
        .collect();
    assert_eq!(
        statuses,
        [
            [Some("A1"), Some("resolved"), Some("set"), Some("alice")],
            [Some("J1"), Some("resolved"), Some("accept_ods"), Some("alice")],
            [Some("K1"), Some("resolved"), Some("keep_local"), Some("bob")],
            [Some("L1"), Some("ignored"), None, None],
        ]
    );

    // A new ODS value makes a new conflict; the resolved one stays resolved.
    let mut v3 = ods_v2();
    v3[7] = etr("K1", "KAY NEWER", "KK1 1KK", "0111");
    write(&ctx.path().join("etr.csv"), &v3);
    ctx.run_ok("2025-07-04", "trusts", &[]);
    let now = open_conflicts(&ctx);
    let k1_new = conflict_id(&now, "K1");
    assert_ne!(k1_new, k1);
    assert_eq!(conflict_id(&now, "L1"), l1);
    // Once the ignore lapses, the conflict is open again, with the same id.
    ctx.odsync("2026-01-02", &["merge", "trusts"]).ok();
    let later = open_conflicts(&ctx);
    let l1_row = later.iter().find(|r| r[0].as_deref() == Some("L1")).unwrap();
    assert_eq!(
        (l1_row[3].as_deref(), l1_row[4].as_deref()),
        (Some(l1.as_str()), Some("open"))
    );
}

#[test]
fn bad_resolutions_are_refused_as_a_whole_naming_the_line() {
    let ctx = TestContext::new();
    let conflicts = two_runs(&ctx);
    let a1 = conflict_id(&conflicts, "A1");
    let file = ctx.path().join("resolutions.csv");
    std::fs::write(
        &file,
        format!("conflict_id,resolution,value,reason,until\n{a1},accept_ods,,,\nnot-an-id,keep_local,,,\n"),
    )
    .unwrap();
    let out = ctx.odsync("2025-07-03", &["conflicts", "apply", "trusts", file.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("line 3") && out.stderr.contains("not-an-id"),
        "{}",
        out.stderr
    );
    // Nothing was recorded: A1 is still open after a merge.
    ctx.odsync("2025-07-03", &["merge", "trusts"]).ok();
    assert!(open_conflicts(&ctx).iter().any(|r| r[0].as_deref() == Some("A1")));
    // A resolution kind that does not exist is refused at its line, naming the known ones.
    std::fs::write(
        &file,
        format!("conflict_id,resolution,value,reason,until\n{a1},maybe,,,\n"),
    )
    .unwrap();
    let out = ctx.odsync("2025-07-03", &["conflicts", "apply", "trusts", file.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("line 2")
            && out
                .stderr
                .contains("`maybe` is not a resolution (one of: accept_ods, keep_local, set, ignore)"),
        "{}",
        out.stderr
    );

    let bad_override = ctx.path().join("pipelines/trusts.overrides.csv");
    std::fs::write(
        &bad_override,
        "code,field,value,reason,author,expires\nA1,colour,RED,why,me,\n",
    )
    .unwrap();
    let out = ctx.odsync("2025-07-03", &["merge", "trusts"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("line 2") && out.stderr.contains("colour"),
        "{}",
        out.stderr
    );
}

#[test]
fn merging_the_same_inputs_twice_changes_nothing_and_gives_identical_bytes() {
    let a = TestContext::new();
    let b = TestContext::new();
    two_runs(&a);
    two_runs(&b);
    let again = a.odsync("2025-07-02", &["merge", "trusts", "--json"]).ok().json();
    assert_eq!(again["status"], "unchanged");
    for file in [
        "trusts/version=000002/part-0.parquet",
        "conflicts/version=000002/part-0.parquet",
        "provenance/version=000002/part-0.parquet",
        "_meta/merged/version=000002/summary.json",
    ] {
        let read = |ctx: &TestContext| std::fs::read(ctx.warehouse().join("trusts").join(file)).unwrap();
        assert!(
            read(&a) == read(&b),
            "{file} differs between two merges of the same inputs"
        );
    }
}

#[test]
fn a_merge_given_the_diffs_rows_equals_one_that_finds_them_itself() {
    // `odsync run` hands the merge the organisation rows its diff read; `odsync merge` finds them
    // with find_changed.sql. Both must decide the same thing.
    let ctx = TestContext::new();
    two_runs(&ctx);
    let pipeline = ctx.warehouse().join("trusts");
    let summary_path = pipeline.join("_meta/merged/version=000002/summary.json");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["changed_rows_from"], "diff");
    // Take the run's merged version out of the warehouse (each table's version folder and its
    // summary), keeping its tables side by side.
    let kept = ctx.path().join("merged-by-run");
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::remove_dir_all(summary_path.parent().unwrap()).unwrap();
    for table in ["trusts", "conflicts", "provenance", "sources"] {
        let version = pipeline.join(table).join("version=000002");
        std::fs::rename(version.join("part-0.parquet"), kept.join(format!("{table}.parquet"))).unwrap();
        std::fs::remove_dir(version).unwrap();
    }
    let report = ctx.odsync("2025-07-02", &["merge", "trusts", "--json"]).ok().json();
    assert_eq!(report["status"], "merged", "{report}");
    assert_eq!(report["merged_version"], 2);
    assert_eq!(report["changed_rows_from"], "snapshots");
    let by_merge = ctx.path().join("merged-by-merge");
    std::fs::create_dir_all(&by_merge).unwrap();
    for table in ["trusts", "conflicts", "provenance", "sources"] {
        std::fs::copy(
            pipeline.join(table).join("version=000002/part-0.parquet"),
            by_merge.join(format!("{table}.parquet")),
        )
        .unwrap();
    }
    assert!(
        std::fs::read(kept.join("trusts.parquet")).unwrap() == std::fs::read(by_merge.join("trusts.parquet")).unwrap(),
        "the trust table differs between the run's merge and a merge on its own"
    );
    let rows = |dir: &Path, sql: &str| ctx.query(&sql.replace("{f}", &dir.display().to_string()));
    for sql in [
        "SELECT code, field, value, source, rule FROM read_parquet('{f}/provenance.parquet') ORDER BY ALL",
        "SELECT conflict_id, code, field, kind, status FROM read_parquet('{f}/conflicts.parquet') ORDER BY ALL",
        "SELECT code, field, source FROM read_parquet('{f}/sources.parquet') ORDER BY ALL",
    ] {
        let (a, b) = (rows(&kept, sql), rows(&by_merge, sql));
        assert!(!a.is_empty(), "{sql}");
        assert_eq!(a, b, "{sql}");
    }
}

#[test]
fn fresh_organisations_are_merged_as_the_cell_by_cell_rules_would_merge_them() {
    // New organisations nothing local points at skip the cell-by-cell decision (select_touched.sql
    // `fresh`). A local table that lists every code with empty cells points at all of them
    // without changing any value: every cell then goes through decide_fields.sql, and every
    // output must come out byte for byte the same, but for the provenance log, where a fresh
    // organisation is one entry (field '*') that `provenance_latest` lists cell by cell: that
    // view must then give every cell the same value, source, rule, run and version.
    let mut merged = Vec::new();
    for listed in [false, true] {
        let ctx = TestContext::new();
        setup(&ctx);
        if listed {
            let codes = ["A1", "B1", "C1", "D1", "E1", "G1", "H1", "I1", "J1", "K1", "L1"];
            let body: String = codes.iter().map(|c| format!("{c},,\n")).collect();
            std::fs::write(ctx.path().join("local.csv"), format!("code,name,trust_type\n{body}")).unwrap();
        }
        write(&ctx.path().join("etr.csv"), &ods_v1());
        let first = ctx.run_ok("2025-07-01", "trusts", &[]);
        write(&ctx.path().join("etr.csv"), &ods_v2());
        let second = ctx.run_ok("2025-07-02", "trusts", &[]);
        let fresh = (
            first["merge"]["fresh"].as_u64().unwrap(),
            second["merge"]["fresh"].as_u64().unwrap(),
        );
        // (The second version's only new organisation is E1.)
        assert_eq!(fresh, if listed { (0, 0) } else { (10, 1) }, "{first} {second}");
        let mut files = Vec::new();
        for version in ["000001", "000002"] {
            for table in ["trusts", "conflicts", "sources"] {
                let path = ctx
                    .warehouse()
                    .join("trusts")
                    .join(table)
                    .join(format!("version={version}/part-0.parquet"));
                files.push((format!("{table} {version}"), std::fs::read(&path).unwrap()));
            }
        }
        let whole_rows = ctx.query(
            "SELECT version, count(*) FROM provenance_log WHERE pipeline = 'trusts' AND field = '*' AND rule = 'fresh' GROUP BY ALL ORDER BY ALL",
        );
        let expected: Vec<Vec<Option<String>>> = if listed {
            vec![]
        } else {
            vec![
                vec![Some("1".into()), Some("10".into())],
                vec![Some("2".into()), Some("1".into())],
            ]
        };
        assert_eq!(whole_rows, expected, "one provenance entry per fresh organisation");
        let latest = ctx.query("SELECT * FROM provenance_latest ORDER BY ALL");
        // Every column (25 ODS fields and trust_type) of every row of the latest trust table.
        let rows = ctx.query("SELECT count(*) FROM latest_trusts WHERE pipeline = 'trusts'")[0][0].clone();
        let rows: usize = rows.unwrap().parse().unwrap();
        assert!(rows > 0, "{rows}");
        assert_eq!(latest.len(), rows * 26, "{latest:?}");
        merged.push((
            files,
            first["merge"]["rules"].clone(),
            second["merge"]["rules"].clone(),
            latest,
        ));
    }
    let ((fresh_files, fresh_r1, fresh_r2, fresh_latest), (listed_files, listed_r1, listed_r2, listed_latest)) =
        (&merged[0], &merged[1]);
    assert_eq!((fresh_r1, fresh_r2), (listed_r1, listed_r2), "decisions per rule");
    for ((name, a), (_, b)) in fresh_files.iter().zip(listed_files) {
        assert!(a == b, "{name} differs between fresh and cell-by-cell decisions");
    }
    assert_eq!(fresh_latest, listed_latest, "provenance_latest, fresh and cell by cell");
}

#[test]
fn a_new_organisations_provenance_lists_its_own_pipelines_columns_until_a_later_merge_changes_one() {
    // A fresh organisation is one provenance entry (field '*') that provenance_latest lists cell
    // by cell, from the columns of its own pipeline's trust table: two pipelines on one warehouse
    // (one with a team-owned column) must not borrow each other's columns, and a cell a later
    // merge changes must show that merge's entry instead.
    let ctx = TestContext::new();
    setup(&ctx);
    let dir = ctx.path();
    std::fs::write(
        dir.join("pipelines/plain.toml"),
        format!(
            "name = \"plain\"\n[source]\ntype = \"csv\"\nkind = \"etr\"\nlocation = \"{}\"\n\
             [guard]\nmax_added_share = 1.0\nmax_vanished_share = 1.0\nmax_field_change_share = 1.0\n",
            dir.join("etr.csv").display()
        ),
    )
    .unwrap();
    write(&dir.join("etr.csv"), &ods_v1());
    ctx.run_ok("2025-07-01", "trusts", &[]);
    ctx.run_ok("2025-07-01", "plain", &[]);
    let per_pipeline = ctx.query(
        "SELECT pipeline, count(DISTINCT code), count(*), count(*) FILTER (WHERE field = 'trust_type'), \
         count(*) FILTER (WHERE rule = 'local_field') FROM provenance_latest GROUP BY ALL ORDER BY ALL",
    );
    let row = |cells: [&str; 5]| cells.iter().map(|c| Some((*c).to_owned())).collect::<Vec<_>>();
    assert_eq!(
        per_pipeline,
        vec![
            row(["plain", "10", "250", "0", "0"]),
            row(["trusts", "10", "260", "10", "10"])
        ]
    );
    let log = ctx.query("SELECT pipeline, count(*) FROM provenance_log WHERE field = '*' GROUP BY ALL ORDER BY ALL");
    assert_eq!(log, vec![row_of(&["plain", "10"]), row_of(&["trusts", "10"])]);

    write(&dir.join("etr.csv"), &ods_v2());
    ctx.run_ok("2025-07-02", "plain", &[]);
    let cells = ctx.query(
        "SELECT field, value, source, rule, merged_version FROM provenance_latest \
         WHERE pipeline = 'plain' AND code = 'J1' AND field IN ('name', 'postcode', 'org_type') ORDER BY field",
    );
    // (org_type is derived by the role mapping; its value is whatever the trust table holds.)
    let org_type = value_of(&ctx, "plain", "J1", "org_type");
    let org_type_rule = if org_type.is_some() {
        "ods_update"
    } else {
        "no_ods_change"
    };
    assert_eq!(
        cells,
        vec![
            row(["name", "JAY NEW", "ods", "ods_update", "2"]),
            vec![
                Some("org_type".into()),
                org_type,
                Some("derived".into()),
                Some(org_type_rule.into()),
                Some("1".into())
            ],
            row(["postcode", "JJ1 1JJ", "ods", "ods_update", "1"]),
        ]
    );
    // E1 is new in the second version: its entry is version 2's.
    let e1 = ctx.query(
        "SELECT DISTINCT merged_version, rule FROM provenance_latest WHERE pipeline = 'plain' AND code = 'E1' AND field = 'name'",
    );
    assert_eq!(e1, vec![row_of(&["2", "ods_update"])]);
}

fn row_of(cells: &[&str]) -> Vec<Option<String>> {
    cells.iter().map(|c| Some((*c).to_owned())).collect()
}

/// A field of a row of a pipeline's latest trust table, as text (`None`: empty, or no such row).
fn value_of(ctx: &TestContext, pipeline: &str, code: &str, field: &str) -> Option<String> {
    let rows = ctx.query(&format!(
        "SELECT CAST({field} AS VARCHAR) FROM latest_trusts WHERE pipeline = '{pipeline}' AND code = '{code}'"
    ));
    rows.first().and_then(|r| r[0].clone())
}

//! The warehouse layout: every table its own Hive-partitioned dataset directory that DuckDB and
//! pyarrow read as it is, and a warehouse written by the release before that layout (a real
//! `make demo` warehouse, tests/fixtures/warehouse-layout-1) migrated with every view answering
//! the same.

use crate::common::{TestContext, fixtures, repo_root};
use serde_json::Value;
use std::path::{Path, PathBuf};

const T: &str = "2025-07-20T02:00:00Z";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The shipped `demo` pipeline file (and the files beside it), its local table from the fixtures.
fn write_demo_pipeline(ctx: &TestContext) {
    let text = std::fs::read_to_string(repo_root().join("pipelines/demo.toml")).unwrap();
    let text = text.replace("../tests/fixtures/demo", &fixtures().join("demo").display().to_string());
    ctx.write_pipeline("demo", &text);
    for f in ["role_mapping.toml", "demo.overrides.csv"] {
        std::fs::copy(
            repo_root().join("pipelines").join(f),
            ctx.path().join("pipelines").join(f),
        )
        .unwrap();
    }
}

/// A context holding the first-layout warehouse and the demo pipeline file it was made with.
fn old_warehouse() -> TestContext {
    let ctx = TestContext::with_server("demo-2025-07");
    copy_dir(&fixtures().join("warehouse-layout-1/warehouse"), &ctx.warehouse());
    write_demo_pipeline(&ctx);
    ctx
}

/// Every file under `dir`, relative to it.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The table dataset directories of a pipeline folder (everything but `_meta` and dot-names).
fn table_dirs(pipeline: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(pipeline)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            !n.starts_with('_') && !n.starts_with('.')
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_first_layout_warehouse_migrates_through_a_crash_and_every_view_answers_the_same() {
    let ctx = old_warehouse();
    let expected: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("warehouse-layout-1/expected.json")).unwrap())
            .unwrap();
    let data_before: Vec<Vec<u8>> = [
        "demo/ods/version=000002/organisations.parquet",
        "demo/merged/version=000003/trusts.parquet",
    ]
    .iter()
    .map(|f| std::fs::read(ctx.warehouse().join(f)).unwrap())
    .collect();
    // Before: verify says what to do.
    let out = ctx.odsync(T, &["verify", "demo"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("odsync migrate demo"), "{}", out.stdout);

    // Killed after the migration's commit point, with one file moved.
    let crashed = ctx.odsync_env(T, &["migrate"], &[("ODSYNC_FAILPOINT", "commit:first-move")]);
    assert_ne!(crashed.code, 0, "{}", crashed.stderr);
    assert!(ctx.warehouse().join("demo/.commit-journal.json").exists());
    // The next command finishes it and migrates the other pipeline.
    let done = ctx.odsync(T, &["migrate", "--json"]).ok().json();
    let migrated: Vec<&str> = done
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["pipeline"].as_str().unwrap())
        .collect();
    assert_eq!(migrated, ["demo_fhir"], "{done}");
    let again = ctx.odsync(T, &["migrate"]).ok();
    assert!(
        again.stdout.contains("already in the current layout"),
        "{}",
        again.stdout
    );

    for pipeline in ["demo", "demo_fhir"] {
        let dir = ctx.warehouse().join(pipeline);
        for old in ["ods", "merged"] {
            assert!(!dir.join(old).exists(), "{pipeline}/{old} is left");
        }
        let leftovers: Vec<String> = files(&dir)
            .into_iter()
            .filter(|f| {
                !(f.ends_with("/part-0.parquet")
                    || f.starts_with("_meta/")
                    || f == "state.json"
                    || f == "resolutions.csv"
                    || f == ".lock")
            })
            .collect();
        assert!(leftovers.is_empty(), "{pipeline}: {leftovers:?}");
        // Every manifest names files that exist.
        for v in ["version=000001", "version=000002"] {
            let m = dir.join("_meta/ods").join(v).join("manifest.json");
            if !m.exists() {
                continue;
            }
            let manifest: Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
            for (table, info) in manifest["tables"].as_object().unwrap() {
                let file = info["file"].as_str().unwrap();
                assert_eq!(file, format!("{table}/{v}/part-0.parquet"));
                assert!(dir.join(file).exists(), "{file}");
            }
        }
    }
    // The data files are moved, not rewritten.
    for (f, before) in [
        "demo/organisations/version=000002/part-0.parquet",
        "demo/trusts/version=000003/part-0.parquet",
    ]
    .iter()
    .zip(data_before)
    {
        assert!(std::fs::read(ctx.warehouse().join(f)).unwrap() == before, "{f}");
    }
    // Every view (and `runs`, and the as-of macro) answers exactly what the old release's did.
    assert!(expected.len() > 35, "{}", expected.len());
    for (relation, want) in &expected {
        let rows = ctx.query(want["sql"].as_str().unwrap());
        assert_eq!(rows.len(), 1, "{relation}");
        assert_eq!(
            rows[0][0].as_deref().unwrap().parse::<u64>().unwrap(),
            want["rows"].as_u64().unwrap(),
            "{relation}: row count"
        );
        assert_eq!(rows[0][1].as_deref(), want["md5"].as_str(), "{relation}: rows differ");
    }
    ctx.odsync(T, &["verify"]).ok();
    let listed = ctx.odsync(T, &["snapshots", "list", "demo", "--json"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    // Work goes on from the migrated warehouse: the merge has nothing new, a run of the same
    // ODS state commits no new version.
    let merge = ctx.odsync(T, &["merge", "demo", "--json"]).ok().json();
    assert_eq!(merge["status"], "unchanged", "{merge}");
    let run = ctx.run_ok(T, "demo", &[]);
    assert_eq!(run["snapshot_version"], 2, "{run}");
    assert_eq!(run["status"], "unchanged", "{run}");
}

#[test]
fn every_table_directory_reads_as_a_hive_dataset_in_duckdb_and_pyarrow() {
    let ctx = old_warehouse();
    ctx.odsync(T, &["migrate"]).ok();
    let pipeline = ctx.warehouse().join("demo");
    let dirs = table_dirs(&pipeline);
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "changes",
            "code_system_roles",
            "conflicts",
            "deletions",
            "history",
            "organisations",
            "provenance",
            "quarantine",
            "raw",
            "relationships",
            "roles",
            "sources",
            "successors",
            "trusts"
        ]
    );
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let mut counts = Vec::new();
    for dir in &dirs {
        // The directory alone (no file name pattern beyond the partition level).
        let sql = format!(
            "SELECT count(*), coalesce(string_agg(DISTINCT CAST(CAST(version AS BIGINT) AS VARCHAR), ',' ORDER BY CAST(CAST(version AS BIGINT) AS VARCHAR)), '') FROM read_parquet('{}/*/*.parquet', hive_partitioning = true)",
            dir.display()
        );
        let (n, versions): (i64, String) = conn.query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        let on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_start_matches("version=")
                    .trim_start_matches('0')
                    .to_owned()
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // (An empty table, e.g. no quarantined record, has no row to carry a version.)
        if n > 0 {
            assert_eq!(versions, on_disk.join(","), "{}", dir.display());
        }
        counts.push(n);
    }
    // pyarrow: `pyarrow.dataset.dataset(dir, partitioning='hive')` on each directory, as an
    // analyst (or Spark, Athena, BigQuery: the same layout) would read it.
    let python = std::env::var("ODSYNC_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = "import sys, json, pyarrow.dataset as ds\n\
        out = []\n\
        for d in sys.argv[1:]:\n\
        \x20   t = ds.dataset(d, format='parquet', partitioning='hive').to_table()\n\
        \x20   assert 'version' in t.column_names, (d, t.column_names)\n\
        \x20   out.append(t.num_rows)\n\
        print(json.dumps(out))\n";
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(&dirs)
        .output()
        .unwrap_or_else(|e| {
            panic!("{python}: {e}; `make test` installs pyarrow (set ODSYNC_TEST_PYTHON to a python with pyarrow)")
        });
    assert!(
        out.status.success(),
        "{python} could not read the table directories with pyarrow (`make test` installs it; set ODSYNC_TEST_PYTHON to a python with pyarrow):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arrow_counts: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(arrow_counts, counts);
    assert!(counts.iter().sum::<i64>() > 1000, "{counts:?}");
}

/// The demo pipeline after a baseline, an ODS change and an incremental run: every table written.
fn demo_two_runs() -> TestContext {
    let ctx = TestContext::with_server("demo-2021");
    write_demo_pipeline(&ctx);
    ctx.run_ok("2025-07-10T02:00:00Z", "demo", &["--full"]);
    ctx.server().set_state("demo-2025-07").unwrap();
    ctx.run_ok("2025-07-16T02:00:00Z", "demo", &[]);
    ctx
}

#[test]
fn docs_tables_md_is_what_the_code_generates_and_the_ddl_reads_every_table() {
    let ctx = demo_two_runs();
    // The reference: every table, column, type and meaning, from the real files.
    let generated = ctx.odsync(T, &["ddl", "demo", "--dialect", "markdown"]).ok().stdout;
    let path = repo_root().join("docs/tables.md");
    if std::env::var_os("ODSYNC_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/tables.md is not what `odsync ddl demo --dialect markdown` generates; rerun with ODSYNC_BLESS=1 and review the diff"
    );
    for table in [
        "organisations",
        "changes",
        "history",
        "trusts",
        "conflicts",
        "provenance",
        "sources",
    ] {
        assert!(generated.contains(&format!("\n## {table}\n")), "{table}");
    }

    // DuckDB: the statements run as they are, and each view holds what the catalog's does.
    let sql = ctx
        .odsync(T, &["ddl", "demo", "--dialect", "duckdb", "--schema", "main"])
        .ok()
        .stdout;
    let conn = duckdb::Connection::open_in_memory().unwrap();
    conn.execute_batch(&sql).unwrap();
    for (view, catalog_view) in [
        ("demo_organisations", "snapshot_organisations"),
        ("demo_changes", "snapshot_changes"),
        ("demo_history", "history_versions"),
        ("demo_trusts", "merged_trusts"),
    ] {
        let n: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {view}"), [], |r| r.get(0))
            .unwrap();
        let want = ctx.query(&format!("SELECT count(*) FROM {catalog_view} WHERE pipeline = 'demo'"));
        assert_eq!(n.to_string(), want[0][0].clone().unwrap(), "{view}");
        assert!(n > 0, "{view}");
    }
    let versions: i64 = conn
        .query_row("SELECT count(DISTINCT version) FROM demo_organisations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(versions, 2);

    // Spark, Trino and BigQuery: one statement per table directory at the given location, every
    // column typed, `version` the partition column (last, as Trino requires).
    let tables = table_dirs(&ctx.warehouse().join("demo"));
    assert_eq!(tables.len(), 14);
    for dialect in ["spark", "trino", "bigquery"] {
        let text = ctx
            .odsync(
                T,
                &["ddl", "demo", "--dialect", dialect, "--location", "s3://lake/ods/demo/"],
            )
            .ok()
            .stdout;
        for dir in &tables {
            let table = dir.file_name().unwrap().to_string_lossy();
            assert!(
                text.contains(&format!("'s3://lake/ods/demo/{table}")),
                "{dialect} {table}"
            );
        }
        assert!(
            !text.contains("/tmp/"),
            "{dialect}: a local path leaked into the statements"
        );
        match dialect {
            "spark" => {
                assert_eq!(text.matches("PARTITIONED BY (`version`)").count(), 14);
                assert!(text.contains("`row_hash` DECIMAL(20,0)"), "{text}");
                assert!(text.contains("`changed_fields` ARRAY<STRING>"), "{text}");
            }
            "trino" => {
                assert_eq!(text.matches("partitioned_by = ARRAY['version']").count(), 14);
                assert_eq!(text.matches("    \"version\" BIGINT\n)").count(), 14, "version is last");
                assert!(text.contains("\"payload\" VARBINARY"), "{text}");
            }
            _ => assert_eq!(text.matches("WITH PARTITION COLUMNS (`version` INT64)").count(), 14),
        }
    }
    // Before any run there is nothing to describe: a clear error, exit 1.
    let none = ctx.odsync(T, &["ddl", "nothing", "--dialect", "duckdb"]);
    assert_eq!(none.code, 1, "{}", none.stderr);
    assert!(none.stderr.contains("odsync run nothing"), "{}", none.stderr);
}

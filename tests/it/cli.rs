//! The command line: bad pipeline files, validation, help and exit codes.

use crate::common::TestContext;

#[test]
fn a_malformed_pipeline_file_names_the_file_and_the_key_and_exits_1() {
    let ctx = TestContext::new();
    let path = ctx.write_pipeline(
        "bad",
        "name = \"bad\"\n[source]\ntype = \"ord\"\n[scope]\nprimary_roles = [\"RO197\"]\n[http]\nrequests_per_secnd = 3.0\n",
    );
    let out = ctx.odsync("2025-07-16", &["run", "bad"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains(&path.display().to_string()), "{}", out.stderr);
    assert!(out.stderr.contains("requests_per_secnd"), "{}", out.stderr);
    assert!(out.stderr.contains("line 7"), "{}", out.stderr);
}

#[test]
fn validate_reports_every_problem_in_every_file_at_once() {
    let ctx = TestContext::new();
    ctx.write_pipeline(
        "good",
        "name = \"good\"\n[source]\ntype = \"csv\"\nkind = \"etr\"\nlocation = \"etr.csv\"\n",
    );
    ctx.write_pipeline(
        "wrong",
        "name = \"other\"\n[source]\ntype = \"ord\"\nbase_url = \"not a url\"\n[scope]\nprimary_roles = [\"TRUST\"]\n[http]\nconcurrency = 0\n",
    );
    ctx.write_pipeline("unknown_type", "name = \"unknown_type\"\n[source]\ntype = \"ftp\"\n");
    let out = ctx.odsync("2025-07-16", &["validate", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let reports = out.json();
    let problems = |file: &str| -> Vec<String> {
        let r = reports
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["file"].as_str().unwrap().ends_with(file))
            .unwrap();
        serde_json::from_value(r["problems"].clone()).unwrap()
    };
    assert!(problems("good.toml").is_empty());
    let wrong = problems("wrong.toml");
    assert_eq!(wrong.len(), 4, "{wrong:#?}");
    for key in [
        "`name`",
        "`source.base_url`",
        "`scope.primary_roles`",
        "`http.concurrency`",
    ] {
        assert!(wrong.iter().any(|p| p.contains(key)), "{key} missing in {wrong:#?}");
    }
    assert!(problems("unknown_type.toml")[0].contains("ftp"));
}

#[test]
fn the_shipped_pipelines_are_valid() {
    let ctx = TestContext::new();
    let dir = crate::common::repo_root().join("pipelines");
    let out = ctx.odsync("2025-07-16", &["validate", "--pipelines-dir", dir.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for name in [
        "nhs_trusts",
        "nhs_trusts_csv",
        "demo",
        "icbs_regions",
        "gp_practices",
        "wales",
    ] {
        assert!(
            out.stdout
                .contains(&format!("ok       {}", dir.join(format!("{name}.toml")).display())),
            "{}",
            out.stdout
        );
    }
}

#[test]
fn user_errors_say_what_to_do_and_exit_1() {
    let ctx = TestContext::new();
    let missing = ctx.odsync("2025-07-16", &["run", "nope"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("pipeline `nope` not found") && missing.stderr.contains("Help:"),
        "{}",
        missing.stderr
    );

    ctx.write_pipeline(
        "empty",
        "name = \"empty\"\n[source]\ntype = \"csv\"\nkind = \"etr\"\nlocation = \"etr.csv\"\n",
    );
    let none = ctx.odsync("2025-07-16", &["snapshots", "show", "empty"]);
    assert_eq!(none.code, 1);
    assert!(none.stderr.contains("odsync run empty"), "{}", none.stderr);

    let no_file = ctx.odsync("2025-07-16", &["run", "empty"]);
    assert_eq!(no_file.code, 1);
    assert!(
        no_file.stderr.contains("etr.csv`") && no_file.stderr.contains("source.location"),
        "{}",
        no_file.stderr
    );

    let bad_clock = ctx.odsync("yesterday", &["runs"]);
    assert_eq!(bad_clock.code, 1);
    assert!(bad_clock.stderr.contains("ODSYNC_NOW"), "{}", bad_clock.stderr);
}

#[test]
fn a_broken_pipeline_file_is_an_error_for_every_command_that_names_it() {
    // Commands that read the warehouse work for a pipeline without a file, but a file that
    // exists and does not load must not be ignored: its `warehouse` would silently fall back to
    // the default and the command would read (or gc!) another warehouse.
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197"]);
    ctx.run_ok("2025-07-10", "trusts", &[]);
    let ok = ctx.odsync("2025-07-10", &["snapshots", "list", "trusts"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let path = ctx.write_pipeline(
        "trusts",
        "name = \"trusts\"\n[source]\ntype = \"ord\"\nwarehouse_typo = 1\n",
    );
    for args in [
        vec!["snapshots", "list", "trusts"],
        vec!["runs", "trusts"],
        vec!["verify", "trusts"],
        vec!["gc", "trusts", "--keep", "1", "--dry-run"],
        vec!["diff", "trusts"],
        vec!["history", "trusts", "RR8"],
        vec!["provenance", "trusts", "RR8"],
        vec!["conflicts", "list", "trusts"],
        vec!["report", "trusts"],
        vec!["ddl", "trusts", "--dialect", "duckdb"],
    ] {
        let out = ctx.odsync("2025-07-10", &args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(&path.display().to_string()),
            "{args:?}: {}",
            out.stderr
        );
    }
    // Known only from the warehouse (no file at all): still readable.
    std::fs::remove_file(&path).unwrap();
    let out = ctx.odsync("2025-07-10", &["snapshots", "list", "trusts"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

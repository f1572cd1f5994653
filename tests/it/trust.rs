//! Trustworthy runs: upstream faults end in a correct snapshot or a clean failure (exit 1,
//! nothing committed, watermark unmoved) and the next run recovers; damaged files; crashes at
//! every step of the commit protocol; locks; a reader holding the catalog; verify; secrets.

use crate::common::{Output, TestContext, leftovers, ods_csv, walk};
use odsync::server::FaultAction;
use serde_json::Value;

const T0: &str = "2025-07-10T02:00:00Z";
const T1: &str = "2025-07-16T02:00:00Z";
const T2: &str = "2025-07-17T02:00:00Z";

fn status(code: u16, body: &str) -> FaultAction {
    FaultAction::Status {
        status: code,
        retry_after: None,
        body: Some(body.into()),
    }
}

fn trusts(ctx: &TestContext, quality: &str) {
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    if !quality.is_empty() {
        let path = ctx.path().join("pipelines/trusts.toml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("[quality]\n{quality}\n"));
        std::fs::write(path, text).unwrap();
    }
}

#[track_caller]
fn failed_cleanly(out: &Output, versions_before: &[String], ctx: &TestContext, pipeline: &str) -> Value {
    assert_eq!(out.code, 1, "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert_eq!(ctx.versions(pipeline), versions_before, "nothing committed");
    let doc = out.json();
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["exit_code"], 1);
    doc
}

fn count(ctx: &TestContext, sql: &str) -> String {
    ctx.query(sql)[0][0].clone().unwrap_or_default()
}

#[test]
fn a_sync_answer_without_a_list_fails_and_the_next_run_fetches_the_changes() {
    for body in ["{}", r#"{"ErrorCode":503,"ErrorText":"Service Unavailable"}"#] {
        let ctx = TestContext::with_server("demo-2021");
        trusts(&ctx, "");
        ctx.run_ok(T0, "trusts", &[]);
        ctx.server().set_state("demo-2025-07").unwrap();
        ctx.fault("/sync?", 1, status(200, body));
        let out = ctx.odsync(T1, &["run", "trusts", "--json"]);
        let doc = failed_cleanly(&out, &["version=000001".into()], &ctx, "trusts");
        assert_eq!(doc["stage"], "fetch", "{doc}");
        assert!(out.stderr.to_lowercase().contains("organisations"), "{}", out.stderr);
        // No lost update: the next run syncs from the old watermark and finds the changes.
        let next = ctx.run_ok(T2, "trusts", &[]);
        assert_eq!(next["watermark_before"], "2025-07-10");
        assert_eq!(next["records"]["organisations"], 221, "{next}");
        assert_eq!(
            count(&ctx, "SELECT name FROM latest_organisations WHERE code = 'RAX'"),
            "KINGSTON AND RICHMOND NHS FOUNDATION TRUST"
        );
    }
}

#[test]
fn a_first_baseline_answered_by_an_error_object_commits_nothing() {
    let ctx = TestContext::with_server("demo-2021");
    trusts(&ctx, "");
    ctx.fault(
        "/organisations?",
        1,
        status(200, r#"{"ErrorCode":500,"ErrorText":"oops"}"#),
    );
    let out = ctx.odsync(T0, &["run", "trusts", "--json"]);
    failed_cleanly(&out, &[], &ctx, "trusts");
    // An answer that really matched nothing, with no X-Total-Count to say so, is not trusted
    // either; and a scope that is really empty fails unless the pipeline allows it.
    let next = ctx.run_ok(T1, "trusts", &[]);
    assert_eq!(next["mode"], "baseline");
    assert_eq!(next["records"]["organisations"], 220);
}

#[test]
fn an_empty_baseline_fails_unless_the_pipeline_allows_it() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("nothing", &["RO999"]);
    let out = ctx.odsync(T0, &["run", "nothing", "--json"]);
    let doc = failed_cleanly(&out, &[], &ctx, "nothing");
    assert_eq!(doc["stage"], "completeness");
    assert!(doc["help"].as_str().unwrap().contains("allow_empty"), "{doc}");
    let path = ctx.path().join("pipelines/nothing.toml");
    let text = std::fs::read_to_string(&path).unwrap() + "[quality]\nallow_empty = true\n";
    std::fs::write(&path, text).unwrap();
    let ok = ctx.run_ok(T0, "nothing", &[]);
    assert_eq!(ok["records"]["organisations"], 0);
}

#[test]
fn a_record_that_fails_once_is_fetched_again_within_the_run() {
    let ctx = TestContext::with_server("demo-2021");
    trusts(&ctx, "");
    ctx.fault("/organisations/R0B", 1, FaultAction::Malformed);
    ctx.fault(
        "/organisations/RWR",
        1,
        status(200, "<html><body>gateway</body></html>"),
    );
    ctx.fault("/organisations/R0D", 1, status(404, r#"{"ErrorCode":404}"#));
    let s = ctx.run_ok(T0, "trusts", &[]);
    assert_eq!(s["records"]["organisations"], 220);
    assert_eq!(s["records"]["quarantined"], 0);
    assert_eq!(s["records"]["pending"], serde_json::json!([]));
}

#[test]
fn a_record_that_keeps_failing_fails_the_run_or_stays_pending_at_its_previous_version() {
    let ctx = TestContext::with_server("demo-2021");
    trusts(&ctx, "");
    ctx.run_ok(T0, "trusts", &[]);
    ctx.server().set_state("demo-2025-07").unwrap();
    // RAX changed (renamed); its record is broken for this whole run.
    ctx.fault("/organisations/RAX", 2, FaultAction::Malformed);
    let out = ctx.odsync(T1, &["run", "trusts", "--json"]);
    let doc = failed_cleanly(&out, &["version=000001".into()], &ctx, "trusts");
    assert_eq!(doc["stage"], "completeness");
    assert!(doc["error"].as_str().unwrap().contains("RAX"), "{doc}");

    // Allowed by the pipeline: RAX keeps its previous version, is pending, and the watermark
    // stays, so the next run asks for it again and applies the rename.
    trusts(&ctx, "max_failed_records = 1");
    ctx.fault("/organisations/RAX", 2, FaultAction::Malformed);
    let s = ctx.run_ok(T1, "trusts", &[]);
    assert_eq!(s["records"]["pending"], serde_json::json!(["RAX"]));
    assert_eq!(s["watermark_after"], "2025-07-10", "{s}");
    assert_eq!(
        count(&ctx, "SELECT name FROM latest_organisations WHERE code = 'RAX'"),
        "KINGSTON HOSPITAL NHS FOUNDATION TRUST"
    );
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM changes_latest WHERE code = 'RAX'"),
        "0"
    );
    let runs = ctx.odsync(T1, &["runs", "trusts", "--json"]).ok().json();
    assert_eq!(runs[0]["records_pending"], 1);
    let next = ctx.run_ok(T2, "trusts", &[]);
    assert_eq!(next["records"]["pending"], serde_json::json!([]));
    assert_eq!(
        count(&ctx, "SELECT name FROM latest_organisations WHERE code = 'RAX'"),
        "KINGSTON AND RICHMOND NHS FOUNDATION TRUST"
    );
}

#[test]
fn a_full_run_never_turns_a_record_it_could_not_fetch_into_a_deletion() {
    let ctx = TestContext::with_server("demo-2021");
    trusts(&ctx, "max_failed_records = 1");
    ctx.run_ok(T0, "trusts", &[]);
    ctx.fault("/organisations/RWR", 2, status(404, r#"{"ErrorCode":404}"#));
    let s = ctx.run_ok(T1, "trusts", &["--full"]);
    assert_eq!(s["records"]["organisations"], 220, "{s}");
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM latest_organisations WHERE code = 'RWR'"),
        "1"
    );
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM snapshot_changes WHERE change_kind = 'deleted'"
        ),
        "0"
    );
}

#[test]
fn a_retry_after_beyond_the_limit_fails_fast_with_a_clear_message() {
    let ctx = TestContext::with_server("demo-2021");
    trusts(&ctx, "");
    ctx.fault(
        "/roles",
        1,
        FaultAction::Status {
            status: 429,
            retry_after: Some("700".into()),
            body: None,
        },
    );
    let started = std::time::Instant::now();
    let out = ctx.odsync(T0, &["run", "trusts", "--json"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    failed_cleanly(&out, &[], &ctx, "trusts");
    assert!(out.stderr.contains("Retry-After 700"), "{}", out.stderr);
}

#[test]
fn a_fhir_search_page_answered_by_an_empty_bundle_fails_the_run() {
    let ctx = TestContext::with_server("demo-2025-07");
    ctx.fhir_pipeline("f", &["RO197", "RO198"], 50, "");
    let env = [("ODSYNC_FHIR_API_KEY", "k-local-1234")];
    ctx.fault(
        "_offset=",
        1,
        status(200, r#"{"resourceType":"Bundle","type":"searchset","entry":[]}"#),
    );
    let out = ctx.odsync_env(T0, &["run", "f", "--json"], &env);
    failed_cleanly(&out, &[], &ctx, "f");
    assert!(out.stderr.contains("incomplete"), "{}", out.stderr);
    ctx.fault(
        "/OrganizationAffiliation",
        1000,
        status(200, r#"{"resourceType":"Bundle","type":"searchset"}"#),
    );
    let out = ctx.odsync_env(T0, &["run", "f", "--json"], &env);
    failed_cleanly(&out, &[], &ctx, "f");
    assert!(out.stderr.contains("relationship"), "{}", out.stderr);
}

fn etr_with(ctx: &TestContext, edit: impl Fn(&str) -> String) -> std::path::PathBuf {
    let text = std::fs::read_to_string(ods_csv("etr-2021-nhsx.csv")).unwrap();
    let path = ctx.path().join("etr.csv");
    std::fs::write(&path, edit(&text)).unwrap();
    path
}

#[test]
fn damaged_lines_keep_the_previous_record_and_damaged_files_fail_naming_the_defect() {
    let ctx = TestContext::new();
    let path = etr_with(&ctx, |t| t.to_owned());
    ctx.csv_pipeline("etr", "etr", &path);
    ctx.run_ok(T0, "etr", &[]);
    let rwr_line = |t: &str| t.lines().find(|l| l.starts_with("\"RWR\"")).unwrap().to_owned();
    // An unbalanced quote, and a line with 30 fields: quarantined, the organisation keeps its
    // previous record, nothing is reported deleted, nothing shifts into the wrong column.
    etr_with(&ctx, |t| {
        let rwr = rwr_line(t);
        let rxk = t.lines().find(|l| l.starts_with("\"R0A\"")).unwrap().to_owned();
        t.replace(&rwr, &rwr.replacen("\",\"", "\",\"\"", 1).replacen("NHS", "NHS\"", 1))
            .replace(&rxk, &format!("{rxk},\"x\",\"y\",\"z\""))
    });
    let s = ctx.run_ok(T1, "etr", &[]);
    assert_eq!(s["records"]["quarantined"], 2, "{s}");
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM latest_organisations WHERE code IN ('RWR', 'R0A')"
        ),
        "2"
    );
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM snapshot_changes WHERE pipeline = 'etr'"),
        "0"
    );
    let reasons = ctx.query("SELECT reason FROM latest_quarantine WHERE pipeline = 'etr' ORDER BY source");
    assert!(
        reasons
            .iter()
            .any(|r| r[0].as_deref().unwrap().contains("unbalanced quote")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r[0].as_deref().unwrap().contains("30 fields")),
        "{reasons:?}"
    );

    let before = ctx.versions("etr");
    // Cut off in the middle of a line.
    etr_with(&ctx, |t| t[..t.len() / 2].to_owned());
    let out = ctx.odsync(T2, &["run", "etr", "--json"]);
    failed_cleanly(&out, &before, &ctx, "etr");
    assert!(
        out.stderr.contains("truncated") && !out.stderr.contains("--accept-shift"),
        "{}",
        out.stderr
    );
    // No usable line: a text file, and a 6-column file of another kind.
    std::fs::write(&path, "this is not an ODS file\nat all\n").unwrap();
    let out = ctx.odsync(T2, &["run", "etr", "--json"]);
    failed_cleanly(&out, &before, &ctx, "etr");
    assert!(out.stderr.contains("no line"), "{}", out.stderr);
    std::fs::write(
        &path,
        "\"A81001\",\"G8406234\",\"19740401\",\"\",\"P\",\"20050401\"\r\n".repeat(40),
    )
    .unwrap();
    let out = ctx.odsync(T2, &["run", "etr", "--json"]);
    failed_cleanly(&out, &before, &ctx, "etr");
    assert!(out.stderr.contains("6 fields"), "{}", out.stderr);
    // Too many bad lines among good ones.
    etr_with(&ctx, |t| {
        t.lines()
            .enumerate()
            .map(|(i, l)| {
                if i % 5 == 0 {
                    l.replace("\",\"", "\",\"\"")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    });
    let out = ctx.odsync(T2, &["run", "etr", "--json"]);
    let doc = failed_cleanly(&out, &before, &ctx, "etr");
    assert_eq!(doc["stage"], "completeness");
}

/// The logical content of a pipeline: latest organisations, trust table and conflicts.
fn content(ctx: &TestContext) -> Vec<Vec<Option<String>>> {
    let mut rows = ctx.query(
        "SELECT 'org', code, name, status, NULL FROM latest_organisations WHERE pipeline = 'demo' \
         UNION ALL SELECT 'trust', code, name, CAST(not_in_ods AS VARCHAR), NULL FROM latest_trusts WHERE pipeline = 'demo' \
         UNION ALL SELECT 'conflict', code, field, status, resolution FROM conflicts_latest WHERE pipeline = 'demo' \
         UNION ALL SELECT 'history', code, change_kind, CAST(valid_from AS VARCHAR), CAST(is_current AS VARCHAR) FROM latest_history WHERE pipeline = 'demo' \
         ORDER BY 1, 2, 3, 4",
    );
    rows.sort();
    rows
}

fn demo_context() -> TestContext {
    let ctx = TestContext::with_server("demo-2021");
    let demo = crate::common::fixtures().join("demo");
    let text = std::fs::read_to_string(crate::common::repo_root().join("pipelines/demo.toml")).unwrap();
    let text = text.replace("../tests/fixtures/demo", &demo.display().to_string());
    ctx.write_pipeline("demo", &text);
    for f in ["role_mapping.toml", "demo.overrides.csv"] {
        let _ = std::fs::copy(
            crate::common::repo_root().join("pipelines").join(f),
            ctx.path().join("pipelines").join(f),
        );
    }
    ctx
}

#[test]
fn a_crash_at_any_commit_step_leaves_the_warehouse_the_next_run_completes_identically() {
    // The uninterrupted history: baseline, ODS changes, incremental run.
    let reference = demo_context();
    reference.run_ok(T0, "demo", &["--full"]);
    reference.server().set_state("demo-2025-07").unwrap();
    reference.run_ok(T1, "demo", &[]);
    let expected = content(&reference);
    assert!(expected.len() > 400, "{}", expected.len());

    for point in [
        "commit:staged",
        "run:staged",
        "commit:journal",
        "commit:first-move",
        "commit:moved",
        "run:committed",
    ] {
        let ctx = demo_context();
        ctx.run_ok(T0, "demo", &["--full"]);
        ctx.server().set_state("demo-2025-07").unwrap();
        let crashed = ctx.odsync_env(T1, &["run", "demo"], &[("ODSYNC_FAILPOINT", point)]);
        assert_ne!(crashed.code, 0, "{point}: the failpoint aborts\n{}", crashed.stderr);
        assert!(crashed.stderr.contains(point), "{point}: {}", crashed.stderr);
        // The next run (same clock) recovers, finishing or removing the crashed commit.
        let next = ctx.run_ok(T1, "demo", &[]);
        let committed_before =
            ["commit:journal", "commit:first-move", "commit:moved", "run:committed"].contains(&point);
        assert_eq!(next["snapshot_version"], 2, "{point}: {next}");
        assert_eq!(
            next["status"],
            if committed_before { "unchanged" } else { "succeeded" },
            "{point}"
        );
        assert_eq!(content(&ctx), expected, "{point}");
        assert_eq!(ctx.versions("demo"), ["version=000001", "version=000002"], "{point}");
        let left = leftovers(&ctx.warehouse());
        assert!(left.is_empty(), "{point}: {left:?}");
        let verify = ctx.odsync(T2, &["verify", "demo"]);
        assert_eq!(verify.code, 0, "{point}: {}", verify.stdout);
        // The killed run's row says what became of it.
        let killed = ctx.odsync(T1, &["runs", "demo", "--json"]).ok().json()[1].clone();
        let want = if committed_before { "succeeded" } else { "abandoned" };
        assert_eq!(killed["status"], want, "{point}: {killed}");
    }
}

#[test]
fn a_crash_while_resolving_and_merging_never_loses_or_reopens_the_resolution() {
    let setup = || {
        let ctx = demo_context();
        ctx.run_ok(T0, "demo", &["--full"]);
        ctx.server().set_state("demo-2025-07").unwrap();
        ctx.run_ok(T1, "demo", &[]);
        let id = count(
            &ctx,
            "SELECT conflict_id FROM open_conflicts WHERE pipeline = 'demo' AND code = 'RAX' AND field = 'name'",
        );
        (ctx, id)
    };
    let resolve = |ctx: &TestContext, id: &str, failpoint: &str| {
        ctx.odsync_env(
            T1,
            &[
                "conflicts",
                "resolve",
                "demo",
                id,
                "--accept-ods",
                "--reason",
                "r",
                "--by",
                "t",
                "--merge",
            ],
            &[("ODSYNC_FAILPOINT", failpoint)],
        )
    };
    let merged = |ctx: &TestContext| {
        ctx.query(
            "SELECT 'trust', code, name, NULL FROM latest_trusts WHERE pipeline = 'demo' \
             UNION ALL SELECT 'conflict', conflict_id, status, resolution FROM conflicts_latest WHERE pipeline = 'demo' ORDER BY ALL",
        )
    };
    let (reference, id) = setup();
    resolve(&reference, &id, "").ok();
    let expected = merged(&reference);
    assert!(
        expected
            .iter()
            .any(|r| r[1].as_deref() == Some(id.as_str()) && r[3].as_deref() == Some("accept_ods"))
    );

    for point in [
        "resolve:recorded",
        "commit:staged",
        "commit:journal",
        "commit:first-move",
        "merge:committed",
    ] {
        let (ctx, id) = setup();
        let out = resolve(&ctx, &id, point);
        assert_ne!(out.code, 0, "{point}: {}", out.stderr);
        // Whatever the next writing command is, it finishes the job.
        ctx.odsync(T1, &["merge", "demo"]).ok();
        assert_eq!(merged(&ctx), expected, "{point}");
    }
}

#[test]
fn a_run_killed_at_any_moment_is_recovered_by_the_next_run() {
    // SIGKILL (no destructor, no flush) at spread-out moments of an incremental run with a
    // merge; whatever the moment, the next run gives the uninterrupted content.
    let reference = demo_context();
    reference.run_ok(T0, "demo", &["--full"]);
    reference.server().set_state("demo-2025-07").unwrap();
    let started = std::time::Instant::now();
    reference.run_ok(T1, "demo", &[]);
    // Kill points spread over the whole length of the run, and a little past it.
    let length = started.elapsed().as_millis() as u64;
    let expected = content(&reference);
    let mut killed = 0;
    for delay_ms in (0..12u64).map(|i| i * length / 10) {
        let ctx = demo_context();
        ctx.run_ok(T0, "demo", &["--full"]);
        ctx.server().set_state("demo-2025-07").unwrap();
        let mut child = ctx
            .command(T1, &["run", "demo"], &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        ctx.run_ok(T1, "demo", &[]);
        assert_eq!(content(&ctx), expected, "killed after {delay_ms} ms");
        assert_eq!(
            ctx.versions("demo"),
            ["version=000001", "version=000002"],
            "killed after {delay_ms} ms"
        );
        let verify = ctx.odsync(T1, &["verify", "demo"]);
        assert_eq!(verify.code, 0, "killed after {delay_ms} ms: {}", verify.stdout);
    }
    eprintln!("{killed} of 12 runs (of about {length} ms) were killed before they finished");
}

#[test]
fn a_second_run_of_the_same_pipeline_is_refused_while_the_first_completes() {
    let ctx = TestContext::with_server("demo-2021");
    trusts(&ctx, "");
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| ctx.odsync(T0, &["run", "trusts", "--json"]));
        let b = s.spawn(|| ctx.odsync(T0, &["run", "trusts", "--json"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut codes = [a.code, b.code];
    codes.sort();
    // Either one refused (exit 1, naming the holder) or, if the first was already done, the
    // second found the same content: never two versions, never a broken warehouse.
    assert!(
        codes == [0, 1] || codes == [0, 0],
        "{codes:?}\n{}\n{}",
        a.stderr,
        b.stderr
    );
    if codes == [0, 1] {
        let refused = if a.code == 1 { &a } else { &b };
        assert!(
            refused.stderr.contains("busy") && refused.stderr.contains("pid"),
            "{}",
            refused.stderr
        );
    }
    assert_eq!(ctx.versions("trusts"), ["version=000001"]);
    ctx.odsync(T0, &["verify", "trusts"]).ok();
}

#[test]
fn a_lock_left_by_a_dead_process_is_taken_over_and_a_live_one_refuses() {
    let ctx = TestContext::with_server("demo-2021");
    trusts(&ctx, "");
    let lock = ctx.warehouse().join("trusts/.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, "run 20250101T000000Z-trusts-0001, pid 999999").unwrap();
    let out = ctx.odsync(T0, &["run", "trusts", "--json"]).ok();
    assert!(out.stderr.contains("took over"), "{}", out.stderr);
    // A live holder (this test process holds the OS lock): refused at once, naming it.
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&lock).unwrap();
    file.try_lock().unwrap();
    std::fs::write(&lock, "run X, pid 4242").unwrap();
    let out = ctx.odsync(T1, &["run", "trusts", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("pid 4242"), "{}", out.stderr);
    let merge = ctx.odsync(T1, &["merge", "trusts"]);
    assert_eq!(merge.code, 1, "{}", merge.stderr);
    file.unlock().unwrap();
    ctx.run_ok(T1, "trusts", &[]);
}

#[test]
fn two_pipelines_on_one_warehouse_started_together_both_complete() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("a", &["RO197"]);
    ctx.ord_pipeline("b", &["RO198"]);
    let (ra, rb) = std::thread::scope(|s| {
        let a = s.spawn(|| ctx.odsync(T0, &["run", "a", "--json"]));
        let b = s.spawn(|| ctx.odsync(T0, &["run", "b", "--json"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    ra.ok();
    rb.ok();
    let runs = ctx.odsync(T0, &["runs", "--json"]).ok().json();
    let statuses: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "succeeded"]);
}

#[test]
fn a_reader_holding_the_catalog_never_fails_a_committed_run() {
    let ctx = TestContext::with_server("demo-2021");
    trusts(&ctx, "");
    ctx.run_ok(T0, "trusts", &[]);
    ctx.server().set_state("demo-2025-07").unwrap();
    let catalog = ctx.warehouse().join("catalog.duckdb");
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .unwrap();
    let reader = duckdb::Connection::open_with_flags(&catalog, config).unwrap();
    let out = ctx.odsync_env(T1, &["run", "trusts", "--json"], &[("ODSYNC_CATALOG_WAIT_SECS", "0.5")]);
    let s = out.ok().json();
    assert_eq!(s["snapshot_version"], 2);
    // Read-only commands work beside the reader; the run's row is shown while it is pending.
    let runs = ctx
        .odsync_env(
            T1,
            &["runs", "trusts", "--json"],
            &[("ODSYNC_CATALOG_WAIT_SECS", "0.5")],
        )
        .ok()
        .json();
    assert_eq!(runs[0]["status"], "succeeded", "{runs}");
    drop(reader);
    let runs = ctx.odsync(T1, &["runs", "trusts", "--json"]).ok().json();
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["snapshot_version"], 2);
    assert!(
        !ctx.warehouse()
            .join("trusts/.pending-runs")
            .read_dir()
            .unwrap()
            .any(|_| true)
    );
    assert_eq!(
        count(
            &ctx,
            "SELECT max(version) FROM latest_organisations WHERE pipeline = 'trusts'"
        ),
        "2"
    );
}

#[test]
fn verify_finds_a_flipped_byte_and_a_broken_manifest_and_repair_lets_full_rebuild() {
    let ctx = TestContext::with_server("demo-2021");
    trusts(&ctx, "");
    ctx.run_ok(T0, "trusts", &[]);
    ctx.server().set_state("demo-2025-07").unwrap();
    ctx.run_ok(T1, "trusts", &[]);
    ctx.odsync(T1, &["verify", "trusts"]).ok();
    let pipeline = ctx.warehouse().join("trusts");
    let manifest_path = pipeline.join("_meta/ods/version=000002/manifest.json");
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let tables: Vec<String> = manifest["tables"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(tables.len(), 8, "{tables:?}");
    for table in &tables {
        let path = pipeline.join(table).join("version=000002/part-0.parquet");
        assert_eq!(
            manifest["tables"][table]["file"],
            format!("{table}/version=000002/part-0.parquet"),
            "the manifest names where the file is"
        );
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        // A byte in the middle of the data pages: the footer stays readable.
        let i = bad.len() / 2;
        bad[i] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        let out = ctx.odsync(T1, &["verify", "trusts", "--json"]);
        assert_eq!(out.code, 1, "{table}");
        let report = out.json();
        let problems = report[0]["problems"].to_string();
        assert!(
            problems.contains(&format!("{table}/version=000002/part-0.parquet")) && problems.contains("sha256"),
            "{problems}"
        );
        std::fs::write(&path, good).unwrap();
    }
    // A malformed manifest: verify names it; other pipelines' commands and views still work.
    let manifest = manifest_path;
    std::fs::write(&manifest, "{ not json").unwrap();
    let out = ctx.odsync(T1, &["verify", "--json"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("unreadable manifest"), "{}", out.stdout);
    ctx.ord_pipeline("other", &["RO197"]);
    ctx.run_ok(T1, "other", &[]);
    assert_ne!(
        count(
            &ctx,
            "SELECT count(*) FROM latest_organisations WHERE pipeline = 'other'"
        ),
        "0"
    );
    // The damaged latest version is moved aside and a --full run rebuilds it.
    let out = ctx.odsync(T1, &["verify", "trusts", "--repair", "--json"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("damaged"), "{}", out.stdout);
    let s = ctx.run_ok(T2, "trusts", &["--full"]);
    assert_eq!(s["snapshot_version"], 2);
    ctx.odsync(T2, &["verify", "trusts"]).ok();
}

#[test]
fn secrets_in_urls_and_upstream_bodies_never_reach_any_output() {
    let ctx = TestContext::with_server("ord-and-fhir");
    let key = "k3y-V3ry-S3cret-0042";
    // A FHIR 401 body that quotes the key.
    ctx.fhir_pipeline("f", &["RO197"], 1000, "");
    ctx.fault(
        "/Organization",
        1,
        status(401, &format!(r#"{{"resourceType":"OperationOutcome","issue":[{{"severity":"error","code":"security","diagnostics":"key {key} is not valid"}}]}}"#)),
    );
    let env = [("ODSYNC_FHIR_API_KEY", key), ("ODSYNC_LOG", "trace")];
    let failed = ctx.odsync_env(T0, &["run", "f", "--json"], &env);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    // An ORD base URL with a query string (a gateway key): it works, and the key is sent on
    // every request but recorded nowhere.
    ctx.ord_pipeline("o", &["RO197"]);
    let base = format!("{}?apikey={key}", ctx.server().base_url());
    let ok = ctx.odsync_env(T0, &["run", "o", "--json", "--base-url", &base], &env);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let ord_requests: Vec<_> = ctx
        .server()
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/ORD/"))
        .collect();
    assert!(!ord_requests.is_empty() && ord_requests.iter().all(|r| r.target.contains("apikey=")));
    // A bulk file behind a URL with a password and a token.
    ctx.write_pipeline(
        "c",
        &format!(
            "name = \"c\"\n[source]\ntype = \"csv\"\nkind = \"etr\"\nlocation = \"http://bob:{key}@127.0.0.1:{}/etr.csv?token={key}\"\n[http]\nmax_retries = 0\n",
            ctx.server().port()
        ),
    );
    let csv = ctx.odsync_env(T0, &["run", "c", "--json"], &env);
    assert_eq!(csv.code, 1);
    let runs = ctx.odsync(T0, &["runs", "--json"]).ok();
    for (what, text) in [
        ("stdout", failed.stdout + &ok.stdout + &csv.stdout + &runs.stdout),
        ("stderr", failed.stderr + &ok.stderr + &csv.stderr + &runs.stderr),
    ] {
        assert!(!text.contains(key), "{what} leaks the key:\n{text}");
    }
    assert!(csv.stderr.contains("127.0.0.1"), "{}", csv.stderr);
    for path in walk(&ctx.warehouse()) {
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "{} holds the key",
                path.display()
            );
        }
    }
}

#[test]
fn gc_keeps_the_latest_and_what_the_merge_needs_and_dry_run_removes_nothing() {
    let ctx = TestContext::new();
    let path = etr_with(&ctx, |t| t.to_owned());
    ctx.csv_pipeline("etr", "etr", &path);
    ctx.run_ok(T0, "etr", &[]);
    for (i, now) in [T1, T2].iter().enumerate() {
        etr_with(&ctx, |t| t.replacen("NHS TRUST", &format!("NHS TRUST {i}"), 1));
        ctx.run_ok(now, "etr", &[]);
    }
    assert_eq!(ctx.versions("etr").len(), 3);
    let dry = ctx
        .odsync(T2, &["gc", "etr", "--keep", "1", "--dry-run", "--json"])
        .ok()
        .json();
    assert!(dry["removed"].as_array().unwrap().len() >= 4, "{dry}");
    assert_eq!(ctx.versions("etr").len(), 3, "a dry run removes nothing");
    // Without a rule nothing goes.
    let none = ctx.odsync(T2, &["gc", "etr", "--json"]).ok().json();
    assert_eq!(none["removed"], serde_json::json!([]));
    let done = ctx.odsync(T2, &["gc", "etr", "--keep", "1", "--json"]).ok().json();
    assert_eq!(done["removed"], dry["removed"]);
    assert_eq!(ctx.versions("etr"), ["version=000003"]);
    ctx.odsync(T2, &["verify", "etr"]).ok();
    // The pipeline goes on from what was kept.
    etr_with(&ctx, |t| t.replacen("NHS TRUST", "NHS TRUST X", 1));
    let s = ctx.run_ok("2025-07-18T02:00:00Z", "etr", &[]);
    assert_eq!(s["snapshot_version"], 4);
    assert_eq!(s["merge"]["base_version"], 3, "{s}");
}

#[test]
fn a_damaged_raw_table_in_the_latest_version_fails_deltas_clearly_and_full_gets_past_it() {
    let ctx = TestContext::with_server("demo-2021");
    trusts(&ctx, "");
    ctx.run_ok(T0, "trusts", &[]);
    let raw = ctx.warehouse().join("trusts/raw/version=000001/part-0.parquet");
    let mut bytes = std::fs::read(&raw).unwrap();
    let n = bytes.len();
    bytes[n - 12..n - 8].copy_from_slice(b"XXXX"); // the footer length
    std::fs::write(&raw, bytes).unwrap();
    ctx.server().set_state("demo-2025-07").unwrap();
    let out = ctx.odsync(T1, &["run", "trusts", "--json"]);
    let doc = failed_cleanly(&out, &["version=000001".into()], &ctx, "trusts");
    assert!(doc["help"].as_str().unwrap().contains("odsync verify"), "{doc}");
    let verify = ctx.odsync(T1, &["verify", "trusts"]);
    assert_eq!(verify.code, 1);
    assert!(
        verify.stdout.contains("raw/version=000001/part-0.parquet"),
        "{}",
        verify.stdout
    );
    let s = ctx.run_ok(T1, "trusts", &["--full"]);
    assert_eq!(s["snapshot_version"], 2);
    assert_eq!(
        count(&ctx, "SELECT name FROM latest_organisations WHERE code = 'RAX'"),
        "KINGSTON AND RICHMOND NHS FOUNDATION TRUST"
    );
}

#[test]
fn a_redirect_to_another_host_is_not_followed_so_the_api_key_stays_home() {
    let ctx = TestContext::with_server("demo-2025-07");
    ctx.fhir_pipeline("f", &["RO197"], 1000, "");
    // Another host (`localhost` is not the configured `127.0.0.1`) listening for the key.
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let location = format!("http://localhost:{}/steal", elsewhere.local_addr().unwrap().port());
    ctx.fault("/fhir/Organization", 1, FaultAction::Redirect { location });
    let env = [("ODSYNC_FHIR_API_KEY", "k-never-elsewhere")];
    let out = ctx.odsync_env(T0, &["run", "f", "--json"], &env);
    failed_cleanly(&out, &[], &ctx, "f");
    assert!(out.stderr.contains("302"), "{}", out.stderr);
    assert!(elsewhere.accept().is_err(), "the client went to the other host");
    // A redirect on the same host is followed.
    let same = format!(
        "{}/Organization?roleCode=RO197&_summary=count",
        ctx.server().fhir_base_url()
    );
    ctx.fault("_summary=count", 1, FaultAction::Redirect { location: same });
    ctx.odsync_env(T0, &["run", "f", "--json"], &env).ok();
}

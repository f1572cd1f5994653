//! The fault matrix: every fault class the local server can inject, at every endpoint a run
//! touches, on a baseline and on an incremental run. Each case must end in one of two ways:
//! - exit 0 with exactly the content of the same run without the fault, or
//! - exit 1 with a JSON failure on stdout, nothing committed, the watermark unmoved, nothing
//!   left behind; and then the next run (without the fault) gives exactly that content.
//!
//! Anything else (exit 0 with other content, exit 2, a crash, a leftover) fails the case.

use crate::common::{Output, TestContext, leftovers};
use odsync::server::FaultAction;
use serde_json::Value;

const T0: &str = "2025-07-10T02:00:00Z";
const T1: &str = "2025-07-16T02:00:00Z";

fn status(code: u16, retry_after: Option<&str>, body: &str) -> FaultAction {
    FaultAction::Status {
        status: code,
        retry_after: retry_after.map(str::to_owned),
        body: Some(body.to_owned()),
    }
}

/// Every fault, with how many requests it hits.
fn faults() -> Vec<(&'static str, u32, FaultAction)> {
    vec![
        ("500 once", 1, status(500, None, "")),
        ("500 always", 30, status(500, None, "")),
        ("503 Retry-After 1 once", 1, status(503, Some("1"), "")),
        ("429 Retry-After 700", 1, status(429, Some("700"), "")),
        (
            "404 once",
            1,
            status(404, None, r#"{"ErrorCode":404,"ErrorText":"Not Found."}"#),
        ),
        (
            "404 always",
            30,
            status(404, None, r#"{"ErrorCode":404,"ErrorText":"Not Found."}"#),
        ),
        ("200 {} once", 1, status(200, None, "{}")),
        ("200 {} always", 30, status(200, None, "{}")),
        (
            "200 error object",
            30,
            status(200, None, r#"{"ErrorCode":503,"ErrorText":"Service Unavailable"}"#),
        ),
        (
            "200 HTML once",
            1,
            status(200, None, "<!DOCTYPE html><html><body>maintenance</body></html>"),
        ),
        (
            "200 HTML always",
            30,
            status(200, None, "<!DOCTYPE html><html><body>maintenance</body></html>"),
        ),
        ("malformed once", 1, FaultAction::Malformed),
        ("malformed always", 30, FaultAction::Malformed),
        ("truncated once", 1, FaultAction::Truncate),
        ("truncated always", 30, FaultAction::Truncate),
        ("reset once", 1, FaultAction::Reset),
        ("reset always", 30, FaultAction::Reset),
        ("X-Total-Count off by 3", 30, FaultAction::TotalCount { delta: 3 }),
    ]
}

#[derive(Clone, Copy, PartialEq)]
enum Api {
    Ord,
    Fhir,
}

const KEY: &str = "matrix-local-key";

fn context(api: Api) -> TestContext {
    match api {
        Api::Ord => {
            let ctx = TestContext::with_server("demo-2021");
            ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
            ctx
        }
        Api::Fhir => {
            let ctx = TestContext::with_server("demo-2025-07");
            ctx.fhir_pipeline("trusts", &["RO197", "RO198"], 60, "");
            ctx
        }
    }
}

fn run(ctx: &TestContext, now: &str) -> Output {
    ctx.odsync_env(now, &["run", "trusts", "--json"], &[("ODSYNC_FHIR_API_KEY", KEY)])
}

/// What a run's outcome is judged by: organisations, their relationships and roles.
fn content(ctx: &TestContext) -> Vec<Vec<Option<String>>> {
    ctx.query(
        "SELECT 'org', code, name, status, parent_code FROM latest_organisations WHERE pipeline = 'trusts' \
         UNION ALL SELECT 'rel', code, row_key, target_code, status FROM latest_relationships WHERE pipeline = 'trusts' \
         UNION ALL SELECT 'role', code, row_key, role_id, status FROM latest_roles WHERE pipeline = 'trusts' \
         UNION ALL SELECT 'quarantine', code, reason, NULL, NULL FROM latest_quarantine WHERE pipeline = 'trusts' \
         ORDER BY ALL",
    )
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().filter_map(Result::ok) {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn state_watermark(ctx: &TestContext) -> Option<String> {
    let text = std::fs::read_to_string(ctx.warehouse().join("trusts/state.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["watermark"].as_str().map(str::to_owned)
}

/// Judges one faulty run: `Ok(outcome)` or `Err(what was wrong)`.
fn judge(
    ctx: &TestContext,
    out: &Output,
    expected: &[Vec<Option<String>>],
    versions_before: &[String],
    watermark_before: Option<String>,
) -> Result<&'static str, String> {
    match out.code {
        0 => {
            let got = content(ctx);
            if got != expected {
                return Err(format!(
                    "exit 0 with different content ({} rows, expected {})",
                    got.len(),
                    expected.len()
                ));
            }
            Ok("correct")
        }
        1 => {
            let doc: Value =
                serde_json::from_str(&out.stdout).map_err(|e| format!("no JSON failure on stdout: {e}"))?;
            if doc["status"] != "failed" || doc["exit_code"] != 1 {
                return Err(format!("JSON failure document: {doc}"));
            }
            if ctx.versions("trusts") != versions_before {
                return Err(format!("a failed run committed: {:?}", ctx.versions("trusts")));
            }
            if state_watermark(ctx) != watermark_before {
                return Err("a failed run moved the watermark".into());
            }
            let left = leftovers(&ctx.warehouse());
            if !left.is_empty() {
                return Err(format!("a failed run left {left:?}"));
            }
            Ok("clean failure")
        }
        code => Err(format!("exit {code}: {}", out.stderr)),
    }
}

/// Runs every fault at `endpoint`, on a baseline or on an incremental run (ORD only: the FHIR
/// states of the local server have one date); panics listing every case that ended wrong.
fn matrix(api: Api, endpoint: &str, incremental: bool) {
    let reference = context(api);
    let start = if incremental { T1 } else { T0 };
    if incremental {
        reference.run_ok(T0, "trusts", &[]);
        reference.server().set_state("demo-2025-07").unwrap();
    }
    run(&reference, start).ok();
    let expected = content(&reference);
    assert!(expected.len() > 200, "{}", expected.len());

    let ctx = context(api);
    // The warehouse every incremental case starts from, built once and copied per case.
    let template = ctx.path().join("template");
    if incremental {
        ctx.run_ok(T0, "trusts", &[]);
        std::fs::rename(ctx.warehouse(), &template).unwrap();
        ctx.server().set_state("demo-2025-07").unwrap();
    }
    let mut wrong = Vec::new();
    let (mut correct, mut clean) = (0, 0);
    let cases = faults();
    for (label, times, action) in &cases {
        let _ = std::fs::remove_dir_all(ctx.warehouse());
        if incremental {
            copy_dir(&template, &ctx.warehouse());
        }
        ctx.server().clear_faults();
        let versions_before = ctx.versions("trusts");
        let watermark_before = state_watermark(&ctx);
        ctx.fault(endpoint, *times, action.clone());
        let out = run(&ctx, start);
        match judge(&ctx, &out, &expected, &versions_before, watermark_before) {
            Ok("correct") => correct += 1,
            Ok(_) => {
                clean += 1;
                // The next run, without the fault, recovers exactly what the faulty one could not.
                ctx.server().clear_faults();
                let next = run(&ctx, start);
                if next.code != 0 || content(&ctx) != expected {
                    wrong.push(format!(
                        "{endpoint} / {label}: the next run did not recover (exit {}): {}",
                        next.code, next.stderr
                    ));
                }
            }
            Err(why) => wrong.push(format!("{endpoint} / {label}: {why}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases ended wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    eprintln!(
        "fault matrix {endpoint} ({}): {} cases, {correct} correct snapshots, {clean} clean failures then recovered",
        if incremental { "incremental" } else { "baseline" },
        cases.len()
    );
}

#[test]
fn faults_on_the_code_system_endpoint() {
    matrix(Api::Ord, "/roles", false);
    matrix(Api::Ord, "/roles", true);
}

#[test]
fn faults_on_the_search_listing() {
    matrix(Api::Ord, "PrimaryRoleId=RO198", false);
}

#[test]
fn faults_on_sync() {
    matrix(Api::Ord, "/sync?", true);
}

#[test]
fn faults_on_notifications() {
    matrix(Api::Ord, "/notifications", true);
}

#[test]
fn faults_on_a_record_in_a_baseline() {
    matrix(Api::Ord, "/organisations/RWR", false);
}

#[test]
fn faults_on_changed_and_new_records_in_an_incremental_run() {
    matrix(Api::Ord, "/organisations/RAX", true);
    matrix(Api::Ord, "/organisations/G6V2S", true);
}

#[test]
fn faults_on_the_fhir_count_and_search_pages() {
    matrix(Api::Fhir, "_summary=count", false);
    matrix(Api::Fhir, "_offset=", false);
}

#[test]
fn faults_on_the_fhir_affiliation_search() {
    matrix(Api::Fhir, "/fhir/OrganizationAffiliation", false);
}

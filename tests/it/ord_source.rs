//! `odsync run` against the local ORD-compatible server: paging, counts, incremental runs,
//! watermarks, retries and quarantine.

use crate::common::{TestContext, fixtures, write_state};
use odsync::server::FaultAction;
use serde_json::Value;

const T0: &str = "2025-07-10T02:00:00Z";

fn targets(ctx: &TestContext, contains: &str) -> Vec<String> {
    ctx.server()
        .requests()
        .into_iter()
        .filter(|r| r.target.contains(contains))
        .map(|r| r.target)
        .collect()
}

#[test]
fn baseline_pages_past_1000_records_and_matches_x_total_count() {
    let ctx = TestContext::with_server("volume");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    let s = ctx.run_ok(T0, "trusts", &[]);
    assert_eq!(s["mode"], "baseline");
    assert_eq!(s["status"], "succeeded");
    // 218 trusts from the 2021 etr.csv (RO197); RVVKC plus 1,200 generated sites (RO198).
    assert_eq!(s["records"]["organisations"], 1419);
    assert_eq!(s["fetch"]["total_count_header"], 1419);
    assert_eq!(s["records"]["quarantined"], 0);
    let sites = targets(&ctx, "PrimaryRoleId=RO198");
    assert_eq!(sites.len(), 2, "{sites:?}");
    assert!(
        !sites[0].contains("Offset"),
        "first page must not send Offset: {}",
        sites[0]
    );
    assert!(
        sites[1].contains("Offset=1000") && sites[1].contains("Limit=1000"),
        "{}",
        sites[1]
    );
    assert_eq!(ctx.versions("trusts"), ["version=000001"]);
}

#[test]
fn paging_also_works_when_offset_is_a_one_based_start_row() {
    let dir = tempfile::tempdir().unwrap();
    let roles = fixtures().join("ods/roles-2022.json");
    write_state(
        dir.path(),
        "start-row",
        &format!(
            "served_on = \"2025-07-10\"\ndata_date = \"2025-07-01\"\nroles = \"{}\"\ngenerated_sites = 2001\noffset_mode = \"start_row\"\n",
            roles.display()
        ),
    );
    let ctx = TestContext::with_server_in(dir.path(), "start-row");
    ctx.ord_pipeline("sites", &["RO198"]);
    let s = ctx.run_ok(T0, "sites", &[]);
    // Overlapping pages (Offset=1000 re-sends row 1000) are de-duplicated to the exact total.
    assert_eq!(s["records"]["organisations"], 2001);
    assert_eq!(targets(&ctx, "PrimaryRoleId=RO198").len(), 3);
}

#[test]
fn a_total_count_mismatch_fails_the_run_without_committing_or_moving_the_watermark() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    ctx.run_ok(T0, "trusts", &[]);
    ctx.fault("/organisations?", 5, FaultAction::TotalCount { delta: 3 });
    let failed = ctx.odsync("2025-07-12T02:00:00Z", &["run", "trusts", "--full"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(failed.stderr.contains("X-Total-Count"), "{}", failed.stderr);
    assert!(failed.stderr.contains("nothing was committed"), "{}", failed.stderr);
    assert_eq!(ctx.versions("trusts"), ["version=000001"]);
    let runs = ctx.odsync(T0, &["runs", "trusts", "--json"]).ok().json();
    assert_eq!(runs[0]["status"], "failed");
    assert!(runs[0]["error"].as_str().unwrap().starts_with("fetch:"), "{}", runs[0]);
    assert!(runs[0]["watermark_after"].is_null());
    // The next run syncs from the watermark of the last good run (2025-07-10 minus 2 days).
    let next = ctx.run_ok("2025-07-13T02:00:00Z", "trusts", &[]);
    assert_eq!(next["mode"], "incremental");
    assert_eq!(
        targets(&ctx, "/sync?").last().unwrap(),
        "/ORD/2-0-0/sync?LastChangeDate=2025-07-08&Limit=1000"
    );
}

#[test]
fn an_incremental_run_applies_sync_changes_to_the_previous_snapshot() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    let base = ctx.run_ok(T0, "trusts", &[]);
    assert_eq!(base["records"]["organisations"], 220);
    ctx.server().set_state("demo-2025-07").unwrap();
    let inc = ctx.run_ok("2025-07-16T02:00:00Z", "trusts", &[]);
    assert_eq!(inc["mode"], "incremental");
    assert_eq!(inc["snapshot_version"], 2);
    assert_eq!(inc["watermark_before"], "2025-07-10");
    assert_eq!(inc["watermark_after"], "2025-07-16");
    // Only what /sync listed was fetched: 32 changed trusts and one new one (G6V2S).
    assert_eq!(inc["records"]["fetched"], 33);
    assert_eq!(targets(&ctx, "/organisations/").len(), 220 + 33);
    assert_eq!(inc["records"]["organisations"], 221);
    let rows = ctx.query(
        "SELECT version, code, name FROM snapshot_organisations WHERE pipeline = 'trusts' AND code IN ('G6V2S', 'RAX') ORDER BY code, version",
    );
    let rows: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| r.iter().map(|v| v.as_deref().unwrap()).collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["2", "G6V2S", "NORTH LONDON NHS FOUNDATION TRUST"],
            ["1", "RAX", "KINGSTON HOSPITAL NHS FOUNDATION TRUST"],
            ["2", "RAX", "KINGSTON AND RICHMOND NHS FOUNDATION TRUST"],
        ]
    );
}

#[test]
fn a_watermark_older_than_185_days_forces_a_baseline() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197"]);
    ctx.run_ok("2025-01-02T02:00:00Z", "trusts", &[]);
    let s = ctx.run_ok("2025-07-16T02:00:00Z", "trusts", &[]);
    assert_eq!(s["mode"], "baseline");
    assert!(
        s["mode_reason"].as_str().unwrap().contains("185 days"),
        "{}",
        s["mode_reason"]
    );
    assert!(targets(&ctx, "/sync").is_empty());
}

#[test]
fn a_second_identical_run_is_unchanged_and_writes_no_version() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    let first = ctx.run_ok(T0, "trusts", &[]);
    let again = ctx.run_ok("2025-07-11T02:00:00Z", "trusts", &["--full"]);
    assert_eq!(again["status"], "unchanged");
    assert_eq!(again["snapshot_version"], 1);
    assert_eq!(again["records"]["unchanged"], first["records"]["fetched"]);
    assert_eq!(again["content_hash"], first["content_hash"]);
    assert_eq!(ctx.versions("trusts"), ["version=000001"]);
    // An unchanged run is a success: it moves the watermark.
    let runs = ctx.odsync(T0, &["runs", "trusts", "--json"]).ok().json();
    assert_eq!(runs[0]["status"], "unchanged");
    assert_eq!(runs[0]["watermark_after"], "2025-07-11");
}

#[test]
fn throttling_and_transient_failures_are_retried_until_the_run_succeeds() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    ctx.fault(
        "/organisations/RWR",
        1,
        FaultAction::Status {
            status: 429,
            retry_after: Some("1".into()),
            body: None,
        },
    );
    ctx.fault(
        "/organisations/R0A",
        2,
        FaultAction::Status {
            status: 503,
            retry_after: None,
            body: None,
        },
    );
    ctx.fault("/organisations/R0B", 1, FaultAction::Truncate);
    ctx.fault("/organisations/R1F", 1, FaultAction::Reset);
    let s = ctx.run_ok(T0, "trusts", &[]);
    assert_eq!(s["records"]["organisations"], 220);
    assert_eq!(s["records"]["quarantined"], 0);
    assert_eq!(s["fetch"]["http"]["retries"], 5);
    let rwr: Vec<_> = ctx
        .server()
        .requests()
        .into_iter()
        .filter(|r| r.target.ends_with("/organisations/RWR"))
        .collect();
    assert_eq!(rwr.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
    assert!(
        rwr[1].at_ms - rwr[0].at_ms >= 1000,
        "Retry-After: 1 not honoured: {rwr:?}"
    );
}

#[test]
fn records_that_are_missing_or_malformed_are_asked_again_then_fail_the_run_or_are_quarantined_as_allowed() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    let not_found = || FaultAction::Status {
        status: 404,
        retry_after: None,
        body: Some(r#"{"ErrorCode":404,"ErrorText":"Not Found."}"#.into()),
    };
    ctx.fault("/organisations/R0D", 10, not_found());
    ctx.fault("/organisations/R0B", 1, FaultAction::Malformed);
    // By default a record that still fails when asked again fails the run.
    let failed = ctx.odsync(T0, &["run", "trusts"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("R0D") && failed.stderr.contains("HTTP 404"),
        "{}",
        failed.stderr
    );
    assert!(ctx.versions("trusts").is_empty());
    // A 404 is not retried by the HTTP layer, but the record is asked for once more.
    assert_eq!(targets(&ctx, "/organisations/R0D").len(), 2);

    let path = ctx.path().join("pipelines/trusts.toml");
    let text = std::fs::read_to_string(&path).unwrap() + "[quality]\nmax_failed_records = 1\n";
    std::fs::write(&path, text).unwrap();
    ctx.server().set_state("demo-2021").unwrap();
    ctx.fault("/organisations/R0B", 1, FaultAction::Malformed);
    let s = ctx.run_ok(T0, "trusts", &[]);
    // R0B failed once and was fetched again; R0D failed twice and is quarantined, pending.
    assert_eq!(s["records"]["quarantined"], 1);
    assert_eq!(s["records"]["organisations"], 219);
    assert_eq!(s["records"]["pending"], serde_json::json!(["R0D"]));
    let q = ctx.query(
        "SELECT code, reason, octet_length(raw) > 0 FROM latest_quarantine WHERE pipeline = 'trusts' ORDER BY code",
    );
    assert_eq!(q.len(), 1);
    assert_eq!(q[0][0].as_deref(), Some("R0D"));
    assert!(q[0][1].as_deref().unwrap().contains("HTTP 404"), "{q:?}");
    assert_eq!(q[0][2].as_deref(), Some("true"));
}

#[test]
fn a_permanent_client_error_fails_fast_without_retries() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197"]);
    ctx.fault(
        "/roles",
        10,
        FaultAction::Status {
            status: 403,
            retry_after: None,
            body: Some("unknown application".into()),
        },
    );
    let out = ctx.odsync(T0, &["run", "trusts"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("HTTP 403") && out.stderr.contains("unknown application"),
        "{}",
        out.stderr
    );
    assert_eq!(targets(&ctx, "/roles").len(), 1);
    assert!(ctx.versions("trusts").is_empty());
}

#[test]
fn codes_refresh_only_the_given_records_and_keep_the_watermark() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    ctx.run_ok(T0, "trusts", &[]);
    ctx.server().set_state("demo-2025-07").unwrap();
    let s = ctx.run_ok("2025-07-16T02:00:00Z", "trusts", &["--codes", "RAX,G6V2S"]);
    assert_eq!(s["mode"], "codes");
    assert_eq!(s["records"]["fetched"], 2);
    assert_eq!(s["records"]["organisations"], 221);
    assert_eq!(s["watermark_after"], "2025-07-10");
}

/// A refresh whose records are all byte-identical to their copies is the previous snapshot
/// (found without rebuilding the tables), reported as a full rebuild would report it; one whose
/// records changed is a new version.
#[test]
fn a_refresh_that_brings_nothing_new_is_unchanged_and_one_that_does_is_a_new_version() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    let base = ctx.run_ok(T0, "trusts", &[]);
    let same = ctx.run_ok("2025-07-16T02:00:00Z", "trusts", &["--codes", "RAX,RWR"]);
    assert_eq!(same["status"], "unchanged", "{same}");
    assert_eq!(same["snapshot_version"], 1);
    assert_eq!(same["records"]["fetched"], 2);
    assert_eq!(same["records"]["unchanged"], 2);
    let orgs = base["records"]["organisations"].as_u64().unwrap();
    assert_eq!(same["records"]["organisations"], orgs);
    assert_eq!(same["records"]["carried"], orgs - 2, "{same}");
    assert_eq!(same["unmapped_roles"], base["unmapped_roles"]);
    assert_eq!(same["watermark_after"], base["watermark_after"]);
    assert_eq!(ctx.versions("trusts").len(), 1);
    // The same refresh once ODS changed one of them: a new version with the change.
    ctx.server().set_state("demo-2025-07").unwrap();
    let changed = ctx.run_ok("2025-07-16T03:00:00Z", "trusts", &["--codes", "RAX,RWR"]);
    assert_eq!(changed["status"], "succeeded", "{changed}");
    assert_eq!(changed["snapshot_version"], 2);
    assert!(changed["records"]["unchanged"].as_u64().unwrap() < 2, "{changed}");
    assert!(changed["diff"]["changes"].as_u64().unwrap() > 0, "{changed}");
}

#[test]
fn codes_that_are_not_ods_codes_fail_before_any_request_and_lower_case_is_taken() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    ctx.run_ok(T0, "trusts", &[]);
    let before = ctx.server().requests().len();
    // A code goes into the URL path: `../roles` must never become a request for another resource.
    for bad in ["RAX,../roles", "RAX,", "RAX?x=1"] {
        let out = ctx.odsync("2025-07-16T02:00:00Z", &["run", "trusts", "--codes", bad, "--json"]);
        assert_eq!(out.code, 1, "{bad}: {}", out.stderr);
        assert!(
            out.stderr.contains("--codes") && out.stderr.contains("ODS code"),
            "{bad}: {}",
            out.stderr
        );
        assert_eq!(out.json()["class"], "user", "{bad}");
    }
    assert_eq!(ctx.server().requests().len(), before, "nothing was fetched");
    assert_eq!(ctx.versions("trusts").len(), 1);
    let fetched_before = targets(&ctx, "/organisations/RAX").len();
    let s = ctx.run_ok("2025-07-16T02:00:00Z", "trusts", &["--codes", "rax"]);
    assert_eq!(s["records"]["fetched"], 1);
    assert_eq!(targets(&ctx, "/organisations/RAX").len(), fetched_before + 1);
}

#[test]
fn the_same_inputs_give_byte_identical_snapshots() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198"]);
    ctx.run_ok(T0, "trusts", &[]);
    let first = ctx.path().join("first");
    std::fs::rename(ctx.warehouse(), &first).unwrap();
    ctx.run_ok(T0, "trusts", &[]);
    let dir = |root: &std::path::Path| root.join("trusts");
    let mut names: Vec<String> = odsync::testkit::tables::SNAPSHOT_TABLES
        .iter()
        .map(|t| format!("{t}/version=000001/part-0.parquet"))
        .collect();
    names.push("_meta/ods/version=000001/manifest.json".into());
    assert_eq!(names.len(), 9, "{names:?}");
    for name in names {
        let a = std::fs::read(dir(&first).join(&name)).unwrap();
        let b = std::fs::read(dir(&ctx.warehouse()).join(&name)).unwrap();
        assert!(a == b, "{name:?} differs between two runs of the same inputs");
    }
}

#[test]
fn a_request_that_times_out_is_retried() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.write_pipeline(
        "slow",
        "name = \"slow\"\n[source]\ntype = \"ord\"\n[scope]\nprimary_roles = [\"RO197\"]\n\
         [http]\nrequests_per_second = 1000.0\ntimeout_secs = 1\nbackoff_base_ms = 10\nbackoff_max_ms = 50\n",
    );
    ctx.fault("/organisations/RWR", 1, FaultAction::Delay { ms: 2500 });
    let s = ctx.run_ok(T0, "slow", &[]);
    assert_eq!(s["records"]["quarantined"], 0);
    assert_eq!(s["fetch"]["http"]["retries"], 1);
    assert_eq!(targets(&ctx, "/organisations/RWR").len(), 2);
}

#[test]
fn a_deletion_announced_in_notifications_becomes_a_deleted_change_and_a_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures();
    let etr = std::fs::read_to_string(f.join("ods/csv/etr-2021-nhsx.csv")).unwrap();
    let without_r0a: String = etr
        .lines()
        .filter(|l| !l.starts_with("\"R0A\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("etr-without-r0a.csv"), without_r0a).unwrap();
    std::fs::write(
        dir.path().join("notifications.json"),
        r#"{"DeletedOrganisations": [
            {"OrgID": "R0A", "PrimaryRoleId": "RO197", "reason": {"code": 3, "description": "HUMAN ERROR"}, "time": "2025-07-14 00:00:00", "type": {"code": 1, "description": "Machine"}},
            {"OrgID": "I8M8X", "PrimaryRoleId": "RO96", "reason": {"code": 2, "description": "ORG DOES NOT EXIST"}, "time": "2025-07-14 00:00:00", "type": {"code": 1, "description": "Machine"}}
        ]}"#,
    )
    .unwrap();
    let roles = f.join("ods/roles-2022.json");
    write_state(
        dir.path(),
        "before",
        &format!(
            "served_on = \"2025-07-10\"\ndata_date = \"2021-12-31\"\netr_csv = [\"{}\"]\nroles = \"{}\"\n",
            f.join("ods/csv/etr-2021-nhsx.csv").display(),
            roles.display()
        ),
    );
    write_state(
        dir.path(),
        "after",
        &format!(
            "served_on = \"2025-07-16\"\ndata_date = \"2025-07-15\"\nprevious = \"before\"\netr_csv = [\"{}\"]\nroles = \"{}\"\nnotifications = \"{}\"\n",
            dir.path().join("etr-without-r0a.csv").display(),
            roles.display(),
            dir.path().join("notifications.json").display()
        ),
    );
    let ctx = TestContext::with_server_in(dir.path(), "before");
    ctx.ord_pipeline("trusts", &["RO197"]);
    ctx.run_ok(T0, "trusts", &[]);
    ctx.server().set_state("after").unwrap();
    let s = ctx.run_ok("2025-07-16T02:00:00Z", "trusts", &[]);
    // /sync does not list a deleted record; only /notifications says it is gone.
    assert_eq!(s["records"]["fetched"], 0);
    assert_eq!(s["records"]["deleted_by_ods"], 1);
    assert_eq!(targets(&ctx, "/notifications").len(), 1);
    let change = ctx.query("SELECT change_kind, new_value FROM changes_latest WHERE pipeline = 'trusts' AND code = 'R0A' AND \"table\" = 'organisations'");
    assert_eq!(
        change,
        [[
            Some("deleted".into()),
            Some("deleted from ODS: HUMAN ERROR (reason 3)".into())
        ]]
    );
    let tombstones = ctx.query("SELECT code, reason FROM latest_deletions WHERE pipeline = 'trusts' ORDER BY code");
    assert_eq!(tombstones.len(), 2, "every announced deletion is kept: {tombstones:?}");
    let history = ctx.odsync(T0, &["history", "trusts", "R0A", "--json"]).ok().json();
    let rows = history["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{history}");
    assert_eq!(rows[1][8], "deleted");
    assert_eq!(rows[1][10], "true");
    // The tombstone survives the next run, and a deleted code is not re-added by a baseline.
    let again = ctx.run_ok("2025-07-17T02:00:00Z", "trusts", &["--full"]);
    assert_eq!(again["records"]["organisations"], 217);
    let kept = ctx.query("SELECT count(*) FROM latest_deletions WHERE pipeline = 'trusts' AND code = 'R0A'");
    assert_eq!(kept[0][0].as_deref(), Some("1"));
}

#[test]
fn the_role_mapping_derives_org_type_and_the_foundation_trust_flag_and_reports_unmapped_roles() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197", "RO198", "RO98"]);
    std::fs::copy(
        crate::common::repo_root().join("pipelines/role_mapping.toml"),
        ctx.path().join("pipelines/role_mapping.toml"),
    )
    .unwrap();
    // The shipped mapping types every role of this scope. Without its RO98 rules, 97T (a
    // commissioning hub: primary RO98 with RO218) is reported unmapped on every run.
    let shipped = std::fs::read_to_string(ctx.path().join("pipelines/role_mapping.toml")).unwrap();
    let without_ro98: String = shipped
        .split("\n\n")
        .filter(|rule| !rule.contains("primary_role = \"RO98\""))
        .collect::<Vec<_>>()
        .join("\n\n");
    std::fs::write(ctx.path().join("pipelines/role_mapping.toml"), without_ro98).unwrap();
    let s = ctx.run_ok(T0, "trusts", &[]);
    let unmapped = s["unmapped_roles"].as_array().unwrap();
    assert_eq!(unmapped.len(), 1, "{unmapped:?}");
    assert_eq!(unmapped[0]["role_id"], "RO98");
    assert_eq!(unmapped[0]["examples"][0], "97T");
    std::fs::write(ctx.path().join("pipelines/role_mapping.toml"), shipped).unwrap();
    let s = ctx.run_ok(T0, "trusts", &["--full"]);
    assert_eq!(s["unmapped_roles"], serde_json::json!([]), "{s}");
    let rows = ctx.cells(
        "SELECT code, org_type, health_system, CAST(foundation_trust AS VARCHAR) FROM latest_trusts
         WHERE pipeline = 'trusts' AND code IN ('RWR', 'RVVKC', 'RJY', '97T') ORDER BY code",
    );
    assert_eq!(
        rows,
        [
            vec!["97T", "Commissioning Hub", "NHS England", "false"],
            // RJY's roles are inactive: it is still a trust, never a foundation trust.
            vec!["RJY", "NHS Trust", "NHS England", "false"],
            vec!["RVVKC", "Trust Site", "NHS England", "false"],
            // The real RWR record: RO197 primary plus the active non-primary RO57.
            vec!["RWR", "NHS Trust", "NHS England", "true"],
        ]
    );
    let source = ctx.query("SELECT source FROM provenance_latest WHERE pipeline = 'trusts' AND code = 'RWR' AND field = 'foundation_trust'");
    assert_eq!(source[0][0].as_deref(), Some("derived"));
}

#[test]
fn a_role_code_that_vanishes_or_is_renamed_in_the_code_system_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let roles_2022 = fixtures().join("ods/roles-2022.json");
    // The next code system: RO98 (CCG, named by the role mapping) gone, RO197 renamed, RO999 new.
    let mut roles: Value = serde_json::from_slice(&std::fs::read(&roles_2022).unwrap()).unwrap();
    let list = roles["Roles"].as_array_mut().unwrap();
    let before = list.len();
    list.retain(|r| r["id"] != "RO98");
    assert_eq!(list.len(), before - 1, "the fixture lists RO98");
    let renamed = list.iter_mut().find(|r| r["id"] == "RO197").unwrap();
    let old_name = renamed["displayName"].as_str().unwrap().to_owned();
    renamed["displayName"] = "NHS TRUST (ENGLAND)".into();
    list.push(serde_json::json!({"id": "RO999", "code": "999", "displayName": "NEW ROLE", "primaryRole": "true"}));
    let roles_next = dir.path().join("roles-next.json");
    std::fs::write(&roles_next, serde_json::to_vec(&roles).unwrap()).unwrap();
    for (name, file) in [("before", &roles_2022), ("after", &roles_next)] {
        write_state(
            dir.path(),
            name,
            &format!(
                "served_on = \"2025-07-10\"\ndata_date = \"2025-07-01\"\nroles = \"{}\"\ngenerated_sites = 3\n",
                file.display()
            ),
        );
    }
    let ctx = TestContext::with_server_in(dir.path(), "before");
    ctx.ord_pipeline("sites", &["RO198"]);
    std::fs::copy(
        crate::common::repo_root().join("pipelines/role_mapping.toml"),
        ctx.path().join("pipelines/role_mapping.toml"),
    )
    .unwrap();
    let first = ctx.run_ok(T0, "sites", &[]);
    assert_eq!(
        first["code_system_changes"].as_array().unwrap().len(),
        0,
        "nothing to compare on a first run"
    );
    ctx.server().set_state("after").unwrap();
    let out = ctx.odsync("2025-07-11T02:00:00Z", &["run", "sites", "--full"]).ok();
    let text = out.stdout.clone();
    assert!(text.contains("role code RO98 removed"), "{text}");
    assert!(text.contains("check them"), "RO98 is named by the role mapping: {text}");
    let s = ctx.run_ok("2025-07-11T03:00:00Z", "sites", &["--full"]);
    // Unchanged data on the re-run: the comparison is against the snapshot just committed.
    assert_eq!(s["code_system_changes"].as_array().unwrap().len(), 0, "{s}");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(ctx.warehouse().join("sites/_meta/ods/version=000002/manifest.json")).unwrap(),
    )
    .unwrap();
    let changes = manifest["summary"]["code_system_changes"].as_array().unwrap().clone();
    let rows: Vec<(String, String, bool)> = changes
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_owned(),
                c["role_id"].as_str().unwrap().to_owned(),
                c["used_by_pipeline"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("added".to_owned(), "RO999".to_owned(), false),
            ("removed".to_owned(), "RO98".to_owned(), true),
            ("renamed".to_owned(), "RO197".to_owned(), true),
        ]
    );
    let renamed = changes.iter().find(|c| c["change"] == "renamed").unwrap();
    assert_eq!(renamed["old_name"], old_name.as_str());
    assert_eq!(renamed["new_name"], "NHS TRUST (ENGLAND)");
}

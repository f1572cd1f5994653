//! Operating odsync from a scheduler: dry runs.

use crate::common::{TestContext, ods_csv, walk};
use std::collections::BTreeMap;
use std::path::Path;

/// Every file under `dir` with its bytes' sha256 (directories as entries too).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    walk(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let hash = if p.is_file() {
                odsync::testkit::tables::sha256_hex(&std::fs::read(&p).unwrap())
            } else {
                "dir".into()
            };
            (rel, hash)
        })
        .collect()
}

/// An etr pipeline over a real file whose local table renamed RA2 itself (ODS renames it too in
/// the 2025-12 file: a conflict); returns the pipeline text for a given file.
fn etr_with_local_rename(ctx: &TestContext) -> impl Fn(&str) -> String {
    let local = ctx.path().join("local.csv");
    std::fs::write(&local, "code,name\nRA2,ROYAL SURREY (LOCAL NAME)\n").unwrap();
    move |file: &str| {
        format!(
            "name = \"etr\"\n[source]\ntype = \"csv\"\nkind = \"etr\"\nlocation = \"{}\"\n[merge]\nlocal_table = \"{}\"\n",
            ods_csv(file).display(),
            local.display()
        )
    }
}

#[test]
fn a_dry_run_reports_the_changes_and_conflicts_of_the_real_run_and_leaves_the_warehouse_byte_identical() {
    let ctx = TestContext::new();
    let pipeline = etr_with_local_rename(&ctx);
    ctx.write_pipeline("etr", &pipeline("etr-2025-07-folakeobalakun.csv"));
    ctx.run_ok("2025-07-16", "etr", &[]);
    ctx.write_pipeline("etr", &pipeline("etr-2025-12-jhau.csv"));
    let before = tree(&ctx.warehouse());

    let dry = ctx.run_ok("2025-12-30", "etr", &["--accept-shift", "--dry-run"]);
    assert_eq!(dry["status"], "dry_run", "{dry}");
    assert_eq!(dry["snapshot_version"], 2);
    assert!(dry["diff"]["by_kind"]["renamed"].as_u64().unwrap() >= 1, "{dry}");
    let opened = dry["merge"]["new_conflicts"].as_array().unwrap();
    assert!(
        opened.iter().any(|c| c["code"] == "RA2" && c["field"] == "name"),
        "{opened:?}"
    );
    assert_eq!(tree(&ctx.warehouse()), before, "a dry run changes nothing on disk");
    let text = ctx
        .odsync("2025-12-30", &["run", "etr", "--accept-shift", "--dry-run"])
        .ok();
    assert!(text.stdout.contains("dry run, nothing committed"), "{}", text.stdout);
    assert!(text.stdout.contains("new conflict RA2 name"), "{}", text.stdout);
    assert_eq!(tree(&ctx.warehouse()), before);
    // A guard stop is the same in a dry run: exit 1, nothing written.
    let stopped = ctx.odsync("2025-12-30", &["run", "etr", "--dry-run"]);
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    assert_eq!(tree(&ctx.warehouse()), before);
    let runs = ctx.cells("SELECT count(*) FROM runs WHERE pipeline = 'etr'");
    assert_eq!(runs, [vec!["1"]], "a dry run records no run");

    // The real run then does what the dry run said.
    let real = ctx.run_ok("2025-12-30", "etr", &["--accept-shift"]);
    assert_eq!(real["status"], "succeeded");
    assert_eq!(real["diff"], dry["diff"]);
    assert_eq!(real["merge"]["new_conflicts"], dry["merge"]["new_conflicts"]);
    assert_eq!(real["records"], dry["records"]);
}

#[test]
fn status_names_each_threshold_crossed_and_exits_3_for_a_monitor() {
    let ctx = TestContext::with_server("demo-2021");
    ctx.ord_pipeline("trusts", &["RO197"]);
    // Never run: not healthy.
    let never = ctx.odsync("2025-07-10T02:00:00Z", &["status", "trusts"]);
    assert_eq!(never.code, 3, "{}", never.stdout);
    assert!(never.stdout.contains("no successful run recorded"), "{}", never.stdout);

    ctx.run_ok("2025-07-10T02:00:00Z", "trusts", &[]);
    let fine = ctx.odsync("2025-07-11T02:00:00Z", &["status", "--json"]).ok().json();
    assert_eq!(fine[0]["pipeline"], "trusts");
    assert_eq!(fine[0]["status"], "ok", "{fine}");
    assert_eq!(fine[0]["hours_since_success"], 24);
    // Watermark 2025-07-10 minus the 2-day overlap: 185 - 3 days left.
    assert_eq!(fine[0]["sync_days_left"], 182);

    // Three days later nothing has run: stale.
    let stale = ctx.odsync("2025-07-13T02:00:00Z", &["status", "trusts"]);
    assert_eq!(stale.code, 3);
    assert!(
        stale.stdout.contains("last successful run 72 hours ago"),
        "{}",
        stale.stdout
    );
    let relaxed = ctx.odsync(
        "2025-07-13T02:00:00Z",
        &["status", "trusts", "--max-hours-since-success", "100"],
    );
    assert_eq!(relaxed.code, 0, "{}", relaxed.stdout);

    // Near /sync's 185-day reach: 2025-12-20 is 165 days after 2025-07-08.
    let late = ctx
        .odsync(
            "2025-12-20T02:00:00Z",
            &["status", "trusts", "--max-hours-since-success", "100000", "--json"],
        )
        .json();
    assert_eq!(late[0]["sync_days_left"], 20);
    let problems = late[0]["problems"].to_string();
    assert!(problems.contains("20 days left"), "{problems}");
    let ok = ctx.odsync(
        "2025-12-20T02:00:00Z",
        &[
            "status",
            "trusts",
            "--max-hours-since-success",
            "100000",
            "--min-sync-days-left",
            "10",
        ],
    );
    assert_eq!(ok.code, 0, "{}", ok.stdout);

    // A failed run is named.
    ctx.fault(
        "/sync",
        100,
        odsync::server::FaultAction::Status {
            status: 503,
            retry_after: None,
            body: None,
        },
    );
    let failed = ctx.odsync("2025-07-11T02:00:00Z", &["run", "trusts"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    let after = ctx.odsync("2025-07-11T03:00:00Z", &["status", "trusts"]);
    assert_eq!(after.code, 3);
    assert!(after.stdout.contains("the last run failed"), "{}", after.stdout);
}

#[test]
fn paths_in_a_pipeline_file_are_relative_to_it_and_the_role_mapping_is_never_silently_missing() {
    // A project folder elsewhere: the pipeline names its inputs relative to itself.
    let ctx = TestContext::new();
    let project = ctx.path().join("project");
    std::fs::create_dir_all(project.join("config")).unwrap();
    std::fs::create_dir_all(project.join("data")).unwrap();
    std::fs::copy(ods_csv("etr-2025-07-folakeobalakun.csv"), project.join("data/etr.csv")).unwrap();
    std::fs::write(project.join("data/local.csv"), "code,name\nRA2,LOCAL NAME\n").unwrap();
    std::fs::write(
        project.join("config/trusts.toml"),
        "name = \"trusts\"\n[source]\ntype = \"csv\"\nkind = \"etr\"\nlocation = \"../data/etr.csv\"\n[merge]\nlocal_table = \"../data/local.csv\"\n",
    )
    .unwrap();
    let pipeline_file = project.join("config/trusts.toml");
    let from = |dir: &Path, warehouse: &Path| {
        let out = ctx
            .command("2025-07-16", &["run", pipeline_file.to_str().unwrap(), "--json"], &[])
            .current_dir(dir)
            .env("ODSYNC_WAREHOUSE", warehouse)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let root = from(Path::new("/"), &ctx.path().join("wh-root"));
    let here = from(&project, &ctx.path().join("wh-here"));
    assert_eq!(root["records"], here["records"]);
    assert_eq!(root["content_hash"], here["content_hash"]);
    assert_eq!(root["merge"]["rows"], here["merge"]["rows"]);
    // No role_mapping.toml beside the pipeline: the built-in mapping types the trusts.
    assert_eq!(root["unmapped_roles"], serde_json::json!([]));
    let typed = ctx
        .command(
            "2025-07-16",
            &["query", "SELECT DISTINCT org_type FROM latest_organisations"],
            &[("ODSYNC_WAREHOUSE", ctx.path().join("wh-root").to_str().unwrap())],
        )
        .current_dir("/")
        .output()
        .unwrap();
    let typed = String::from_utf8_lossy(&typed.stdout);
    assert!(typed.contains("NHS Trust"), "{typed}");
    let local = ctx
        .command(
            "2025-07-16",
            &["query", "SELECT name FROM latest_trusts WHERE code = 'RA2'"],
            &[("ODSYNC_WAREHOUSE", ctx.path().join("wh-root").to_str().unwrap())],
        )
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&local.stdout).contains("LOCAL NAME"));

    // A mapping the pipeline names but that is not there is an error, never a silent default.
    std::fs::write(
        project.join("config/trusts.toml"),
        "name = \"trusts\"\n[source]\ntype = \"csv\"\nkind = \"etr\"\nlocation = \"../data/etr.csv\"\n[roles]\nmapping = \"missing.toml\"\n",
    )
    .unwrap();
    let out = ctx
        .command("2025-07-17", &["run", pipeline_file.to_str().unwrap()], &[])
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("roles.mapping") && err.contains("missing.toml"), "{err}");
}

#[test]
fn json_log_lines_parse_and_name_the_run_and_stage_and_quiet_prints_nothing() {
    let ctx = TestContext::new();
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2025-07-folakeobalakun.csv"));
    let out = ctx.odsync_env(
        "2025-07-16",
        &["run", "etr", "--log-format", "json", "--quiet"],
        &[("ODSYNC_LOG", "debug")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "", "--quiet prints no summary");
    let lines: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let in_run: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["spans"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["name"] == "run"))
        })
        .collect();
    assert!(in_run.len() >= 5, "{}", out.stderr);
    for l in &in_run {
        assert_eq!(l["spans"][0]["run_id"], "20250716T000000Z-etr-0001", "{l}");
        assert_eq!(l["spans"][0]["pipeline"], "etr");
    }
    let stages: std::collections::BTreeSet<&str> = in_run.iter().filter_map(|l| l["span"]["stage"].as_str()).collect();
    for s in ["fetch", "parse", "merge"] {
        assert!(stages.contains(s), "{stages:?}");
    }
    // --json still prints the document under --quiet; a failure still says why on stderr.
    let json = ctx
        .odsync("2025-07-17", &["run", "etr", "--json", "--quiet"])
        .ok()
        .json();
    assert_eq!(json["status"], "unchanged");
    let failed = ctx.odsync("2025-07-17", &["run", "nope", "--quiet"]);
    assert_eq!(failed.code, 1);
    assert!(failed.stderr.contains("nope"), "{}", failed.stderr);
}

/// The value at a dotted path of the run's `--json` summary (`records.pending.length`: a list's length).
fn at(doc: &serde_json::Value, path: &str) -> Option<String> {
    let mut v = doc;
    for part in path.split('.') {
        if part == "length" {
            return v.as_array().map(|a| a.len().to_string());
        }
        v = v.get(part)?;
    }
    Some(match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

#[test]
fn the_report_lists_deleted_organisations_whose_change_rows_name_no_field() {
    let ctx = TestContext::new();
    let file = ctx.path().join("etr.csv");
    let lines: Vec<String> = std::fs::read_to_string(ods_csv("etr-2025-07-folakeobalakun.csv"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    ctx.write_pipeline(
        "etr",
        &format!(
            "name = \"etr\"\n[source]\ntype = \"csv\"\nkind = \"etr\"\nlocation = \"{}\"\n",
            file.display()
        ),
    );
    ctx.run_ok("2025-07-16", "etr", &[]);
    // Two open organisations leave the file: deleted (not closed ones leaving its window).
    let kept: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with("\"RA2\"") && !l.starts_with("\"RA9\""))
        .collect();
    assert_eq!(kept.len(), lines.len() - 2, "RA2 and RA9 are in the file");
    std::fs::write(&file, kept.join("\n") + "\n").unwrap();
    let summary = ctx.run_ok("2025-07-17", "etr", &[]);
    assert_eq!(summary["diff"]["by_kind"]["deleted"], 2, "{}", summary["diff"]);
    let html = std::fs::read_to_string(summary["report"].as_str().unwrap()).unwrap();
    assert!(!html.contains("could not be read"), "the changes section is there");
    let at = html
        .find("id=\"notable-deleted\"")
        .expect("the deleted organisations are listed");
    let table = &html[at..at + html[at..].find("</table>").unwrap()];
    for code in ["RA2", "RA9"] {
        assert!(table.contains(&format!("<code>{code}</code>")), "{code}: {table}");
    }
    assert!(table.contains("the whole record"), "{table}");
}

#[test]
fn the_run_report_shows_the_numbers_of_the_run_summary_and_is_self_contained() {
    let ctx = TestContext::new();
    let pipeline = etr_with_local_rename(&ctx);
    ctx.write_pipeline("etr", &pipeline("etr-2025-07-folakeobalakun.csv"));
    let first = ctx.run_ok("2025-07-16", "etr", &[]);
    ctx.write_pipeline("etr", &pipeline("etr-2025-12-jhau.csv"));
    let summary = ctx.run_ok("2025-12-30", "etr", &["--accept-shift"]);
    let path = std::path::PathBuf::from(summary["report"].as_str().expect("the run names its report"));
    assert_eq!(
        path,
        ctx.warehouse()
            .join(format!("etr/_reports/{}.html", summary["run_id"].as_str().unwrap()))
    );
    let html = std::fs::read_to_string(&path).unwrap();

    // Every number the page takes from the summary equals the summary's.
    let re = regex::Regex::new(r#"data-key="([^"]+)">([^<]*)<"#).unwrap();
    let mut checked = 0;
    for cap in re.captures_iter(&html) {
        let (key, shown) = (&cap[1], &cap[2]);
        let want = at(&summary, key).unwrap_or_else(|| panic!("`{key}` is not in the summary"));
        assert_eq!(shown, want, "{key}");
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} numbers carry their key");
    for key in [
        "records.fetched",
        "diff.by_kind.renamed",
        "merge.conflicts_new",
        "records.organisations",
    ] {
        assert!(html.contains(&format!("data-key=\"{key}\"")), "{key} is shown");
    }
    assert!(summary["merge"]["conflicts_new"].as_u64().unwrap() >= 1);
    // What a person looks for: the accepted shift, the conflict, charts, the recent runs.
    assert!(
        html.contains("Shift accepted with --accept-shift"),
        "the guard's verdict"
    );
    assert!(html.contains("ROYAL SURREY (LOCAL NAME)"), "the conflict it opened");
    assert_eq!(html.matches("<svg").count(), 3, "kinds, parents and runs charts");
    // The organisations behind each kind are listed (a deleted one's change row names no field:
    // that once made the whole section "could not be read").
    assert!(!html.contains("could not be read"), "the changes section is there");
    for kind in ["closed", "deleted", "added"] {
        if summary["diff"]["by_kind"][kind].as_u64().unwrap_or(0) > 0 {
            assert!(
                html.contains(&format!("id=\"notable-{kind}\"")),
                "{kind} organisations listed"
            );
        }
    }

    assert!(
        html.contains(first["run_id"].as_str().unwrap()),
        "the earlier run in the history"
    );
    // Self-contained: nothing to fetch when it is opened.
    for outside in ["<script", "<link", "src=\"http", "url(http", "@import"] {
        assert!(!html.contains(outside), "{outside}");
    }
    // `odsync report` writes the same page again (nothing has run since).
    let out = ctx.path().join("again.html");
    let written = ctx
        .odsync(
            "2025-12-30",
            &["report", "etr", "--out", out.to_str().unwrap(), "--json"],
        )
        .ok()
        .json();
    assert_eq!(written["run_id"], summary["run_id"]);
    assert!(
        std::fs::read_to_string(&out).unwrap() == html,
        "the same page from the saved summary"
    );
    // An earlier run by id; an unknown run is a clear error.
    let older = ctx
        .odsync(
            "2025-12-30",
            &["report", "etr", "--run", first["run_id"].as_str().unwrap()],
        )
        .ok();
    assert!(
        older.stdout.contains(first["run_id"].as_str().unwrap()),
        "{}",
        older.stdout
    );
    let unknown = ctx.odsync("2025-12-30", &["report", "etr", "--run", "nope"]);
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("no saved run summary"), "{}", unknown.stderr);
    // A dry run writes no report.
    let dry = ctx.run_ok("2025-12-31", "etr", &["--dry-run"]);
    assert!(dry.get("report").is_none(), "{dry}");
}

//! What odsync reports about real ODS files is what really changed: statuses as ODS has them,
//! closures that are closures, counts per organisation, shift labels per column and qualifier,
//! a guard that says what it sees, recoding events, dates on the run's clock, role rules for
//! every shipped pipeline, the epraccur columns 22/24/26, and the DSE file profile.
//! Expected values are computed from the fixture files themselves, not written down.

use crate::common::{TestContext, ods_csv, repo_root};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The fields of each line of a quoted, headerless ODS file, by code (a tiny strict reader:
/// fields are wholly quoted, inner quotes doubled).
fn rows(path: &Path) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = Vec::new();
        let mut chars = line.chars().peekable();
        while chars.peek().is_some() {
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            value.push('"');
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
                chars.next(); // the comma
            } else {
                for c in chars.by_ref() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                }
            }
            fields.push(value.trim_end_matches('\r').to_owned());
        }
        fields.resize(27, String::new());
        out.insert(fields[0].clone(), fields);
    }
    out
}

fn with_mapping(ctx: &TestContext) {
    std::fs::copy(
        repo_root().join("pipelines/role_mapping.toml"),
        ctx.path().join("pipelines/role_mapping.toml"),
    )
    .unwrap();
}

fn strings(ctx: &TestContext, sql: &str) -> BTreeSet<String> {
    ctx.cells(sql).into_iter().map(|r| r.join("|")).collect()
}

fn word(letter: &str) -> &'static str {
    match letter {
        "A" | "ACTIVE" => "Active",
        "C" | "INACTIVE" => "Closed",
        "D" | "DORMANT" => "Dormant",
        "P" | "PROPOSED" => "Proposed",
        other => panic!("unexpected status {other}"),
    }
}

#[test]
fn dormant_and_proposed_practices_keep_their_status_and_the_setting_columns_are_diffed() {
    let (old_file, new_file) = (
        ods_csv("epraccur-2015-05-26-odsR-subset-A8-Y00.csv"),
        ods_csv("epraccur-2018-08-31-odsR-subset-A8-Y00.csv"),
    );
    let ctx = TestContext::new();
    with_mapping(&ctx);
    ctx.csv_pipeline("gp", "epraccur", &old_file);
    ctx.run_ok("2015-05-27", "gp", &[]);
    ctx.csv_pipeline("gp", "epraccur", &new_file);
    let run = ctx.run_ok("2018-09-01", "gp", &[]);

    let (old, new) = (rows(&old_file), rows(&new_file));
    let expected = |col: usize, map: &dyn Fn(&str) -> String| -> BTreeSet<String> {
        old.iter()
            .filter_map(|(code, o)| {
                let n = new.get(code)?;
                (o[col] != n[col]).then(|| format!("{code}|{}|{}", map(&o[col]), map(&n[col])))
            })
            .collect()
    };
    let status = expected(12, &|s| word(s).to_owned());
    // The file pair holds practices going dormant, waking up, and dormant ones closing.
    assert!(status.iter().any(|s| s.ends_with("|Active|Dormant")), "{status:?}");
    assert!(status.iter().any(|s| s.ends_with("|Dormant|Active")), "{status:?}");
    assert!(status.iter().any(|s| s.ends_with("|Dormant|Closed")), "{status:?}");
    let found = strings(
        &ctx,
        "SELECT code, old_value, new_value FROM changes_latest WHERE pipeline = 'gp' AND field = 'status_detail'",
    );
    assert_eq!(found, status);
    // A dormant practice that closes: closed, with its true old value.
    let dormant_closed = strings(
        &ctx,
        "SELECT DISTINCT change_kind FROM changes_latest WHERE pipeline = 'gp' AND field = 'status_detail' AND old_value = 'Dormant' AND new_value = 'Closed'",
    );
    assert_eq!(dormant_closed, BTreeSet::from(["closed".to_owned()]));
    let dormant_now: usize = new.values().filter(|r| r[12] == "D").count();
    let stored = ctx.cells("SELECT count(*) FROM latest_organisations WHERE pipeline = 'gp' AND status_detail = 'Dormant' AND status = 'Active'");
    assert_eq!(stored[0][0], dormant_now.to_string());

    // Fields 22, 24 and 26 are kept and diffed; the amended flag is release metadata.
    let setting = expected(25, &|s| s.to_owned());
    let found = strings(
        &ctx,
        "SELECT code, old_value, new_value FROM changes_latest WHERE pipeline = 'gp' AND field = 'prescribing_setting'",
    );
    assert_eq!(found, setting);
    let purchaser = expected(23, &|s| s.to_owned());
    let found = strings(
        &ctx,
        "SELECT code, coalesce(old_value, ''), coalesce(new_value, '') FROM changes_latest WHERE pipeline = 'gp' AND field = 'provider_purchaser'",
    );
    assert_eq!(found, purchaser);
    let amended = strings(
        &ctx,
        "SELECT DISTINCT change_kind FROM changes_latest WHERE pipeline = 'gp' AND field = 'amended_record'",
    );
    assert_eq!(amended, BTreeSet::from(["metadata".to_owned()]));
    assert!(
        run["diff"]["shift"]["field_changes"]
            .get("organisations.amended_record")
            .is_none()
    );
    // Every setting is a role: out-of-hours centres carry RO80, GP practices RO76.
    // (Setting 3 is a walk-in and out-of-hours centre: RO80 and RO87.)
    let ooh = new.values().filter(|r| r[25] == "2" || r[25] == "3").count();
    let roles = ctx.cells("SELECT count(*) FROM latest_roles WHERE pipeline = 'gp' AND role_id = 'RO80'");
    assert_eq!(roles[0][0], ooh.to_string());
}

#[test]
fn a_closure_is_a_closure_and_kinds_count_each_organisation_once() {
    let ctx = TestContext::new();
    with_mapping(&ctx);
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2018-08-31-odsR.csv"));
    ctx.run_ok("2018-09-01", "etr", &[]);
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2021-nhsx.csv"));
    let run = ctx.run_ok("2021-12-01", "etr", &["--accept-shift"]);

    // The six trusts that closed keep their last parent, and the closure is all that is reported
    // about their roles and links.
    let closed = "('RD3', 'RDZ', 'RT3', 'RTV', 'RW6', 'RXH')";
    let lost = ctx.cells(&format!(
        "SELECT code FROM latest_organisations WHERE pipeline = 'etr' AND code IN {closed} AND parent_code IS NULL"
    ));
    assert!(lost.is_empty(), "{lost:?}");
    let to_nothing = ctx.cells(&format!(
        "SELECT code FROM changes_latest WHERE pipeline = 'etr' AND code IN {closed} AND field = 'parent_code' AND new_value IS NULL"
    ));
    assert!(to_nothing.is_empty(), "{to_nothing:?}");
    let child = strings(
        &ctx,
        &format!(
            "SELECT DISTINCT change_kind FROM changes_latest WHERE pipeline = 'etr' AND code IN {closed} AND \"table\" <> 'organisations' AND field IN ('status', 'operational_end')"
        ),
    );
    assert_eq!(child, BTreeSet::from(["closed".to_owned()]));

    // Added organisations: only `added` rows, whatever table.
    let added = strings(
        &ctx,
        "SELECT DISTINCT change_kind FROM changes_latest WHERE pipeline = 'etr' AND code IN ('R0B', 'R0D')",
    );
    assert_eq!(added, BTreeSet::from(["added".to_owned()]));
    // `reparented` counts exactly the organisations whose parent changed.
    let moved =
        ctx.cells("SELECT count(DISTINCT code) FROM changes_latest WHERE pipeline = 'etr' AND field = 'parent_code' AND change_kind NOT IN ('added', 'deleted')");
    assert_eq!(run["diff"]["by_kind"]["reparented"].to_string(), moved[0][0]);
    let stray = ctx.cells(
        "SELECT code FROM changes_latest AS c WHERE pipeline = 'etr' AND change_kind = 'reparented'
         AND code NOT IN (SELECT code FROM changes_latest WHERE pipeline = 'etr' AND field = 'parent_code')",
    );
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn closed_gp_practices_stay_gp_practices_and_a_join_date_edit_is_not_a_reparent() {
    let ctx = TestContext::new();
    with_mapping(&ctx);
    ctx.csv_pipeline("gp", "epraccur", &ods_csv("epraccur-2015-05-26-odsR-subset-A8-Y00.csv"));
    ctx.run_ok("2015-05-27", "gp", &[]);
    ctx.csv_pipeline("gp", "epraccur", &ods_csv("epraccur-2018-08-31-odsR-subset-A8-Y00.csv"));
    ctx.run_ok("2018-09-01", "gp", &[]);
    let new = rows(&ods_csv("epraccur-2018-08-31-odsR-subset-A8-Y00.csv"));
    let closed_practices = new.values().filter(|r| r[12] == "C" && r[25] == "4").count();
    let typed = ctx.cells(
        "SELECT count(*) FROM latest_organisations WHERE pipeline = 'gp' AND status_detail = 'Closed' AND prescribing_setting = '4' AND org_type = 'GP Practice' AND parent_code IS NOT NULL",
    );
    assert_eq!(typed[0][0], closed_practices.to_string());
    let join_only = strings(
        &ctx,
        "SELECT DISTINCT change_kind FROM changes_latest WHERE pipeline = 'gp' AND \"table\" = 'relationships'
         AND field = 'operational_start'
         AND code NOT IN (SELECT code FROM changes_latest WHERE pipeline = 'gp' AND field = 'parent_code')",
    );
    assert!(!join_only.is_empty(), "the pair holds commissioner join-date edits");
    assert!(!join_only.contains("reparented"), "{join_only:?}");
}

#[test]
fn shift_labels_follow_the_column_and_its_qualifier_and_cover_every_table() {
    let ctx = TestContext::new();
    ctx.csv_pipeline("gp", "epraccur", &ods_csv("epraccur-2018-08-31-odsR-subset-A8-Y00.csv"));
    ctx.run_ok("2018-09-01", "gp", &[]);
    ctx.csv_pipeline(
        "gp",
        "epraccur",
        &ods_csv("epraccur-2019-11-19-psychty-subset-A8-Y00.csv"),
    );
    let stopped = ctx.odsync("2019-11-20", &["run", "gp"]);
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("target_code[NATIONAL_GROUPING]"),
        "{}",
        stopped.stderr
    );
    ctx.run_ok("2019-11-20", "gp", &["--accept-shift"]);
    // National grouping (field 3) moves are the shift; commissioner (field 15) moves are not.
    let marks = |suffix: &str| {
        strings(
            &ctx,
            &format!(
                "SELECT DISTINCT publication_shift FROM changes_latest WHERE pipeline = 'gp' AND \"table\" = 'relationships' AND field = 'target_code' AND key LIKE '%:csv:{suffix}'"
            ),
        )
    };
    assert_eq!(marks("3"), BTreeSet::from(["true".to_owned()]));
    assert_eq!(marks("15"), BTreeSet::from(["false".to_owned()]));
    let parents = strings(
        &ctx,
        "SELECT DISTINCT publication_shift FROM changes_latest WHERE pipeline = 'gp' AND field = 'parent_code'",
    );
    assert_eq!(parents, BTreeSet::from(["false".to_owned()]));

    // Trusts re-published by the 2025-12 profile: every row of theirs is marked, not only the
    // organisation rows.
    let ctx = TestContext::new();
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2025-07-folakeobalakun.csv"));
    ctx.run_ok("2025-07-16", "etr", &[]);
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2025-12-jhau.csv"));
    ctx.run_ok("2025-12-30", "etr", &["--accept-shift"]);
    let unmarked = ctx.cells(
        "SELECT count(*) FROM changes_latest WHERE pipeline = 'etr' AND change_kind = 'added' AND NOT publication_shift",
    );
    assert_eq!(unmarked[0][0], "0");
    let child = ctx.cells(
        "SELECT count(*) FROM changes_latest WHERE pipeline = 'etr' AND change_kind = 'added' AND \"table\" IN ('roles', 'relationships')",
    );
    assert_ne!(child[0][0], "0");
}

#[test]
fn the_guard_says_what_moved_and_suggests_accepting_only_a_publication_change() {
    let ctx = TestContext::new();
    let steps = [
        ("etr-2018-08-31-odsR.csv", "2018-09-01"),
        ("etr-2021-nhsx.csv", "2021-12-01"),
        ("etr-2025-07-folakeobalakun.csv", "2025-07-16"),
    ];
    for (file, day) in steps {
        ctx.csv_pipeline("etr", "etr", &ods_csv(file));
        ctx.run_ok(day, "etr", &["--accept-shift"]);
    }
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2025-12-jhau.csv"));
    let stopped = ctx.odsync("2025-12-30", &["run", "etr"]);
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    let said = &stopped.stderr;
    // What the pipeline holds before 2025-12: each file's codes, plus the closed ones that aged
    // out of a later file (kept); a code that vanished while open was deleted.
    let mut held: BTreeMap<String, bool> = BTreeMap::new();
    for (file, day) in steps {
        let day = day.replace('-', "");
        let now: BTreeMap<String, bool> = rows(&ods_csv(file))
            .into_iter()
            .map(|(code, r)| (code, !r[11].is_empty() && r[11] <= day))
            .collect();
        held.retain(|code, closed| *closed && !now.contains_key(code));
        held.extend(now);
    }
    let new = rows(&ods_csv("etr-2025-12-jhau.csv"));
    let appeared: Vec<&Vec<String>> = new.values().filter(|r| !held.contains_key(&r[0])).collect();
    assert!(appeared.iter().all(|r| !r[11].is_empty()));
    assert!(
        said.contains(&format!(
            "{} organisations appeared: {} closed",
            appeared.len(),
            appeared.len()
        )),
        "{said}"
    );
    assert!(said.contains("closed records re-published"), "{said}");
    assert!(said.contains("publication profile changed from `legacy`"), "{said}");
    // Trusts that vanished while still open in an earlier file and now come back closed.
    assert!(said.contains("this pipeline reported deleted before"), "{said}");
    assert!(said.contains("looks like a change of publication"), "{said}");

    // A file cut short is not a publication change: the guard does not suggest accepting it.
    let ctx = TestContext::new();
    let full = std::fs::read_to_string(ods_csv("etr-2025-07-folakeobalakun.csv")).unwrap();
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2025-07-folakeobalakun.csv"));
    ctx.run_ok("2025-07-16", "etr", &[]);
    let cut: String = full.split_inclusive('\n').take(150).collect();
    let cut_path = ctx.path().join("etr-cut.csv");
    std::fs::write(&cut_path, cut).unwrap();
    ctx.csv_pipeline("etr", "etr", &cut_path);
    let stopped = ctx.odsync("2025-07-17", &["run", "etr"]);
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    assert!(
        stopped
            .stderr
            .contains("open (ODS withdrew them, or the source is incomplete)"),
        "{}",
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("does not look like a publication change"),
        "{}",
        stopped.stderr
    );
    assert!(
        !stopped.stderr.contains("looks like a change of publication"),
        "{}",
        stopped.stderr
    );
    // Another file's rows appended (the Welsh LHB sites): many open organisations appear.
    let wales = std::fs::read_to_string(ods_csv("wlhbsite-2025-03-rcpch.csv")).unwrap();
    let mixed_path = ctx.path().join("etr-plus-sites.csv");
    std::fs::write(&mixed_path, format!("{full}{wales}")).unwrap();
    ctx.csv_pipeline("etr", "etr", &mixed_path);
    let stopped = ctx.odsync("2025-07-17", &["run", "etr"]);
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("many open organisations appeared"),
        "{}",
        stopped.stderr
    );
    assert!(
        !stopped.stderr.contains("looks like a change of publication"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn a_recoding_is_one_event_with_its_moves_linked() {
    let ctx = TestContext::new();
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2018-08-31-odsR.csv"));
    ctx.run_ok("2018-09-01", "etr", &[]);
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2021-nhsx.csv"));
    let run = ctx.run_ok("2021-12-01", "etr", &["--accept-shift"]);
    let (old, new) = (
        rows(&ods_csv("etr-2018-08-31-odsR.csv")),
        rows(&ods_csv("etr-2021-nhsx.csv")),
    );
    // Area teams → STPs (field 4, the trusts' parent): moves by (old, new) pair.
    let mut pairs: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (code, o) in &old {
        if let Some(n) = new.get(code)
            && o[3] != n[3]
            && !o[3].is_empty()
            && !n[3].is_empty()
        {
            pairs
                .entry((o[3].clone(), n[3].clone()))
                .or_default()
                .insert(code.clone());
        }
    }
    let expected: BTreeMap<String, usize> = pairs
        .iter()
        .filter(|(_, codes)| codes.len() >= odsync::testkit::RECODING_MIN_ORGS)
        .map(|((o, n), codes)| (format!("{o}>{n}"), codes.len()))
        .collect();
    assert!(!expected.is_empty());
    let listed: BTreeMap<String, usize> = run["diff"]["recodings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["fields"].as_array().unwrap().iter().any(|f| f == "parent_code"))
        .map(|r| {
            (
                r["event"].as_str().unwrap().to_owned(),
                r["organisations"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(listed, expected);
    // Every parent move of a recoded pair names its event, and the view lists it.
    let ((o, n), codes) = pairs.iter().max_by_key(|(_, c)| c.len()).unwrap();
    let linked = strings(
        &ctx,
        &format!(
            "SELECT code FROM changes_latest WHERE pipeline = 'etr' AND field = 'parent_code' AND event = '{o}>{n}'"
        ),
    );
    assert_eq!(&linked, codes);
    let view = ctx.cells(&format!(
        "SELECT organisations FROM recodings WHERE pipeline = 'etr' AND event = '{o}>{n}'"
    ));
    assert_eq!(view, [vec![codes.len().to_string()]]);
}

#[test]
fn dates_are_judged_on_the_run_clock_and_a_trust_that_opens_later_is_not_yet_open() {
    let ctx = TestContext::new();
    // Derived: a real 2025-12 line recoded as K0N6A opening on 2026-06-01 (docs/ods-reference.md 4.2 notes
    // the real K0N6A, open 2026-06-01, in an April 2026 file).
    let text = std::fs::read_to_string(ods_csv("etr-2025-12-jhau.csv")).unwrap();
    let line = text.lines().find(|l| l.contains("\"RWR\"")).unwrap();
    let mut fields: Vec<String> = line.split("\",\"").map(str::to_owned).collect();
    fields[0] = "\"K0N6A".into();
    fields[1] = "DERIVED FUTURE TRUST".into();
    fields[10] = "20260601".into();
    fields[11] = String::new();
    let derived = format!("{text}{}\r\n", fields.join("\",\""));
    let path = ctx.path().join("etr-2026-04-derived.csv");
    std::fs::write(&path, derived).unwrap();
    ctx.csv_pipeline("etr", "etr", &path);
    // April 2026: before the opening, and before the machine's own clock.
    ctx.run_ok("2026-04-15", "etr", &[]);
    let status = ctx.cells("SELECT status_detail FROM latest_organisations WHERE pipeline = 'etr' AND code = 'K0N6A'");
    assert_eq!(status, [vec!["Proposed"]]);
    let future = ctx.cells(
        "SELECT event, CAST(effective_date AS VARCHAR) FROM future_dated WHERE pipeline = 'etr' AND code = 'K0N6A'",
    );
    assert_eq!(future, [vec!["opens", "2026-06-01"]]);
    // July: it has opened.
    let run = ctx.run_ok("2026-07-01", "etr", &[]);
    assert_eq!(run["diff"]["by_kind"]["opened"], 1, "{run}");
    let future = ctx.cells("SELECT count(*) FROM future_dated WHERE pipeline = 'etr' AND code = 'K0N6A'");
    assert_eq!(future, [vec!["0"]]);
}

#[test]
fn the_shipped_mapping_types_every_primary_role_of_the_shipped_csv_pipelines() {
    for (pipeline, fixture) in [
        ("gp_practices", "epraccur-2019-11-19-psychty-subset-A8-Y00.csv"),
        ("gp_practices", "epraccur-2026-02-dse-derived-A8-Y00.csv"),
        ("nhs_trusts_csv", "etr-2025-12-jhau.csv"),
    ] {
        let ctx = TestContext::new();
        with_mapping(&ctx);
        let shipped = std::fs::read_to_string(repo_root().join(format!("pipelines/{pipeline}.toml"))).unwrap();
        let toml: String = shipped
            .lines()
            .map(|l| {
                if l.starts_with("location") {
                    format!("location = \"{}\"", ods_csv(fixture).display())
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        ctx.write_pipeline(pipeline, &toml);
        let run = ctx.run_ok("2026-03-01", pipeline, &[]);
        assert_eq!(run["unmapped_roles"], Value::Array(vec![]), "{pipeline} on {fixture}");
    }
    // Welsh LHB sites (wlhbsite, RO149).
    let ctx = TestContext::new();
    with_mapping(&ctx);
    ctx.csv_pipeline("wlhbsite", "wlhbsite", &ods_csv("wlhbsite-2025-03-rcpch.csv"));
    let run = ctx.run_ok("2025-03-15", "wlhbsite", &[]);
    assert_eq!(run["unmapped_roles"], Value::Array(vec![]));
    let typed =
        ctx.cells("SELECT DISTINCT org_type, health_system FROM latest_organisations WHERE pipeline = 'wlhbsite'");
    assert_eq!(typed, [vec!["Welsh Local Health Board Site", "NHS Wales"]]);
}

#[test]
fn a_dse_file_after_a_legacy_one_is_a_profile_shift_not_organisational_change() {
    let legacy = ods_csv("epraccur-2019-11-19-psychty-subset-A8-Y00.csv");
    let dse = ods_csv("epraccur-2026-02-dse-derived-A8-Y00.csv");
    let ctx = TestContext::new();
    with_mapping(&ctx);
    ctx.csv_pipeline("gp", "epraccur", &legacy);
    ctx.run_ok("2019-11-20", "gp", &[]);
    ctx.csv_pipeline("gp", "epraccur", &dse);
    let stopped = ctx.odsync("2026-02-15", &["run", "gp"]);
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("publication profile changed from `legacy`") && stopped.stderr.contains("to `dse`"),
        "{}",
        stopped.stderr
    );
    let run = ctx.run_ok("2026-02-15", "gp", &["--accept-shift"]);
    let kinds = &run["diff"]["by_kind"];
    assert!(kinds.get("reopened").is_none(), "{kinds}");
    assert!(kinds.get("deleted").is_none(), "{kinds}");
    // Practices closed before April 2017 are not in DSE files: they left the window, kept.
    let (old, new) = (rows(&legacy), rows(&dse));
    let dropped: Vec<&String> = old.keys().filter(|c| !new.contains_key(*c)).collect();
    assert!(!dropped.is_empty());
    assert_eq!(run["records"]["left_window"], dropped.len(), "{run}");
    // Every status word reads as the legacy letter did: INACTIVE closed, DORMANT dormant.
    let expected: BTreeSet<String> = new.values().map(|r| format!("{}|{}", r[0], word(&r[12]))).collect();
    let stored = strings(
        &ctx,
        &format!(
            "SELECT code, status_detail FROM latest_organisations WHERE pipeline = 'gp' AND code IN ({})",
            new.keys().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(",")
        ),
    );
    assert_eq!(stored, expected);
    let inactive_active = ctx.cells(
        "SELECT count(*) FROM latest_organisations WHERE pipeline = 'gp' AND status_detail = 'Closed' AND status <> 'Inactive'",
    );
    assert_eq!(inactive_active, [vec!["0"]]);
    // Field 26 reads as the same setting in both profiles.
    let settings =
        ctx.cells("SELECT count(*) FROM changes_latest WHERE pipeline = 'gp' AND field = 'prescribing_setting'");
    assert_eq!(settings, [vec!["0"]]);
    let manifest = ctx.odsync("2026-02-16", &["snapshots", "show", "gp"]).ok().json();
    assert_eq!(manifest["source"]["parameters"]["profile"], "dse", "{manifest}");
    let moved_addresses = ctx.cells(
        "SELECT DISTINCT publication_shift FROM changes_latest WHERE pipeline = 'gp' AND field IN ('town', 'address_line3')",
    );
    assert_eq!(moved_addresses, [vec!["true"]]);
}

#[test]
fn an_unknown_status_word_is_quarantined_never_read_as_active() {
    let ctx = TestContext::new();
    let text = std::fs::read_to_string(ods_csv("epraccur-2026-02-dse-derived-A8-Y00.csv")).unwrap();
    let changed = text.replacen("\"ACTIVE\"", "\"SUSPENDED\"", 1);
    let path = ctx.path().join("epraccur-unknown-status.csv");
    std::fs::write(&path, &changed).unwrap();
    let code = text.lines().find(|l| l.contains("\"ACTIVE\"")).unwrap()[1..7].to_owned();
    ctx.csv_pipeline("gp", "epraccur", &path);
    let run = ctx.run_ok("2026-02-15", "gp", &[]);
    assert_eq!(run["records"]["quarantined"], 1, "{run}");
    let q = ctx.cells("SELECT code, reason FROM latest_quarantine WHERE pipeline = 'gp'");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0][0], code);
    assert!(q[0][1].contains("field 13") && q[0][1].contains("SUSPENDED"), "{q:?}");
    let present = ctx.cells(&format!(
        "SELECT count(*) FROM latest_organisations WHERE pipeline = 'gp' AND code = '{code}'"
    ));
    assert_eq!(present, [vec!["0"]]);
}

#[test]
fn a_trust_closed_and_recoded_at_once_keeps_its_new_parent_and_its_type() {
    use odsync::testkit::csv_row::{CsvKind, CsvLayout, parse_line};
    // The real RM3 line (closed 2021-09-30), its High Level Health Geography recoded to Z9B2Z.
    let line = "\"RM3\",\"SALFORD ROYAL NHS FOUNDATION TRUST\",\"Y62\",\"Z9B2Z\",\"STOTT LANE\",\"SALFORD\",\"\",\"MANCHESTER\",\"\",\"M6 8HD\",\"19930401\",\"20210930\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"0\",\"\",\"B\",\"\",\"\",\"\"\r\n";
    let layout = CsvLayout::new(CsvKind::Etr, None);
    let today = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let mut rec = parse_line(line.as_bytes(), &layout, today).unwrap();
    assert_eq!(rec.organisation.status.as_deref(), Some("Inactive"));
    odsync::testkit::hierarchy::apply(&mut rec);
    assert_eq!(rec.organisation.parent_code.as_deref(), Some("Z9B2Z"));
    let mapping =
        odsync::testkit::roles::parse(odsync::testkit::BUILTIN_ROLE_MAPPING, Path::new("role_mapping.toml")).unwrap();
    mapping.apply(&mut rec);
    assert_eq!(rec.organisation.org_type.as_deref(), Some("NHS Trust"));
}

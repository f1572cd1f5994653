//! The FHIR source: the published ODS FHIR examples, served by the local test server, map into the
//! canonical model; Bundle `next` paging; 422 narrowing; OperationOutcome errors; and the API key
//! never appears in any output file or log line.

use crate::common::{TestContext, fixtures};
use odsync::server::FaultAction;

const KEY: &str = "test-key-5f3e9c1d-never-print-me";

/// The published examples this state serves carry no OrganizationAffiliation, hence
/// `require_relationships = false`.
fn fhir_pipeline(ctx: &TestContext, page_size: u32) {
    ctx.write_pipeline(
        "fhir_orgs",
        &format!(
            "name = \"fhir_orgs\"\n[source]\ntype = \"fhir\"\nbase_url = \"{}\"\npage_size = {page_size}\n\
             [scope]\nroles = [\"RO197\", \"RO172\", \"RO181\"]\n\
             [http]\nrequests_per_second = 1000.0\nconcurrency = 2\ntimeout_secs = 5\nmax_retries = 2\nbackoff_base_ms = 10\nbackoff_max_ms = 50\n\
             [quality]\nrequire_relationships = false\n",
            ctx.server().fhir_base_url()
        ),
    );
}

fn run(ctx: &TestContext, args: &[&str]) -> crate::common::Output {
    let mut all = vec!["run", "fhir_orgs", "--json"];
    all.extend_from_slice(args);
    ctx.odsync_env(
        "2025-07-10",
        &all,
        &[("ODSYNC_FHIR_API_KEY", KEY), ("ODSYNC_LOG", "debug")],
    )
}

/// `odsync <args>` at `now` with the API key in the environment.
fn with_key(ctx: &TestContext, now: &str, args: &[&str]) -> crate::common::Output {
    ctx.odsync_env(now, args, &[("ODSYNC_FHIR_API_KEY", KEY)])
}

#[test]
fn the_rr8_example_maps_into_the_canonical_model() {
    let payload = std::fs::read(fixtures().join("ods/json/fhir-r4-Organization-RR8-example.json")).unwrap();
    let rec = odsync::testkit::fhir_json::parse_organization(&payload).unwrap();
    let o = &rec.organisation;
    assert_eq!(o.code, "RR8");
    assert_eq!(o.name, "LEEDS TEACHING HOSPITALS NHS TRUST");
    assert_eq!(o.status.as_deref(), Some("Active"));
    assert_eq!(o.record_class.as_deref(), Some("RC1"));
    assert_eq!(o.primary_role.as_deref(), Some("RO197"));
    assert_eq!(o.address_line1.as_deref(), Some("ST. JAMES'S UNIVERSITY HOSPITAL"));
    assert_eq!(o.address_line2.as_deref(), Some("BECKETT STREET"));
    assert_eq!(
        (o.town.as_deref(), o.postcode.as_deref()),
        (Some("LEEDS"), Some("LS9 7TF"))
    );
    assert_eq!(o.uprn.as_deref(), Some("72016246"));
    assert_eq!(o.telephone.as_deref(), Some("0113 243 3144"));
    assert_eq!(o.website.as_deref(), Some("HTTPS://WWW.LEEDSTH.NHS.UK/"));
    assert_eq!(o.last_change_date.map(|d| d.to_string()).as_deref(), Some("2023-11-14"));
    assert!(!o.ref_only);
    assert_eq!(rec.roles.len(), 1);
    let role = &rec.roles[0];
    assert_eq!(role.role_id, "RO197");
    assert_eq!(role.unique_role_id.as_deref(), Some("37525"));
    assert!(role.is_primary);
    assert_eq!(role.legal.start.map(|d| d.to_string()).as_deref(), Some("1998-04-01"));
    assert_eq!(role.status.as_deref(), Some("Active"));
    // FHIR has no organisation-level dates: the primary role's stand in.
    assert_eq!(o.operational.start, role.operational.start);
    // Something that is not an Organization is refused with a reason.
    let err = odsync::testkit::fhir_json::parse_organization(br#"{"resourceType":"Bundle"}"#).unwrap_err();
    assert!(err.contains("resourceType"), "{err}");
}

#[test]
fn a_fhir_run_pages_the_bundle_narrows_on_422_and_never_leaks_the_key() {
    let ctx = TestContext::with_server("demo-2021");
    fhir_pipeline(&ctx, 2);
    // The first page is "too big" once: the source must ask again with half the _count.
    ctx.fault(
        "_count=2",
        1,
        FaultAction::Status {
            status: 422,
            retry_after: None,
            body: Some(r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"too-costly","diagnostics":"Response exceeds APIM size limit"}]}"#.into()),
        },
    );
    let out = run(&ctx, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = out.json();
    assert_eq!(s["records"]["organisations"], 3, "{s}");
    assert_eq!(s["records"]["quarantined"], 0);
    let targets: Vec<String> = ctx
        .server()
        .requests()
        .into_iter()
        .map(|r| r.target)
        .filter(|t| t.starts_with("/fhir/"))
        .collect();
    // First the count the pages must add up to.
    assert!(targets[0].contains("_summary=count"), "{targets:?}");
    let targets = targets[1..].to_vec();
    // 422 on _count=2, then _count=1 pages followed through `next` links (with _offset).
    assert!(targets[0].contains("_count=2"), "{targets:?}");
    assert!(targets[1].contains("_count=1"), "{targets:?}");
    assert!(targets.iter().any(|t| t.contains("_offset=2")), "{targets:?}");
    // Then the relationships of all three in one affiliation search.
    assert!(
        targets[4].starts_with("/fhir/OrganizationAffiliation?primary-organization=AQN%2CC4O9I%2CRR8&"),
        "{targets:?}"
    );
    assert_eq!(targets.len(), 5, "{targets:?}");
    let rows = ctx.cells(
        "SELECT code, name, primary_role, status, record_class FROM latest_organisations WHERE pipeline = 'fhir_orgs' ORDER BY code",
    );
    assert_eq!(
        rows,
        vec![
            vec!["AQN", "PARTNERING HEALTH LIMITED", "RO172", "Active", "RC1"],
            vec!["C4O9I", "WM BROWN (KINGSHURST) LIMITED", "RO181", "Active", "RC1"],
            vec!["RR8", "LEEDS TEACHING HOSPITALS NHS TRUST", "RO197", "Active", "RC1"],
        ]
    );
    let r = ctx.cells(
        "SELECT role_id, unique_role_id, is_primary FROM latest_roles WHERE pipeline = 'fhir_orgs' AND code = 'RR8'",
    );
    assert_eq!(r, vec![vec!["RO197", "37525", "true"]]);

    // An unknown code: asked twice, then the run fails with the OperationOutcome's diagnostics
    // (a record that cannot be fetched is never silently dropped), committing nothing.
    let out = run(&ctx, &["--codes", "ZZZ99"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("ZZZ99") && out.stderr.contains("HAPI-2001"),
        "{}",
        out.stderr
    );
    assert_eq!(ctx.versions("fhir_orgs"), ["version=000001"]);

    // The key: in no file of the warehouse, no output, no log line (debug logging was on).
    let mut leaks = Vec::new();
    let mut stack = vec![ctx.warehouse()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap()
                .windows(KEY.len())
                .any(|w| w == KEY.as_bytes())
            {
                leaks.push(p);
            }
        }
    }
    assert!(leaks.is_empty(), "the API key was written to {leaks:?}");
    for out in [
        run(&ctx, &[]),
        ctx.odsync_env(
            "2025-07-10",
            &["check", "fhir_orgs"],
            &[("ODSYNC_FHIR_API_KEY", KEY), ("ODSYNC_LOG", "trace")],
        ),
    ] {
        assert!(
            !out.stdout.contains(KEY) && !out.stderr.contains(KEY),
            "the key leaked into output"
        );
        assert!(!out.stderr.is_empty() || !out.stdout.is_empty());
    }
}

#[test]
fn a_fhir_run_without_a_key_or_with_a_bad_query_fails_clearly_and_commits_nothing() {
    let ctx = TestContext::with_server("demo-2021");
    fhir_pipeline(&ctx, 2);
    let out = ctx.odsync("2025-07-10", &["run", "fhir_orgs"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("ODSYNC_FHIR_API_KEY"), "{}", out.stderr);
    assert!(ctx.versions("fhir_orgs").is_empty());
    // The server refusing the request: its OperationOutcome text is what the user sees.
    ctx.fault(
        "/fhir/Organization",
        1,
        FaultAction::Status {
            status: 400,
            retry_after: None,
            body: Some(
                std::fs::read_to_string(
                    fixtures().join("ods/json/fhir-r4-Organization-search-4XX-OperationOutcome-example.json"),
                )
                .unwrap(),
            ),
        },
    );
    let out = run(&ctx, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("HAPI-0524: Unknown search parameter"),
        "{}",
        out.stderr
    );
    assert!(ctx.versions("fhir_orgs").is_empty());
}

#[test]
fn the_fdc49_affiliations_map_into_relationships_with_their_dates_and_ids() {
    let sample: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("ods/json/fhir-r4-OrganizationAffiliation-FDC49-bundle-example.json")).unwrap(),
    )
    .unwrap();
    // The source's raw record: the Organization (constructed here: the samples have no FDC49
    // Organization), its affiliations as published, and one included participating organisation.
    let org = serde_json::json!({"resourceType": "Organization", "id": "FDC49", "name": "CONSTRUCTED FOR THE TEST"});
    let qf7 = serde_json::json!({"resourceType": "Organization", "id": "QF7", "name": "CONSTRUCTED ICB", "extension": [
        {"url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-OrganisationRole", "extension": [
            {"url": "roleCode", "valueCodeableConcept": {"coding": [{"code": "RO261"}]}}]}]});
    let mut entry = vec![serde_json::json!({"resource": org})];
    entry.extend(sample["entry"].as_array().unwrap().iter().cloned());
    entry.push(serde_json::json!({"resource": qf7}));
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": entry});
    let rec = odsync::testkit::fhir_json::parse_organization(&serde_json::to_vec(&bundle).unwrap()).unwrap();
    let rels: Vec<String> = rec
        .relationships
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {:?} {} {} {:?}",
                r.unique_rel_id.as_deref().unwrap(),
                r.rel_type,
                r.target_code,
                r.target_primary_role.as_deref(),
                r.status.as_deref().unwrap(),
                r.legal.start.unwrap(),
                r.operational.end.map(|d| d.to_string()),
            )
        })
        .collect();
    assert_eq!(
        rels,
        vec![
            r#"383689 RE5 Q72 None Inactive 2015-05-11 Some("2020-03-31")"#,
            r#"648449 RE5 QWO None Inactive 2020-04-01 Some("2020-09-22")"#,
            r#"716945 RE5 QF7 Some("RO261") Active 2020-09-23 None"#,
        ]
    );
    // An affiliation of another organisation in the Bundle is refused, naming it.
    let mut wrong = bundle.clone();
    wrong["entry"][1]["resource"]["organization"]["identifier"]["value"] = "XYZ".into();
    let err = odsync::testkit::fhir_json::parse_organization(&serde_json::to_vec(&wrong).unwrap()).unwrap_err();
    assert!(err.contains("383689") && err.contains("XYZ"), "{err}");
}

#[test]
fn a_pipeline_moved_from_ord_to_fhir_diffs_cleanly_against_its_ord_snapshot() {
    // One organisation set behind both APIs (the four real ORD records; FHIR serves them in FHIR
    // form, relationships as OrganizationAffiliations).
    let ctx = TestContext::with_server("ord-and-fhir");
    ctx.ord_pipeline("moved", &["RO197", "RO198", "RO98"]);
    let first = ctx.run_ok("2025-07-10", "moved", &[]);
    assert_eq!(first["records"]["organisations"], 4, "{first}");
    let rels = "SELECT code, rel_type, target_code, target_primary_role, status, unique_rel_id, legal_start, operational_start, operational_end \
                FROM latest_relationships WHERE pipeline = 'moved' ORDER BY code, unique_rel_id";
    let ord_rels = ctx.cells(rels);
    assert!(ord_rels.len() >= 8, "{ord_rels:?}");
    let parents = "SELECT code, parent_code, parent_relationship FROM latest_organisations WHERE pipeline = 'moved' ORDER BY code";
    let ord_parents = ctx.cells(parents);

    ctx.write_pipeline(
        "moved",
        &format!(
            "name = \"moved\"\n[source]\ntype = \"fhir\"\nbase_url = \"{}\"\npage_size = 2\n\
             [scope]\nprimary_roles = [\"RO197\", \"RO198\", \"RO98\"]\n\
             [http]\nrequests_per_second = 1000.0\nconcurrency = 2\ntimeout_secs = 5\nmax_retries = 2\nbackoff_base_ms = 10\nbackoff_max_ms = 50\n",
            ctx.server().fhir_base_url()
        ),
    );
    let out = with_key(&ctx, "2025-07-11", &["run", "moved", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = out.json();
    // A new source kind cannot patch the old one's records: the run is a baseline.
    assert_eq!(s["mode"], "baseline", "{s}");
    assert!(s["mode_reason"].as_str().unwrap().contains("from ord to fhir"), "{s}");
    // Organisations, roles and relationships: no change at all. Successors are not compared (FHIR
    // does not supply them) rather than reported as deleted.
    assert_eq!(s["diff"]["changes"], 0, "{s}");
    assert_eq!(
        s["diff"]["not_compared"],
        serde_json::json!(["successors: the fhir source does not supply them"]),
        "{s}"
    );
    assert_eq!(
        ctx.cells("SELECT DISTINCT format FROM latest_raw WHERE pipeline = 'moved'"),
        vec![vec!["fhir_json"]]
    );
    assert_eq!(ctx.cells(rels), ord_rels);
    assert_eq!(ctx.cells(parents), ord_parents);
    // The relationships came over the wire as affiliations, with the targets' primary roles from
    // the `_include`d organisations: RWR → QM7 (an ICB, RO261) by RE5.
    assert!(
        ctx.cells(
            "SELECT 1 FROM latest_organisations WHERE pipeline = 'moved' AND code = 'RWR' AND parent_code = 'QM7'"
        )
        .len()
            == 1
    );
    let targets: Vec<String> = ctx
        .server()
        .requests()
        .into_iter()
        .map(|r| r.target)
        .filter(|t| t.starts_with("/fhir/OrganizationAffiliation"))
        .collect();
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert!(
        targets[0].contains("primary-organization=97T%2CRJY%2CRVVKC%2CRWR"),
        "{targets:?}"
    );
    assert!(
        targets[0].contains("_include=OrganizationAffiliation%3Aparticipating-organization"),
        "{targets:?}"
    );

    // A server that ignores `_include`: the targets are read by `_id`, and nothing changes.
    ctx.server().set_state("ord-and-fhir-no-include").unwrap();
    let out = with_key(&ctx, "2025-07-12", &["run", "moved", "--full", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("did not include"), "{}", out.stderr);
    assert_eq!(ctx.cells(rels), ord_rels);
    let by_id: Vec<String> = ctx
        .server()
        .requests()
        .into_iter()
        .map(|r| r.target)
        .filter(|t| t.starts_with("/fhir/Organization?_id="))
        .collect();
    assert_eq!(by_id.len(), 1, "{by_id:?}");
    assert!(by_id[0].contains("QM7"), "{by_id:?}");
}

#[test]
fn a_fhir_incremental_run_reads_the_deletion_list_into_a_deleted_change_and_a_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures();
    // The trusts of the real etr.csv of 2021 (as ORD records, here through the FHIR API); RR8
    // is then deleted. Enough organisations that one deletion is no publication shift.
    let etr = std::fs::read_to_string(f.join("ods/csv/etr-2021-nhsx.csv")).unwrap();
    assert!(etr.lines().any(|l| l.starts_with("\"RR8\"")));
    let without_rr8: String = etr
        .lines()
        .filter(|l| !l.starts_with("\"RR8\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("etr-without-rr8.csv"), without_rr8).unwrap();
    std::fs::write(
        dir.path().join("notifications.json"),
        r#"{"DeletedOrganisations": [
            {"OrgID": "RR8", "PrimaryRoleId": "RO197", "reason": {"code": 3, "description": "HUMAN ERROR"}, "time": "2025-07-14 00:00:00", "type": {"code": 1, "description": "Machine"}}
        ]}"#,
    )
    .unwrap();
    let roles = f.join("ods/roles-2022.json");
    crate::common::write_state(
        dir.path(),
        "before",
        &format!(
            "served_on = \"2025-07-10\"\ndata_date = \"2021-12-31\"\nfhir_from_ord = true\netr_csv = [\"{}\"]\nroles = \"{}\"\n",
            f.join("ods/csv/etr-2021-nhsx.csv").display(),
            roles.display()
        ),
    );
    crate::common::write_state(
        dir.path(),
        "after",
        &format!(
            "served_on = \"2025-07-16\"\ndata_date = \"2025-07-15\"\nprevious = \"before\"\nfhir_from_ord = true\netr_csv = [\"{}\"]\nroles = \"{}\"\nnotifications = \"{}\"\n",
            dir.path().join("etr-without-rr8.csv").display(),
            roles.display(),
            dir.path().join("notifications.json").display()
        ),
    );
    let ctx = TestContext::with_server_in(dir.path(), "before");
    fhir_pipeline(&ctx, 10);
    let first = run(&ctx, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let before = first.json()["records"]["organisations"].as_u64().unwrap();
    assert!(before > 200, "{before}");
    // A baseline does not ask for deletions: it replaces the whole scope.
    let lists = |ctx: &TestContext| {
        ctx.server()
            .requests()
            .into_iter()
            .filter(|r| r.target.starts_with("/fhir/List/"))
            .count()
    };
    assert_eq!(lists(&ctx), 0);

    ctx.server().set_state("after").unwrap();
    let out = with_key(&ctx, "2025-07-16T02:00:00Z", &["run", "fhir_orgs", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = out.json();
    assert_eq!(s["mode"], "incremental", "{s}");
    // The lastChangeDate search does not list a deleted record; the deletion List does.
    assert_eq!(s["records"]["deleted_by_ods"], 1, "{s}");
    assert_eq!(lists(&ctx), 1);
    let change = ctx.query(
        "SELECT change_kind, new_value FROM changes_latest WHERE pipeline = 'fhir_orgs' AND code = 'RR8' AND \"table\" = 'organisations'",
    );
    assert_eq!(
        change,
        [[
            Some("deleted".into()),
            Some("deleted from ODS: HUMAN ERROR (reason 3)".into())
        ]]
    );
    assert_eq!(
        ctx.cells("SELECT code, reason_code, deleted_at FROM latest_deletions WHERE pipeline = 'fhir_orgs'"),
        vec![vec!["RR8", "3", "2025-07-14T00:00:00+00:00"]]
    );
    assert_eq!(
        ctx.cells("SELECT count(*), count(*) FILTER (WHERE code = 'RR8') FROM latest_organisations WHERE pipeline = 'fhir_orgs'"),
        vec![vec![(before - 1).to_string(), "0".into()]]
    );
    // An API without the list: the run goes on, warns, and the manifest records it.
    ctx.fault(
        "/fhir/List/",
        1,
        FaultAction::Status {
            status: 404,
            retry_after: None,
            body: Some(
                std::fs::read_to_string(
                    fixtures().join("ods/json/fhir-r4-Organization-404-OperationOutcome-example.json"),
                )
                .unwrap(),
            ),
        },
    );
    let out = with_key(&ctx, "2025-07-17T02:00:00Z", &["run", "fhir_orgs", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("no deletion list"), "{}", out.stderr);
}

//! The field-level diff: real ODS files with known changes, and properties on generated tables.

use crate::common::{TestContext, ods_csv};
use arrow::array::{Array, RecordBatch, StringArray};
use odsync::testkit::Tables;
use odsync::testkit::diff_tables;
use odsync::testkit::tables::{self, SNAPSHOT_TABLES};
use odsync::testkit::{OrgRecord, Organisation, Period, SourceKind};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Rows = Vec<Vec<Option<String>>>;

fn set(rows: &Rows, col: usize) -> BTreeSet<String> {
    rows.iter().map(|r| r[col].clone().unwrap()).collect()
}

#[test]
fn the_real_etr_2018_to_2021_diff_finds_exactly_the_known_changes() {
    let ctx = TestContext::new();
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2018-08-31-odsR.csv"));
    ctx.run_ok("2025-07-16", "etr", &[]);
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2021-nhsx.csv"));
    // 2018 → 2021 recoded the geography columns: the shift guard stops the run first.
    let stopped = ctx.odsync("2025-07-17", &["run", "etr"]);
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains(
            "relationships.target_code[HIGH_LEVEL_HEALTH_GEOGRAPHY] changed on 213 of 221 shared organisations"
        ),
        "{}",
        stopped.stderr
    );
    assert!(stopped.stderr.contains("--accept-shift"), "{}", stopped.stderr);
    assert_eq!(ctx.versions("etr"), ["version=000001"]);
    let run = ctx.run_ok("2025-07-17", "etr", &["--accept-shift"]);
    assert_eq!(run["diff"]["from_version"], 1);
    let accepted = run["accepted_shift"].as_array().unwrap();
    assert!(
        accepted
            .iter()
            .any(|r| r.as_str().unwrap().contains("HIGH_LEVEL_HEALTH_GEOGRAPHY")),
        "{accepted:?}"
    );
    let marked = ctx.query(
        "SELECT count(*) FROM changes_latest WHERE pipeline = 'etr' AND publication_shift AND field = 'target_code'",
    );
    assert!(
        marked[0][0].as_deref().unwrap().parse::<u32>().unwrap() >= 213,
        "{marked:?}"
    );
    let renames_marked = ctx.query(
        "SELECT count(*) FROM changes_latest WHERE pipeline = 'etr' AND publication_shift AND change_kind = 'renamed'",
    );
    assert_eq!(
        renames_marked[0][0].as_deref(),
        Some("0"),
        "renames are organisational change, not recoding"
    );
    let recorded = ctx.query("SELECT accepted_shift FROM runs WHERE pipeline = 'etr' AND status = 'succeeded' ORDER BY run_number DESC LIMIT 1");
    assert!(
        recorded[0][0]
            .as_deref()
            .unwrap()
            .contains("HIGH_LEVEL_HEALTH_GEOGRAPHY"),
        "{recorded:?}"
    );
    let manifest = ctx.odsync("2025-07-17", &["snapshots", "show", "etr"]).ok().json();
    assert!(
        manifest["summary"]["accepted_shift"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{manifest}"
    );

    let kind = |k: &str| {
        set(&ctx.query(&format!("SELECT DISTINCT code FROM changes_latest WHERE pipeline = 'etr' AND \"table\" = 'organisations' AND change_kind = '{k}'")), 0)
    };
    assert_eq!(kind("added"), BTreeSet::from(["R0B".to_owned(), "R0D".to_owned()]));
    // Of the 18 codes the 2021 file no longer lists, 13 were open in 2018: deleted. The other
    // five had closed (RGQ, RJF 2018-06-30; RM2, RW3 2017-09-30; RR1 2018-04-01): they aged out
    // of the file's publication window and are kept, closed, as last published.
    let gone: BTreeSet<String> = "R1E R1J RA3 RBA RC1 RDD RE9 RJD RLN RNL RQ6 RQ8 RY1"
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert_eq!(kind("deleted"), gone);
    assert_eq!(run["records"]["left_window"], 5, "{run}");
    assert_eq!(
        run["records"]["left_window_examples"],
        serde_json::json!(["RGQ", "RJF", "RM2", "RR1", "RW3"])
    );
    let kept = ctx.cells(
        "SELECT code, status FROM latest_organisations WHERE pipeline = 'etr' AND code IN ('RGQ', 'RW3') ORDER BY code",
    );
    assert_eq!(kept, [vec!["RGQ", "Inactive"], vec!["RW3", "Inactive"]]);
    let history_kinds = ctx
        .cells("SELECT code, change_kind FROM latest_history WHERE pipeline = 'etr' AND code = 'RGQ' AND is_current");
    assert_eq!(history_kinds, [vec!["RGQ", "added"]], "not a deletion in the history");
    let renames = ctx.query(
        "SELECT code, old_value, new_value FROM changes_latest WHERE pipeline = 'etr' AND \"table\" = 'organisations' AND change_kind = 'renamed' ORDER BY code",
    );
    assert_eq!(renames.len(), 23);
    let rename = |code: &str| renames.iter().find(|r| r[0].as_deref() == Some(code)).unwrap().clone();
    assert_eq!(
        rename("RM3")[1..],
        [
            Some("SALFORD ROYAL NHS FOUNDATION TRUST".into()),
            Some("NORTHERN CARE ALLIANCE NHS FOUNDATION TRUST".into())
        ]
    );
    assert_eq!(
        rename("REM")[1..],
        [
            Some("AINTREE UNIVERSITY HOSPITAL NHS FOUNDATION TRUST".into()),
            Some("LIVERPOOL UNIVERSITY HOSPITALS NHS FOUNDATION TRUST".into())
        ]
    );
    let closed = ctx.query(
        "SELECT code, new_value, CAST(effective_date AS VARCHAR) FROM changes_latest WHERE pipeline = 'etr' AND \"table\" = 'organisations' AND field = 'operational_end' AND old_value IS NULL ORDER BY code",
    );
    assert_eq!(
        set(&closed, 0),
        "RD3 RDZ RT3 RTV RW6 RXH".split(' ').map(str::to_owned).collect()
    );
    let rdz = closed.iter().find(|r| r[0].as_deref() == Some("RDZ")).unwrap();
    assert_eq!(rdz[1..], [Some("2020-09-30".into()), Some("2020-09-30".into())]);

    // The SCD2 history follows the rename, and answers as-of questions.
    let history = ctx
        .odsync("2025-07-17", &["history", "etr", "RM3", "--json"])
        .ok()
        .json();
    let rows = history["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{history}");
    assert_eq!(rows[0][1], "SALFORD ROYAL NHS FOUNDATION TRUST");
    assert_eq!(
        (rows[0][5].as_str(), rows[0][6].as_str()),
        (Some("2025-07-16"), Some("2025-07-17"))
    );
    assert_eq!(rows[1][1], "NORTHERN CARE ALLIANCE NHS FOUNDATION TRUST");
    assert!(rows[1][9].as_str().unwrap().contains("name"), "{}", rows[1][9]);
    let as_of = ctx
        .odsync(
            "2025-07-17",
            &["history", "etr", "RM3", "--as-of", "2025-07-16", "--json"],
        )
        .ok()
        .json();
    assert_eq!(as_of["rows"][0][1], "SALFORD ROYAL NHS FOUNDATION TRUST");
    let gone = ctx
        .odsync(
            "2025-07-17",
            &["history", "etr", "R1E", "--as-of", "2025-07-17", "--json"],
        )
        .ok()
        .json();
    assert_eq!(
        gone["rows"].as_array().unwrap().len(),
        0,
        "a deleted code is not in the as-of view after it left"
    );

    let summary = ctx.odsync("2025-07-17", &["diff", "etr", "--json"]).ok().json();
    assert_eq!(summary["by_kind"]["added"], 2);
    assert_eq!(summary["by_kind"]["deleted"], 13);
    assert_eq!(summary["by_kind"]["renamed"], 23);
}

// ---------- properties ----------

fn org(code: &str, name: &str, status: bool, postcode: Option<&str>, end: Option<u32>) -> OrgRecord {
    OrgRecord {
        organisation: Organisation {
            code: code.to_owned(),
            name: name.to_owned(),
            status: Some(if status { "Active" } else { "Inactive" }.to_owned()),
            postcode: postcode.map(str::to_owned),
            operational: Period {
                start: chrono::NaiveDate::from_ymd_opt(2001, 4, 1),
                end: end.and_then(|d| chrono::NaiveDate::from_ymd_opt(2020, 1, d)),
            },
            ..Organisation::default()
        },
        ..OrgRecord::default()
    }
}

fn write_snapshot(dir: &Path, records: Vec<OrgRecord>) {
    std::fs::create_dir_all(dir).unwrap();
    let built = tables::build(records, vec![], vec![], vec![], vec![]);
    for (name, parts) in &built.batches {
        // A table built from records alone is one batch.
        assert_eq!(parts.len(), 1);
        odsync::testkit::write_parquet(&dir.join(format!("{name}.parquet")), &parts[0], &[]).unwrap();
    }
    assert_eq!(built.batches.len(), SNAPSHOT_TABLES.len());
}

type OrgMap = BTreeMap<String, BTreeMap<String, Option<String>>>;

fn org_map(dir: &Path) -> OrgMap {
    let file = std::fs::File::open(dir.join("organisations.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = OrgMap::new();
    for batch in reader {
        let batch = batch.unwrap();
        let text: Vec<(String, StringArray)> = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| f.name() != "row_hash")
            .map(|(f, c)| {
                let t = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap();
                (
                    f.name().clone(),
                    t.as_any().downcast_ref::<StringArray>().unwrap().clone(),
                )
            })
            .collect();
        for i in 0..batch.num_rows() {
            let code = text[0].1.value(i).to_owned();
            let fields = text[1..]
                .iter()
                .map(|(n, a)| (n.clone(), a.is_valid(i).then(|| a.value(i).to_owned())))
                .collect();
            out.insert(code, fields);
        }
    }
    out
}

fn apply(mut a: OrgMap, changes: &RecordBatch, template: &BTreeMap<String, Option<String>>) -> OrgMap {
    let s = |n: &str| {
        changes
            .column_by_name(n)
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone()
    };
    let (code, table, field, new, kind) = (s("code"), s("table"), s("field"), s("new_value"), s("change_kind"));
    for i in 0..changes.num_rows() {
        if table.value(i) != "organisations" {
            continue;
        }
        let c = code.value(i).to_owned();
        match kind.value(i) {
            "deleted" => {
                a.remove(&c);
            }
            _ => {
                let row = a
                    .entry(c)
                    .or_insert_with(|| template.keys().map(|k| (k.clone(), None)).collect());
                let value = new.is_valid(i).then(|| new.value(i).to_owned());
                row.insert(field.value(i).to_owned(), value);
            }
        }
    }
    a
}

fn arb_orgs() -> impl Strategy<Value = Vec<OrgRecord>> {
    let codes = ["A1", "A2", "B1", "B2", "C1", "C2", "D1", "E1"];
    proptest::collection::btree_map(
        proptest::sample::select(codes.to_vec()),
        (
            proptest::sample::select(vec!["ONE", "TWO", "THREE"]),
            any::<bool>(),
            proptest::option::of(proptest::sample::select(vec!["LS1 4AP", "M13 9WL"])),
            proptest::option::of(1u32..28),
        ),
        0..8,
    )
    .prop_map(|m| m.into_iter().map(|(c, (n, s, p, e))| org(c, n, s, p, e)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn diffing_a_snapshot_with_itself_is_empty(a in arb_orgs()) {
        let dir = tempfile::tempdir().unwrap();
        write_snapshot(&dir.path().join("a"), a.clone());
        write_snapshot(&dir.path().join("b"), a);
        let d = diff_tables(&Tables::Flat(dir.path().join("a")), &Tables::Flat(dir.path().join("b")), 1, 2, chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(), [SourceKind::Ord, SourceKind::Ord]).unwrap();
        prop_assert_eq!(d.changes.num_rows(), 0);
    }

    #[test]
    fn applying_diff_a_b_to_a_gives_b(a in arb_orgs(), b in arb_orgs()) {
        let dir = tempfile::tempdir().unwrap();
        write_snapshot(&dir.path().join("a"), a);
        write_snapshot(&dir.path().join("b"), b);
        let d = diff_tables(&Tables::Flat(dir.path().join("a")), &Tables::Flat(dir.path().join("b")), 1, 2, chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(), [SourceKind::Ord, SourceKind::Ord]).unwrap();
        let (ma, mb) = (org_map(&dir.path().join("a")), org_map(&dir.path().join("b")));
        let template = org_map(&dir.path().join("b")).into_values().next().or_else(|| ma.values().next().cloned()).unwrap_or_default();
        prop_assert_eq!(apply(ma, &d.changes, &template), mb);
    }
}

#[test]
fn the_shift_guard_trips_on_the_2025_profile_change_but_not_on_ordinary_practice_churn() {
    let ctx = TestContext::new();
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2025-07-folakeobalakun.csv"));
    ctx.run_ok("2025-07-16", "etr", &[]);
    ctx.csv_pipeline("etr", "etr", &ods_csv("etr-2025-12-jhau.csv"));
    let stopped = ctx.odsync("2025-12-30", &["run", "etr"]);
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("63 organisations appeared (30.0% of 210)"),
        "{}",
        stopped.stderr
    );
    assert_eq!(ctx.versions("etr"), ["version=000001"]);
    let runs = ctx.odsync("2025-12-30", &["runs", "etr", "--json"]).ok().json();
    assert_eq!(runs[0]["status"], "failed");
    assert!(
        runs[0]["error"].as_str().unwrap().starts_with("shift guard:"),
        "{}",
        runs[0]
    );
    let accepted = ctx.run_ok("2025-12-30", "etr", &["--accept-shift"]);
    assert_eq!(accepted["snapshot_version"], 2);
    let added = ctx.query(
        "SELECT count(DISTINCT code) FROM changes_latest WHERE pipeline = 'etr' AND change_kind = 'added' AND publication_shift",
    );
    assert_eq!(added[0][0].as_deref(), Some("63"));

    // GP practices 2015 → 2018: most rows differ only in the Amended Record Indicator, which is
    // publication metadata kept in the raw table, so nothing trips.
    ctx.csv_pipeline("gp", "epraccur", &ods_csv("epraccur-2015-05-26-odsR-subset-A8-Y00.csv"));
    ctx.run_ok("2025-07-16", "gp", &[]);
    ctx.csv_pipeline("gp", "epraccur", &ods_csv("epraccur-2018-08-31-odsR-subset-A8-Y00.csv"));
    let gp = ctx.run_ok("2025-07-17", "gp", &[]);
    assert_eq!(gp["accepted_shift"].as_array().unwrap().len(), 0);
    assert!(gp["diff"]["changes"].as_u64().unwrap() > 0);
}

#[test]
fn future_dated_openings_and_closures_take_effect_in_as_of_views_only_from_their_date() {
    let ctx = TestContext::new();
    // Two real etr lines with dates ODS announced in advance: G6V2S opens on 2099-04-01, R0A
    // closes on 2099-03-31.
    let file = ctx.path().join("etr-future.csv");
    std::fs::write(
        &file,
        "\"G6V2S\",\"NORTH LONDON NHS FOUNDATION TRUST\",\"Y56\",\"QMJ\",\"4TH FLOOR, EAST WING\",\"ST. PANCRAS HOSPITAL\",\"4 ST. PANCRAS WAY\",\"LONDON\",\"\",\"NW1 0PE\",\"20990401\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"1\",\"\",\"H\",\"\",\"\",\"\"\n\
         \"R0A\",\"MANCHESTER UNIVERSITY NHS FOUNDATION TRUST\",\"Y62\",\"QOP\",\"COBBETT HOUSE\",\"OXFORD ROAD\",\"\",\"MANCHESTER\",\"\",\"M13 9WL\",\"20171001\",\"20990331\",\"\",\"\",\"\",\"\",\"\",\"0300 3309444\",\"\",\"\",\"\",\"1\",\"\",\"B\",\"\",\"\",\"\"\n",
    )
    .unwrap();
    ctx.csv_pipeline("etr", "etr", &file);
    ctx.run_ok("2026-03-10T02:00:00Z", "etr", &[]);
    let as_of = |date: &str| -> Vec<(String, String, String)> {
        let out = ctx
            .odsync("2026-03-10T03:00:00Z", &["history", "etr", "--as-of", date, "--json"])
            .ok()
            .json();
        let cols: Vec<&str> = out["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let at = |name: &str| cols.iter().position(|c| *c == name).unwrap();
        out["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[at("code")].as_str().unwrap().to_owned(),
                    r[at("status")].as_str().unwrap().to_owned(),
                    r[at("status_as_of")].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let row = |c: &str, s: &str, a: &str| (c.to_owned(), s.to_owned(), a.to_owned());
    // Before either date: G6V2S is not there yet, R0A is open.
    assert_eq!(as_of("2099-03-15"), [row("R0A", "Active", "Active")]);
    // From its date R0A is closed (ODS's snapshot still says Active), and G6V2S exists.
    assert_eq!(
        as_of("2099-04-01"),
        [row("G6V2S", "Active", "Active"), row("R0A", "Active", "Inactive")]
    );
    // Both are kept and marked as announced events.
    let marked = ctx.cells(
        "SELECT code, event, CAST(effective_date AS VARCHAR) FROM future_dated WHERE pipeline = 'etr' ORDER BY code",
    );
    assert_eq!(
        marked,
        [
            vec!["G6V2S", "opens", "2099-04-01"],
            vec!["R0A", "closes", "2099-03-31"]
        ]
    );
}

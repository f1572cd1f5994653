//! `odsync run` on the real ODS bulk CSV files: row counts, re-saved variants, zips, bad input.

use crate::common::{TestContext, ods_csv};
use std::io::Write;

const NOW: &str = "2025-07-16T02:00:00Z";

#[test]
fn every_real_file_reads_with_its_row_count() {
    let ctx = TestContext::new();
    let files = [
        ("etr-2018-08-31-odsR.csv", "etr", 234),
        ("etr-2021-nhsx.csv", "etr", 218),
        ("etr-2025-07-folakeobalakun.csv", "etr", 210),
        ("etr-2025-12-jhau.csv", "etr", 273),
        ("epraccur-2015-05-26-odsR-subset-A8-Y00.csv", "epraccur", 1031),
        ("epraccur-2018-08-31-odsR-subset-A8-Y00.csv", "epraccur", 1031),
        ("epraccur-2019-11-19-psychty-subset-A8-Y00.csv", "epraccur", 1031),
        ("wlhbsite-2025-03-rcpch.csv", "wlhbsite", 862),
    ];
    for (i, (file, kind, rows)) in files.iter().enumerate() {
        let name = format!("file{i}");
        ctx.csv_pipeline(&name, kind, &ods_csv(file));
        let s = ctx.run_ok(NOW, &name, &[]);
        assert_eq!(s["records"]["organisations"], *rows, "{file}");
        assert_eq!(s["records"]["quarantined"], 0, "{file}");
        assert_eq!(s["tables"]["raw"], *rows, "{file}");
    }
    // Spot checks on meaning: a closed trust and an epraccur practice with its commissioner.
    let rows = ctx.query(
        "SELECT pipeline, code, status, CAST(operational_end AS VARCHAR) FROM latest_organisations WHERE (pipeline = 'file1' AND code = 'RW6') OR (pipeline = 'file5' AND code = 'A81001') ORDER BY pipeline",
    );
    assert_eq!(
        rows[0][1..],
        [Some("RW6".into()), Some("Inactive".into()), Some("2021-09-30".into())]
    );
    assert_eq!(rows[1][2].as_deref(), Some("Active"));
    let commissioner = ctx.query(
        "SELECT target_code, source_field FROM latest_relationships WHERE pipeline = 'file5' AND code = 'A81001' AND rel_type = 'COMMISSIONER'",
    );
    assert_eq!(commissioner, [[Some("00K".into()), Some("csv:15".into())]]);
    let gp_role = ctx.query("SELECT count(*) FROM latest_roles WHERE pipeline = 'file5' AND role_id = 'RO76'");
    assert_ne!(gp_role[0][0].as_deref(), Some("0"));
}

/// Re-saved copies drop the trailing empty columns (24 fields), quote only fields that need it
/// (as spreadsheet tools do) and use LF.
fn resave_24_columns(text: &str) -> String {
    text.lines()
        .map(|line| {
            let fields: Vec<String> = line.split("\",\"").map(|f| f.trim_matches('"').to_owned()).collect();
            assert_eq!(fields.len(), 27);
            assert!(fields[24..].iter().all(String::is_empty));
            fields[..24]
                .iter()
                .map(|f| if f.contains(',') { format!("\"{f}\"") } else { f.clone() })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn a_24_column_unquoted_resave_gives_the_same_content_as_the_original() {
    let ctx = TestContext::new();
    let original = std::fs::read_to_string(ods_csv("etr-2025-07-folakeobalakun.csv")).unwrap();
    let resaved = ctx.path().join("etr-resaved.csv");
    std::fs::write(&resaved, resave_24_columns(&original)).unwrap();
    ctx.csv_pipeline("original", "etr", &ods_csv("etr-2025-07-folakeobalakun.csv"));
    ctx.csv_pipeline("resaved", "etr", &resaved);
    let a = ctx.run_ok(NOW, "original", &[]);
    let b = ctx.run_ok(NOW, "resaved", &[]);
    assert_eq!(b["records"]["organisations"], 210);
    assert_eq!(b["records"]["quarantined"], 0);
    assert_eq!(a["content_hash"], b["content_hash"], "same organisations, same content");
}

#[test]
fn a_zipped_file_is_read_and_an_html_page_posing_as_a_zip_is_refused() {
    let ctx = TestContext::new();
    let zip_path = ctx.path().join("etr.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    zip.start_file("etr.csv", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(&std::fs::read(ods_csv("etr-2021-nhsx.csv")).unwrap())
        .unwrap();
    zip.start_file("etr.pdf", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"%PDF").unwrap();
    zip.finish().unwrap();
    ctx.csv_pipeline("zipped", "etr", &zip_path);
    assert_eq!(ctx.run_ok(NOW, "zipped", &[])["records"]["organisations"], 218);

    let fake = ctx.path().join("challenge.zip");
    std::fs::write(&fake, "<!DOCTYPE html><html><head><title>Just a moment...</title>").unwrap();
    ctx.csv_pipeline("challenge", "etr", &fake);
    let out = ctx.odsync(NOW, &["run", "challenge"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("is not a zip file") && out.stderr.contains("HTML page"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("challenge.zip"), "{}", out.stderr);
    assert!(ctx.versions("challenge").is_empty());
}

#[test]
fn broken_lines_are_quarantined_with_their_line_number_and_the_rest_is_kept() {
    let ctx = TestContext::new();
    let mut text = std::fs::read_to_string(ods_csv("etr-2021-nhsx.csv")).unwrap();
    text.push_str("\"RZZ\",\"BROKEN\",\"Y56\"\n");
    text.push_str(
        &text
            .lines()
            .next()
            .unwrap()
            .replace("20171001", "2017-10-01")
            .replace("R0A", "RZY"),
    );
    text.push('\n');
    let path = ctx.path().join("etr.csv");
    std::fs::write(&path, text).unwrap();
    ctx.csv_pipeline("broken", "etr", &path);
    let s = ctx.run_ok(NOW, "broken", &[]);
    assert_eq!(s["records"]["organisations"], 218);
    assert_eq!(s["records"]["quarantined"], 2);
    let q = ctx.query("SELECT code, source, reason FROM latest_quarantine WHERE pipeline = 'broken' ORDER BY source");
    assert_eq!(q[0][1].as_deref(), Some("etr.csv:219"));
    assert!(q[0][2].as_deref().unwrap().contains("3 fields"), "{q:?}");
    assert_eq!(q[1][0].as_deref(), Some("RZY"));
    assert!(q[1][2].as_deref().unwrap().contains("field 11"), "{q:?}");
}

#[test]
fn the_gp_practices_pipeline_reports_status_changes_and_commissioner_moves_across_real_epraccur_files() {
    let ctx = TestContext::new();
    let shipped = std::fs::read_to_string(crate::common::repo_root().join("pipelines/gp_practices.toml")).unwrap();
    let mut kinds = Vec::new();
    for (i, file) in [
        "epraccur-2015-05-26-odsR-subset-A8-Y00.csv",
        "epraccur-2018-08-31-odsR-subset-A8-Y00.csv",
        "epraccur-2019-11-19-psychty-subset-A8-Y00.csv",
    ]
    .iter()
    .enumerate()
    {
        let text = shipped.replace(
            "https://files.digital.nhs.uk/assets/ods/current/epraccur.zip",
            &ods_csv(file).display().to_string(),
        );
        ctx.write_pipeline("gp_practices", &text);
        // 2018-08 → 2019-11 recoded National Grouping on two thirds of the practices (new NHS
        // England regions): the shift guard stops it, and accepting it records why.
        let accept: &[&str] = if i == 2 { &["--accept-shift"] } else { &[] };
        let s = ctx.run_ok(&format!("2025-07-1{i}"), "gp_practices", accept);
        if i == 2 {
            let shift = s["accepted_shift"].to_string();
            assert!(
                shift.contains("relationships.target_code[NATIONAL_GROUPING] changed on 682 of 1031"),
                "{shift}"
            );
        }
        assert_eq!(s["records"]["organisations"], 1031, "{file}");
        if i > 0 {
            kinds.push(s["diff"]["by_kind"].clone());
            let moves = ctx.query(
                "SELECT count(*) FROM changes_latest WHERE pipeline = 'gp_practices' AND \"table\" = 'relationships' AND change_kind = 'reparented' AND key LIKE '%:csv:15'",
            );
            let moves: u64 = moves[0][0].as_deref().unwrap().parse().unwrap();
            assert!(moves > 0, "{file}: commissioner moves are reported");
        }
    }
    for k in &kinds {
        assert!(k["closed"].as_u64().unwrap_or(0) > 0, "status changes reported: {k}");
    }
}

/// Every table file of one published version, relative to the pipeline folder, with its bytes.
fn version_files(ctx: &TestContext, pipeline: &str, version: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let root = ctx.warehouse().join(pipeline);
    crate::common::walk(&root)
        .into_iter()
        .filter(|p| {
            p.components()
                .any(|c| c.as_os_str() == format!("version={version}").as_str())
        })
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| {
            (
                p.strip_prefix(&root).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_whole_file_carries_its_unchanged_records_and_builds_what_a_full_rederivation_builds() {
    // The next day's file: lines reordered (every line number moves), three practices renamed,
    // one closed, one gone, one added.
    let day1 = std::fs::read_to_string(ods_csv("epraccur-2018-08-31-odsR-subset-A8-Y00.csv")).unwrap();
    let mut lines: Vec<String> = day1.lines().map(str::to_owned).collect();
    lines.reverse();
    for line in lines.iter_mut().take(3) {
        *line = line.replacen("\",\"", "\",\"RENAMED ", 1);
    }
    let closed = lines.iter().position(|l| l.contains("\",\"A\",\"")).unwrap();
    lines[closed] = lines[closed].replacen("\",\"A\",\"", "\",\"C\",\"", 1);
    let gone = lines.remove(10);
    let added = gone.replacen(&gone[1..7], "A89999", 1);
    lines.push(added);
    let day2 = lines.join("\r\n") + "\r\n";

    let mut runs = Vec::new();
    for full in [false, true] {
        let ctx = TestContext::new();
        let file = ctx.path().join("epraccur.csv");
        ctx.csv_pipeline("gp", "epraccur", &file);
        std::fs::write(&file, &day1).unwrap();
        let first = ctx.run_ok("2025-07-10", "gp", &[]);
        assert_eq!(first["records"]["carried"], 0, "a baseline parses everything");
        std::fs::write(&file, &day2).unwrap();
        let extra: &[&str] = if full { &["--full"] } else { &[] };
        let second = ctx.run_ok("2025-07-11", "gp", extra);
        runs.push((ctx, second));
    }
    let ((carrying, s), (rederiving, f)) = (&runs[0], &runs[1]);
    let organisations = s["records"]["organisations"].as_u64().unwrap();
    // Every practice but the five whose line changed (three renamed, one closed, one added) is
    // carried; the one gone from the file leaves.
    assert_eq!(s["records"]["carried"].as_u64().unwrap(), organisations - 5, "{s}");
    assert_eq!(f["records"]["carried"], 0, "--full derives every record again: {f}");
    assert_eq!(s["content_hash"], f["content_hash"]);
    assert_eq!(s["diff"]["by_kind"], f["diff"]["by_kind"]);
    let (a, b) = (
        version_files(carrying, "gp", "000002"),
        version_files(rederiving, "gp", "000002"),
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a.keys().any(|k| k.starts_with("raw/")) && a.keys().any(|k| k.starts_with("trusts/")));
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs between carrying and --full");
    }
}

#[test]
fn a_file_whose_status_comes_from_dates_is_parsed_again_on_another_day() {
    // etr has no status column: today decides whether a close date has passed, so a record
    // carried from yesterday could be stale. The same day, an unchanged line is carried.
    let ctx = TestContext::new();
    ctx.csv_pipeline("trusts", "etr", &ods_csv("etr-2025-12-jhau.csv"));
    ctx.run_ok("2025-12-10T08:00:00Z", "trusts", &[]);
    let same_day = ctx.run_ok("2025-12-10T20:00:00Z", "trusts", &[]);
    assert!(same_day["records"]["carried"].as_u64().unwrap() > 0, "{same_day}");
    let next_day = ctx.run_ok("2025-12-11T08:00:00Z", "trusts", &[]);
    assert_eq!(next_day["records"]["carried"], 0, "{next_day}");
}

//! The TRUD XML source: the real `<Organisation>` excerpts and the real XML header
//! (tests/fixtures/ods), releases written from server states (`serve --write-trud`), and whole
//! runs of the real binary.

use crate::common::{TestContext, fixtures, leftovers};
use odsync::testkit::{OrgRecord, ord_json, ord_xml};
use std::path::{Path, PathBuf};

fn xml_sample(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("ods/xml").join(name)).unwrap()
}

fn parse_sample(name: &str) -> OrgRecord {
    ord_xml::parse_organisation(&xml_sample(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn d(s: &str) -> Option<chrono::NaiveDate> {
    Some(s.parse().unwrap())
}

/// A release file in the real layout: the real header (placeholders filled), then `elements`.
fn release_xml(kind: &str, date: &str, record_count: usize, elements: &[String]) -> String {
    let header = std::fs::read_to_string(
        fixtures().join("ods/codesystems/ord-codesystems-2019-Darnster-HeaderCodeSystems.xml.txt"),
    )
    .unwrap()
    .replace("$Records", &record_count.to_string())
    .replace("$DateTime", &format!("{date}T00:00:00"))
    .replace("$Date", date)
    .replace("value=\"APISync\"", &format!("value=\"{kind}\""));
    format!(
        "{}\n  <Organisations>\n{}\n  </Organisations>\n</HSCOrgRefData:OrgRefData>\n",
        header.trim_end(),
        elements.join("\n")
    )
}

fn write_release(dir: &Path, kind: &str, elements: &[String]) -> PathBuf {
    let path = dir.join(format!("HSCOrgRefData_{kind}_20250710.xml"));
    std::fs::write(&path, release_xml(kind, "2025-07-10", elements.len(), elements)).unwrap();
    path
}

/// A small complete record (or a `refOnly` stub) for the resolution rules.
fn element(code: &str, name: &str, op_start: &str, role: &str, stub: bool) -> String {
    format!(
        "<Organisation orgRecordClass=\"RC1\"{}>\n<Name>{name}</Name>\n<Date><Type value=\"Operational\"/><Start value=\"{op_start}\"/></Date>\n<OrgId root=\"2.16.840.1.113883.2.1.3.2.4.18.48\" assigningAuthorityName=\"HSCIC\" extension=\"{code}\"/>\n<Status value=\"Active\"/>\n<Roles><Role id=\"{role}\" uniqueRoleId=\"1\" primaryRole=\"true\"><Status value=\"Active\"/></Role></Roles>\n</Organisation>",
        if stub { " refOnly=\"true\"" } else { "" }
    )
}

fn trud_pipeline(ctx: &TestContext, name: &str, location: &Path, extra: &str) {
    ctx.write_pipeline(
        name,
        &format!(
            "name = \"{name}\"\n[source]\ntype = \"trud_xml\"\nlocation = \"{}\"\n{extra}",
            location.display()
        ),
    );
}

#[test]
fn every_element_of_the_real_excerpts_maps_to_the_model() {
    let gp = parse_sample("rcl-test_parse_etree_simple-C84714001.xml");
    let o = &gp.organisation;
    assert_eq!(
        (
            o.code.as_str(),
            o.name.as_str(),
            o.record_class.as_deref(),
            o.status.as_deref()
        ),
        ("C84714001", "GHATTAORA AS", Some("RC2"), Some("Active"))
    );
    assert_eq!(
        (o.operational.start, o.operational.end, o.legal.start),
        (d("2004-04-01"), None, None)
    );
    assert_eq!(o.last_change_date, d("2015-04-15"));
    assert_eq!(o.address_line1.as_deref(), Some("SUNRISE MEDICAL PRACTICE"));
    assert_eq!(o.address_line2.as_deref(), Some("STUDENT CENTRE, NOTTINGHAM TRENT UN"));
    assert_eq!(o.address_line3.as_deref(), Some("CLIFTON CAMPUS, CLIFTON LANE"));
    assert_eq!(
        (
            o.town.as_deref(),
            o.county.as_deref(),
            o.postcode.as_deref(),
            o.country.as_deref()
        ),
        (
            Some("NOTTINGHAM"),
            Some("NOTTINGHAMSHIRE"),
            Some("NG11 8NS"),
            Some("ENGLAND")
        )
    );
    assert_eq!(
        (o.telephone.as_deref(), o.website.as_deref(), o.uprn.as_deref()),
        (Some("01158483100"), None, None)
    );
    assert_eq!(o.primary_role.as_deref(), Some("RO96"));
    assert!(!o.ref_only);
    let role = &gp.roles[0];
    assert_eq!(
        (
            role.role_id.as_str(),
            role.unique_role_id.as_deref(),
            role.is_primary,
            role.status.as_deref()
        ),
        ("RO96", Some("1177"), true, Some("Active"))
    );
    assert_eq!(role.operational.start, d("2004-04-01"));
    let rel = &gp.relationships[0];
    assert_eq!(
        (
            rel.rel_type.as_str(),
            rel.target_code.as_str(),
            rel.target_primary_role.as_deref()
        ),
        ("RE6", "C84714", Some("RO177"))
    );
    assert_eq!(
        (rel.unique_rel_id.as_deref(), rel.status.as_deref()),
        (Some("18082"), Some("Active"))
    );
    assert_eq!(rel.operational.start, d("2004-04-01"));

    // Successions: type from the viewpoint of this record, target and its role, legal date.
    let ygm = parse_sample("rcl-test_parse_successors-YGM10.xml");
    assert_eq!(ygm.organisation.status.as_deref(), Some("Inactive"));
    assert_eq!(ygm.organisation.operational.end, d("2015-06-30"));
    assert_eq!(ygm.roles[0].operational.end, d("2015-07-01"));
    let succ: Vec<_> = ygm
        .successors
        .iter()
        .map(|s| {
            (
                s.kind.as_str(),
                s.target_code.as_str(),
                s.target_primary_role.as_deref(),
                s.legal_start,
                s.unique_succ_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        succ,
        [
            ("Successor", "YGM41", Some("RO92"), d("2015-06-30"), Some("37311")),
            ("Predecessor", "8GW80", Some("RO157"), d("2012-02-01"), Some("36030")),
        ]
    );
    // The nested Target/OrgId is never taken for the organisation's own code.
    assert_eq!(ygm.organisation.code, "YGM10");

    // Dates by type: Legal and Operational periods of one record apart.
    let flowers = parse_sample("rcl-test_parse_with_legal_dates-5N424.xml");
    let o = &flowers.organisation;
    assert_eq!((o.legal.start, o.legal.end), (d("1980-01-01"), d("2013-03-31")));
    assert_eq!((o.operational.start, o.operational.end), (d("2012-04-02"), None));

    // Several dated relationships of one type, active and inactive; a non-primary role.
    let j = parse_sample("rcl-test_has_role_at-J82028.xml");
    assert_eq!(j.organisation.primary_role.as_deref(), Some("RO177"));
    assert_eq!(j.roles.len(), 2);
    assert!(!j.roles[1].is_primary);
    let rels: Vec<_> = j
        .relationships
        .iter()
        .map(|r| {
            (
                r.target_code.as_str(),
                r.operational.start,
                r.operational.end,
                r.status.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        rels,
        [
            ("5FE", d("2001-04-01"), d("2013-03-31"), Some("Inactive")),
            ("4RK71", d("1999-04-01"), d("2001-03-31"), Some("Inactive")),
            ("10R", d("2013-04-01"), None, Some("Active")),
        ]
    );
}

#[test]
fn prefixes_entities_uprn_web_contacts_and_the_long_element_names_are_read() {
    let xml = br#"<ns:Organisation xmlns:ns="http://refdata.hscic.gov.uk/org/v2-0-0" orgRecordClass="RC1" refOnly="true">
  <ns:Name>BARTS &amp; THE LONDON &#8211; TRUST</ns:Name>
  <ns:OrgId extension="R1H"/>
  <ns:GeoLoc><ns:Location><ns:PostCode>E1 1BB</ns:PostCode><ns:UPRN>6072435</ns:UPRN></ns:Location></ns:GeoLoc>
  <ns:Contacts><ns:Contact type="http" value="https://example.nhs.uk/?a=1&amp;b=2"/><ns:Contact type="tel" value="020"/></ns:Contacts>
  <ns:Relationships><ns:Relationship id="RE5" uniqueRelId="9"><ns:Target><ns:OrgId extension="Q36"/></ns:Target></ns:Relationship></ns:Relationships>
  <ns:Successors><ns:Successor><ns:Type>Successor</ns:Type><ns:Target><ns:OrgId extension="R1HX"/></ns:Target></ns:Successor></ns:Successors>
</ns:Organisation>"#;
    let rec = ord_xml::parse_organisation(xml).unwrap();
    let o = &rec.organisation;
    assert_eq!(o.name, "BARTS & THE LONDON – TRUST");
    assert!(o.ref_only);
    assert_eq!(o.uprn.as_deref(), Some("6072435"));
    assert_eq!(o.website.as_deref(), Some("https://example.nhs.uk/?a=1&b=2"));
    assert_eq!(o.telephone.as_deref(), Some("020"));
    assert_eq!(rec.relationships[0].target_code, "Q36");
    assert_eq!(rec.successors[0].target_code, "R1HX");
    assert_eq!(rec.successors[0].unique_succ_id, None);

    // Meaning is strict, as for JSON: the field is named.
    let bad = String::from_utf8(xml_sample("rcl-test_parse_with_legal_dates-5N424.xml"))
        .unwrap()
        .replace("2012-04-02", "02/04/2012");
    let err = ord_xml::parse_organisation(bad.as_bytes()).unwrap_err();
    assert!(err.contains("Organisation.Date[1].Start"), "{err}");
    let err = ord_xml::parse_organisation(b"<Organisation><Name>X</Name></Organisation>").unwrap_err();
    assert!(err.contains("OrgId.extension"), "{err}");
    let err = ord_xml::parse_organisation(b"<Organisation><Name>X</Nme></Organisation>").unwrap_err();
    assert!(err.contains("malformed XML"), "{err}");
}

#[test]
fn the_xml_and_the_json_of_one_real_record_parse_to_the_same_model() {
    for name in [
        "ord-organisation-RWR-2020-04-06.json",
        "ord-organisation-RVVKC-2021-07-21.json",
        "ord-organisation-RJY-2020-03-19-refOnly.json",
        "ord-organisation-97T-2020-04-01.json",
    ] {
        let body = std::fs::read(fixtures().join("ods/json").join(name)).unwrap();
        let from_json = ord_json::parse_organisation(&body).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let xml = odsync::server::trud::organisation_xml(&doc);
        let from_xml = ord_xml::parse_organisation(xml.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}\n{xml}"));
        assert_eq!(from_xml, from_json, "{name}");
        assert!(
            !from_json.relationships.is_empty() || from_json.organisation.ref_only,
            "{name}"
        );
    }
}

#[test]
fn full_and_archive_files_resolve_stubs_and_duplicates_deterministically_and_report_them() {
    let ctx = TestContext::new();
    let dir = ctx.path().join("release");
    std::fs::create_dir_all(&dir).unwrap();
    write_release(
        &dir,
        "Full",
        &[
            element("AAA", "STUB IN FULL", "2001-01-01", "RO197", true),
            element("BBB", "B FROM FULL", "2010-01-01", "RO197", false),
            element("EEE", "E EARLIER", "2001-01-01", "RO197", false),
            element("EEE", "E LATER", "2005-01-01", "RO197", false),
            element("CCC", "C ONLY", "2003-01-01", "RO197", false),
        ],
    );
    write_release(
        &dir,
        "Archive",
        &[
            element("AAA", "A COMPLETE IN ARCHIVE", "2001-01-01", "RO197", false),
            element("BBB", "B FROM ARCHIVE", "2015-01-01", "RO197", false),
            element("DDD", "D STUB ONLY", "2002-01-01", "RO197", true),
        ],
    );
    trud_pipeline(&ctx, "t", &dir, "");
    let s = ctx.run_ok("2025-07-11", "t", &[]);
    assert_eq!(s["records"]["organisations"], 5, "{s}");
    let rows = ctx.cells("SELECT code, name, ref_only FROM latest_organisations WHERE pipeline = 't' ORDER BY code");
    assert_eq!(
        rows,
        [
            ["AAA", "A COMPLETE IN ARCHIVE", "false"],
            ["BBB", "B FROM FULL", "false"],
            ["CCC", "C ONLY", "false"],
            ["DDD", "D STUB ONLY", "true"],
            ["EEE", "E LATER", "false"],
        ]
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ctx.warehouse().join("t/_meta/ods/version=000001/manifest.json")).unwrap(),
    )
    .unwrap();
    let params = &manifest["source"]["parameters"];
    let dups: Vec<&str> = params["duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(dups.len(), 2, "{dups:?}");
    assert!(
        dups.iter()
            .any(|d| d.starts_with("BBB:") && d.contains("full file wins")),
        "{dups:?}"
    );
    assert!(
        dups.iter()
            .any(|d| d.starts_with("EEE:") && d.contains("later operational start")),
        "{dups:?}"
    );
    assert_eq!(params["files"].as_array().unwrap().len(), 2);
    assert_eq!(params["files"][0]["record_count"], 5);
    assert_eq!(manifest["source"]["kind"], "trud_xml");
    // The code system of the header is the snapshot's, with primary roles from PrimaryRoleScope.
    let cs = ctx.cells(
        "SELECT role_id, display_name, primary_role FROM latest_code_system_roles WHERE pipeline = 't' AND role_id IN ('RO198', 'RO76', 'RE6') ORDER BY role_id",
    );
    assert_eq!(
        cs,
        [["RO198", "NHS TRUST SITE", "true"], ["RO76", "GP PRACTICE", "false"]]
    );
    let raw = ctx.cells("SELECT count(*) FROM latest_organisations WHERE pipeline = 't' AND record_class = 'RC1'");
    assert_eq!(raw, [["5"]]);

    // Every record here repeats uniqueRoleId 1: the role keys are made unique per organisation
    // (`1@AAA`, …), so the next release diffs cleanly instead of pairing rows twice.
    let keys = ctx.cells("SELECT row_key FROM latest_roles WHERE pipeline = 't' ORDER BY row_key");
    assert_eq!(keys, [["1@AAA"], ["1@BBB"], ["1@CCC"], ["1@DDD"], ["1@EEE"]]);
    write_release(
        &dir,
        "Full",
        &[
            element("AAA", "STUB IN FULL", "2001-01-01", "RO197", true),
            element("BBB", "B RENAMED", "2010-01-01", "RO198", false),
            element("EEE", "E EARLIER", "2001-01-01", "RO197", false),
            element("EEE", "E LATER", "2005-01-01", "RO197", false),
            element("CCC", "C ONLY", "2003-01-01", "RO197", false),
        ],
    );
    let next = ctx.run_ok("2025-07-12", "t", &["--accept-shift"]);
    let changed = ctx.cells(
        "SELECT code, \"table\", field, old_value, new_value FROM changes_latest WHERE pipeline = 't' AND field IN ('name', 'role_id') ORDER BY 1, 2",
    );
    assert_eq!(
        changed,
        [
            ["BBB", "organisations", "name", "B FROM FULL", "B RENAMED"],
            ["BBB", "roles", "role_id", "RO197", "RO198"],
        ],
        "{next}"
    );

    // `archive = false`: the archive is not read, so its complete records are not there.
    trud_pipeline(&ctx, "t2", &dir, "archive = false\n");
    let s = ctx.run_ok("2025-07-11", "t2", &[]);
    assert_eq!(s["records"]["organisations"], 4, "{s}");
}

fn real_elements() -> Vec<String> {
    [
        "rcl-test_parse_etree_simple-C84714001.xml",
        "rcl-test_parse_successors-YGM10.xml",
        "rcl-test_parse_with_legal_dates-5N424.xml",
        "rcl-test_has_role_at-J82028.xml",
    ]
    .iter()
    .map(|n| String::from_utf8(xml_sample(n)).unwrap())
    .collect()
}

#[track_caller]
fn assert_failed_cleanly(ctx: &TestContext, pipeline: &str, out: &crate::common::Output, needle: &str) {
    assert_eq!(out.code, 1, "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(needle), "expected `{needle}` in:\n{}", out.stderr);
    assert!(out.stderr.contains("nothing was committed"), "{}", out.stderr);
    assert!(ctx.versions(pipeline).is_empty(), "{:?}", ctx.versions(pipeline));
    assert!(
        leftovers(&ctx.warehouse()).is_empty(),
        "{:?}",
        leftovers(&ctx.warehouse())
    );
}

#[test]
fn a_record_count_that_disagrees_or_a_cut_off_file_fails_the_run_with_nothing_committed() {
    let ctx = TestContext::new();
    let elements = real_elements();
    let path = ctx.path().join("HSCOrgRefData_Full_20250710.xml");
    std::fs::write(&path, release_xml("Full", "2025-07-10", 5, &elements)).unwrap();
    trud_pipeline(&ctx, "t", &path, "");
    let out = ctx.odsync("2025-07-11", &["run", "t"]);
    assert_failed_cleanly(
        &ctx,
        "t",
        &out,
        "Manifest/RecordCount says 5 records but the file holds 4",
    );
    let runs = ctx.odsync("2025-07-11", &["runs", "t", "--json"]).ok().json();
    assert_eq!(runs[0]["status"], "failed");
    assert!(runs[0]["error"].as_str().unwrap().starts_with("fetch:"), "{}", runs[0]);

    // Cut off inside an element, and cut off between elements (a partial extraction).
    let whole = release_xml("Full", "2025-07-10", 4, &elements);
    let inside = whole.find("<Name>TRAFALGAR").unwrap();
    std::fs::write(&path, &whole[..inside]).unwrap();
    let out = ctx.odsync("2025-07-11", &["run", "t"]);
    assert_failed_cleanly(&ctx, "t", &out, "ends inside an <Organisation> element");
    let between = whole.rfind("</Organisation>").unwrap() + "</Organisation>".len();
    std::fs::write(&path, &whole[..between]).unwrap();
    let out = ctx.odsync("2025-07-11", &["run", "t"]);
    assert_failed_cleanly(&ctx, "t", &out, "without </Organisations>");

    // The whole file then commits.
    std::fs::write(&path, whole).unwrap();
    let s = ctx.run_ok("2025-07-11", "t", &[]);
    assert_eq!(s["records"]["organisations"], 4);
}

#[test]
fn files_that_are_not_a_release_get_a_clear_error() {
    let ctx = TestContext::new();
    // A zip of something else (an ODS CSV zip).
    let zip_path = ctx.path().join("etr.zip");
    {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        zip.start_file("etr.csv", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"\"RAX\",\"KINGSTON\"\n").unwrap();
        zip.finish().unwrap();
    }
    trud_pipeline(&ctx, "t", &zip_path, "");
    let out = ctx.odsync("2025-07-11", &["run", "t"]);
    assert_failed_cleanly(&ctx, "t", &out, "is not a TRUD HSCOrgRefData release");
    assert!(
        out.stderr.contains("etr.csv"),
        "the error lists what the zip holds: {}",
        out.stderr
    );
    // An HTML page saved under the release's name.
    let html = ctx.path().join("HSCOrgRefData_Full_20250710.xml");
    std::fs::write(&html, "<!DOCTYPE html><html><body>Sign in to TRUD</body></html>").unwrap();
    trud_pipeline(&ctx, "t", &html, "");
    let out = ctx.odsync("2025-07-11", &["run", "t"]);
    assert_failed_cleanly(&ctx, "t", &out, "not an HSCOrgRefData (TRUD ODS XML) file");
    // Another XML document.
    std::fs::write(&html, "<?xml version=\"1.0\"?><feed><entry/></feed>").unwrap();
    let out = ctx.odsync("2025-07-11", &["run", "t"]);
    assert_failed_cleanly(&ctx, "t", &out, "not an HSCOrgRefData");
    // A pipeline giving a sha256 for a location that is not a zip is told so.
    std::fs::write(&html, release_xml("Full", "2025-07-10", 4, &real_elements())).unwrap();
    trud_pipeline(&ctx, "t", &html, &format!("sha256 = \"{}\"\n", "0".repeat(64)));
    let out = ctx.odsync("2025-07-11", &["run", "t"]);
    assert_failed_cleanly(&ctx, "t", &out, "the location is not a zip");
}

#[test]
fn a_malformed_element_is_quarantined_with_its_line_and_byte_and_the_others_commit() {
    let ctx = TestContext::new();
    let mut elements = real_elements();
    elements[1] = elements[1].replace("<Name>INDIGO 4</Name>", "<Name>INDIGO 4</Nmae>");
    let path = write_release(ctx.path(), "Full", &elements);
    trud_pipeline(&ctx, "t", &path, "");
    let s = ctx.run_ok("2025-07-11", "t", &[]);
    assert_eq!(s["records"]["organisations"], 3, "{s}");
    assert_eq!(s["records"]["quarantined"], 1, "{s}");
    let q = ctx.cells("SELECT code, source, reason FROM latest_quarantine WHERE pipeline = 't'");
    assert_eq!(q[0][0], "YGM10", "{q:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text[..text.find("INDIGO 4").unwrap()].lines().count(); // the <Name> line; the element starts 1 line above
    assert!(
        q[0][1].starts_with(&format!("HSCOrgRefData_Full_20250710.xml:{} (byte ", line - 1)),
        "{q:?}"
    );
    assert!(q[0][2].contains("malformed XML"), "{q:?}");

    // More broken elements than `[quality]` allows fail the run (a damaged file, not a record).
    let broken: Vec<String> = elements.iter().map(|e| e.replace("</Name>", "</Nmae>")).collect();
    let path = write_release(ctx.path(), "Full", &broken);
    trud_pipeline(
        &ctx,
        "u",
        &path,
        "[quality]\nmax_bad_lines = 1\nmax_bad_lines_share = 0.0\n",
    );
    let out = ctx.odsync("2025-07-11", &["run", "u"]);
    assert_failed_cleanly(&ctx, "u", &out, "are not usable rows");
}

#[test]
fn the_scope_roles_status_and_record_class_apply_while_reading() {
    let ctx = TestContext::new();
    let path = write_release(ctx.path(), "Full", &real_elements());
    trud_pipeline(
        &ctx,
        "t",
        &path,
        "[scope]\nprimary_roles = [\"RO177\", \"RO180\"]\nrecord_classes = [\"RC1\"]\n",
    );
    let s = ctx.run_ok("2025-07-11", "t", &[]);
    // RO177 J82028 is RC1; RO180 5N424 is RC2 (a site), RO96 and RO92 are other roles.
    assert_eq!(s["records"]["organisations"], 1, "{s}");
    assert_eq!(s["records"]["out_of_scope"], 3, "{s}");
    let rows = ctx.cells("SELECT code FROM latest_organisations WHERE pipeline = 't'");
    assert_eq!(rows, [["J82028"]]);
    trud_pipeline(&ctx, "v", &path, "[scope]\nstatus = \"Inactive\"\n");
    let s = ctx.run_ok("2025-07-11", "v", &[]);
    assert_eq!(s["records"]["organisations"], 1, "{s}"); // YGM10
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn write_trud_from_state(ctx: &TestContext, state: &str, published: &str) -> PathBuf {
    let path = ctx.path().join(format!("hscorgrefdataxml_data_{state}.zip"));
    let states = crate::common::states();
    ctx.odsync(
        "2025-07-10",
        &[
            "serve",
            "--states",
            states.to_str().unwrap(),
            "--state",
            state,
            "--write-trud",
            path.to_str().unwrap(),
            "--published",
            published,
        ],
    )
    .ok();
    path
}

#[test]
fn a_pipeline_switched_between_ord_and_trud_xml_finds_nothing_changed() {
    let ctx = TestContext::with_server("demo-2021");
    let release = write_trud_from_state(&ctx, "demo-2021", "2025-07-10");
    ctx.ord_pipeline("p", &["RO197", "RO198"]);
    let ord = ctx.run_ok("2025-07-10", "p", &[]);
    assert!(ord["records"]["organisations"].as_u64().unwrap() > 200, "{ord}");

    let sha = sha256_of(&release);
    trud_pipeline(
        &ctx,
        "p",
        &release,
        &format!("sha256 = \"{sha}\"\n[scope]\nprimary_roles = [\"RO197\", \"RO198\"]\n"),
    );
    let trud = ctx.run_ok("2025-07-11", "p", &[]);
    assert_eq!(
        trud["records"]["organisations"], ord["records"]["organisations"],
        "{trud}"
    );
    // Same tables from the other spelling: the same content, so no new version at all.
    assert_eq!(trud["content_hash"], ord["content_hash"], "{trud}");
    assert_eq!(trud["status"], "unchanged", "{trud}");
    assert!(trud["mode_reason"].as_str().unwrap().contains("whole file"), "{trud}");

    // Back to ORD after a different state, then the release again: returning to the release
    // returns to exactly the first content.
    ctx.server().set_state("demo-2025-07").unwrap();
    ctx.ord_pipeline("p", &["RO197", "RO198"]);
    let moved = ctx.run_ok("2025-07-16", "p", &["--full"]);
    assert!(moved["diff"]["changes"].as_u64().unwrap() > 0, "{moved}");
    trud_pipeline(&ctx, "p", &release, "[scope]\nprimary_roles = [\"RO197\", \"RO198\"]\n");
    let back = ctx.run_ok("2025-07-17", "p", &["--accept-shift"]);
    assert!(back["diff"]["changes"].as_u64().unwrap() > 0, "{back}");
    assert_eq!(back["content_hash"], ord["content_hash"], "{back}");

    // A wrong sha256 refuses the release.
    trud_pipeline(&ctx, "p", &release, &format!("sha256 = \"{}\"\n", "ab".repeat(32)));
    let out = ctx.odsync("2025-07-18", &["run", "p"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("the release zip's sha256 is {sha}")),
        "{}",
        out.stderr
    );
    // The manifest records the zip's sha256.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ctx.warehouse().join("p/_meta/ods/version=000001/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["source"]["kind"], "ord");
    let runs = ctx.cells("SELECT source FROM runs WHERE pipeline = 'p' ORDER BY run_number");
    assert_eq!(runs[1], ["trud_xml"]);
}

#[test]
fn a_trud_baseline_then_ord_deltas_from_its_publication_date() {
    let ctx = TestContext::with_server("demo-2021");
    let release = write_trud_from_state(&ctx, "demo-2021", "2025-07-10");
    let base_url = ctx.server().base_url();
    let pipeline = format!(
        "name = \"b\"\n[source]\ntype = \"ord\"\nbase_url = \"{base_url}\"\n\
         [baseline]\ntype = \"trud_xml\"\nlocation = \"{}\"\n\
         [scope]\nprimary_roles = [\"RO197\", \"RO198\"]\n\
         [http]\nrequests_per_second = 1000.0\nconcurrency = 4\ntimeout_secs = 5\nmax_retries = 3\nbackoff_base_ms = 20\nbackoff_max_ms = 200\n",
        release.display()
    );
    ctx.write_pipeline("b", &pipeline);
    let first = ctx.run_ok("2025-07-12", "b", &[]);
    assert_eq!(first["mode"], "baseline");
    assert!(
        first["mode_reason"]
            .as_str()
            .unwrap()
            .contains("[baseline] source (trud_xml)"),
        "{first}"
    );
    assert_eq!(
        first["fetch"]["http"]["requests"], 0,
        "a TRUD baseline makes no API call: {first}"
    );
    // The release is as of its publication date: the deltas start there, not on the run's day.
    assert_eq!(first["watermark_after"], "2025-07-10");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ctx.warehouse().join("b/_meta/ods/version=000001/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["source"]["kind"], "trud_xml");
    assert_eq!(manifest["source"]["parameters"]["publication_date"], "2025-07-10");

    ctx.server().set_state("demo-2025-07").unwrap();
    let delta = ctx.run_ok("2025-07-16", "b", &[]);
    assert_eq!(delta["mode"], "incremental", "{delta}");
    assert!(
        delta["mode_reason"].as_str().unwrap().contains("/sync from 2025-07-08"),
        "{delta}"
    );
    assert!(delta["diff"]["changes"].as_u64().unwrap() > 0, "{delta}");

    // The same sequence from an ORD baseline: identical tables (a TRUD baseline is
    // interchangeable with an API baseline of the same records).
    let other = TestContext::with_server("demo-2021");
    other.ord_pipeline("b", &["RO197", "RO198"]);
    other.run_ok("2025-07-10", "b", &[]);
    other.server().set_state("demo-2025-07").unwrap();
    let direct = other.run_ok("2025-07-16", "b", &[]);
    assert_eq!(direct["mode"], "incremental");
    assert_eq!(delta["content_hash"], direct["content_hash"]);

    // A release too old for /sync to bridge is refused instead of leaving a gap.
    let out = ctx.odsync("2026-03-16", &["run", "b", "--full"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("published on 2025-07-10"), "{}", out.stderr);
    assert!(
        out.stderr.contains("download the latest monthly release"),
        "{}",
        out.stderr
    );
    assert_eq!(ctx.versions("b").len(), 2);
}

/// Two server states of generated sites: `a` has sites `new + 1 ..= total`; `b` has `1 ..= total`
/// with the first `changed` renamed (the `new` added ones among them) and the rest unchanged.
fn delta_states(dir: &Path, total: u32, new: u32, changed: u32) {
    let roles = fixtures().join("ods/roles-2022.json");
    crate::common::write_state(
        dir,
        "a",
        &format!(
            "served_on = \"2025-07-10\"\ndata_date = \"2025-07-01\"\ngenerated_sites = {total}\ngenerated_first = {}\nroles = \"{}\"\n",
            new + 1,
            roles.display()
        ),
    );
    crate::common::write_state(
        dir,
        "b",
        &format!(
            "served_on = \"2025-07-12\"\ndata_date = \"2025-07-12\"\ngenerated_sites = {total}\ngenerated_changed = {changed}\ngenerated_unchanged_since = \"2025-07-01\"\nroles = \"{}\"\n",
            roles.display()
        ),
    );
}

use proptest::prelude::Strategy as _;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 6, ..proptest::prelude::ProptestConfig::default() })]

    /// A delta (ORD `/sync` applied to the previous snapshot, everything else carried forward)
    /// gives exactly the tables a baseline of the same records gives, whether the previous
    /// snapshot came from the API or from a TRUD release; from the API, the raw table too.
    #[test]
    fn a_delta_snapshot_equals_a_baseline_of_the_same_records(
        (total, new, changed) in (3u32..40).prop_flat_map(|t| (proptest::prelude::Just(t), 0..t / 2))
            .prop_flat_map(|(t, n)| (proptest::prelude::Just(t), proptest::prelude::Just(n), n..=t)),
        from_trud in proptest::prelude::any::<bool>(),
    ) {
        let states = tempfile::tempdir().unwrap();
        delta_states(states.path(), total, new, changed);
        let delta = TestContext::with_server_in(states.path(), "a");
        if from_trud {
            let release = delta.path().join("release.zip");
            delta.odsync("2025-07-10", &["serve", "--states", states.path().to_str().unwrap(), "--state", "a",
                "--write-trud", release.to_str().unwrap(), "--published", "2025-07-10"]).ok();
            delta.write_pipeline("p", &format!(
                "name = \"p\"\n[source]\ntype = \"ord\"\n[baseline]\ntype = \"trud_xml\"\nlocation = \"{}\"\n[scope]\nprimary_roles = [\"RO198\"]\n[http]\nrequests_per_second = 1000.0\nconcurrency = 4\n",
                release.display()));
        } else {
            delta.ord_pipeline("p", &["RO198"]);
        }
        delta.run_ok("2025-07-10", "p", &[]);
        delta.server().set_state("b").unwrap();
        let d = delta.run_ok("2025-07-12", "p", &["--accept-shift"]);
        proptest::prop_assert_eq!(&d["mode"], "incremental");
        proptest::prop_assert_eq!(d["records"]["fetched"].as_u64().unwrap(), u64::from(changed));

        let base = TestContext::with_server_in(states.path(), "b");
        base.ord_pipeline("p", &["RO198"]);
        let b = base.run_ok("2025-07-12", "p", &[]);
        proptest::prop_assert_eq!(&d["records"]["organisations"], &b["records"]["organisations"]);
        proptest::prop_assert_eq!(&d["content_hash"], &b["content_hash"]);
        if !from_trud {
            let raw = "SELECT code, format, sha256 FROM latest_raw WHERE pipeline = 'p' ORDER BY code";
            proptest::prop_assert_eq!(delta.cells(raw), base.cells(raw));
        }
    }
}

#[test]
fn a_sql_stage_out_of_memory_fails_cleanly_and_names_the_setting() {
    let ctx = TestContext::new();
    let path = write_release(ctx.path(), "Full", &real_elements());
    trud_pipeline(&ctx, "t", &path, "");
    let out = ctx.odsync_env("2025-07-11", &["run", "t"], &[("ODSYNC_DUCKDB_MEMORY", "1MB")]);
    assert_failed_cleanly(&ctx, "t", &out, "ODSYNC_DUCKDB_MEMORY");
    assert!(out.stderr.contains("Out of Memory"), "{}", out.stderr);
    let spill: Vec<_> = crate::common::walk(&ctx.warehouse())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-spill"))
        .collect();
    assert!(spill.is_empty(), "{spill:?}");
    // The default limit (half the machine) runs it.
    ctx.run_ok("2025-07-11", "t", &[]);
}

#[test]
fn a_record_the_trud_baseline_could_not_read_is_asked_of_the_api_by_the_next_delta() {
    let ctx = TestContext::with_server("demo-2021");
    let state = odsync::server::fixtures::load_state(&crate::common::states(), "demo-2021").unwrap();
    let docs: Vec<serde_json::Value> = state
        .records
        .values()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let refs: Vec<&serde_json::Value> = docs.iter().collect();
    let published = chrono::NaiveDate::from_ymd_opt(2025, 7, 10).unwrap();
    let xml = odsync::server::trud::release_file(&state, "Full", published, &refs);
    // RWR's element is damaged in the release.
    let damaged = xml.replacen("<Name>HERTFORDSHIRE PARTNERSHIP", "<Nme>HERTFORDSHIRE PARTNERSHIP", 1);
    assert_ne!(damaged, xml);
    let dir = ctx.path().join("release");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("HSCOrgRefData_Full_20250710.xml"), damaged).unwrap();
    ctx.write_pipeline(
        "b",
        &format!(
            "name = \"b\"\n[source]\ntype = \"ord\"\n[baseline]\ntype = \"trud_xml\"\nlocation = \"{}\"\n[scope]\nprimary_roles = [\"RO197\", \"RO198\"]\n[http]\nrequests_per_second = 1000.0\nconcurrency = 4\n",
            dir.display()
        ),
    );
    let first = ctx.run_ok("2025-07-12", "b", &[]);
    assert_eq!(first["records"]["quarantined"], 1, "{first}");
    let q = ctx.cells("SELECT code FROM latest_quarantine WHERE pipeline = 'b'");
    assert_eq!(q, [["RWR"]]);
    // The next delta asks ORD for it, and it arrives.
    let next = ctx.run_ok("2025-07-13", "b", &[]);
    assert_eq!(next["records"]["quarantined"], 0, "{next}");
    let rwr = ctx.cells("SELECT name FROM latest_organisations WHERE pipeline = 'b' AND code = 'RWR'");
    assert_eq!(rwr, [["HERTFORDSHIRE PARTNERSHIP UNIVERSITY NHS FOUNDATION TRUST"]]);
}

//! A fixture state written as a TRUD XML release (`odsync serve --write-trud`), for tests and
//! the demo: the same organisations the local ORD server serves, in the HSCOrgRefData layout of
//! docs/ods-reference.md section 10, so a pipeline can baseline from the release and take deltas from the
//! server, or switch between the two and find nothing changed.
//!
//! Each ORD JSON record is spelled as XML key by key (the inverse of `model::ord_xml`): what the
//! JSON does not carry, the XML does not invent. Records closed on or before 2017-03-31 go to the
//! archive file, as in the real releases. Derived data (labelled so in every file's
//! `ContentDescription`), Open Government Licence v3.0 like its sources.

use super::fixtures::ServedState;
use chrono::NaiveDate;
use quick_xml::escape::escape;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

const NS: &str = "http://refdata.hscic.gov.uk/org/v2-0-0";
const ORG_ROOT: &str = "2.16.840.1.113883.2.1.3.2.4.18.48";

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn list(v: Option<&Value>) -> Vec<&Value> {
    crate::model::ord_json::list(v)
}

fn attr(out: &mut String, name: &str, v: Option<&Value>) {
    if let Some(t) = v.and_then(text) {
        let _ = write!(out, " {name}=\"{}\"", escape(t.as_str()));
    }
}

fn dates(out: &mut String, v: Option<&Value>, indent: &str) {
    for d in list(v) {
        let _ = write!(out, "{indent}<Date>");
        for key in ["Type", "Start", "End"] {
            if let Some(t) = d.get(key).and_then(text) {
                let _ = write!(out, "<{key} value=\"{}\"/>", escape(t.as_str()));
            }
        }
        out.push_str("</Date>\n");
    }
}

fn status(out: &mut String, v: Option<&Value>, indent: &str) {
    if let Some(t) = v.and_then(text) {
        let _ = writeln!(out, "{indent}<Status value=\"{}\"/>", escape(t.as_str()));
    }
}

fn target(out: &mut String, item: &Value) {
    let Some(t) = item.get("Target") else { return };
    out.push_str("      <Target>");
    if let Some(org) = t.get("OrgId") {
        let _ = write!(out, "<OrgId root=\"{ORG_ROOT}\" assigningAuthorityName=\"HSCIC\"");
        attr(out, "extension", org.get("extension"));
        out.push_str("/>");
    }
    if let Some(p) = t.get("PrimaryRoleId") {
        out.push_str("<PrimaryRoleId");
        attr(out, "id", p.get("id"));
        attr(out, "uniqueRoleId", p.get("uniqueRoleId"));
        out.push_str("/>");
    }
    out.push_str("</Target>\n");
}

/// One ORD JSON record as an `<Organisation>` element.
pub fn organisation_xml(doc: &Value) -> String {
    let org = &doc["Organisation"];
    let mut out = String::from("<Organisation");
    attr(&mut out, "orgRecordClass", org.get("orgRecordClass"));
    if org.get("refOnly").and_then(Value::as_bool) == Some(true) {
        out.push_str(" refOnly=\"true\"");
    }
    out.push_str(">\n");
    if let Some(name) = org.get("Name").and_then(text) {
        let _ = writeln!(out, "  <Name>{}</Name>", escape(name.as_str()));
    }
    dates(&mut out, org.get("Date"), "  ");
    if let Some(id) = org.get("OrgId") {
        let _ = write!(out, "  <OrgId root=\"{ORG_ROOT}\" assigningAuthorityName=\"HSCIC\"");
        attr(&mut out, "extension", id.get("extension"));
        out.push_str("/>\n");
    }
    status(&mut out, org.get("Status"), "  ");
    if let Some(d) = org.get("LastChangeDate").and_then(text) {
        let _ = writeln!(out, "  <LastChangeDate value=\"{d}\"/>");
    }
    if let Some(loc) = org.get("GeoLoc").and_then(|g| g.get("Location")) {
        out.push_str("  <GeoLoc><Location>");
        for key in [
            "AddrLn1", "AddrLn2", "AddrLn3", "Town", "County", "PostCode", "Country", "UPRN",
        ] {
            if let Some(t) = loc.get(key).and_then(text) {
                let _ = write!(out, "<{key}>{}</{key}>", escape(t.as_str()));
            }
        }
        out.push_str("</Location></GeoLoc>\n");
    }
    let contacts = list(org.get("Contacts").and_then(|c| c.get("Contact")));
    if !contacts.is_empty() {
        out.push_str("  <Contacts>");
        for c in contacts {
            out.push_str("<Contact");
            attr(&mut out, "type", c.get("type"));
            attr(&mut out, "value", c.get("value"));
            out.push_str("/>");
        }
        out.push_str("</Contacts>\n");
    }
    let roles = list(org.get("Roles").and_then(|r| r.get("Role")));
    if !roles.is_empty() {
        out.push_str("  <Roles>\n");
        for r in roles {
            out.push_str("    <Role");
            attr(&mut out, "id", r.get("id"));
            attr(&mut out, "uniqueRoleId", r.get("uniqueRoleId"));
            if r.get("primaryRole").and_then(text).is_some_and(|t| t == "true") {
                out.push_str(" primaryRole=\"true\"");
            }
            out.push_str(">\n");
            dates(&mut out, r.get("Date"), "      ");
            status(&mut out, r.get("Status"), "      ");
            out.push_str("    </Role>\n");
        }
        out.push_str("  </Roles>\n");
    }
    let rels = list(org.get("Rels").and_then(|r| r.get("Rel")));
    if !rels.is_empty() {
        out.push_str("  <Rels>\n");
        for r in rels {
            out.push_str("    <Rel");
            attr(&mut out, "id", r.get("id"));
            attr(&mut out, "uniqueRelId", r.get("uniqueRelId"));
            out.push_str(">\n");
            dates(&mut out, r.get("Date"), "      ");
            status(&mut out, r.get("Status"), "      ");
            target(&mut out, r);
            out.push_str("    </Rel>\n");
        }
        out.push_str("  </Rels>\n");
    }
    let succs = list(org.get("Succs").and_then(|s| s.get("Succ")));
    if !succs.is_empty() {
        out.push_str("  <Succs>\n");
        for s in succs {
            out.push_str("    <Succ");
            attr(&mut out, "uniqueSuccId", s.get("uniqueSuccId"));
            out.push_str(">\n");
            dates(&mut out, s.get("Date"), "      ");
            if let Some(t) = s.get("Type").and_then(text) {
                let _ = writeln!(out, "      <Type>{}</Type>", escape(t.as_str()));
            }
            target(&mut out, s);
            out.push_str("    </Succ>\n");
        }
        out.push_str("  </Succs>\n");
    }
    out.push_str("</Organisation>\n");
    out
}

/// The archive holds what closed (operationally) on or before this day.
fn archived(doc: &Value) -> bool {
    let cutoff = NaiveDate::from_ymd_opt(2017, 3, 31).expect("valid");
    list(doc["Organisation"].get("Date"))
        .into_iter()
        .filter(|d| d.get("Type").and_then(Value::as_str) == Some("Operational"))
        .filter_map(|d| d.get("End").and_then(Value::as_str))
        .filter_map(|e| e.parse::<NaiveDate>().ok())
        .any(|end| end <= cutoff)
}

/// One release file: header (Manifest, CodeSystems from the state's `/roles`) and records.
pub fn release_file(state: &ServedState, kind: &str, published: NaiveDate, bodies: &[&Value]) -> String {
    let roles: Value = serde_json::from_slice(&state.roles_body).unwrap_or(Value::Null);
    let roles = list(roles.get("Roles"));
    let mut out = String::new();
    let _ = writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(out, "<HSCOrgRefData:OrgRefData xmlns:HSCOrgRefData=\"{NS}\">");
    out.push_str("<Manifest>\n  <Version value=\"2-0-0\"/>\n");
    let _ = writeln!(out, "  <PublicationType value=\"{kind}\"/>");
    out.push_str("  <PublicationSource value=\"HSCIC\"/>\n");
    let _ = writeln!(out, "  <PublicationDate value=\"{published}\"/>");
    out.push_str("  <PublicationSeqNum value=\"1\"/>\n");
    let _ = writeln!(out, "  <FileCreationDateTime value=\"{published}T00:00:00\"/>");
    let _ = writeln!(out, "  <RecordCount value=\"{}\"/>", bodies.len());
    let _ = writeln!(
        out,
        "  <ContentDescription value=\"odsync fixture state {}: DERIVED from real ODS data (Open Government Licence v3.0), not an NHS release\"/>",
        escape(state.name.as_str())
    );
    out.push_str("  <PrimaryRoleScope>\n");
    for r in roles
        .iter()
        .filter(|r| r.get("primaryRole").and_then(text).as_deref() == Some("true"))
    {
        out.push_str("    <PrimaryRole");
        attr(&mut out, "id", r.get("id"));
        attr(&mut out, "displayName", r.get("displayName"));
        out.push_str("/>\n");
    }
    out.push_str("  </PrimaryRoleScope>\n</Manifest>\n<CodeSystems>\n");
    out.push_str("  <CodeSystem name=\"OrganisationRecordClass\" oid=\"2.16.840.1.113883.2.1.3.2.4.23\">\n    <concept id=\"RC1\" code=\"1\" displayName=\"HSCOrg\"/>\n    <concept id=\"RC2\" code=\"2\" displayName=\"HSCSite\"/>\n  </CodeSystem>\n");
    out.push_str("  <CodeSystem name=\"OrganisationRole\" oid=\"2.16.840.1.113883.2.1.3.2.4.17.507\">\n");
    for r in &roles {
        out.push_str("    <concept");
        attr(&mut out, "id", r.get("id"));
        attr(&mut out, "code", r.get("code"));
        attr(&mut out, "displayName", r.get("displayName"));
        out.push_str("/>\n");
    }
    out.push_str("  </CodeSystem>\n</CodeSystems>\n<Organisations>\n");
    for body in bodies {
        out.push_str(&organisation_xml(body));
    }
    out.push_str("</Organisations>\n</HSCOrgRefData:OrgRefData>\n");
    out
}

/// Writes the state as a release zip (`fullfile.zip` and `archive.zip` inside, as TRUD ships it).
pub fn write_release_zip(state: &ServedState, published: NaiveDate, path: &Path) -> Result<(), String> {
    let docs: Vec<Value> = state
        .records
        .values()
        .map(|r| serde_json::from_slice(&r.body).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let (archive, full): (Vec<&Value>, Vec<&Value>) = docs.iter().partition(|d| archived(d));
    let stamp = published.format("%Y%m%d");
    let inner = |name: String, xml: String| -> Result<Vec<u8>, String> { zipped(&[(name, xml.into_bytes())]) };
    let full_zip = inner(
        format!("HSCOrgRefData_Full_{stamp}.xml"),
        release_file(state, "Full", published, &full),
    )?;
    let archive_zip = inner(
        format!("HSCOrgRefData_Archive_{stamp}.xml"),
        release_file(state, "Archive", published, &archive),
    )?;
    let outer = zipped(&[("fullfile.zip".into(), full_zip), ("archive.zip".into(), archive_zip)])?;
    std::fs::write(path, outer).map_err(|e| format!("{}: {e}", path.display()))
}

fn zipped(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    for (name, bytes) in entries {
        zip.start_file(name.as_str(), options).map_err(|e| e.to_string())?;
        zip.write_all(bytes).map_err(|e| e.to_string())?;
    }
    Ok(zip.finish().map_err(|e| e.to_string())?.into_inner())
}

//! The data the local ORD-compatible server serves: "states", each a folder with a `state.toml`.
//!
//! A state combines (1) real ORD JSON records taken verbatim, (2) ORD-shaped records derived from
//! real etr.csv rows, each labelled with a `_derived` key naming the file, line and licence, and
//! (3) generated trust-site records where a test needs volume (also labelled). Switching the
//! server from one state to the next is how tests and the demo make ODS "change" over time.

use crate::model::csv_row::{CsvKind, CsvLayout, parse_line};
use crate::model::{OrgRecord, ord_json};
use crate::sources::csv_bulk::split_file;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const OGL: &str = "Contains public sector information licensed under the Open Government Licence v3.0";
const ORG_ROOT: &str = "2.16.840.1.113883.2.1.3.2.4.18.48";

/// `state.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// For whoever reads state.toml; the server has no use for it.
    #[serde(default)]
    #[allow(dead_code)]
    pub description: Option<String>,
    /// The date the server pretends it is (for `/sync`'s 185-day limit).
    pub served_on: NaiveDate,
    /// LastChangeDate given to derived records that differ from the `previous` state.
    pub data_date: NaiveDate,
    /// A sibling state this one follows; unchanged derived records keep its LastChangeDate.
    #[serde(default)]
    pub previous: Option<String>,
    /// Real ORD records, served verbatim (paths relative to the state folder).
    #[serde(default)]
    pub json_records: Vec<PathBuf>,
    /// etr.csv files whose rows become derived ORD records.
    #[serde(default)]
    pub etr_csv: Vec<PathBuf>,
    /// The `/roles` body.
    pub roles: PathBuf,
    /// The `/notifications` body (default: no deletions).
    #[serde(default)]
    pub notifications: Option<PathBuf>,
    /// This many generated RO198 trust sites (codes `GS0001` …), for volume.
    #[serde(default)]
    pub generated_sites: u32,
    /// The first this many generated sites are renamed in this state (LastChangeDate
    /// `data_date`); the others keep `generated_unchanged_since` as their LastChangeDate, so
    /// `/sync` returns only the changed ones (for delta volume tests and `make bench`).
    #[serde(default)]
    pub generated_changed: u32,
    #[serde(default)]
    pub generated_unchanged_since: Option<NaiveDate>,
    /// The first generated site's number (default 1): a later state that starts lower adds sites.
    #[serde(default)]
    pub generated_first: Option<u32>,
    /// How the server reads `Offset`: `skip` (rows skipped) or `start_row` (1-based first row);
    /// ORD's real behaviour is unverified and the client must cope with either.
    #[serde(default)]
    pub offset_mode: OffsetMode,
    /// Serve every record of the state through the FHIR API too (`server::fhir`).
    #[serde(default)]
    pub fhir_from_ord: bool,
    /// Answer `_include` on OrganizationAffiliation searches (a server may ignore it).
    #[serde(default = "yes")]
    pub fhir_include: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OffsetMode {
    #[default]
    Skip,
    StartRow,
}

/// One served organisation.
#[derive(Debug, Clone)]
pub struct ServedRecord {
    pub body: Vec<u8>,
    pub parsed: OrgRecord,
}

#[derive(Debug, Clone)]
pub struct ServedState {
    pub name: String,
    pub config: StateConfig,
    pub records: BTreeMap<String, ServedRecord>,
    pub roles_body: Vec<u8>,
    pub role_names: BTreeMap<String, String>,
    pub notifications_body: Vec<u8>,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Loads `<states_dir>/<name>/state.toml` and everything it names.
pub fn load_state(states_dir: &Path, name: &str) -> Result<ServedState, String> {
    let dir = states_dir.join(name);
    let toml_path = dir.join("state.toml");
    let text = std::fs::read_to_string(&toml_path).map_err(|e| {
        format!(
            "{}: {e} (states are folders with a state.toml under {})",
            toml_path.display(),
            states_dir.display()
        )
    })?;
    let config: StateConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", toml_path.display()))?;
    let previous = match &config.previous {
        Some(p) => Some(load_state(states_dir, p)?),
        None => None,
    };

    let mut records = BTreeMap::new();
    for rel in &config.etr_csv {
        let path = dir.join(rel);
        let file_name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let (rows, failures) = split_file(&read(&path)?, &file_name);
        if let Some(f) = failures.first() {
            return Err(format!("{}: {}", f.source, f.reason));
        }
        for row in rows {
            let mut doc = derive_from_etr(&row.payload, &row.origin, config.served_on)?;
            let code = row.code.clone();
            // LastChangeDate: unchanged since the previous state keeps the previous date.
            let lcd = previous
                .as_ref()
                .and_then(|p| p.records.get(&code))
                .filter(|p| same_except_last_change(&p.body, &doc))
                .and_then(|p| p.parsed.organisation.last_change_date)
                .unwrap_or_else(|| first_state_lcd(&doc, config.data_date, previous.is_some()));
            doc["Organisation"]["LastChangeDate"] = json!(lcd.to_string());
            let body = serde_json::to_vec(&doc).expect("serialises");
            let parsed = ord_json::parse_organisation(&body)?;
            records.insert(code, ServedRecord { body, parsed });
        }
    }
    // Real records last: they replace a derived record of the same code.
    for rel in &config.json_records {
        let body = read(&dir.join(rel))?;
        let parsed = ord_json::parse_organisation(&body).map_err(|e| format!("{}: {e}", rel.display()))?;
        records.insert(parsed.organisation.code.clone(), ServedRecord { body, parsed });
    }
    for n in config.generated_first.unwrap_or(1)..=config.generated_sites {
        let changed = n <= config.generated_changed;
        let lcd = match config.generated_unchanged_since {
            Some(date) if !changed => date,
            _ => config.data_date,
        };
        let mut doc = generated_site(n, lcd);
        if changed {
            doc["Organisation"]["Name"] = json!(format!("GENERATED SITE {n} (RENAMED)"));
        }
        let body = serde_json::to_vec(&doc).expect("serialises");
        let parsed = ord_json::parse_organisation(&body)?;
        records.insert(parsed.organisation.code.clone(), ServedRecord { body, parsed });
    }

    let roles_body = read(&dir.join(&config.roles))?;
    let roles_json: Value =
        serde_json::from_slice(&roles_body).map_err(|e| format!("{}: {e}", config.roles.display()))?;
    let role_names = ord_json::list(roles_json.get("Roles"))
        .into_iter()
        .filter_map(|r| {
            Some((
                r.get("id")?.as_str()?.to_owned(),
                r.get("displayName")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    let notifications_body = match &config.notifications {
        Some(p) => read(&dir.join(p))?,
        None => br#"{"DeletedOrganisations":[]}"#.to_vec(),
    };
    Ok(ServedState {
        name: name.to_owned(),
        config,
        records,
        roles_body,
        role_names,
        notifications_body,
    })
}

fn same_except_last_change(previous_body: &[u8], doc: &Value) -> bool {
    let Ok(mut prev) = serde_json::from_slice::<Value>(previous_body) else {
        return false;
    };
    let mut doc = doc.clone();
    for v in [&mut prev, &mut doc] {
        if let Some(org) = v.get_mut("Organisation").and_then(Value::as_object_mut) {
            org.remove("LastChangeDate");
        }
        if let Some(o) = v.as_object_mut() {
            o.remove("_derived");
        }
    }
    prev == doc
}

/// Without history, the latest dated event (open or close) not after the data date.
fn first_state_lcd(doc: &Value, data_date: NaiveDate, has_previous: bool) -> NaiveDate {
    if has_previous {
        return data_date;
    }
    let dates = &doc["Organisation"]["Date"][0];
    [dates.get("Start"), dates.get("End")]
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str()?.parse::<NaiveDate>().ok())
        .filter(|d| *d <= data_date)
        .max()
        .unwrap_or(data_date)
}

/// An ORD-shaped record from one etr.csv line: the fields the CSV has, in ORD's shape, with the
/// High Level Health Geography as an RE5 relationship (as ORD expresses trust → ICB/STP).
pub fn derive_from_etr(line: &[u8], origin: &str, today: NaiveDate) -> Result<Value, String> {
    let rec = parse_line(line, &CsvLayout::new(CsvKind::Etr, None), today).map_err(|e| format!("{origin}: {e}"))?;
    let org = &rec.organisation;
    let code = &org.code;
    let fields = crate::model::csv_row::split_fields(line)?;
    let mut dates = json!({"Type": "Operational"});
    if let Some(s) = org.operational.start {
        dates["Start"] = json!(s.to_string());
    }
    if let Some(e) = org.operational.end {
        dates["End"] = json!(e.to_string());
    }
    let mut location = serde_json::Map::new();
    for (key, value) in [
        ("AddrLn1", &org.address_line1),
        ("AddrLn2", &org.address_line2),
        ("AddrLn3", &org.address_line3),
        ("Town", &org.town),
        ("County", &org.county),
        ("PostCode", &org.postcode),
    ] {
        if let Some(v) = value {
            location.insert(key.into(), json!(v));
        }
    }
    let welsh = fields[23] == "W" || fields[2] == "W00";
    location.insert("Country".into(), json!(if welsh { "WALES" } else { "ENGLAND" }));
    let status = org.status.clone().unwrap_or_else(|| "Active".into());
    let mut organisation = json!({
        "Name": org.name,
        "Date": [dates.clone()],
        "OrgId": {"root": ORG_ROOT, "assigningAuthorityName": "HSCIC", "extension": code},
        "Status": status,
        "LastChangeDate": null,
        "orgRecordClass": "RC1",
        "GeoLoc": {"Location": location},
        "Roles": {"Role": [{
            "id": "RO197", "uniqueRoleId": derived_id(code, "role"), "primaryRole": true,
            "Date": [dates.clone()], "Status": status,
        }]},
    });
    if let Some(tel) = &org.telephone {
        organisation["Contacts"] = json!({"Contact": [{"type": "tel", "value": tel}]});
    }
    if let Some(hlhg) = rec
        .relationships
        .iter()
        .find(|r| r.rel_type == "HIGH_LEVEL_HEALTH_GEOGRAPHY")
    {
        organisation["Rels"] = json!({"Rel": [{
            "Date": [dates], "Status": status,
            "Target": {"OrgId": {"root": ORG_ROOT, "assigningAuthorityName": "HSCIC", "extension": hlhg.target_code},
                       "PrimaryRoleId": {"id": "RO261", "uniqueRoleId": derived_id(&hlhg.target_code, "role")}},
            "id": "RE5", "uniqueRelId": derived_id(code, &format!("RE5:{}", hlhg.target_code)),
        }]});
    }
    Ok(json!({
        "Organisation": organisation,
        "_derived": {
            "from": origin,
            "note": "ORD-shaped record derived by odsync from a real etr.csv row; not an ORD API response",
            "licence": OGL,
        }
    }))
}

/// A generated trust site for volume tests: RO198, operated by (RE6) a trust.
fn generated_site(n: u32, data_date: NaiveDate) -> Value {
    let code = format!("GS{n:04}");
    let parent = ["RVV", "RWR", "RJ1", "RTH"][(n % 4) as usize];
    json!({
        "Organisation": {
            "Name": format!("GENERATED SITE {n}"),
            "Date": [{"Type": "Operational", "Start": "2001-04-01"}],
            "OrgId": {"root": ORG_ROOT, "assigningAuthorityName": "HSCIC", "extension": code},
            "Status": "Active",
            "LastChangeDate": data_date.to_string(),
            "orgRecordClass": "RC2",
            "GeoLoc": {"Location": {"AddrLn1": format!("{n} TEST ROAD"), "Town": "LEEDS", "PostCode": "LS1 4AP", "Country": "ENGLAND"}},
            "Roles": {"Role": [{"id": "RO198", "uniqueRoleId": 900_000 + n, "primaryRole": true,
                                 "Date": [{"Type": "Operational", "Start": "2001-04-01"}], "Status": "Active"}]},
            "Rels": {"Rel": [{"Date": [{"Type": "Operational", "Start": "2001-04-01"}], "Status": "Active",
                               "Target": {"OrgId": {"root": ORG_ROOT, "assigningAuthorityName": "HSCIC", "extension": parent},
                                          "PrimaryRoleId": {"id": "RO197", "uniqueRoleId": 1}},
                               "id": "RE6", "uniqueRelId": 800_000 + n}]},
        },
        "_derived": {"from": "generated", "note": "synthetic record generated by odsync for volume tests; not ODS data"}
    })
}

/// A stable made-up id (ORD's are integers) so derived records look alike from state to state.
fn derived_id(code: &str, what: &str) -> u64 {
    let digest = crate::model::tables::sha256_hex(format!("{code}/{what}").as_bytes());
    100_000 + u64::from_str_radix(&digest[..8], 16).expect("hex") % 900_000
}

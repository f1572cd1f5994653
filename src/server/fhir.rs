//! The FHIR side of the local test server: `/fhir/Organization` search (Bundle paging with
//! `_count`/`_offset` and a `next` link, `roleCode`, `lastChangeDate=gt|lt…`, `active`),
//! `/fhir/Organization/{id}`, and `/fhir/OrganizationAffiliation` (`primary-organization`, comma =
//! OR; `_include=OrganizationAffiliation:participating-organization`; same paging).
//!
//! What it serves:
//! - by default, the published ODS FHIR examples verbatim (the RR8 record, the entries of the
//!   search Bundle example and the FDC49 OrganizationAffiliation Bundle, tests/fixtures/ods/json);
//! - in a state with `fhir_from_ord = true`, instead, the ORD records of the state in FHIR form
//!   (tagged `derived-from-ord`): the same organisations through both APIs, as the real service
//!   has one database behind ORD and FHIR. Roles become `OrganisationRole` extensions (primary
//!   first, as every published example lists it), relationships become OrganizationAffiliations
//!   whose id is ORD's `uniqueRelId`, and a relationship target that is not itself a record is
//!   served (for `_include` and `_id` searches only) as a minimal Organization carrying the
//!   target's primary role from ORD's `Target.PrimaryRoleId`. `fhir_include = false` makes the
//!   server ignore `_include`, as a server may. Successions have no FHIR form here (none is documented).
//!
//! Like the real API it answers `OperationOutcome`s: 401 without an `apikey` header, 400
//! HAPI-0524 for an unknown search parameter (the published example body), 404 HAPI-2001 for an
//! unknown id. A 422 for an oversized page is injected as a fault.

use super::fixtures::ServedState;
use crate::model::fhir_json::referenced_code;
use crate::model::{OrgRecord, Period};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const RR8: &str = include_str!("../../tests/fixtures/ods/json/fhir-r4-Organization-RR8-example.json");
const SEARCH_BUNDLE: &str =
    include_str!("../../tests/fixtures/ods/json/fhir-r4-Organization-search-bundle-example.json");
const UNKNOWN_PARAM: &str =
    include_str!("../../tests/fixtures/ods/json/fhir-r4-Organization-search-4XX-OperationOutcome-example.json");
const NOT_FOUND: &str =
    include_str!("../../tests/fixtures/ods/json/fhir-r4-Organization-404-OperationOutcome-example.json");
const FDC49_AFFILIATIONS: &str =
    include_str!("../../tests/fixtures/ods/json/fhir-r4-OrganizationAffiliation-FDC49-bundle-example.json");

const ROLE_SYSTEM: &str = "https://digital.nhs.uk/services/organisation-data-service/CodeSystem/ODSOrganisationRole";
const REL_SYSTEM: &str = "https://digital.nhs.uk/services/organisation-data-service/CodeSystem/ODSRelationship";
const CODE_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const DERIVED_TAG: &str = "derived-from-ord";

pub const FHIR_PATH: &str = "/fhir";

const AFFILIATION_PARAMS: [&str; 6] = [
    "_count",
    "_offset",
    "primary-organization",
    "participating-organization",
    "active",
    "_include",
];

const KNOWN_PARAMS: [&str; 9] = [
    "_summary",
    "_count",
    "_offset",
    "roleCode",
    "lastChangeDate",
    "active",
    "_id",
    "identifier",
    "name",
];

/// Every Organization the server knows, sorted by id; with them, the minimal target
/// Organizations served only through `_include`.
fn organizations(state: &ServedState) -> (Vec<Value>, BTreeMap<String, Value>) {
    let mut all: BTreeMap<String, Value> = BTreeMap::new();
    let mut targets = BTreeMap::new();
    if state.config.fhir_from_ord {
        for served in state.records.values() {
            let org = organization_from(&served.parsed);
            all.insert(served.parsed.organisation.code.clone(), org);
            for r in &served.parsed.relationships {
                if let Some(role) = &r.target_primary_role {
                    targets
                        .entry(r.target_code.clone())
                        .or_insert_with(|| target_stub(&r.target_code, role));
                }
            }
        }
    }
    if !state.config.fhir_from_ord {
        let mut examples: Vec<Value> = vec![serde_json::from_str(RR8).expect("fixture is JSON")];
        let bundle: Value = serde_json::from_str(SEARCH_BUNDLE).expect("fixture is JSON");
        for e in bundle["entry"].as_array().into_iter().flatten() {
            examples.push(e["resource"].clone());
        }
        for org in examples {
            let id = org["id"].as_str().unwrap_or_default().to_owned();
            all.entry(id).or_insert(org);
        }
    }
    targets.retain(|code, _| !all.contains_key(code));
    (all.into_values().collect(), targets)
}

/// Every OrganizationAffiliation the server knows, by id.
fn affiliations(state: &ServedState) -> Vec<Value> {
    let mut all: BTreeMap<String, Value> = BTreeMap::new();
    if !state.config.fhir_from_ord {
        let bundle: Value = serde_json::from_str(FDC49_AFFILIATIONS).expect("fixture is JSON");
        for e in bundle["entry"].as_array().into_iter().flatten() {
            all.insert(
                e["resource"]["id"].as_str().unwrap_or_default().to_owned(),
                e["resource"].clone(),
            );
        }
    } else {
        for served in state.records.values() {
            let code = &served.parsed.organisation.code;
            for (i, r) in served.parsed.relationships.iter().enumerate() {
                let id = r.unique_rel_id.clone().unwrap_or_else(|| format!("{code}-{i}"));
                let aff = json!({
                    "resourceType": "OrganizationAffiliation",
                    "id": id,
                    "meta": {"tag": [{"code": DERIVED_TAG}]},
                    "extension": typed_periods(&r.legal, &r.operational),
                    "identifier": [{"system": "https://digital.nhs.uk/services/organisation-data-service/CodeSystem/organization-relationship-instance", "value": id}],
                    "active": r.status.as_deref() == Some("Active"),
                    "period": period_json(if r.legal.start.is_some() { &r.legal } else { &r.operational }),
                    "organization": {"reference": format!("Organization/{code}"), "identifier": {"system": CODE_SYSTEM, "value": code}},
                    "participatingOrganization": {"reference": format!("Organization/{}", r.target_code), "identifier": {"system": CODE_SYSTEM, "value": r.target_code}},
                    "code": [{"coding": [{"system": REL_SYSTEM, "code": r.rel_type}]}],
                });
                all.insert(id, aff);
            }
        }
    }
    all.into_values().collect()
}

fn period_json(p: &Period) -> Value {
    let mut v = json!({});
    if let Some(s) = p.start {
        v["start"] = json!(s.to_string());
    }
    if let Some(e) = p.end {
        v["end"] = json!(e.to_string());
    }
    v
}

fn typed_periods(legal: &Period, operational: &Period) -> Vec<Value> {
    [("Legal", legal), ("Operational", operational)]
        .into_iter()
        .filter(|(_, p)| p.start.is_some() || p.end.is_some())
        .map(|(kind, p)| {
            json!({"url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-TypedPeriod", "extension": [
                {"url": "dateType", "valueCoding": {"system": "https://fhir.nhs.uk/England/CodeSystem/England-PeriodType", "code": kind, "display": kind}},
                {"url": "period", "valuePeriod": period_json(p)},
            ]})
        })
        .collect()
}

fn role_extension(code: &str, instance: Option<&str>, periods: Vec<Value>, active: Option<bool>) -> Value {
    let mut parts = Vec::new();
    if let Some(id) = instance {
        parts.push(match id.parse::<i64>() {
            Ok(n) => json!({"url": "instanceID", "valueInteger": n}),
            Err(_) => json!({"url": "instanceID", "valueString": id}),
        });
    }
    parts.push(json!({"url": "roleCode", "valueCodeableConcept": {"coding": [{"system": ROLE_SYSTEM, "code": code}]}}));
    parts.extend(periods);
    if let Some(a) = active {
        parts.push(json!({"url": "active", "valueBoolean": a}));
    }
    json!({"url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-OrganisationRole", "extension": parts})
}

/// An ORD record in the FHIR Organization shape of docs/ods-reference.md 3 (the RR8 example's layout).
fn organization_from(rec: &OrgRecord) -> Value {
    let o = &rec.organisation;
    let mut roles: Vec<&crate::model::Role> = rec.roles.iter().collect();
    // Primary first, as the API lists it; otherwise ORD's order.
    roles.sort_by_key(|r| !r.is_primary);
    let mut extension: Vec<Value> = roles
        .iter()
        .map(|r| {
            role_extension(
                &r.role_id,
                r.unique_role_id.as_deref(),
                typed_periods(&r.legal, &r.operational),
                r.status.as_deref().map(|s| s == "Active"),
            )
        })
        .collect();
    if let Some(lcd) = o.last_change_date {
        extension.push(json!({"url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-TypedDateTime", "extension": [
            {"url": "type", "valueCoding": {"system": "https://fhir.nhs.uk/England/CodeSystem/England-ODSDateTime", "code": "LastChangeDate"}},
            {"url": "dateTime", "valueDateTime": lcd.to_string()},
        ]}));
    }
    let mut types = vec![
        json!({"coding": [{"system": "https://fhir.nhs.uk/England/CodeSystem/England-ODSRecordUseType", "code": if o.ref_only { "refOnly" } else { "Full" }}]}),
    ];
    if let Some(rc) = &o.record_class {
        types.push(json!({"coding": [{"system": "https://digital.nhs.uk/services/organisation-data-service/CodeSystem/ODSRecordClass", "code": rc}]}));
    }
    let telecom: Vec<Value> = [("phone", &o.telephone), ("url", &o.website)]
        .into_iter()
        .filter_map(|(system, v)| v.as_ref().map(|v| json!({"system": system, "value": v})))
        .collect();
    let lines: Vec<&String> = [&o.address_line1, &o.address_line2, &o.address_line3]
        .into_iter()
        .flatten()
        .collect();
    let mut address = json!({ "line": lines });
    for (key, v) in [
        ("city", &o.town),
        ("district", &o.county),
        ("postalCode", &o.postcode),
        ("country", &o.country),
    ] {
        if let Some(v) = v {
            address[key] = json!(v);
        }
    }
    if let Some(uprn) = &o.uprn {
        address["extension"] = json!([{"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AddressKey", "extension": [
            {"url": "type", "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-AddressKeyType", "code": "UPRN"}]}},
            {"url": "value", "valueString": uprn},
        ]}]);
    }
    let mut org = json!({
        "resourceType": "Organization",
        "id": o.code,
        "meta": {"tag": [{"code": DERIVED_TAG}]},
        "extension": extension,
        "identifier": [{"use": "official", "system": CODE_SYSTEM, "value": o.code}],
        "type": types,
        "name": o.name,
        "telecom": telecom,
        "address": [address],
    });
    if let Some(status) = &o.status {
        org["active"] = json!(status == "Active");
    }
    org
}

/// A relationship target known only from ORD's `Target` (code and primary role).
fn target_stub(code: &str, primary_role: &str) -> Value {
    json!({
        "resourceType": "Organization",
        "id": code,
        "meta": {"tag": [{"code": DERIVED_TAG}]},
        "extension": [role_extension(primary_role, None, Vec::new(), None)],
        "identifier": [{"use": "official", "system": CODE_SYSTEM, "value": code}],
        "name": format!("ODS ORGANISATION {code}"),
    })
}

fn outcome(status: u16, diagnostics: &str) -> (u16, Vec<u8>) {
    let body = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing", "diagnostics": diagnostics}]});
    (status, serde_json::to_vec(&body).expect("json"))
}

fn role_codes(org: &Value) -> Vec<String> {
    org["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("Extension-England-OrganisationRole"))
        })
        .flat_map(|e| e["extension"].as_array().into_iter().flatten())
        .filter(|s| s["url"] == "roleCode")
        .filter_map(|s| {
            s["valueCodeableConcept"]["coding"][0]["code"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

fn last_change(org: &Value) -> Option<chrono::NaiveDate> {
    org["extension"]
        .as_array()?
        .iter()
        .filter(|e| {
            e["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("Extension-England-TypedDateTime"))
        })
        .flat_map(|e| e["extension"].as_array().into_iter().flatten())
        .find(|s| s["url"] == "dateTime")?["valueDateTime"]
        .as_str()?
        .get(..10)?
        .parse()
        .ok()
}

fn values<'a>(params: &'a [(String, String)], name: &'static str) -> impl Iterator<Item = &'a str> {
    params.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A `searchset` Bundle of one page of `matching` (`_count`/`_offset`, `self` and `next` links)
/// plus the `included` resources of that page.
fn page(
    resource: &str,
    matching: &[&Value],
    params: &[(String, String)],
    base: &str,
    included: impl Fn(&[&Value]) -> Vec<Value>,
) -> (u16, Vec<u8>) {
    let count: usize = values(params, "_count")
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20)
        .max(1);
    let offset: usize = values(params, "_offset")
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let shown: Vec<&Value> = matching.iter().skip(offset).take(count).copied().collect();
    let entry_of = |r: &Value, mode: &str| json!({"fullUrl": format!("{base}/{}/{}", r["resourceType"].as_str().unwrap_or_default(), r["id"].as_str().unwrap_or_default()), "resource": r, "search": {"mode": mode}});
    let mut entries: Vec<Value> = shown.iter().map(|r| entry_of(r, "match")).collect();
    entries.extend(included(&shown).iter().map(|r| entry_of(r, "include")));
    let query = |offset: usize| {
        let mut url = reqwest::Url::parse(&format!("{base}/{resource}")).expect("url");
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params.iter().filter(|(k, _)| k != "_offset") {
                q.append_pair(k, v);
            }
            if offset > 0 {
                q.append_pair("_offset", &offset.to_string());
            }
        }
        url.to_string()
    };
    let mut links = vec![json!({"relation": "self", "url": query(offset)})];
    if offset + count < matching.len() {
        links.push(json!({"relation": "next", "url": query(offset + count)}));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": matching.len(), "link": links, "entry": entries});
    (200, serde_json::to_vec(&bundle).expect("json"))
}

/// `GET /OrganizationAffiliation`.
fn affiliation_search(state: &ServedState, params: &[(String, String)], base: &str) -> (u16, Vec<u8>) {
    if params.iter().any(|(k, _)| !AFFILIATION_PARAMS.contains(&k.as_str())) {
        return (400, UNKNOWN_PARAM.as_bytes().to_vec());
    }
    let list = |name: &'static str| -> Vec<String> {
        values(params, name)
            .flat_map(|v| v.split(','))
            .map(|v| v.rsplit('/').next().unwrap_or(v).to_owned())
            .collect()
    };
    let (primary, participating) = (list("primary-organization"), list("participating-organization"));
    let active = values(params, "active").next().map(|a| a == "true");
    let include = state.config.fhir_include
        && values(params, "_include").any(|v| v == "OrganizationAffiliation:participating-organization");
    let all = affiliations(state);
    let matching: Vec<&Value> = all
        .iter()
        .filter(|a| primary.is_empty() || referenced_code(a.get("organization")).is_some_and(|c| primary.contains(&c)))
        .filter(|a| {
            participating.is_empty()
                || referenced_code(a.get("participatingOrganization")).is_some_and(|c| participating.contains(&c))
        })
        .filter(|a| active.is_none_or(|x| a["active"].as_bool() == Some(x)))
        .collect();
    let (orgs, stubs) = organizations(state);
    page("OrganizationAffiliation", &matching, params, base, |shown| {
        if !include {
            return Vec::new();
        }
        let wanted: std::collections::BTreeSet<String> = shown
            .iter()
            .filter_map(|a| referenced_code(a.get("participatingOrganization")))
            .collect();
        wanted
            .into_iter()
            .filter_map(|code| {
                orgs.iter()
                    .find(|o| o["id"].as_str() == Some(code.as_str()))
                    .or_else(|| stubs.get(&code))
                    .cloned()
            })
            .collect()
    })
}

/// `GET /List/{id}`: the deletion notice Lists. `Organization-deletion` carries the state's ORD
/// `/notifications` (one entry per deleted organisation: `item`, `date`, reason as `flag`); the
/// other documented lists are empty.
fn deletion_list(state: &ServedState, id: &str, base: &str) -> (u16, Vec<u8>) {
    const KNOWN: [&str; 4] = [
        "Organization-deletion",
        "OrganizationAffiliation-deletion",
        "Organization-role-deletion",
        "Organization-succession-deletion",
    ];
    if !KNOWN.contains(&id) {
        return outcome(404, &format!("HAPI-2001: Resource List/{id} is not known"));
    }
    let mut entries = Vec::new();
    if id == "Organization-deletion" {
        let notices: Value = serde_json::from_slice(&state.notifications_body).unwrap_or(Value::Null);
        for d in notices["DeletedOrganisations"].as_array().into_iter().flatten() {
            let Some(code) = d["OrgID"].as_str().or_else(|| d["OrgId"].as_str()) else {
                continue;
            };
            let mut entry = json!({
                "item": {"reference": format!("Organization/{code}"), "identifier": {"system": CODE_SYSTEM, "value": code}},
                "flag": {"coding": [{"code": d["reason"]["code"].to_string().trim_matches('"'), "display": d["reason"]["description"]}]},
            });
            // ORD's "2025-07-14 00:00:00" as a FHIR dateTime.
            if let Some(t) = d["time"].as_str() {
                entry["date"] = json!(format!("{}+00:00", t.replacen(' ', "T", 1)));
            }
            entries.push(entry);
        }
    }
    let list = json!({"resourceType": "List", "id": id, "status": "current", "mode": "changes",
        "title": id, "entry": entries, "meta": {"source": format!("{base}/List/{id}")}});
    (200, serde_json::to_vec(&list).expect("json"))
}

/// Answers a FHIR request: (status, JSON body).
pub fn route(
    state: &ServedState,
    path: &str,
    params: &[(String, String)],
    apikey: Option<&str>,
    base: &str,
) -> (u16, Vec<u8>) {
    if apikey.is_none_or(|k| k.trim().is_empty()) {
        return outcome(
            401,
            "Invalid API key: send the application's key in the `apikey` header",
        );
    }
    if let Some(id) = path.strip_prefix("/List/") {
        return deletion_list(state, id, base);
    }
    if path.trim_end_matches('/') == "/OrganizationAffiliation" {
        return affiliation_search(state, params, base);
    }
    let (mut all, stubs) = organizations(state);
    if let Some(id) = path.strip_prefix("/Organization/") {
        return match all.iter().find(|o| o["id"].as_str() == Some(id)) {
            Some(org) => (200, serde_json::to_vec(org).expect("json")),
            None => (404, NOT_FOUND.as_bytes().to_vec()),
        };
    }
    if path.trim_end_matches('/') != "/Organization" {
        return outcome(404, &format!("HAPI-0302: Unknown resource type for path {path}"));
    }
    if params.iter().any(|(k, _)| !KNOWN_PARAMS.contains(&k.as_str())) {
        return (400, UNKNOWN_PARAM.as_bytes().to_vec());
    }
    let get = |name: &'static str| values(params, name);
    let roles: Vec<String> = get("roleCode").flat_map(|v| v.split(',')).map(str::to_owned).collect();
    let mut dates = Vec::new();
    for d in get("lastChangeDate") {
        let (op, day) = if let Some(rest) = d.strip_prefix("gt") {
            ("gt", rest)
        } else if let Some(rest) = d.strip_prefix("lt") {
            ("lt", rest)
        } else {
            ("eq", d)
        };
        match day.parse::<chrono::NaiveDate>() {
            Ok(day) => dates.push((op, day)),
            Err(_) => return outcome(400, &format!("HAPI-1940: Invalid date/time format: \"{d}\"")),
        }
    }
    let ids: Vec<&str> = get("_id").flat_map(|v| v.split(',')).collect();
    // Organisations known only as relationship targets are found by id, as in the real API.
    if !ids.is_empty() {
        all.extend(stubs.into_values());
        all.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    }
    let active = get("active").next().map(|a| a == "true");
    let matching: Vec<&Value> = all
        .iter()
        .filter(|o| ids.is_empty() || o["id"].as_str().is_some_and(|id| ids.contains(&id)))
        .filter(|o| roles.is_empty() || role_codes(o).iter().any(|r| roles.contains(r)))
        .filter(|o| active.is_none_or(|a| o["active"].as_bool() == Some(a)))
        .filter(|o| {
            dates.iter().all(|(op, day)| {
                last_change(o).is_some_and(|l| match *op {
                    "gt" => l > *day,
                    "lt" => l < *day,
                    _ => l == *day,
                })
            })
        })
        .collect();
    if get("_summary").next() == Some("count") {
        let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": matching.len()});
        return (200, serde_json::to_vec(&bundle).expect("json"));
    }
    page("Organization", &matching, params, base, |_| Vec::new())
}

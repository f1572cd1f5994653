//! The FHIR side of the local test server: `/fhir/Organization` search (Bundle paging with
//! `_count`/`_offset` and a `next` link, `roleCode`, `lastChangeDate=gt|lt…`, `active`) and
//! `/fhir/Organization/{id}`, serving the published ODS FHIR examples verbatim (the RR8 record and
//! the entries of the search Bundle example, tests/fixtures/ods/json). Like the real API it
//! answers `OperationOutcome`s: 401 without an `apikey` header, 400 HAPI-0524 for an unknown
//! search parameter (the published example body), 404 HAPI-2001 for an unknown id. A 422 for an
//! oversized page is injected as a fault.

use serde_json::{Value, json};

const RR8: &str = include_str!("../../tests/fixtures/ods/json/fhir-r4-Organization-RR8-example.json");
const SEARCH_BUNDLE: &str =
    include_str!("../../tests/fixtures/ods/json/fhir-r4-Organization-search-bundle-example.json");
const UNKNOWN_PARAM: &str =
    include_str!("../../tests/fixtures/ods/json/fhir-r4-Organization-search-4XX-OperationOutcome-example.json");
const NOT_FOUND: &str =
    include_str!("../../tests/fixtures/ods/json/fhir-r4-Organization-404-OperationOutcome-example.json");

pub const FHIR_PATH: &str = "/fhir";

const KNOWN_PARAMS: [&str; 8] = [
    "_count",
    "_offset",
    "roleCode",
    "lastChangeDate",
    "active",
    "_id",
    "identifier",
    "name",
];

/// Every Organization the server knows, sorted by id.
fn organizations() -> Vec<Value> {
    let mut all: Vec<Value> = vec![serde_json::from_str(RR8).expect("fixture is JSON")];
    let bundle: Value = serde_json::from_str(SEARCH_BUNDLE).expect("fixture is JSON");
    for e in bundle["entry"].as_array().into_iter().flatten() {
        all.push(e["resource"].clone());
    }
    all.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    all.dedup_by(|a, b| a["id"] == b["id"]);
    all
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

/// Answers a FHIR request: (status, JSON body).
pub fn route(path: &str, params: &[(String, String)], apikey: Option<&str>, base: &str) -> (u16, Vec<u8>) {
    if apikey.is_none_or(|k| k.trim().is_empty()) {
        return outcome(
            401,
            "Invalid API key: send the application's key in the `apikey` header",
        );
    }
    let all = organizations();
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
    fn values<'a>(params: &'a [(String, String)], name: &'static str) -> impl Iterator<Item = &'a str> {
        params.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    let get = |name: &'static str| values(params, name);
    let count: usize = get("_count").next().and_then(|c| c.parse().ok()).unwrap_or(20).max(1);
    let offset: usize = get("_offset").next().and_then(|c| c.parse().ok()).unwrap_or(0);
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
    let active = get("active").next().map(|a| a == "true");
    let matching: Vec<&Value> = all
        .iter()
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
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(count)
        .map(|o| json!({"fullUrl": format!("{base}/Organization/{}", o["id"].as_str().unwrap_or_default()), "resource": o, "search": {"mode": "match"}}))
        .collect();
    let query = |offset: usize| {
        let mut url = reqwest::Url::parse(&format!("{base}/Organization")).expect("url");
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
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": page});
    (200, serde_json::to_vec(&bundle).expect("json"))
}

//! ORD `GET /organisations/{code}` JSON → [`OrgRecord`].
//!
//! Lenient by design (docs/ods-reference.md 7.4): keys may be missing anywhere; `uniqueRoleId` and
//! `uniqueRelId` are numbers in real responses but strings in the official example; UPRN is a
//! number; a list of one may arrive as a bare object. Unknown keys are ignored (derived fixtures
//! carry a `_derived` label beside `Organisation`).

use super::{OrgRecord, Organisation, Period, Relationship, Role, Successor, parse_iso_date};
use chrono::NaiveDate;
use serde_json::Value;

pub fn parse_organisation(payload: &[u8]) -> Result<OrgRecord, String> {
    let root: Value = serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
    let org = root
        .get("Organisation")
        .ok_or("missing key `Organisation` (is this an ORD organisation record?)")?;
    let code = org
        .get("OrgId")
        .and_then(|o| o.get("extension"))
        .and_then(text)
        .filter(|c| !c.is_empty())
        .ok_or("missing field `Organisation.OrgId.extension` (the ODS code)")?;
    let name = org
        .get("Name")
        .and_then(text)
        .ok_or("missing field `Organisation.Name`")?;
    let (operational, legal) = periods(org.get("Date"), "Organisation.Date")?;
    let location = org.get("GeoLoc").and_then(|g| g.get("Location"));
    let loc = |key: &str| location.and_then(|l| l.get(key)).and_then(text);
    let contacts = list(org.get("Contacts").and_then(|c| c.get("Contact")));
    let contact = |kind: &str| {
        contacts
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|c| c.get("value"))
            .and_then(text)
    };
    let last_change_date = match org.get("LastChangeDate").and_then(text) {
        Some(d) => Some(parse_iso_date(&d, "Organisation.LastChangeDate")?),
        None => None,
    };

    let mut roles = Vec::new();
    for (i, role) in list(org.get("Roles").and_then(|r| r.get("Role"))).iter().enumerate() {
        let field = format!("Organisation.Roles.Role[{i}]");
        let role_id = role
            .get("id")
            .and_then(text)
            .ok_or_else(|| format!("missing field `{field}.id`"))?;
        let (operational, legal) = periods(role.get("Date"), &format!("{field}.Date"))?;
        roles.push(Role {
            role_id,
            unique_role_id: role.get("uniqueRoleId").and_then(text),
            is_primary: role.get("primaryRole").is_some_and(truthy),
            operational,
            legal,
            status: role.get("Status").and_then(text),
        });
    }
    let primary_role = roles.iter().find(|r| r.is_primary).map(|r| r.role_id.clone());

    let mut relationships = Vec::new();
    for (i, rel) in list(org.get("Rels").and_then(|r| r.get("Rel"))).iter().enumerate() {
        let field = format!("Organisation.Rels.Rel[{i}]");
        let (target_code, target_primary_role) = target(rel, &field)?;
        let (operational, legal) = periods(rel.get("Date"), &format!("{field}.Date"))?;
        relationships.push(Relationship {
            rel_type: rel
                .get("id")
                .and_then(text)
                .ok_or_else(|| format!("missing field `{field}.id`"))?,
            target_code,
            target_primary_role,
            unique_rel_id: rel.get("uniqueRelId").and_then(text),
            operational,
            legal,
            status: rel.get("Status").and_then(text),
            source_field: None,
        });
    }

    let mut successors = Vec::new();
    for (i, succ) in list(org.get("Succs").and_then(|s| s.get("Succ"))).iter().enumerate() {
        let field = format!("Organisation.Succs.Succ[{i}]");
        let (target_code, target_primary_role) = target(succ, &field)?;
        let (_, legal) = periods(succ.get("Date"), &format!("{field}.Date"))?;
        successors.push(Successor {
            kind: succ
                .get("Type")
                .and_then(text)
                .ok_or_else(|| format!("missing field `{field}.Type`"))?,
            target_code,
            target_primary_role,
            legal_start: legal.start,
            unique_succ_id: succ.get("uniqueSuccId").and_then(text),
        });
    }

    Ok(OrgRecord {
        organisation: Organisation {
            code,
            name,
            status: org.get("Status").and_then(text),
            record_class: org.get("orgRecordClass").and_then(text),
            primary_role,
            operational,
            legal,
            last_change_date,
            address_line1: loc("AddrLn1"),
            address_line2: loc("AddrLn2"),
            address_line3: loc("AddrLn3"),
            town: loc("Town"),
            county: loc("County"),
            postcode: loc("PostCode"),
            country: loc("Country"),
            uprn: loc("UPRN"),
            telephone: contact("tel"),
            website: contact("http"),
            ref_only: org.get("refOnly").is_some_and(truthy),
            org_type: None,
            health_system: None,
            foundation_trust: None,
            parent_code: None,
            parent_relationship: None,
            ..Default::default()
        },
        roles,
        relationships,
        successors,
    })
}

/// A scalar as text: strings as they are, numbers and booleans printed; anything else is absent.
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `true`, `"true"` (as `/roles` sends it) or `1`.
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        Value::Number(n) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// A JSON list, tolerating a bare object for a list of one and absence for an empty list.
pub(crate) fn list(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(obj @ Value::Object(_)) => vec![obj],
        _ => Vec::new(),
    }
}

fn target(item: &Value, field: &str) -> Result<(String, Option<String>), String> {
    let target = item.get("Target");
    let code = target
        .and_then(|t| t.get("OrgId"))
        .and_then(|o| o.get("extension"))
        .and_then(text)
        .ok_or_else(|| format!("missing field `{field}.Target.OrgId.extension`"))?;
    let role = target
        .and_then(|t| t.get("PrimaryRoleId"))
        .and_then(|p| p.get("id"))
        .and_then(text);
    Ok((code, role))
}

/// Splits ORD `Date[]` into its Operational and Legal periods.
fn periods(dates: Option<&Value>, field: &str) -> Result<(Period, Period), String> {
    let mut operational = Period::default();
    let mut legal = Period::default();
    for (i, date) in list(dates).iter().enumerate() {
        let slot = match date.get("Type").and_then(Value::as_str) {
            Some("Operational") => &mut operational,
            Some("Legal") => &mut legal,
            // Other date types are kept in the raw payload only.
            _ => continue,
        };
        slot.start = opt_date(date.get("Start"), &format!("{field}[{i}].Start"))?;
        slot.end = opt_date(date.get("End"), &format!("{field}[{i}].End"))?;
    }
    Ok((operational, legal))
}

fn opt_date(value: Option<&Value>, field: &str) -> Result<Option<NaiveDate>, String> {
    match value.and_then(text) {
        Some(d) if !d.is_empty() => parse_iso_date(&d, field).map(Some),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_or_number_ids_and_single_object_lists_parse_alike() {
        let a = br#"{"Organisation":{"Name":"X","OrgId":{"extension":"AB1"},
            "Roles":{"Role":[{"id":"RO197","uniqueRoleId":12,"primaryRole":true}]}}}"#;
        let b = br#"{"Organisation":{"Name":"X","OrgId":{"extension":"AB1"},
            "Roles":{"Role":{"id":"RO197","uniqueRoleId":"12","primaryRole":"true"}}}}"#;
        let (a, b) = (parse_organisation(a).unwrap(), parse_organisation(b).unwrap());
        assert_eq!(a, b);
        assert_eq!(a.organisation.primary_role.as_deref(), Some("RO197"));
    }

    #[test]
    fn a_bad_date_names_its_field() {
        let bad = br#"{"Organisation":{"Name":"X","OrgId":{"extension":"AB1"},
            "Date":[{"Type":"Operational","Start":"01/04/2001"}]}}"#;
        let err = parse_organisation(bad).unwrap_err();
        assert!(err.contains("Organisation.Date[0].Start"), "{err}");
    }

    #[test]
    fn a_record_without_a_code_is_rejected_with_the_field_named() {
        let err = parse_organisation(br#"{"Organisation":{"Name":"X"}}"#).unwrap_err();
        assert!(err.contains("OrgId.extension"), "{err}");
    }
}

//! ODS FHIR R4 `Organization` resource → [`OrgRecord`] (docs/ods-reference.md section 3).
//!
//! The same canonical model as ORD, so a FHIR snapshot diffs against an ORD one:
//! - `id` is the ODS code; `active` gives the status; `type[]` codings give the record class
//!   (`RC1`/`RC2`, as ORD's `orgRecordClass`) and `refOnly`.
//! - Each `Extension-England-OrganisationRole` is a role: `instanceID` is ORD's `uniqueRoleId`,
//!   `roleCode`, typed `Legal`/`Operational` periods, `active`.
//! - FHIR marks no role as primary. The API lists the primary role first (every published example
//!   does; UNVERIFIED as a rule), so the first role is taken as primary. FHIR has no
//!   organisation-level dates either: the primary role's periods stand in for them.
//! - UPRN is the string in `Extension-UKCore-AddressKey`; `address.district` is the county.
//! - Relationships are `OrganizationAffiliation` resources, fetched separately
//!   (`primary-organization=<code>`). The FHIR source stores an organisation as a `collection`
//!   Bundle: the Organization first, then its affiliations, then the participating organisations
//!   the search `_include`d. Each affiliation is a relationship: its code (`RE5`, `RE6`, …) is the
//!   type, `participatingOrganization` the target, the instance identifier ORD's `uniqueRelId`,
//!   typed periods and `active` as for roles. The target's primary role (ORD's
//!   `Target.PrimaryRoleId`, which the hierarchy needs) is the first role of the included
//!   participating Organization; without one it is left empty.
//! - A bare Organization (a payload stored without its affiliations) has no relationships.
//! - Successions are not on any FHIR resource the API documents with an example (docs/ods-reference.md 3:
//!   a `succession` CodeSystem of unknown shape), so a FHIR record has none. The diff does not
//!   compare successors between snapshots whose source does not supply them
//!   (`sources::supplies`).

use super::ord_json::text;
use super::{OrgRecord, Organisation, Period, Relationship, Role, parse_iso_date};
use crate::model::states::OrgStatus;
use serde_json::Value;
use std::collections::BTreeMap;

const ROLE_EXT: &str = "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-OrganisationRole";
const TYPED_PERIOD: &str = "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-TypedPeriod";
const TYPED_DATETIME: &str = "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-TypedDateTime";
const ADDRESS_KEY: &str = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AddressKey";

fn extensions<'a>(v: &'a Value, url: &str) -> Vec<&'a Value> {
    v.get("extension")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|e| e.get("url").and_then(Value::as_str) == Some(url))
                .collect()
        })
        .unwrap_or_default()
}

fn first_code(concept: Option<&Value>) -> Option<String> {
    concept?.get("coding")?.as_array()?.first()?.get("code").and_then(text)
}

fn date(value: Option<&Value>, field: &str) -> Result<Option<chrono::NaiveDate>, String> {
    match value.and_then(Value::as_str) {
        // dateTime values may carry a time: the date part is what ODS means.
        Some(s) => parse_iso_date(s.get(..10).unwrap_or(s), field).map(Some),
        None => Ok(None),
    }
}

/// Legal and Operational periods of an extension holding `Extension-England-TypedPeriod`s.
fn periods(holder: &Value, field: &str) -> Result<(Period, Period), String> {
    let (mut operational, mut legal) = (Period::default(), Period::default());
    for typed in extensions(holder, TYPED_PERIOD) {
        let kind = extensions(typed, "dateType")
            .first()
            .and_then(|t| t.get("valueCoding"))
            .and_then(|c| c.get("code"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(period) = extensions(typed, "period").first().and_then(|p| p.get("valuePeriod")) else {
            continue;
        };
        let p = Period {
            start: date(period.get("start"), &format!("{field}.period.start"))?,
            end: date(period.get("end"), &format!("{field}.period.end"))?,
        };
        match kind.as_deref() {
            Some("Operational") => operational = p,
            Some("Legal") => legal = p,
            _ => {}
        }
    }
    Ok((operational, legal))
}

/// The ODS code a FHIR reference names: `identifier.value`, else the id in `reference`
/// (`Organization/X`).
pub fn referenced_code(reference: Option<&Value>) -> Option<String> {
    let r = reference?;
    r.get("identifier")
        .and_then(|i| i.get("value"))
        .and_then(text)
        .or_else(|| {
            r.get("reference")
                .and_then(Value::as_str)
                .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned())
        })
        .filter(|c| !c.is_empty())
}

/// The first role code of an Organization (its primary role, as the API lists it).
pub fn first_role_code(org: &Value) -> Option<String> {
    extensions(org, ROLE_EXT).first().and_then(|ext| {
        first_code(
            extensions(ext, "roleCode")
                .first()
                .and_then(|r| r.get("valueCodeableConcept")),
        )
    })
}

/// One `OrganizationAffiliation` as a relationship of `code`.
fn parse_affiliation(aff: &Value, code: &str, roles: &BTreeMap<String, String>) -> Result<Relationship, String> {
    let id = aff.get("id").and_then(text).unwrap_or_default();
    let field = format!("OrganizationAffiliation[{id}]");
    let primary =
        referenced_code(aff.get("organization")).ok_or_else(|| format!("missing field `{field}.organization`"))?;
    if primary != code {
        return Err(format!(
            "`{field}.organization` is {primary}, not {code}: the affiliation belongs to another organisation"
        ));
    }
    let target_code = referenced_code(aff.get("participatingOrganization"))
        .ok_or_else(|| format!("missing field `{field}.participatingOrganization`"))?;
    let rel_type = aff
        .get("code")
        .and_then(Value::as_array)
        .and_then(|c| first_code(c.first()))
        .ok_or_else(|| format!("missing field `{field}.code` (the ODS relationship type)"))?;
    let instance = aff
        .get("identifier")
        .and_then(Value::as_array)
        .and_then(|ids| {
            ids.iter().find(|i| {
                i.get("system")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.ends_with("organization-relationship-instance"))
            })
        })
        .and_then(|i| i.get("value"))
        .and_then(text);
    let (operational, legal) = periods(aff, &field)?;
    Ok(Relationship {
        target_primary_role: roles.get(&target_code).cloned(),
        rel_type,
        target_code,
        unique_rel_id: instance.or_else(|| (!id.is_empty()).then_some(id)),
        operational,
        legal,
        status: aff
            .get("active")
            .and_then(Value::as_bool)
            .map(|a| OrgStatus::from_active(a).as_str().to_owned()),
        source_field: None,
    })
}

/// Parses an Organization, or the FHIR source's `collection` Bundle of an Organization with its
/// affiliations and the participating organisations.
pub fn parse_organization(payload: &[u8]) -> Result<OrgRecord, String> {
    let doc: Value = serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
    let resource_type = |v: &Value| v.get("resourceType").and_then(Value::as_str).map(str::to_owned);
    if resource_type(&doc).as_deref() == Some("Organization") {
        return parse_org(&doc, &[], &BTreeMap::new());
    }
    let resources: Vec<&Value> = (resource_type(&doc).as_deref() == Some("Bundle")
        && doc.get("type").and_then(Value::as_str) == Some("collection"))
    .then(|| doc.get("entry").and_then(Value::as_array))
    .flatten()
    .into_iter()
    .flatten()
    .filter_map(|e| e.get("resource"))
    .collect();
    let Some((org, rest)) = resources
        .split_first()
        .filter(|(o, _)| resource_type(o).as_deref() == Some("Organization"))
    else {
        return Err(
            "`resourceType` is not `Organization`, nor a `collection` Bundle whose first entry is one (is this an ODS FHIR Organization?)"
                .into(),
        );
    };
    let affiliations: Vec<&Value> = rest
        .iter()
        .copied()
        .filter(|r| resource_type(r).as_deref() == Some("OrganizationAffiliation"))
        .collect();
    let roles: BTreeMap<String, String> = rest
        .iter()
        .filter(|r| resource_type(r).as_deref() == Some("Organization"))
        .filter_map(|o| Some((o.get("id").and_then(text)?, first_role_code(o)?)))
        .collect();
    parse_org(org, &affiliations, &roles)
}

/// One `Organization` with its affiliations, mapped into the canonical record.
///
/// Long on purpose: one block per FHIR element (identifier, name, active, period extensions,
/// address, telecom, roles, affiliations), in the order the canonical model lists the fields.
fn parse_org(
    org: &Value,
    affiliations: &[&Value],
    target_roles: &BTreeMap<String, String>,
) -> Result<OrgRecord, String> {
    let code = org
        .get("id")
        .and_then(text)
        .filter(|c| !c.is_empty())
        .ok_or("missing field `Organization.id` (the ODS code)")?;
    let name = org
        .get("name")
        .and_then(text)
        .ok_or("missing field `Organization.name`")?;

    let mut roles = Vec::new();
    for (i, ext) in extensions(org, ROLE_EXT).into_iter().enumerate() {
        let field = format!("Organization.extension[OrganisationRole][{i}]");
        let role_id = first_code(
            extensions(ext, "roleCode")
                .first()
                .and_then(|r| r.get("valueCodeableConcept")),
        )
        .ok_or_else(|| format!("missing field `{field}.roleCode`"))?;
        let (operational, legal) = periods(ext, &field)?;
        let active = extensions(ext, "active")
            .first()
            .and_then(|a| a.get("valueBoolean"))
            .and_then(Value::as_bool);
        roles.push(Role {
            role_id,
            unique_role_id: extensions(ext, "instanceID")
                .first()
                .and_then(|v| v.get("valueInteger").or_else(|| v.get("valueString")))
                .and_then(text),
            is_primary: i == 0,
            operational,
            legal,
            status: active.map(|a| OrgStatus::from_active(a).as_str().to_owned()),
        });
    }
    let last_change_date = extensions(org, TYPED_DATETIME)
        .into_iter()
        .find(|e| {
            extensions(e, "type")
                .first()
                .and_then(|t| t.get("valueCoding"))
                .and_then(|c| c.get("code"))
                .and_then(Value::as_str)
                == Some("LastChangeDate")
        })
        .and_then(|e| {
            extensions(e, "dateTime")
                .first()
                .and_then(|d| d.get("valueDateTime"))
                .cloned()
        });
    let last_change_date = date(last_change_date.as_ref(), "Organization.extension[LastChangeDate]")?;

    let type_code = |system_suffix: &str| -> Option<String> {
        org.get("type")?.as_array()?.iter().find_map(|t| {
            t.get("coding")?.as_array()?.iter().find_map(|c| {
                (c.get("system")?.as_str()?.ends_with(system_suffix)).then(|| c.get("code").and_then(text))?
            })
        })
    };
    let telecom = |system: &str| -> Option<String> {
        org.get("telecom")?
            .as_array()?
            .iter()
            .find(|t| t.get("system").and_then(Value::as_str) == Some(system))?
            .get("value")
            .and_then(text)
    };
    let address = org.get("address").and_then(Value::as_array).and_then(|a| a.first());
    let line = |i: usize| {
        address
            .and_then(|a| a.get("line"))
            .and_then(Value::as_array)
            .and_then(|l| l.get(i))
            .and_then(text)
    };
    let addr = |key: &str| address.and_then(|a| a.get(key)).and_then(text);
    let uprn = address.and_then(|a| {
        extensions(a, ADDRESS_KEY).into_iter().find_map(|k| {
            extensions(k, "value")
                .first()
                .and_then(|v| v.get("valueString"))
                .and_then(text)
        })
    });
    let mut relationships = Vec::with_capacity(affiliations.len());
    for aff in affiliations {
        relationships.push(parse_affiliation(aff, &code, target_roles)?);
    }
    let primary = roles.first();
    let organisation = Organisation {
        code,
        name,
        status: org
            .get("active")
            .and_then(Value::as_bool)
            .map(|a| OrgStatus::from_active(a).as_str().to_owned()),
        record_class: type_code("ODSRecordClass"),
        primary_role: primary.map(|r| r.role_id.clone()),
        operational: primary.map(|r| r.operational.clone()).unwrap_or_default(),
        legal: primary.map(|r| r.legal.clone()).unwrap_or_default(),
        last_change_date,
        address_line1: line(0),
        address_line2: line(1),
        address_line3: line(2),
        town: addr("city"),
        county: addr("district"),
        postcode: addr("postalCode"),
        country: addr("country"),
        uprn,
        telephone: telecom("phone"),
        website: telecom("url"),
        ref_only: type_code("ODSRecordUseType").is_some_and(|t| t.eq_ignore_ascii_case("refOnly")),
        ..Organisation::default()
    };
    Ok(OrgRecord {
        organisation,
        roles,
        relationships,
        successors: Vec::new(),
    })
}

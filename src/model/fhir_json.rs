//! ODS FHIR R4 `Organization` resource → [`OrgRecord`] (REFERENCE.md section 3).
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
//! - Relationships and successions are not on Organization (they are OrganizationAffiliation and
//!   a CodeSystem), so a FHIR record has none.

use super::ord_json::text;
use super::{OrgRecord, Organisation, Period, Role, parse_iso_date};
use serde_json::Value;

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

pub fn parse_organization(payload: &[u8]) -> Result<OrgRecord, String> {
    let org: Value = serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
    if org.get("resourceType").and_then(Value::as_str) != Some("Organization") {
        return Err("`resourceType` is not `Organization` (is this an ODS FHIR Organization?)".into());
    }
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
    for (i, ext) in extensions(&org, ROLE_EXT).into_iter().enumerate() {
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
            status: active.map(|a| if a { "Active" } else { "Inactive" }.to_owned()),
        });
    }
    let last_change_date = extensions(&org, TYPED_DATETIME)
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
    let primary = roles.first();
    let organisation = Organisation {
        code,
        name,
        status: org
            .get("active")
            .and_then(Value::as_bool)
            .map(|a| if a { "Active" } else { "Inactive" }.to_owned()),
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
        relationships: Vec::new(),
        successors: Vec::new(),
    })
}

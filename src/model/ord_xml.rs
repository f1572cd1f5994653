//! One HSCOrgRefData `<Organisation>` element (the TRUD XML release, docs/ods-reference.md section 10) →
//! [`OrgRecord`].
//!
//! The XML and the ORD JSON are two spellings of one record, so this maps every element exactly
//! as `ord_json` maps the same key: dates by `Type` (`Operational`, `Legal`; others ignored),
//! `Status@value`, `LastChangeDate@value`, `GeoLoc/Location/*` (UPRN included), the first
//! `Contact` of type `tel` and of type `http`, roles, relationships with their target's primary
//! role, successions with their type. A pipeline switched between the two sources therefore
//! diffs with zero changes, and the error messages name the same fields.
//!
//! It streams the element's events with quick-xml (no tree is built): a stack of known element
//! names says where each event belongs, so a nested element with a familiar name (a `Target`'s
//! `OrgId`, a `Succ`'s `Type`) is never taken for the organisation's own. Some releases spell
//! `Relationship`/`Successor` for `Rel`/`Succ` (docs/ods-reference.md 10, traps): both are read.

use super::{OrgRecord, Organisation, Period, Relationship, Role, Successor, parse_iso_date};
use quick_xml::events::{BytesStart, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Organisation,
    Name,
    Date,
    Type,
    Start,
    End,
    OrgId,
    Status,
    LastChangeDate,
    GeoLoc,
    Location,
    Field(LocField),
    Contacts,
    Contact,
    Roles,
    Role,
    Rels,
    Rel,
    Succs,
    Succ,
    Target,
    PrimaryRoleId,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocField {
    AddrLn1,
    AddrLn2,
    AddrLn3,
    Town,
    County,
    PostCode,
    Country,
    Uprn,
}

fn tag(local: &[u8]) -> Tag {
    match local {
        b"Organisation" => Tag::Organisation,
        b"Name" => Tag::Name,
        b"Date" => Tag::Date,
        b"Type" => Tag::Type,
        b"Start" => Tag::Start,
        b"End" => Tag::End,
        b"OrgId" => Tag::OrgId,
        b"Status" => Tag::Status,
        b"LastChangeDate" => Tag::LastChangeDate,
        b"GeoLoc" => Tag::GeoLoc,
        b"Location" => Tag::Location,
        b"AddrLn1" => Tag::Field(LocField::AddrLn1),
        b"AddrLn2" => Tag::Field(LocField::AddrLn2),
        b"AddrLn3" => Tag::Field(LocField::AddrLn3),
        b"Town" => Tag::Field(LocField::Town),
        b"County" => Tag::Field(LocField::County),
        b"PostCode" => Tag::Field(LocField::PostCode),
        b"Country" => Tag::Field(LocField::Country),
        b"UPRN" => Tag::Field(LocField::Uprn),
        b"Contacts" => Tag::Contacts,
        b"Contact" => Tag::Contact,
        b"Roles" => Tag::Roles,
        b"Role" => Tag::Role,
        b"Rels" | b"Relationships" => Tag::Rels,
        b"Rel" | b"Relationship" => Tag::Rel,
        b"Succs" | b"Successors" => Tag::Succs,
        b"Succ" | b"Successor" => Tag::Succ,
        b"Target" => Tag::Target,
        b"PrimaryRoleId" => Tag::PrimaryRoleId,
        _ => Tag::Other,
    }
}

/// One `Date` element being read: its `Type`, `Start` and `End` values.
#[derive(Default)]
struct DateBuild {
    kind: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

/// A role, relationship or succession being read (they share dates, status and target).
#[derive(Default)]
struct ItemBuild {
    id: Option<String>,
    unique_id: Option<String>,
    primary: bool,
    operational: Period,
    legal: Period,
    dates: usize,
    status: Option<String>,
    target_code: Option<String>,
    target_role: Option<String>,
    succ_type: Option<String>,
}

#[derive(Default)]
struct OrgBuild {
    code: Option<String>,
    name: Option<String>,
    record_class: Option<String>,
    ref_only: bool,
    status: Option<String>,
    last_change_date: Option<String>,
    operational: Period,
    legal: Period,
    dates: usize,
    location: [Option<String>; 8],
    telephone: Option<String>,
    website: Option<String>,
    roles: Vec<Role>,
    relationships: Vec<Relationship>,
    successors: Vec<Successor>,
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, String> {
    match e.try_get_attribute(name) {
        Ok(Some(a)) => a
            .unescape_value()
            .map(|v| Some(v.into_owned()))
            .map_err(|err| format!("attribute `{}`: {err}", String::from_utf8_lossy(name))),
        Ok(None) => Ok(None),
        Err(err) => Err(format!("malformed attributes: {err}")),
    }
}

/// `true` as ORD writes it (`"true"`, any case, or `1`).
fn truthy(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Applies one finished `Date` to its owner's periods, exactly as `ord_json::periods` does: a
/// date of another type is ignored; a date that is not a date names its field.
fn apply_date(date: DateBuild, operational: &mut Period, legal: &mut Period, field: &str) -> Result<(), String> {
    let slot = match date.kind.as_deref() {
        Some("Operational") => operational,
        Some("Legal") => legal,
        _ => return Ok(()),
    };
    let parse = |v: Option<String>, which: &str| -> Result<_, String> {
        match v {
            Some(d) if !d.is_empty() => parse_iso_date(&d, &format!("{field}.{which}")).map(Some),
            _ => Ok(None),
        }
    };
    slot.start = parse(date.start, "Start")?;
    slot.end = parse(date.end, "End")?;
    Ok(())
}

/// Parses one `<Organisation>` element (with or without a namespace prefix).
///
/// Long on purpose: one event loop with one arm per element of the TRUD layout, each mapped as
/// `ord_json` maps the same key; split up, the element stack it keeps would have to be threaded
/// through every piece.
pub fn parse_organisation(payload: &[u8]) -> Result<OrgRecord, String> {
    let mut reader = quick_xml::Reader::from_reader(payload);
    let mut stack: Vec<Tag> = Vec::with_capacity(8);
    let mut text = String::new();
    let mut org = OrgBuild::default();
    let mut date: Option<DateBuild> = None;
    let mut item: Option<ItemBuild> = None;
    let mut seen_root = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {} of the element: {e}", reader.error_position()))?;
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let t = tag(e.local_name().as_ref());
            let parent = stack.last().copied();
            if parent.is_none() {
                if t != Tag::Organisation || seen_root {
                    return Err(format!(
                        "expected one <Organisation> element, found <{}>",
                        String::from_utf8_lossy(e.name().as_ref())
                    ));
                }
                seen_root = true;
                org.record_class = attr(e, b"orgRecordClass")?;
                org.ref_only = truthy(attr(e, b"refOnly")?.as_deref());
            }
            let depth = stack.len();
            match (t, parent) {
                (Tag::Date, _) => date = Some(DateBuild::default()),
                (Tag::Type | Tag::Start | Tag::End, Some(Tag::Date)) => {
                    if let Some(d) = date.as_mut() {
                        let slot = match t {
                            Tag::Type => &mut d.kind,
                            Tag::Start => &mut d.start,
                            _ => &mut d.end,
                        };
                        *slot = attr(e, b"value")?;
                    }
                }
                (Tag::OrgId, Some(Tag::Organisation)) => org.code = attr(e, b"extension")?,
                (Tag::OrgId, Some(Tag::Target)) => {
                    if let Some(i) = item.as_mut() {
                        i.target_code = attr(e, b"extension")?;
                    }
                }
                (Tag::PrimaryRoleId, Some(Tag::Target)) => {
                    if let Some(i) = item.as_mut() {
                        i.target_role = attr(e, b"id")?;
                    }
                }
                (Tag::Status, Some(Tag::Organisation)) => org.status = attr(e, b"value")?,
                (Tag::Status, Some(Tag::Role | Tag::Rel | Tag::Succ)) => {
                    if let Some(i) = item.as_mut() {
                        i.status = attr(e, b"value")?;
                    }
                }
                (Tag::LastChangeDate, Some(Tag::Organisation)) => org.last_change_date = attr(e, b"value")?,
                (Tag::Contact, Some(Tag::Contacts)) if depth == 2 => {
                    let kind = attr(e, b"type")?;
                    let value = attr(e, b"value")?;
                    match kind.as_deref() {
                        Some("tel") if org.telephone.is_none() => org.telephone = value,
                        Some("http") if org.website.is_none() => org.website = value,
                        _ => {}
                    }
                }
                (Tag::Role, Some(Tag::Roles)) | (Tag::Rel, Some(Tag::Rels)) | (Tag::Succ, Some(Tag::Succs))
                    if depth == 2 =>
                {
                    item = Some(ItemBuild {
                        id: attr(e, b"id")?,
                        unique_id: match t {
                            Tag::Role => attr(e, b"uniqueRoleId")?,
                            Tag::Rel => attr(e, b"uniqueRelId")?,
                            _ => attr(e, b"uniqueSuccId")?,
                        },
                        primary: truthy(attr(e, b"primaryRole")?.as_deref()),
                        ..ItemBuild::default()
                    });
                }
                _ => {}
            }
            text.clear();
            stack.push(t);
            if !empty {
                continue;
            }
        }
        match event {
            Event::Text(t) => text.push_str(&t.xml10_content().map_err(|e| format!("text that is not UTF-8: {e}"))?),
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) => {
                if let Some(c) = r
                    .resolve_char_ref()
                    .map_err(|e| format!("bad character reference: {e}"))?
                {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(|e| format!("bad entity: {e}"))?;
                    let resolved = quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity `&{name};`"))?;
                    text.push_str(resolved);
                }
            }
            Event::Eof => {
                return Err(if seen_root {
                    "the element ends before </Organisation> (cut off?)".into()
                } else {
                    "no <Organisation> element".into()
                });
            }
            Event::End(_) | Event::Empty(_) => {
                let t = stack.pop().expect("quick-xml checks that end tags match");
                let parent = stack.last().copied();
                let depth = stack.len();
                match (t, parent) {
                    (Tag::Organisation, None) => return finish(org),
                    (Tag::Name, Some(Tag::Organisation)) => org.name = Some(std::mem::take(&mut text)),
                    (Tag::Field(f), Some(Tag::Location)) if depth == 3 => {
                        org.location[f as usize] = Some(std::mem::take(&mut text));
                    }
                    (Tag::Type, Some(Tag::Succ)) => {
                        if let Some(i) = item.as_mut() {
                            i.succ_type = Some(std::mem::take(&mut text));
                        }
                    }
                    (Tag::Date, Some(Tag::Organisation)) => {
                        let field = format!("Organisation.Date[{}]", org.dates);
                        org.dates += 1;
                        if let Some(d) = date.take() {
                            apply_date(d, &mut org.operational, &mut org.legal, &field)?;
                        }
                    }
                    (Tag::Date, Some(owner @ (Tag::Role | Tag::Rel | Tag::Succ))) if depth == 3 => {
                        if let (Some(i), Some(d)) = (item.as_mut(), date.take()) {
                            let n = match owner {
                                Tag::Role => org.roles.len(),
                                Tag::Rel => org.relationships.len(),
                                _ => org.successors.len(),
                            };
                            let field = format!("Organisation.{}[{n}].Date[{}]", item_path(owner), i.dates);
                            i.dates += 1;
                            apply_date(d, &mut i.operational, &mut i.legal, &field)?;
                        }
                    }
                    (Tag::Role, Some(Tag::Roles)) if depth == 2 => {
                        let i = item.take().unwrap_or_default();
                        let field = format!("Organisation.Roles.Role[{}]", org.roles.len());
                        org.roles.push(Role {
                            role_id: i.id.ok_or_else(|| format!("missing field `{field}.id`"))?,
                            unique_role_id: i.unique_id,
                            is_primary: i.primary,
                            operational: i.operational,
                            legal: i.legal,
                            status: i.status,
                        });
                    }
                    (Tag::Rel, Some(Tag::Rels)) if depth == 2 => {
                        let i = item.take().unwrap_or_default();
                        let field = format!("Organisation.Rels.Rel[{}]", org.relationships.len());
                        let target_code = i
                            .target_code
                            .ok_or_else(|| format!("missing field `{field}.Target.OrgId.extension`"))?;
                        org.relationships.push(Relationship {
                            rel_type: i.id.ok_or_else(|| format!("missing field `{field}.id`"))?,
                            target_code,
                            target_primary_role: i.target_role,
                            unique_rel_id: i.unique_id,
                            operational: i.operational,
                            legal: i.legal,
                            status: i.status,
                            source_field: None,
                        });
                    }
                    (Tag::Succ, Some(Tag::Succs)) if depth == 2 => {
                        let i = item.take().unwrap_or_default();
                        let field = format!("Organisation.Succs.Succ[{}]", org.successors.len());
                        let target_code = i
                            .target_code
                            .ok_or_else(|| format!("missing field `{field}.Target.OrgId.extension`"))?;
                        org.successors.push(Successor {
                            kind: i.succ_type.ok_or_else(|| format!("missing field `{field}.Type`"))?,
                            target_code,
                            target_primary_role: i.target_role,
                            legal_start: i.legal.start,
                            unique_succ_id: i.unique_id,
                        });
                    }
                    _ => {}
                }
                text.clear();
            }
            _ => {}
        }
    }
}

fn item_path(owner: Tag) -> &'static str {
    match owner {
        Tag::Role => "Roles.Role",
        Tag::Rel => "Rels.Rel",
        _ => "Succs.Succ",
    }
}

fn finish(org: OrgBuild) -> Result<OrgRecord, String> {
    let code = org
        .code
        .filter(|c| !c.is_empty())
        .ok_or("missing field `Organisation.OrgId.extension` (the ODS code)")?;
    let name = org.name.ok_or("missing field `Organisation.Name`")?;
    let last_change_date = match org.last_change_date {
        Some(d) => Some(parse_iso_date(&d, "Organisation.LastChangeDate")?),
        None => None,
    };
    let primary_role = org.roles.iter().find(|r| r.is_primary).map(|r| r.role_id.clone());
    let [
        address_line1,
        address_line2,
        address_line3,
        town,
        county,
        postcode,
        country,
        uprn,
    ] = org.location;
    Ok(OrgRecord {
        organisation: Organisation {
            code,
            name,
            status: org.status,
            record_class: org.record_class,
            primary_role,
            operational: org.operational,
            legal: org.legal,
            last_change_date,
            address_line1,
            address_line2,
            address_line3,
            town,
            county,
            postcode,
            country,
            uprn,
            telephone: org.telephone,
            website: org.website,
            ref_only: org.ref_only,
            org_type: None,
            health_system: None,
            foundation_trust: None,
            parent_code: None,
            parent_relationship: None,
            ..Default::default()
        },
        roles: org.roles,
        relationships: org.relationships,
        successors: org.successors,
    })
}

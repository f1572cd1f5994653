//! One line of an ODS bulk CSV file (the headerless "standard 27 field format", docs/ods-reference.md 4)
//! → [`OrgRecord`].
//!
//! Real copies vary: re-saved files drop trailing empty columns (24–26 fields) and quoting; both
//! CRLF and LF occur. Lines are right-padded to 27 fields. CSV carries no roles or relationships
//! beyond its own columns, so the file kind supplies the primary role and the parent columns
//! (National Grouping, High Level Health Geography, commissioner) become relationships whose
//! `source_field` names the column they came from.

use super::{OrgRecord, Organisation, Period, Relationship, Role};
use crate::model::states::OrgStatus;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

pub const STANDARD_FIELDS: usize = 27;
/// Fewest fields a re-saved line keeps (everything after the GOR code, field 24, is empty).
pub const MIN_FIELDS: usize = 24;

/// Which ODS file a CSV is; decides roles, record class and which columns mean what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CsvKind {
    /// NHS trusts.
    Etr,
    /// NHS trust sites.
    Ets,
    /// GP practices and other prescribing cost centres.
    Epraccur,
    /// CCGs / sub-ICB locations.
    Eccg,
    /// Welsh local health boards.
    Wlhb,
    /// Welsh local health board sites.
    Wlhbsite,
}

impl CsvKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CsvKind::Etr => "etr",
            CsvKind::Ets => "ets",
            CsvKind::Epraccur => "epraccur",
            CsvKind::Eccg => "eccg",
            CsvKind::Wlhb => "wlhb",
            CsvKind::Wlhbsite => "wlhbsite",
        }
    }

    /// The ORD primary role this file's rows carry (docs/ods-reference.md 5). Which of RO142/RO144 Welsh
    /// boards carry is unverified, so pipelines may override it.
    pub fn default_primary_role(self) -> &'static str {
        match self {
            CsvKind::Etr => "RO197",
            CsvKind::Ets => "RO198",
            CsvKind::Epraccur => "RO177",
            CsvKind::Eccg => "RO98",
            CsvKind::Wlhb => "RO144",
            CsvKind::Wlhbsite => "RO149",
        }
    }

    fn record_class(self) -> &'static str {
        match self {
            CsvKind::Ets | CsvKind::Wlhbsite => "RC2",
            _ => "RC1",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CsvLayout {
    pub kind: CsvKind,
    pub primary_role: String,
}

impl CsvLayout {
    pub fn new(kind: CsvKind, primary_role: Option<&str>) -> Self {
        CsvLayout {
            kind,
            primary_role: primary_role.unwrap_or(kind.default_primary_role()).to_owned(),
        }
    }
}

/// Splits a line into its fields, reading the quoting strictly: a field is either unquoted (no
/// `"` in it) or wholly quoted (`"…"`, inner quotes doubled, followed by a comma or the line
/// end). A lenient reader takes `"A",B"C` as something, and a stray quote then shifts every later
/// field into the wrong column, which is how a corrupt line becomes a plausible, wrong record.
/// (One pass, no per-line reader to build: this runs for every line of a national file.)
fn split_strict(line: &[u8]) -> Result<Vec<String>, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = |field: usize, bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| format!("field {field} is not valid UTF-8 text"))
    };
    let mut fields = Vec::with_capacity(STANDARD_FIELDS);
    let mut i = 0;
    loop {
        let field = fields.len() + 1;
        if line.get(i) == Some(&b'"') {
            i += 1;
            let mut value = Vec::new();
            loop {
                match line.get(i) {
                    None => {
                        return Err(format!(
                            "field {field}: a quote opens and never closes (unbalanced quote)"
                        ));
                    }
                    Some(b'"') if line.get(i + 1) == Some(&b'"') => {
                        value.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b) => {
                        value.push(*b);
                        i += 1;
                    }
                }
            }
            fields.push(text(field, value)?);
            match line.get(i) {
                None => return Ok(fields),
                Some(b',') => i += 1,
                Some(_) => {
                    return Err(format!(
                        "field {field}: text after its closing quote (unbalanced quote)"
                    ));
                }
            }
        } else {
            let end = line[i..].iter().position(|b| *b == b',').map_or(line.len(), |p| i + p);
            let value = &line[i..end];
            if value.contains(&b'"') {
                return Err(format!(
                    "field {field}: a quote inside an unquoted field (unbalanced quote)"
                ));
            }
            fields.push(text(field, value.to_vec())?);
            if end == line.len() {
                return Ok(fields);
            }
            i = end + 1;
        }
    }
}

/// An ODS code: 3–10 capital letters and digits (trusts `RWR`, sites `RVVKC`, practices `A81001`).
pub fn is_code(text: &str) -> bool {
    (2..=10).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A UK postcode's shape (outward code, optional space, inward code), loosely: what matters is
/// that a shifted column (a date, a name) is not taken for one.
fn is_postcode(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| *c != ' ').collect();
    (5..=7).contains(&compact.len())
        && compact.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && compact.starts_with(|c: char| c.is_ascii_uppercase())
        && compact.chars().any(|c| c.is_ascii_digit())
        && compact[compact.len() - 2..].chars().all(|c| c.is_ascii_uppercase())
}

/// Splits one CSV line (quoted or not, with or without its line ending) into exactly 27 fields.
pub fn split_fields(line: &[u8]) -> Result<Vec<String>, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err("empty line".into());
    }
    let fields = split_strict(line)?;
    let n = fields.len();
    if !(MIN_FIELDS..=STANDARD_FIELDS).contains(&n) {
        return Err(format!(
            "{n} fields; the ODS standard layout has {STANDARD_FIELDS} (re-saved copies {MIN_FIELDS}-{STANDARD_FIELDS}): is this an ODS bulk file of the configured kind?"
        ));
    }
    let mut fields: Vec<String> = fields
        .into_iter()
        .map(|f| match f.trim() {
            t if t.len() == f.len() => f,
            t => t.to_owned(),
        })
        .collect();
    fields.resize(STANDARD_FIELDS, String::new());
    Ok(fields)
}

/// Parses one line of a bulk file into a record.
///
/// Long on purpose: the 27 fields in file order, each checked and mapped once, so a reader can
/// hold the line's layout (docs/ods-reference.md 4) beside the code.
pub fn parse_line(line: &[u8], layout: &CsvLayout, today: NaiveDate) -> Result<OrgRecord, String> {
    let f = split_fields(line)?;
    // Field numbers below are 1-based, as in the ODS file specifications.
    let field = |n: usize| -> Option<String> { Some(f[n - 1].clone()).filter(|s| !s.is_empty()) };
    let code = field(1).ok_or("field 1 (Organisation Code) is empty")?;
    if !is_code(&code) {
        return Err(format!(
            "field 1: `{code}` is not an ODS code (capital letters and digits)"
        ));
    }
    let name = field(2).ok_or("field 2 (Name) is empty")?;
    // Parent columns hold codes; a name or a date there means the columns have shifted.
    let parent_fields: &[usize] = match layout.kind {
        CsvKind::Epraccur | CsvKind::Ets => &[3, 4, 15],
        _ => &[3, 4],
    };
    for &n in parent_fields {
        if let Some(v) = field(n)
            && !is_code(&v)
        {
            return Err(format!(
                "field {n}: `{v}` is not an ODS code (a parent column): are the columns shifted?"
            ));
        }
    }
    if let Some(pc) = field(10)
        && !is_postcode(&pc)
    {
        return Err(format!("field 10: `{pc}` is not a postcode: are the columns shifted?"));
    }
    let open = csv_date(&f[10], 11)?;
    let close = csv_date(&f[11], 12)?;
    let kind = layout.kind;

    // epraccur has its own status column (legacy letters, DSE words); other files have none, so a
    // close date on or before today means closed. An unknown value of that closed vocabulary is
    // refused (the line is quarantined with the value): it is never guessed to be Active.
    // Files without a status column: an open date after today means not yet open (`Proposed`,
    // the epraccur word for it), so a trust announced for June is not shown as open in April.
    let detail = if kind == CsvKind::Epraccur {
        Some(epraccur_status(&f[12])?)
    } else if open.is_some_and(|o| o > today) {
        Some("Proposed")
    } else {
        None
    };
    let status = match detail {
        Some("Closed") => OrgStatus::Inactive.as_str(),
        Some(_) => OrgStatus::Active.as_str(),
        None if close.is_some_and(|c| c <= today) => OrgStatus::Inactive.as_str(),
        None => OrgStatus::Active.as_str(),
    };
    // Field 26: a numeric prescribing setting (legacy) or role codes (DSE, `RO80|RO87`); both
    // become the same non-primary roles, and the setting column says the same in both profiles.
    let (setting, setting_roles) = if kind == CsvKind::Epraccur {
        prescribing_setting(&f[25])?
    } else {
        (None, Vec::new())
    };
    let operational = Period {
        start: open,
        end: close,
    };
    let uid = |suffix: &str| Some(format!("{code}:csv:{suffix}"));

    let mut roles = vec![Role {
        role_id: layout.primary_role.clone(),
        unique_role_id: uid("primary"),
        is_primary: true,
        operational: operational.clone(),
        legal: Period::default(),
        status: Some(status.to_owned()),
    }];
    let mut extra_role = |role_id: &str| {
        roles.push(Role {
            role_id: role_id.to_owned(),
            unique_role_id: uid(role_id),
            is_primary: false,
            operational: operational.clone(),
            legal: Period::default(),
            status: Some(status.to_owned()),
        });
    };
    match kind {
        // Prescribing setting 4 = GP practice, the CSV equivalent of ORD role RO76; the other
        // settings have their own prescribing-cost-centre roles (see SETTING_ROLES).
        CsvKind::Epraccur => setting_roles.iter().for_each(|r| extra_role(r)),
        // Since late 2025, eccg field 14 carries pipe-separated non-primary role ids.
        CsvKind::Eccg => f[13]
            .split('|')
            .filter(|r| r.starts_with("RO"))
            .for_each(&mut extra_role),
        _ => {}
    }

    let mut relationships = Vec::new();
    let mut rel = |n: usize, rel_type: &str, period: Period| {
        if let Some(target) = field(n) {
            relationships.push(Relationship {
                rel_type: rel_type.to_owned(),
                target_code: target,
                target_primary_role: None,
                unique_rel_id: uid(&n.to_string()),
                operational: period,
                legal: Period::default(),
                status: Some(status.to_owned()),
                source_field: Some(format!("csv:{n}")),
            });
        }
    };
    rel(3, "NATIONAL_GROUPING", Period::default());
    rel(4, "HIGH_LEVEL_HEALTH_GEOGRAPHY", Period::default());
    match kind {
        CsvKind::Epraccur => {
            let joined = Period {
                start: csv_date(&f[15], 16)?,
                end: csv_date(&f[16], 17)?,
            };
            rel(15, "COMMISSIONER", joined);
        }
        // ets field 15 is read as the parent trust by third-party code (docs/ods-reference.md 4.3,
        // unverified); kept as a CSV-marked relationship so the hierarchy stage can judge it.
        CsvKind::Ets => rel(15, "PARENT", Period::default()),
        _ => {}
    }

    Ok(OrgRecord {
        organisation: Organisation {
            code,
            name,
            status: Some(status.to_owned()),
            status_detail: detail.map(str::to_owned),
            record_class: Some(kind.record_class().to_owned()),
            primary_role: Some(layout.primary_role.clone()),
            operational,
            legal: Period::default(),
            last_change_date: None,
            address_line1: field(5),
            address_line2: field(6),
            address_line3: field(7),
            town: field(8),
            county: field(9),
            postcode: field(10),
            country: None,
            uprn: None,
            telephone: field(18),
            website: None,
            ref_only: false,
            org_type: None,
            health_system: None,
            foundation_trust: None,
            parent_code: None,
            parent_relationship: None,
            prescribing_setting: setting,
            provider_purchaser: if kind == CsvKind::Epraccur { field(24) } else { None },
            amended_record: field(22),
        },
        roles,
        relationships,
        successors: Vec::new(),
    })
}

/// epraccur field 13 in either profile → the detailed status: legacy `A`/`C`/`D`/`P`, DSE
/// `ACTIVE`/`INACTIVE`/`DORMANT`/`PROPOSED` (docs/ods-reference.md 4.4, 4.10).
pub fn epraccur_status(text: &str) -> Result<&'static str, String> {
    Ok(match text {
        "A" | "ACTIVE" => OrgStatus::Active.as_str(),
        "C" | "INACTIVE" | "CLOSED" => "Closed",
        "D" | "DORMANT" => "Dormant",
        "P" | "PROPOSED" => "Proposed",
        "" => return Err("field 13 (Status Code) is empty: epraccur rows always carry one".into()),
        other => {
            return Err(format!(
                "field 13 (Status Code): `{other}` is not an ODS practice status (A/C/D/P, or ACTIVE/INACTIVE/DORMANT/PROPOSED in DSE files): a new value in ODS's vocabulary or a damaged line; it is not guessed"
            ));
        }
    })
}

/// Prescribing settings (epraccur field 26, legacy profile) and the ODS roles that name the same
/// kind of prescribing cost centre (2022 `/roles`; settings with no such role have none).
pub const SETTING_ROLES: [(&str, &[&str]); 18] = [
    ("0", &["RO72"]),
    ("1", &["RO87"]),
    ("2", &["RO80"]),
    ("3", &["RO80", "RO87"]),
    ("4", &["RO76"]),
    ("8", &["RO255"]),
    ("9", &["RO247"]),
    ("10", &["RO250"]),
    ("11", &["RO252"]),
    ("12", &["RO259"]),
    ("13", &["RO249"]),
    ("14", &["RO246"]),
    ("16", &["RO260"]),
    ("17", &["RO257"]),
    ("18", &["RO256"]),
    ("19", &["RO251"]),
    ("22", &["RO258"]),
    ("25", &["RO82"]),
];

/// Known settings without an ODS role of their own (kept as the setting only).
const SETTINGS_WITHOUT_ROLE: [&str; 4] = ["15", "20", "21", "24"];

/// epraccur field 26 → (setting, roles). Legacy files give a setting number; DSE files give role
/// codes, `|`-separated, which map back to the setting whose roles they are (other roles, such as
/// RO268 medicine supplier, are kept as roles). An empty field gives neither.
pub fn prescribing_setting(text: &str) -> Result<(Option<String>, Vec<String>), String> {
    if text.is_empty() {
        return Ok((None, Vec::new()));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let roles = SETTING_ROLES
            .iter()
            .find(|(s, _)| *s == text)
            .map(|(_, r)| r.iter().map(|r| (*r).to_owned()).collect());
        return match roles {
            Some(roles) => Ok((Some(text.to_owned()), roles)),
            None if SETTINGS_WITHOUT_ROLE.contains(&text) => Ok((Some(text.to_owned()), Vec::new())),
            None => Err(format!(
                "field 26 (Prescribing Setting): `{text}` is not a known setting (0-4, 8-22, 24, 25): a new value in ODS's vocabulary or a damaged line"
            )),
        };
    }
    let mut roles: Vec<String> = Vec::new();
    for part in text.split('|') {
        let part = part.trim();
        let ok = part.len() > 2 && part.starts_with("RO") && part[2..].bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return Err(format!(
                "field 26: `{text}` is neither a prescribing setting number nor ODS role codes (`RO76`, `RO80|RO87`)"
            ));
        }
        if !roles.iter().any(|r| r == part) {
            roles.push(part.to_owned());
        }
    }
    roles.sort();
    let is_setting_role = |r: &str| SETTING_ROLES.iter().any(|(_, rs)| rs.contains(&r));
    let mut setting_roles: Vec<&str> = roles
        .iter()
        .map(String::as_str)
        .filter(|r| is_setting_role(r))
        .collect();
    setting_roles.sort_unstable();
    let setting = SETTING_ROLES
        .iter()
        .find(|(_, rs)| {
            let mut rs = rs.to_vec();
            rs.sort_unstable();
            rs == setting_roles
        })
        .map(|(s, _)| (*s).to_owned());
    Ok((setting, roles))
}

/// Which publication profile a bulk file line shows (docs/ods-reference.md 4.10): `Some("dse")` for the
/// Data Search and Export reports (status words, role codes in field 26), `Some("legacy")` for
/// the retired CSV files (status letters, setting numbers), `None` when the line does not say.
pub fn line_profile(fields: &[String]) -> Option<&'static str> {
    let status = fields.get(12).map_or("", String::as_str);
    let setting = fields.get(25).map_or("", String::as_str);
    if status.len() > 1 || setting.starts_with("RO") {
        Some("dse")
    } else if status.len() == 1 || (!setting.is_empty() && setting.bytes().all(|b| b.is_ascii_digit())) {
        Some("legacy")
    } else {
        None
    }
}

fn csv_date(text: &str, field: usize) -> Result<Option<NaiveDate>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(text, "%Y%m%d")
        .map(Some)
        .map_err(|_| format!("field {field}: `{text}` is not a YYYYMMDD date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RM3: &[u8] = b"\"RM3\",\"SALFORD ROYAL NHS FOUNDATION TRUST\",\"Y62\",\"Q83\",\"STOTT LANE\",\"SALFORD\",\"\",\"MANCHESTER\",\"\",\"M6 8HD\",\"19930401\",\"20210930\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"0\",\"\",\"B\",\"\",\"\",\"\"\r\n";

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
    }

    #[test]
    fn a_quoted_crlf_line_and_its_unquoted_24_field_resave_parse_alike() {
        let layout = CsvLayout::new(CsvKind::Etr, None);
        let full = parse_line(RM3, &layout, today()).unwrap();
        let resaved = "RM3,SALFORD ROYAL NHS FOUNDATION TRUST,Y62,Q83,STOTT LANE,SALFORD,,MANCHESTER,,M6 8HD,19930401,20210930,,,,,,,,,,0,,B\n";
        assert_eq!(parse_line(resaved.as_bytes(), &layout, today()).unwrap(), full);
        assert_eq!(full.organisation.status.as_deref(), Some("Inactive"));
        assert_eq!(full.relationships.len(), 2);
        assert_eq!(full.relationships[1].target_code, "Q83");
        assert_eq!(full.relationships[1].source_field.as_deref(), Some("csv:4"));
    }

    #[test]
    fn a_future_close_date_keeps_the_row_active() {
        let layout = CsvLayout::new(CsvKind::Etr, None);
        let early = NaiveDate::from_ymd_opt(2021, 9, 1).unwrap();
        let rec = parse_line(RM3, &layout, early).unwrap();
        assert_eq!(rec.organisation.status.as_deref(), Some("Active"));
    }

    #[test]
    fn stray_quotes_and_shifted_columns_are_refused() {
        let layout = CsvLayout::new(CsvKind::Etr, None);
        assert_eq!(
            split_strict(b"A,B,,\"C \"\"x\"\"\",D\r\n").unwrap(),
            ["A", "B", "", "C \"x\"", "D"]
        );
        assert_eq!(split_strict(b"\"\",x").unwrap(), ["", "x"]);
        assert_eq!(split_strict(RM3).unwrap().len(), 27);
        // An unbalanced quote in the name: the csv crate would shift every later field.
        let bad = String::from_utf8_lossy(RM3).replace(
            "\"SALFORD ROYAL NHS FOUNDATION TRUST\"",
            "\"SALFORD ROYAL \"NHS FOUNDATION TRUST",
        );
        let err = parse_line(bad.as_bytes(), &layout, today()).unwrap_err();
        assert!(err.contains("unbalanced quote"), "{err}");
        let err = parse_line(
            b"RM3,NAME \"X,Y62,Q83,,,,,,M6 8HD,19930401,,,,,,,,,,,0,,B\n",
            &layout,
            today(),
        )
        .unwrap_err();
        assert!(err.contains("field 2") && err.contains("unbalanced"), "{err}");
        // A date where the postcode belongs, a name where a parent code belongs.
        let shifted = String::from_utf8_lossy(RM3).replace("\"M6 8HD\"", "\"19910401\"");
        assert!(
            parse_line(shifted.as_bytes(), &layout, today())
                .unwrap_err()
                .contains("field 10")
        );
        let shifted = String::from_utf8_lossy(RM3).replace("\"Q83\"", "\"TRUST HEADQUARTERS\"");
        assert!(
            parse_line(shifted.as_bytes(), &layout, today())
                .unwrap_err()
                .contains("field 4")
        );
    }

    // The real legacy and DSE lines of A81003 (docs/ods-reference.md 4.10): the same closed GP practice.
    const A81003_LEGACY: &[u8] = b"\"A81003\",\"VICTORIA MEDICAL PRACTICE\",\"Y54\",\"Q74\",\"THE HEALTH CENTRE\",\"VICTORIA ROAD\",\"HARTLEPOOL\",\"CLEVELAND\",\"\",\"TS26 8DB\",\"19740401\",\"20171031\",\"C\",\"B\",\"00K\",\"20130401\",\"20171031\",\"01429 272945\",\"\",\"\",\"\",\"0\",\"\",\"00K\",\"\",\"4\",\"\"\r\n";
    const A81003_DSE: &[u8] = b"\"A81003\",\"VICTORIA MEDICAL PRACTICE\",\"Y63\",\"QHM\",\"HEALTH CENTRE\",\"VICTORIA ROAD\",\"\",\"HARTLEPOOL\",\"\",\"TS26 8DB\",\"19740401\",\"20171031\",\"INACTIVE\",\"B\",\"00K\",\"20130401\",\"20171031\",\"01429 272945\",\"\",\"\",\"\",\"1\",\"\",\"00K\",\"\",\"RO76\",\"\"\r\n";

    #[test]
    fn legacy_letters_and_dse_words_read_as_the_same_status_setting_and_roles() {
        let layout = CsvLayout::new(CsvKind::Epraccur, None);
        let legacy = parse_line(A81003_LEGACY, &layout, today()).unwrap();
        let dse = parse_line(A81003_DSE, &layout, today()).unwrap();
        for rec in [&legacy, &dse] {
            assert_eq!(rec.organisation.status.as_deref(), Some("Inactive"));
            assert_eq!(rec.organisation.status_detail.as_deref(), Some("Closed"));
            assert_eq!(rec.organisation.prescribing_setting.as_deref(), Some("4"));
            assert_eq!(rec.organisation.provider_purchaser.as_deref(), Some("00K"));
            let roles: Vec<&str> = rec.role_ids().collect();
            assert_eq!(roles, ["RO177", "RO76"]);
        }
        assert_eq!(legacy.organisation.amended_record.as_deref(), Some("0"));
        assert_eq!(dse.organisation.amended_record.as_deref(), Some("1"));
        let fields = |line: &[u8]| split_fields(line).unwrap();
        assert_eq!(line_profile(&fields(A81003_LEGACY)), Some("legacy"));
        assert_eq!(line_profile(&fields(A81003_DSE)), Some("dse"));
        // Dormant and proposed practices are open, with their own detail.
        for (letter, word, detail) in [("D", "DORMANT", "Dormant"), ("P", "PROPOSED", "Proposed")] {
            for code in [letter, word] {
                let line = String::from_utf8_lossy(A81003_DSE).replace("\"INACTIVE\"", &format!("\"{code}\""));
                let rec = parse_line(line.as_bytes(), &layout, today()).unwrap();
                assert_eq!(rec.organisation.status.as_deref(), Some("Active"), "{code}");
                assert_eq!(rec.organisation.status_detail.as_deref(), Some(detail), "{code}");
            }
        }
    }

    #[test]
    fn unknown_statuses_and_settings_are_refused_and_role_lists_map_back_to_settings() {
        let layout = CsvLayout::new(CsvKind::Epraccur, None);
        for bad in ["\"SUSPENDED\"", "\"X\"", "\"\""] {
            let line = String::from_utf8_lossy(A81003_DSE).replace("\"INACTIVE\"", bad);
            let err = parse_line(line.as_bytes(), &layout, today()).unwrap_err();
            assert!(err.contains("field 13"), "{err}");
        }
        let line = String::from_utf8_lossy(A81003_LEGACY).replace(",\"4\",", ",\"7\",");
        assert!(
            parse_line(line.as_bytes(), &layout, today())
                .unwrap_err()
                .contains("field 26")
        );
        let line = String::from_utf8_lossy(A81003_DSE).replace("\"RO76\"", "\"GP\"");
        assert!(
            parse_line(line.as_bytes(), &layout, today())
                .unwrap_err()
                .contains("field 26")
        );
        assert_eq!(
            prescribing_setting("RO87|RO80").unwrap(),
            (Some("3".into()), vec!["RO80".into(), "RO87".into()])
        );
        assert_eq!(
            prescribing_setting("RO76|RO268").unwrap(),
            (Some("4".into()), vec!["RO268".into(), "RO76".into()])
        );
        assert_eq!(prescribing_setting("20").unwrap(), (Some("20".into()), vec![]));
        assert_eq!(prescribing_setting("").unwrap(), (None, vec![]));
    }

    #[test]
    fn a_trust_announced_for_a_later_date_is_not_open_yet() {
        let layout = CsvLayout::new(CsvKind::Etr, None);
        let future = String::from_utf8_lossy(RM3).replace("\"19930401\",\"20210930\"", "\"20260601\",\"\"");
        let rec = parse_line(future.as_bytes(), &layout, today()).unwrap();
        assert_eq!(rec.organisation.status_detail.as_deref(), Some("Proposed"));
        assert_eq!(rec.organisation.status.as_deref(), Some("Active"));
    }

    #[test]
    fn too_few_fields_and_bad_dates_are_explained() {
        let layout = CsvLayout::new(CsvKind::Etr, None);
        let err = parse_line(b"RM3,NAME,Y62\n", &layout, today()).unwrap_err();
        assert!(err.contains("3 fields"), "{err}");
        let bad = String::from_utf8_lossy(RM3).replace("19930401", "1993-04-01");
        let err = parse_line(bad.as_bytes(), &layout, today()).unwrap_err();
        assert!(err.contains("field 11"), "{err}");
    }
}

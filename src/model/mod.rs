//! The canonical ODS model: every source (ORD JSON, bulk CSV, later FHIR) is parsed into these
//! types, and every snapshot table is built from them (see [`tables`] for the Arrow schemas).
//!
//! Invariants:
//! - A snapshot's tables are a pure function of its `raw` records plus [`SCHEMA_VERSION`]: any
//!   snapshot can be re-derived (replayed) from its `raw` table.
//! - Parsing is lenient about shape (optional keys, numbers as strings and back) but strict about
//!   meaning: a record without a code or name, or with a date that is not a date, is quarantined
//!   with a reason naming the field, never silently dropped or half-filled.

pub mod code;
pub mod csv_row;
pub mod fhir_json;
pub mod ord_json;
pub mod ord_xml;
pub mod states;
pub mod tables;

use chrono::NaiveDate;
use serde::Serialize;

/// Bumped whenever a table's columns or their derivation change; recorded in every manifest.
pub const SCHEMA_VERSION: u32 = 2;

/// The organisation fields the trust table, its merge and the history carry, with their SQL
/// types (the model owns the list; the SQL stages read it).
pub const ODS_FIELDS: [(&str, &str); 25] = [
    ("name", "VARCHAR"),
    ("status", "VARCHAR"),
    ("record_class", "VARCHAR"),
    ("primary_role", "VARCHAR"),
    ("operational_start", "DATE"),
    ("operational_end", "DATE"),
    ("legal_start", "DATE"),
    ("legal_end", "DATE"),
    ("last_change_date", "DATE"),
    ("address_line1", "VARCHAR"),
    ("address_line2", "VARCHAR"),
    ("address_line3", "VARCHAR"),
    ("town", "VARCHAR"),
    ("county", "VARCHAR"),
    ("postcode", "VARCHAR"),
    ("country", "VARCHAR"),
    ("uprn", "VARCHAR"),
    ("telephone", "VARCHAR"),
    ("website", "VARCHAR"),
    ("ref_only", "BOOLEAN"),
    // Derived from the roles by the pipeline's role mapping; provenance source `derived`.
    ("org_type", "VARCHAR"),
    ("health_system", "VARCHAR"),
    ("foundation_trust", "BOOLEAN"),
    // Derived from the organisation's own relationships (pipeline::hierarchy).
    ("parent_code", "VARCHAR"),
    ("parent_relationship", "VARCHAR"),
];

/// A dated span (ODS `Date[]` entries of one `Type`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Period {
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Organisation {
    pub code: String,
    pub name: String,
    /// `Active` or `Inactive`, as ORD has it (bulk files: from their status column or close date).
    pub status: Option<String>,
    /// The source's own, finer status where it has one (epraccur: `Active`, `Closed`, `Dormant`,
    /// `Proposed`, from legacy letters or DSE words alike); absent elsewhere. Optional fields
    /// that only bulk files fill are left out of the row hash's JSON when empty, so records from
    /// the APIs hash as they did before these fields existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    pub record_class: Option<String>,
    pub primary_role: Option<String>,
    pub operational: Period,
    pub legal: Period,
    pub last_change_date: Option<NaiveDate>,
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub address_line3: Option<String>,
    pub town: Option<String>,
    pub county: Option<String>,
    pub postcode: Option<String>,
    pub country: Option<String>,
    /// Kept as text: it is an identifier (a JSON number in ORD, a string in FHIR).
    pub uprn: Option<String>,
    pub telephone: Option<String>,
    pub website: Option<String>,
    pub ref_only: bool,
    /// Derived by the pipeline's role mapping (not ODS fields): see `pipeline::roles`.
    pub org_type: Option<String>,
    pub health_system: Option<String>,
    pub foundation_trust: Option<bool>,
    /// Derived from the record's own active relationships: see `pipeline::hierarchy`.
    pub parent_code: Option<String>,
    /// Which relationship gave the parent (`RE6`, `RE5→RO261`, `csv:15 COMMISSIONER`, …).
    pub parent_relationship: Option<String>,
    /// epraccur field 26: the prescribing setting (`4` GP practice, `2` out of hours, …); for a
    /// DSE-profile file (role codes there) the setting those roles stand for, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prescribing_setting: Option<String>,
    /// epraccur field 24: the provider/purchaser organisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_purchaser: Option<String>,
    /// Field 22 of the bulk files, the Amended Record Indicator (`1` amended, `0` not): a fact
    /// about the release, not the organisation, so its changes have their own kind (`metadata`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amended_record: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Role {
    pub role_id: String,
    /// ORD `uniqueRoleId` (a number, sometimes a string); `<code>:csv:…` for roles read from CSV.
    pub unique_role_id: Option<String>,
    pub is_primary: bool,
    pub operational: Period,
    pub legal: Period,
    pub status: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Relationship {
    pub rel_type: String,
    pub target_code: String,
    pub target_primary_role: Option<String>,
    pub unique_rel_id: Option<String>,
    pub operational: Period,
    pub legal: Period,
    pub status: Option<String>,
    /// `None` for ORD relationships; `csv:<field number>` when derived from a bulk CSV column.
    pub source_field: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Successor {
    /// `Predecessor` or `Successor`, from the viewpoint of the record that carries it.
    pub kind: String,
    pub target_code: String,
    pub target_primary_role: Option<String>,
    pub legal_start: Option<NaiveDate>,
    pub unique_succ_id: Option<String>,
}

/// One organisation with its child rows, as parsed from one raw record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrgRecord {
    pub organisation: Organisation,
    pub roles: Vec<Role>,
    pub relationships: Vec<Relationship>,
    pub successors: Vec<Successor>,
}

impl OrgRecord {
    /// Every role id the record carries (primary and non-primary), for scope checks.
    pub fn role_ids(&self) -> impl Iterator<Item = &str> {
        self.roles.iter().map(|r| r.role_id.as_str())
    }
}

/// Where a raw payload came from; decides how it is parsed on replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFormat {
    /// An ORD `GET /organisations/{code}` body.
    OrdJson,
    /// One line of a headerless 27-field ODS bulk CSV file.
    Csv,
    /// An ODS FHIR R4 `Organization` resource.
    FhirJson,
    /// One `<Organisation>` element of a TRUD HSCOrgRefData XML release.
    OrdXml,
}

impl RawFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            RawFormat::OrdJson => "ord_json",
            RawFormat::Csv => "csv",
            RawFormat::FhirJson => "fhir_json",
            RawFormat::OrdXml => "ord_xml",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ord_json" => Some(RawFormat::OrdJson),
            "csv" => Some(RawFormat::Csv),
            "fhir_json" => Some(RawFormat::FhirJson),
            "ord_xml" => Some(RawFormat::OrdXml),
            _ => None,
        }
    }
}

/// A record exactly as received, before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub code: String,
    pub format: RawFormat,
    /// Where it was read: the URL, or `file:line` for CSV.
    pub origin: String,
    /// The bytes, shared rather than owned: a record read back from a snapshot points into the
    /// decoded `raw` column (no copy per record), one fetched now owns its own buffer.
    pub payload: Payload,
}

/// A raw record's bytes: an immutable, reference-counted Arrow buffer (`Buffer::from(vec)` takes
/// a `Vec<u8>` without copying; a slice of a decoded Parquet column shares its memory).
pub type Payload = arrow::buffer::Buffer;

/// A record that could not be fetched or parsed; kept with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quarantined {
    pub code: Option<String>,
    /// Where it came from: a URL, or `file:line`.
    pub source: String,
    pub reason: String,
    #[serde(skip)]
    pub raw: Vec<u8>,
}

/// A record ODS withdrew (ORD `/notifications`): kept as a tombstone in every later snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deletion {
    pub code: String,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    /// When ODS deleted it, as ODS states it.
    pub deleted_at: Option<String>,
}

/// What the parsers need besides the payload.
#[derive(Debug, Clone)]
pub struct ParseContext {
    /// CSV has no status column (except epraccur): a close date on or before this day means
    /// `Inactive`.
    pub today: NaiveDate,
    /// How CSV lines are read; `None` for sources that produce no CSV.
    pub csv: Option<csv_row::CsvLayout>,
}

/// Parses one raw record with the parser its format names.
pub fn parse_raw(raw: &RawRecord, ctx: &ParseContext) -> Result<OrgRecord, String> {
    match raw.format {
        RawFormat::OrdJson => ord_json::parse_organisation(&raw.payload),
        RawFormat::FhirJson => fhir_json::parse_organization(&raw.payload),
        RawFormat::OrdXml => ord_xml::parse_organisation(&raw.payload),
        RawFormat::Csv => match &ctx.csv {
            Some(layout) => csv_row::parse_line(&raw.payload, layout, ctx.today),
            None => Err("a CSV record, but the pipeline has no CSV source to say which file kind it is".into()),
        },
    }
}

/// Parses `YYYY-MM-DD` (API) dates.
pub(crate) fn parse_iso_date(text: &str, field: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("field `{field}`: `{text}` is not a YYYY-MM-DD date"))
}

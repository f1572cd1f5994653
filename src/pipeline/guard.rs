//! The publication-shift guard: decides whether a diff looks like a day of organisational change
//! or like a change of how ODS publishes (a new file profile, closed records re-published, a
//! recoding), and says what it sees.
//!
//! The limits themselves are `diff::check_shift`; this module adds what a person needs to decide:
//! the bulk file's publication profile on both sides (legacy CSV vs Data Search and Export,
//! docs/ods-reference.md 4.10), what the organisations that appeared or vanished are (closed
//! re-publications with their close-date range, codes this pipeline reported deleted before,
//! open organisations that vanished), and the recoding events behind mass parent moves. It
//! suggests `--accept-shift` only when that is what it sees, never for what looks like an
//! incomplete or wrong file.

use crate::diff::{Diff, ShiftLimits};
use crate::model::states::{ChangeKind, OrgStatus, Table};
use crate::snapshot::Manifest;
use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The guard stopped a run.
#[derive(Debug, thiserror::Error)]
#[error(
    "this snapshot moves more than a normal day of ODS changes:\n{}{}\nHelp: {help}",
    reasons.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"),
    if explanation.is_empty() { String::new() } else {
        format!("\nWhat moved:\n{}", explanation.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"))
    }
)]
pub struct ShiftError {
    pub reasons: Vec<String>,
    pub explanation: Vec<String>,
    pub help: String,
}

/// The guard's verdict on one diff.
#[derive(Debug, Default)]
pub struct Assessment {
    /// `(key, text)` per limit crossed, and the profile change: empty when the run may commit.
    pub reasons: Vec<(String, String)>,
    /// What the moved rows are (always filled when `reasons` is not empty).
    pub explanation: Vec<String>,
    /// Keys an accepted shift marks (`diff::label_shift`).
    pub label_keys: Vec<String>,
    /// Whether what moved looks like a publication change rather than a damaged, incomplete or
    /// wrong file.
    pub looks_like_publication: bool,
    /// Open organisations vanished beyond the limit (what makes it look incomplete).
    pub open_vanished: bool,
}

impl Assessment {
    pub fn error(&self) -> ShiftError {
        let help = if self.looks_like_publication {
            "this looks like a change of publication, not of the organisations. If that is what you expect, run again with --accept-shift: it is recorded in the run and the manifest, and the changes it explains are marked publication_shift".to_owned()
        } else if self.open_vanished {
            "this does not look like a publication change: open organisations vanished, so the source may be incomplete (a file cut off at a line end, a partial download) or not the file this pipeline reads. Fetch it again and check it; use --accept-shift only if you know ODS withdrew them".to_owned()
        } else {
            "this does not look like a publication change: many open organisations appeared, so the file may not be the one this pipeline reads (another file kind, another scope) or the scope changed. Check the source; use --accept-shift only if you expect them".to_owned()
        };
        ShiftError {
            reasons: self.reasons.iter().map(|(_, t)| t.clone()).collect(),
            explanation: self.explanation.clone(),
            help,
        }
    }
}

/// Columns the DSE profile re-lays out or re-encodes (docs/ods-reference.md 4.10): an accepted profile
/// shift marks their changes, and the row-level role changes field 26 brings.
const PROFILE_KEYS: [&str; 8] = [
    "organisations.address_line1",
    "organisations.address_line2",
    "organisations.address_line3",
    "organisations.town",
    "organisations.county",
    "organisations.telephone",
    "organisations.prescribing_setting",
    "roles.*",
];

fn profile_of(parameters: &serde_json::Value) -> Option<(String, String)> {
    let p = parameters.get("profile")?.as_str()?.to_owned();
    let why = parameters
        .get("profile_evidence")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    Some((p, why))
}

/// Judges a diff. `previous` is the manifest of the version diffed against; `parameters` the new
/// fetch's; `old_dir` the previous snapshot's folder; `history` the previous history file, if any.
pub fn assess(
    diff: &Diff,
    limits: &ShiftLimits,
    previous: &Manifest,
    parameters: &serde_json::Value,
    old_dir: &crate::warehouse::Tables,
    history: Option<&Path>,
    left_window: u64,
) -> Assessment {
    let mut a = Assessment {
        reasons: crate::diff::check_shift(&diff.summary.shift, limits),
        ..Assessment::default()
    };
    let mut publication = false;
    match (profile_of(&previous.source.parameters), profile_of(parameters)) {
        (_, Some((new, why))) if new == "mixed" => a.reasons.push((
            "profile".into(),
            format!("the file mixes the legacy and the DSE publication profiles ({why}): one release has one profile, so this looks like a damaged or hand-assembled file"),
        )),
        (Some((old, old_why)), Some((new, new_why))) if old != new => {
            publication = true;
            a.reasons.push((
                "profile".into(),
                format!(
                    "the file's publication profile changed from `{old}` ({old_why}) to `{new}` ({new_why}): the Data Search and Export reports replaced the bulk CSV files in October 2025 with other status words, role codes in field 26, re-laid-out addresses and closed records with today's geography; status and setting are read alike, the rest moves"
                ),
            ));
            a.label_keys.extend(PROFILE_KEYS.iter().map(|k| (*k).to_owned()));
        }
        _ => {}
    }
    if a.reasons.is_empty() {
        return a;
    }
    a.label_keys.extend(a.reasons.iter().map(|(k, _)| k.clone()));

    let s = &diff.summary.shift;
    let appeared = added_organisations(diff);
    let mut open_vanished = 0;
    if !appeared.is_empty() {
        let closed: Vec<&Option<String>> = appeared
            .values()
            .filter(|(st, _)| st.as_deref() == Some(OrgStatus::Inactive.as_str()))
            .map(|(_, end)| end)
            .collect();
        let ends: BTreeSet<&str> = closed.iter().filter_map(|e| e.as_deref()).collect();
        let range = match (ends.first(), ends.last()) {
            (Some(a), Some(b)) => format!(", closed {a} to {b}"),
            _ => String::new(),
        };
        let mut line = format!(
            "{} organisations appeared: {} closed{range}, {} open",
            appeared.len(),
            closed.len(),
            appeared.len() - closed.len()
        );
        let deleted_before = history.map(reported_deleted).unwrap_or_default();
        let again: Vec<&String> = appeared.keys().filter(|c| deleted_before.contains(*c)).collect();
        if !again.is_empty() {
            line.push_str(&format!(
                "; {} of them this pipeline reported deleted before (e.g. {})",
                again.len(),
                again.iter().take(5).map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        if closed.len() * 2 > appeared.len() {
            line.push_str(": closed records re-published (a wider publication window), not new organisations");
            publication = true;
        }
        a.explanation.push(line);
    }
    if s.deleted > 0 {
        let old = previous_status(&old_dir.file(Table::Organisations));
        let vanished = vanished_organisations(diff);
        let closed = vanished
            .iter()
            .filter(|c| old.get(*c).is_some_and(|st| st == OrgStatus::Inactive.as_str()))
            .count();
        open_vanished = vanished.len() - closed;
        a.explanation.push(format!(
            "{} organisations vanished: {open_vanished} open (ODS withdrew them, or the source is incomplete), {closed} closed",
            vanished.len()
        ));
    }
    if left_window > 0 {
        a.explanation.push(format!(
            "{left_window} closed organisations are no longer in the file (aged out of its publication window): kept as last published, not deleted"
        ));
    }
    let recodings = &diff.summary.recodings;
    if !recodings.is_empty() {
        let moved: u64 = recodings.iter().map(|r| r.organisations).sum();
        a.explanation.push(format!(
            "{} recoding events move {moved} parent links: {}{}",
            recodings.len(),
            recodings
                .iter()
                .take(6)
                .map(|r| format!("{} → {} ({})", r.old_code, r.new_code, r.organisations))
                .collect::<Vec<_>>()
                .join(", "),
            if recodings.len() > 6 { ", …" } else { "" }
        ));
        publication = true;
    }
    // Field moves alone (no organisation vanished) are a re-encoding of what is there.
    let only_fields = a.reasons.iter().all(|(k, _)| k != "organisations.*");
    let vanished_too_many =
        s.old_organisations > 0 && open_vanished as f64 / s.old_organisations as f64 > limits.max_vanished_share;
    a.looks_like_publication = !vanished_too_many && (publication || only_fields);
    a.open_vanished = vanished_too_many;
    a
}

fn read(path: &Path, columns: &[&str]) -> Vec<RecordBatch> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let Ok(builder) = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file) else {
        return Vec::new();
    };
    let schema = builder.parquet_schema();
    let indices: Vec<usize> = columns
        .iter()
        .filter_map(|c| schema.columns().iter().position(|d| d.name() == *c))
        .collect();
    if indices.len() != columns.len() {
        return Vec::new();
    }
    let mask = parquet::arrow::ProjectionMask::leaves(schema, indices);
    builder
        .with_projection(mask)
        .build()
        .map(|r| r.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

fn strings<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    b.column_by_name(name)?.as_any().downcast_ref::<StringArray>()
}

/// Added organisations with their status and close date, from the diff's `added` rows.
fn added_organisations(diff: &Diff) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let c = &diff.changes;
    let (Some(code), Some(table), Some(field), Some(kind), Some(new)) = (
        strings(c, "code"),
        strings(c, "table"),
        strings(c, "field"),
        strings(c, "change_kind"),
        strings(c, "new_value"),
    ) else {
        return BTreeMap::new();
    };
    let mut out: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for i in 0..c.num_rows() {
        if table.value(i) != Table::Organisations.as_str()
            || ChangeKind::at(kind, i) != Some(ChangeKind::Added)
            || field.is_null(i)
        {
            continue;
        }
        let entry = out.entry(code.value(i).to_owned()).or_default();
        let value = new.is_valid(i).then(|| new.value(i).to_owned());
        match field.value(i) {
            "status" => entry.0 = value,
            "operational_end" => entry.1 = value,
            _ => {}
        }
    }
    out
}

fn vanished_organisations(diff: &Diff) -> BTreeSet<String> {
    let c = &diff.changes;
    let (Some(code), Some(table), Some(kind)) = (strings(c, "code"), strings(c, "table"), strings(c, "change_kind"))
    else {
        return BTreeSet::new();
    };
    (0..c.num_rows())
        .filter(|&i| {
            table.value(i) == Table::Organisations.as_str() && ChangeKind::at(kind, i) == Some(ChangeKind::Deleted)
        })
        .map(|i| code.value(i).to_owned())
        .collect()
}

/// `code → status` of a snapshot's organisations.
fn previous_status(path: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for b in read(path, &["code", "status"]) {
        let (Some(code), Some(status)) = (strings(&b, "code"), strings(&b, "status")) else {
            continue;
        };
        for i in 0..b.num_rows() {
            if status.is_valid(i) {
                out.insert(code.value(i).to_owned(), status.value(i).to_owned());
            }
        }
    }
    out
}

/// Codes whose current history row is a `deleted` tombstone: this pipeline reported them deleted.
fn reported_deleted(history: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for b in read(history, &["code", "change_kind", "is_current"]) {
        let (Some(code), Some(kind)) = (strings(&b, "code"), strings(&b, "change_kind")) else {
            continue;
        };
        let Some(current) = b
            .column_by_name("is_current")
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
        else {
            continue;
        };
        for i in 0..b.num_rows() {
            if ChangeKind::at(kind, i) == Some(ChangeKind::Deleted) && current.value(i) {
                out.insert(code.value(i).to_owned());
            }
        }
    }
    out
}

/// A publication shift waits for the user's decision (`--accept-shift`).
impl crate::error::Classify for ShiftError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::User
    }
}

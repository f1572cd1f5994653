//! What a change row means, decided over the whole diff once every table is compared:
//!
//! - **One organisation, one count per kind.** The child rows (roles, relationships, successors)
//!   of an organisation that was added or deleted are that addition or deletion, not separate
//!   `reparented` or `changed` events; a relationship change is `reparented` only when the
//!   organisation's derived parent (`parent_code`) changed too and the change is to the link's
//!   target (a join-date edit on an unchanged commissioner is `changed`). The status and end
//!   dates of the roles and links of an organisation that closed (or reopened) are that closure.
//! - **Recodings as events.** When one run moves at least [`RECODING_MIN_ORGS`] organisations
//!   from one parent code to another (High Level Health Geography area teams → STPs, 3-character
//!   ICB codes → 5-character ones, CCG mergers), the moves are one event `<old>><new>`: listed
//!   in the summary and named on every change row it explains (`event` column).
//! - **Shift labels per column and qualifier** ([`label_shift`]).

use super::{Diff, PARENT_REL_TYPES, text};
use crate::model::states::{ChangeKind, Table};
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// Fewest organisations moved from one code to the same other code in one run that make a
/// recoding event rather than individual moves.
pub const RECODING_MIN_ORGS: usize = 3;

/// Organisations moved from one parent code to another in one run (see the module docs).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Recoding {
    /// `<old>><new>`: the value of the `event` column of the change rows it explains.
    pub event: String,
    pub old_code: String,
    pub new_code: String,
    /// Distinct organisations moved.
    pub organisations: u64,
    /// Which columns moved (`parent_code`, `relationships.HIGH_LEVEL_HEALTH_GEOGRAPHY`, …).
    pub fields: Vec<String>,
    /// Up to five organisation codes, in code order.
    pub examples: Vec<String>,
}

fn strings(a: &ArrayRef) -> StringArray {
    text(a).as_any().downcast_ref::<StringArray>().expect("text").clone()
}

/// The per-row columns a kind or event decision reads (concatenated, unsorted).
pub(super) struct Rows<'a> {
    pub code: &'a StringArray,
    pub table: &'a StringArray,
    pub field: &'a StringArray,
    pub old: &'a StringArray,
    pub new: &'a StringArray,
    pub kind: &'a StringArray,
    pub qualifier: &'a StringArray,
}

/// The final `change_kind` of every row (see the module docs).
pub(super) fn relabel(rows: &Rows<'_>) -> ArrayRef {
    let n = rows.code.len();
    let mut added: HashSet<&str> = HashSet::new();
    let mut deleted: HashSet<&str> = HashSet::new();
    let mut reparented: HashSet<&str> = HashSet::new();
    let mut closed: HashSet<&str> = HashSet::new();
    let mut reopened: HashSet<&str> = HashSet::new();
    for i in 0..n {
        if rows.table.value(i) != Table::Organisations.as_str() {
            continue;
        }
        match ChangeKind::at(rows.kind, i) {
            Some(ChangeKind::Added) => {
                added.insert(rows.code.value(i));
            }
            Some(ChangeKind::Deleted) => {
                deleted.insert(rows.code.value(i));
            }
            Some(ChangeKind::Closed) => {
                closed.insert(rows.code.value(i));
            }
            Some(ChangeKind::Reopened) => {
                reopened.insert(rows.code.value(i));
            }
            _ if rows.field.is_valid(i) && rows.field.value(i) == "parent_code" => {
                reparented.insert(rows.code.value(i));
            }
            _ => {}
        }
    }
    Arc::new(
        (0..n)
            .map(|i| {
                let (code, kind) = (rows.code.value(i), rows.kind.value(i));
                Some(if rows.table.value(i) == Table::Organisations.as_str() {
                    kind
                } else if added.contains(code) {
                    ChangeKind::Added.as_str()
                } else if deleted.contains(code) {
                    ChangeKind::Deleted.as_str()
                } else if let Some(k) = lifecycle(rows, i, &closed, &reopened) {
                    k.as_str()
                } else if ChangeKind::at(rows.kind, i) == Some(ChangeKind::Reparented)
                    && (!reparented.contains(code) || (rows.field.is_valid(i) && rows.field.value(i) != "target_code"))
                {
                    ChangeKind::Changed.as_str()
                } else {
                    // The kind `compare.rs` gave the row, kept as written.
                    kind
                })
            })
            .collect::<StringArray>(),
    )
}

/// A child row's status or end date that changed with its organisation's closure (or reopening)
/// is that closure: its roles and links end with it.
fn lifecycle(rows: &Rows<'_>, i: usize, closed: &HashSet<&str>, reopened: &HashSet<&str>) -> Option<ChangeKind> {
    if !rows.field.is_valid(i) || !matches!(rows.field.value(i), "status" | "operational_end" | "legal_end") {
        return None;
    }
    let code = rows.code.value(i);
    if closed.contains(code) {
        Some(ChangeKind::Closed)
    } else if reopened.contains(code) {
        Some(ChangeKind::Reopened)
    } else {
        None
    }
}

/// Recoding events and each row's event (null for rows no event explains).
pub(super) fn recodings(rows: &Rows<'_>) -> (Vec<Recoding>, ArrayRef) {
    let n = rows.code.len();
    // A move of a parent: the derived parent, or the target of a parent-type relationship.
    let moved = |i: usize| -> Option<(&str, &str, String)> {
        if !rows.field.is_valid(i) || !rows.old.is_valid(i) || !rows.new.is_valid(i) {
            return None;
        }
        let label = match (rows.table.value(i), rows.field.value(i)) {
            ("organisations", "parent_code") => "parent_code".to_owned(),
            ("relationships", "target_code")
                if rows.qualifier.is_valid(i) && PARENT_REL_TYPES.contains(&rows.qualifier.value(i)) =>
            {
                format!("relationships.{}", rows.qualifier.value(i))
            }
            _ => return None,
        };
        Some((rows.old.value(i), rows.new.value(i), label))
    };
    // (old, new) → (organisations moved, columns that moved).
    type Moves<'a> = BTreeMap<(&'a str, &'a str), (BTreeSet<&'a str>, BTreeSet<String>)>;
    let mut groups: Moves<'_> = BTreeMap::new();
    for i in 0..n {
        if let Some((old, new, label)) = moved(i) {
            let entry = groups.entry((old, new)).or_default();
            entry.0.insert(rows.code.value(i));
            entry.1.insert(label);
        }
    }
    groups.retain(|_, (codes, _)| codes.len() >= RECODING_MIN_ORGS);
    let id = |old: &str, new: &str| format!("{old}>{new}");
    let events: ArrayRef = Arc::new(
        (0..n)
            .map(|i| {
                moved(i)
                    .filter(|(old, new, _)| groups.contains_key(&(*old, *new)))
                    .map(|(old, new, _)| id(old, new))
            })
            .collect::<StringArray>(),
    );
    let mut list: Vec<Recoding> = groups
        .into_iter()
        .map(|((old, new), (codes, fields))| Recoding {
            event: id(old, new),
            old_code: old.to_owned(),
            new_code: new.to_owned(),
            organisations: codes.len() as u64,
            fields: fields.into_iter().collect(),
            examples: codes.iter().take(5).map(|c| (*c).to_owned()).collect(),
        })
        .collect();
    list.sort_by(|a, b| b.organisations.cmp(&a.organisations).then(a.event.cmp(&b.event)));
    (list, events)
}

/// Marks the changes an accepted publication shift explains (`publication_shift = true`), so
/// reports can tell a publication change from organisational change. `keys` are the guard's:
/// - `table.field[qualifier]` (relationship changes by type) marks only rows of that type;
/// - `table.field` marks that column's changes;
/// - `organisations.*` marks organisations that appeared or vanished, with all their rows;
/// - `<table>.*` (another table) marks that table's row-level changes.
pub fn label_shift(diff: &mut Diff, keys: &[String]) {
    let s = |name: &str| strings(super::col(&diff.changes, name));
    let (table, field, kind) = (s("table"), s("field"), s("change_kind"));
    let qualifier = diff.qualifiers.as_any().downcast_ref::<StringArray>().expect("text");
    let keys: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let orgs_moved = keys.contains("organisations.*");
    let previous = super::col(&diff.changes, "publication_shift")
        .as_any()
        .downcast_ref::<BooleanArray>()
        .expect("bool")
        .clone();
    let marks: BooleanArray = (0..diff.changes.num_rows())
        .map(|i| {
            let t = table.value(i);
            let row_level = !field.is_valid(i);
            let plain = format!("{t}.{}", if row_level { "*" } else { field.value(i) });
            let qualified = qualifier
                .is_valid(i)
                .then(|| format!("{plain}[{}]", qualifier.value(i)));
            let hit = previous.value(i)
                || qualified.as_deref().is_some_and(|q| keys.contains(q))
                || (!row_level && keys.contains(plain.as_str()))
                || (orgs_moved && matches!(ChangeKind::at(&kind, i), Some(ChangeKind::Added | ChangeKind::Deleted)))
                || (row_level && t != "organisations" && keys.contains(plain.as_str()));
            Some(hit)
        })
        .collect();
    // Per kind, organisations all of whose rows of that kind are marked.
    let code = strings(super::col(&diff.changes, "code"));
    let mut per: BTreeMap<(&str, &str), bool> = BTreeMap::new();
    for i in 0..diff.changes.num_rows() {
        let all = per.entry((kind.value(i), code.value(i))).or_insert(true);
        *all &= marks.value(i);
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for ((k, _), all) in per {
        if all {
            *counts.entry(k.to_owned()).or_default() += 1;
        }
    }
    diff.summary.by_kind_publication_shift = counts;
    let schema = diff.changes.schema();
    let index = schema.index_of("publication_shift").expect("column exists");
    let mut columns = diff.changes.columns().to_vec();
    columns[index] = Arc::new(marks);
    diff.changes = RecordBatch::try_new(schema, columns).expect("same shape");
}

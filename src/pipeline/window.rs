//! The publication window of the bulk files.
//!
//! A bulk file holds current organisations plus those closed recently ("closed in the current or
//! previous financial year", docs/ods-reference.md 4.1); the DSE reports drop practices closed before April
//! 2017. A closed organisation that is no longer in the file has aged out of that window: ODS has
//! not withdrawn it. Treating it as deleted reports every closed trust as deleted a year after it
//! closed, drops it from the history and the trust table, and then reports it `added` again when a
//! new publication profile brings old closures back (etr 2025-12). So such a record is kept, as
//! its last published line says it is (closed), and counted as `left_window` in the run.
//!
//! Only a closed organisation is kept. An open one that vanishes is a `deleted` change: ODS
//! withdrew it, or the file is incomplete (the completeness rules and the shift guard judge that).

use crate::model::states::OrgStatus;
use crate::model::{OrgRecord, ParseContext, RawRecord, parse_raw};
use std::collections::BTreeMap;

/// Closed organisations of the previous snapshot that the new file no longer lists, kept in
/// `current` and `parsed` as they were. Returns their codes in code order.
pub fn keep_closed(
    previous: &BTreeMap<String, RawRecord>,
    current: &mut BTreeMap<String, RawRecord>,
    parsed: &mut BTreeMap<String, OrgRecord>,
    ctx: &ParseContext,
    in_scope: &dyn Fn(&OrgRecord) -> bool,
) -> Vec<String> {
    let mut kept = Vec::new();
    for (code, raw) in previous {
        if current.contains_key(code) {
            continue;
        }
        // Judged on today's clock, as the rest of the snapshot is: a close date that has passed.
        let Ok(rec) = parse_raw(raw, ctx) else { continue };
        if rec.organisation.status.as_deref() == Some(OrgStatus::Inactive.as_str()) && in_scope(&rec) {
            current.insert(code.clone(), raw.clone());
            parsed.insert(code.clone(), rec);
            kept.push(code.clone());
        }
    }
    kept
}

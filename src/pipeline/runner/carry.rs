//! Carrying the previous snapshot's rows forward: what they were derived under, and parsing the records a delta did not touch.

use super::*;

/// What the derived columns of a snapshot depend on besides the raw records: the role mapping's
/// content (the built-in mapping has the shipped file's bytes, so both give the same id). Rows
/// derived under another are not carried forward.
pub(super) fn derivation_id(mapping: &crate::pipeline::MappingSource) -> String {
    match mapping.bytes() {
        Ok(bytes) => format!("role_mapping:{}", crate::model::tables::sha256_hex(&bytes)),
        Err(_) => "role_mapping:unreadable".into(),
    }
}

/// Parses (on every core) and derives the records of `current` that `parsed` lacks; one that no
/// longer parses leaves `current` for the quarantine.
pub(super) fn parse_carried(
    current: &mut BTreeMap<String, RawRecord>,
    parsed: &mut BTreeMap<String, OrgRecord>,
    quarantine: &mut Vec<Quarantined>,
    ctx: &ParseContext,
    derive: &(dyn Fn(&mut OrgRecord) + Sync),
) {
    use rayon::prelude::*;
    let carried: Vec<String> = current.keys().filter(|c| !parsed.contains_key(*c)).cloned().collect();
    let results: Vec<Result<OrgRecord, String>> = carried
        .par_iter()
        .map(|code| {
            parse_raw(&current[code], ctx).map(|mut rec| {
                derive(&mut rec);
                rec
            })
        })
        .collect();
    for (code, result) in carried.into_iter().zip(results) {
        match result {
            Ok(rec) => {
                parsed.insert(code, rec);
            }
            Err(reason) => {
                let raw = current.remove(&code).expect("key exists");
                quarantine.push(Quarantined {
                    code: Some(code),
                    source: raw.origin,
                    reason,
                    raw: raw.payload,
                });
            }
        }
    }
}

/// The previous snapshot's tables, read column-wise, for the rows of the organisations in `keep`.
pub(super) fn read_carried(
    store: &SnapshotStore,
    version: u64,
    keep: std::collections::HashSet<String>,
) -> Result<tables::Carried, crate::snapshot::SnapshotError> {
    let read = |table: &str| store.read_table_batches(version, table);
    Ok(tables::Carried {
        organisations: read("organisations")?,
        roles: read("roles")?,
        relationships: read("relationships")?,
        successors: read("successors")?,
        raw: read("raw")?,
        keep,
    })
}

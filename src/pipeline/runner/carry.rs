//! Carrying the previous snapshot's rows forward: what they were derived under, parsing the records a delta did not touch, and what a damaged previous snapshot means for a run.

use super::*;

/// What the rows of a snapshot depend on besides the raw records: the role mapping's content
/// (the built-in mapping has the shipped file's bytes, so both give the same id) and the scope
/// (which records a whole file keeps). Rows derived under another are not carried forward.
pub(super) fn derivation_id(
    mapping: &crate::pipeline::MappingSource,
    scope: &crate::sources::scope::ScopeConfig,
) -> String {
    let mapping = match mapping.bytes() {
        Ok(bytes) => crate::model::tables::sha256_hex(&bytes),
        Err(_) => "unreadable".into(),
    };
    let scope = serde_json::to_vec(scope).expect("the scope serialises");
    format!(
        "role_mapping:{mapping};scope:{}",
        &crate::model::tables::sha256_hex(&scope)[..16]
    )
}

/// Whether the records of a whole file that are byte-identical to their previous copy can keep
/// the previous snapshot's rows instead of being parsed again: the rows must have been derived
/// the same way (schema, role mapping, scope), by the same kind of source read the same way
/// (for a CSV, the same file kind and primary role), and the parse must not depend on the day.
/// Bulk files other than epraccur have no status column, so their status comes from the open
/// and close dates compared with today: carried across a day boundary it could be stale.
pub(super) fn reuse_unchanged(
    previous: &Manifest,
    derivation: &str,
    source_kind: crate::model::states::SourceKind,
    parameters: &serde_json::Value,
    today: NaiveDate,
) -> bool {
    let same_derivation = previous.schema_version == crate::model::SCHEMA_VERSION
        && previous.derivation.as_deref() == Some(derivation)
        && previous.source.kind == source_kind;
    if !same_derivation {
        return false;
    }
    if source_kind != crate::model::states::SourceKind::Csv {
        // The API and XML parsers read a record alone, whatever the day.
        return true;
    }
    let read_as = |p: &serde_json::Value| (p.get("kind").cloned(), p.get("primary_role").cloned());
    let kind = parameters.get("kind").and_then(|k| k.as_str());
    read_as(&previous.source.parameters) == read_as(parameters)
        && (kind == Some("epraccur") || previous.created_at.date_naive() == today)
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
                    raw: raw.payload.to_vec(),
                });
            }
        }
    }
}

/// The previous snapshot's tables, read column-wise (the four files on every core), for the
/// rows of the organisations in `keep`; the raw rows too when given (`raw`: the batches the
/// fetch stage read already).
pub(super) fn read_carried(
    store: &SnapshotStore,
    version: u64,
    keep: tables::CodeSet,
    raw: Option<Vec<arrow::array::RecordBatch>>,
) -> Result<tables::Carried, crate::snapshot::SnapshotError> {
    use crate::model::states::Table;
    use rayon::prelude::*;
    let tables = [
        Table::Organisations,
        Table::Roles,
        Table::Relationships,
        Table::Successors,
    ];
    let read: Vec<Vec<arrow::array::RecordBatch>> = tables
        .par_iter()
        .map(|&table| store.read_table_batches(version, table))
        .collect::<Result<_, _>>()?;
    let [organisations, roles, relationships, successors]: [Vec<arrow::array::RecordBatch>; 4] =
        read.try_into().expect("one result per table");
    Ok(tables::Carried {
        organisations,
        roles,
        relationships,
        successors,
        raw: raw.unwrap_or_default(),
        keep,
    })
}

/// Why a previous snapshot that cannot be read stops the run, and what to do.
pub(super) fn previous_hint(pipeline: &str, e: crate::snapshot::SnapshotError) -> anyhow::Error {
    anyhow::anyhow!(e).context(format!(
        "the previous snapshot cannot be read\nHelp: run `odsync verify {pipeline}` to see what is damaged; `odsync run {pipeline} --full` builds a new version without reading it"
    ))
}

/// A damaged table of the previous version: a warning for a baseline (it rebuilds everything
/// from the source; this is how `run --full` gets past one), an error for a delta.
pub(super) fn tolerate_damage(
    baseline: bool,
    pipeline: &str,
    what: &str,
    e: crate::snapshot::SnapshotError,
) -> Result<(), (Stage, anyhow::Error)> {
    if baseline {
        tracing::warn!(
            "the previous snapshot's {what} cannot be read ({e}); the baseline goes on without it (`odsync verify` names the damage)"
        );
        Ok(())
    } else {
        Err((Stage::ReadPreviousSnapshot, previous_hint(pipeline, e)))
    }
}

/// The derived columns of a parsed record: the parent from the hierarchy rules, the type from the
/// role mapping.
pub(super) fn derive(mapping: Option<&crate::pipeline::roles::RoleMapping>, rec: &mut OrgRecord) {
    crate::pipeline::hierarchy::apply(rec);
    if let Some(m) = mapping {
        m.apply(rec);
    }
}

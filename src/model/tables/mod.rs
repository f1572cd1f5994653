//! Arrow schemas of the snapshot tables, and building them from parsed records.
//!
//! Every table is sorted by its key before it is built, so the same records always give the same
//! batches (and the same Parquet bytes). Column specs are declared once per table; the schema and
//! the batch are both derived from that declaration so they cannot drift apart.

mod columns;
mod merge;

use super::states::Table;
use super::{Deletion, OrgRecord, Organisation, Quarantined, RawRecord, Relationship, Role, Successor};
use arrow::array::{RecordBatch, UInt64Array};
use arrow::datatypes::SchemaRef;
use columns::{Column, Kind, batch_of, opt, req, schema_of};
use merge::merge_sorted;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Table names, in the order they are written and listed in the manifest.
pub const SNAPSHOT_TABLES: [Table; 8] = [
    Table::Organisations,
    Table::Roles,
    Table::Relationships,
    Table::Successors,
    Table::CodeSystemRoles,
    Table::Quarantine,
    Table::Deletions,
    Table::Raw,
];

/// One entry of the ORD `/roles` code system, stored with every snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeSystemRole {
    pub role_id: String,
    pub code: Option<String>,
    pub display_name: Option<String>,
    pub primary_role: bool,
}

/// A set of organisation codes looked up once per carried row of every table (a million times a
/// night at 250k organisations): FxHash, as the codes come from ODS and the previous snapshot,
/// not from anyone who could choose them to collide.
pub type CodeSet = rustc_hash::FxHashSet<String>;

/// The tables of one snapshot, ready to write.
pub struct SnapshotTables {
    /// Each table's rows in key order, as one or more batches: a delta's table is the carried
    /// rows' runs (slices of the batches read back, not copied) between the new rows.
    pub batches: Vec<(Table, Vec<RecordBatch>)>,
    /// sha256 over every table's rows except `raw` (see [`build`]): equal hashes mean equal data.
    pub content_hash: String,
}

impl SnapshotTables {
    /// A table's batches, in key order (every table is always there).
    pub fn batches_of(&self, table: Table) -> &[RecordBatch] {
        self.batches
            .iter()
            .find(|(name, _)| *name == table)
            .map(|(_, b)| b.as_slice())
            .expect("every snapshot table is built")
    }

    pub fn rows(&self, table: Table) -> usize {
        self.batches
            .iter()
            .find(|(name, _)| *name == table)
            .map_or(0, |(_, b)| b.iter().map(RecordBatch::num_rows).sum())
    }
}

struct OrgRow {
    org: Organisation,
    row_hash: u64,
}

/// A child row (role, relationship, successor) with its organisation's code, its diff key and
/// its content hash.
struct ChildRow<T> {
    code: String,
    row_key: String,
    row_hash: u64,
    row: T,
}

impl<T: Serialize> ChildRow<T> {
    /// The hash is set later, with every row of the table at once (see [`hash_rows`]). The key is
    /// the row's ODS id, or else `<code>/<fallback>` (the fallback made only when needed).
    fn new(code: &str, row: T, unique_id: Option<String>, fallback: impl FnOnce(&T) -> String) -> Self {
        let row_key = unique_id.unwrap_or_else(|| format!("{code}/{}", fallback(&row)));
        ChildRow {
            code: code.to_owned(),
            row_key,
            row_hash: 0,
            row,
        }
    }
}

/// The rows in (key, code) order, rows with equal key and code in their input order.
///
/// Sorts a permutation (the key, the code and the position, compared on every core) and moves
/// each row once: sorting the rows themselves moved every row ~20 times (1.25M child rows of a
/// 250k-organisation file took 1.5 s, most of it copying).
fn sorted_by_key<T: Send + Sync>(rows: Vec<ChildRow<T>>) -> Vec<ChildRow<T>> {
    use rayon::prelude::*;
    // Rows built from records in code order are often in key order already (one role per
    // organisation, keys that start with the code): then there is nothing to sort or move.
    let in_order = |pair: &[ChildRow<T>]| (&pair[0].row_key, &pair[0].code) <= (&pair[1].row_key, &pair[1].code);
    if rows.par_windows(2).all(in_order) {
        return rows;
    }
    let mut order: Vec<u32> = (0..u32::try_from(rows.len()).expect("fewer than 4G child rows")).collect();
    order.par_sort_unstable_by(|&a, &b| {
        let (x, y) = (&rows[a as usize], &rows[b as usize]);
        (&x.row_key, &x.code, a).cmp(&(&y.row_key, &y.code, b))
    });
    let mut slots: Vec<Option<ChildRow<T>>> = rows.into_iter().map(Some).collect();
    order
        .into_iter()
        .map(|i| slots[i as usize].take().expect("a permutation names each row once"))
        .collect()
}

/// Makes the diff keys of a sorted child table unique. ODS ids (`uniqueRoleId`, …) are unique in
/// ODS, but a source that repeats one (two organisations, or one record listing a row twice)
/// must not give the diff two rows under one key: the colliding rows are keyed
/// `<id>@<code>` (then `#<n>` in record order), deterministically, and the table is sorted again.
fn unique_keys<T>(rows: &mut [ChildRow<T>]) {
    let mut changed = false;
    let mut i = 0;
    while i < rows.len() {
        let mut j = i + 1;
        while j < rows.len() && rows[j].row_key == rows[i].row_key {
            j += 1;
        }
        if j - i > 1 {
            changed = true;
            let mut last_code = String::new();
            let mut n = 0;
            for row in &mut rows[i..j] {
                n = if row.code == last_code { n + 1 } else { 0 };
                last_code.clone_from(&row.code);
                row.row_key = if n == 0 {
                    format!("{}@{}", row.row_key, row.code)
                } else {
                    format!("{}@{}#{n}", row.row_key, row.code)
                };
            }
        }
        i = j;
    }
    if changed {
        rows.sort_by(|a, b| (&a.row_key, &a.code).cmp(&(&b.row_key, &b.code)));
    }
}

/// Each row's hash: the first 64 bits of the sha256 of the row's canonical JSON, what the diff
/// compares (a number, so the diff joins and compares 8 bytes per row rather than text) and what
/// the content hash is made of. Rows are serialised and hashed on every core.
fn hash_rows<T: Sync>(rows: &[T], json: impl Fn(&T, &mut Vec<u8>) + Sync) -> Vec<u64> {
    use rayon::prelude::*;
    rows.par_chunks(8192)
        .flat_map_iter(|chunk| {
            let mut line = Vec::with_capacity(512);
            chunk
                .iter()
                .map(|row| {
                    line.clear();
                    json(row, &mut line);
                    let digest = Sha256::digest(&line);
                    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn to_json(out: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(out, value).expect("model types serialise");
}

fn organisation_columns() -> Vec<Column<OrgRow>> {
    use Kind::*;
    vec![
        req("code", Str(|r| Some(&r.org.code))),
        req("name", Str(|r| Some(&r.org.name))),
        opt("status", Str(|r| r.org.status.as_deref())),
        opt("status_detail", Str(|r| r.org.status_detail.as_deref())),
        opt("record_class", Str(|r| r.org.record_class.as_deref())),
        opt("primary_role", Str(|r| r.org.primary_role.as_deref())),
        opt("operational_start", Date(|r| r.org.operational.start)),
        opt("operational_end", Date(|r| r.org.operational.end)),
        opt("legal_start", Date(|r| r.org.legal.start)),
        opt("legal_end", Date(|r| r.org.legal.end)),
        opt("last_change_date", Date(|r| r.org.last_change_date)),
        opt("address_line1", Str(|r| r.org.address_line1.as_deref())),
        opt("address_line2", Str(|r| r.org.address_line2.as_deref())),
        opt("address_line3", Str(|r| r.org.address_line3.as_deref())),
        opt("town", Str(|r| r.org.town.as_deref())),
        opt("county", Str(|r| r.org.county.as_deref())),
        opt("postcode", Str(|r| r.org.postcode.as_deref())),
        opt("country", Str(|r| r.org.country.as_deref())),
        opt("uprn", Str(|r| r.org.uprn.as_deref())),
        opt("telephone", Str(|r| r.org.telephone.as_deref())),
        opt("website", Str(|r| r.org.website.as_deref())),
        req("ref_only", Bool(|r| r.org.ref_only)),
        opt("org_type", Str(|r| r.org.org_type.as_deref())),
        opt("health_system", Str(|r| r.org.health_system.as_deref())),
        opt("foundation_trust", OptBool(|r| r.org.foundation_trust)),
        opt("parent_code", Str(|r| r.org.parent_code.as_deref())),
        opt("parent_relationship", Str(|r| r.org.parent_relationship.as_deref())),
        opt("prescribing_setting", Str(|r| r.org.prescribing_setting.as_deref())),
        opt("provider_purchaser", Str(|r| r.org.provider_purchaser.as_deref())),
        opt("amended_record", Str(|r| r.org.amended_record.as_deref())),
        req("row_hash", U64(|r| r.row_hash)),
    ]
}

fn role_columns() -> Vec<Column<ChildRow<Role>>> {
    use Kind::*;
    vec![
        req("code", Str(|r| Some(&r.code))),
        req("role_id", Str(|r| Some(&r.row.role_id))),
        opt("unique_role_id", Str(|r| r.row.unique_role_id.as_deref())),
        req("is_primary", Bool(|r| r.row.is_primary)),
        opt("operational_start", Date(|r| r.row.operational.start)),
        opt("operational_end", Date(|r| r.row.operational.end)),
        opt("legal_start", Date(|r| r.row.legal.start)),
        opt("legal_end", Date(|r| r.row.legal.end)),
        opt("status", Str(|r| r.row.status.as_deref())),
        req("row_key", Str(|r| Some(&r.row_key))),
        req("row_hash", U64(|r| r.row_hash)),
    ]
}

fn relationship_columns() -> Vec<Column<ChildRow<Relationship>>> {
    use Kind::*;
    vec![
        req("code", Str(|r| Some(&r.code))),
        req("rel_type", Str(|r| Some(&r.row.rel_type))),
        req("target_code", Str(|r| Some(&r.row.target_code))),
        opt("target_primary_role", Str(|r| r.row.target_primary_role.as_deref())),
        opt("unique_rel_id", Str(|r| r.row.unique_rel_id.as_deref())),
        opt("operational_start", Date(|r| r.row.operational.start)),
        opt("operational_end", Date(|r| r.row.operational.end)),
        opt("legal_start", Date(|r| r.row.legal.start)),
        opt("legal_end", Date(|r| r.row.legal.end)),
        opt("status", Str(|r| r.row.status.as_deref())),
        opt("source_field", Str(|r| r.row.source_field.as_deref())),
        req("row_key", Str(|r| Some(&r.row_key))),
        req("row_hash", U64(|r| r.row_hash)),
    ]
}

fn successor_columns() -> Vec<Column<ChildRow<Successor>>> {
    use Kind::*;
    vec![
        req("code", Str(|r| Some(&r.code))),
        req("type", Str(|r| Some(&r.row.kind))),
        req("target_code", Str(|r| Some(&r.row.target_code))),
        opt("target_primary_role", Str(|r| r.row.target_primary_role.as_deref())),
        opt("legal_start", Date(|r| r.row.legal_start)),
        opt("unique_succ_id", Str(|r| r.row.unique_succ_id.as_deref())),
        req("row_key", Str(|r| Some(&r.row_key))),
        req("row_hash", U64(|r| r.row_hash)),
    ]
}

fn code_system_columns() -> Vec<Column<CodeSystemRole>> {
    use Kind::*;
    vec![
        req("role_id", Str(|r| Some(&r.role_id))),
        opt("code", Str(|r| r.code.as_deref())),
        opt("display_name", Str(|r| r.display_name.as_deref())),
        req("primary_role", Bool(|r| r.primary_role)),
    ]
}

fn quarantine_columns() -> Vec<Column<Quarantined>> {
    use Kind::*;
    vec![
        opt("code", Str(|r| r.code.as_deref())),
        req("source", Str(|r| Some(&r.source))),
        req("reason", Str(|r| Some(&r.reason))),
        req("raw", Bin(|r| &r.raw)),
    ]
}

fn deletion_columns() -> Vec<Column<Deletion>> {
    use Kind::*;
    vec![
        req("code", Str(|r| Some(&r.code))),
        opt("reason_code", Str(|r| r.reason_code.as_deref())),
        opt("reason", Str(|r| r.reason.as_deref())),
        opt("deleted_at", Str(|r| r.deleted_at.as_deref())),
    ]
}

struct RawRow {
    raw: RawRecord,
    sha256: String,
}

fn raw_columns() -> Vec<Column<RawRow>> {
    use Kind::*;
    vec![
        req("code", Str(|r| Some(&r.raw.code))),
        req("format", Str(|r| Some(r.raw.format.as_str()))),
        req("origin", Str(|r| Some(&r.raw.origin))),
        req("sha256", Str(|r| Some(&r.sha256))),
        req("payload", Bin(|r| &r.raw.payload)),
    ]
}

/// The schema of a snapshot table by name (for readers and documentation).
pub fn schema(table: Table) -> Option<SchemaRef> {
    Some(match table {
        Table::Organisations => schema_of(&organisation_columns()),
        Table::Roles => schema_of(&role_columns()),
        Table::Relationships => schema_of(&relationship_columns()),
        Table::Successors => schema_of(&successor_columns()),
        Table::CodeSystemRoles => schema_of(&code_system_columns()),
        Table::Quarantine => schema_of(&quarantine_columns()),
        Table::Deletions => schema_of(&deletion_columns()),
        Table::Raw => schema_of(&raw_columns()),
        Table::Changes | Table::History | Table::Trusts | Table::Conflicts | Table::Provenance | Table::Sources => {
            return None;
        }
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn json_line(hasher: &mut Sha256, row: &impl Serialize) {
    hasher.update(serde_json::to_vec(row).expect("model types serialise"));
    hasher.update(b"\n");
}

/// Rows a delta carries forward from the previous snapshot, column-wise: every table's rows of
/// the organisations in `keep` (those the delta did not touch), read from its Parquet files as
/// they are (not parsed again). The batches of each table are in key order, as written.
pub struct Carried {
    pub organisations: Vec<RecordBatch>,
    pub roles: Vec<RecordBatch>,
    pub relationships: Vec<RecordBatch>,
    pub successors: Vec<RecordBatch>,
    /// Empty when every raw record is new (a whole file was read again).
    pub raw: Vec<RecordBatch>,
    pub keep: CodeSet,
}

/// Builds every snapshot table. Inputs may come in any order; each table is sorted by its key.
///
/// The content hash covers the parsed tables (through every row's 64-bit row hash, in key order)
/// and the small tables and the quarantine (as JSON), not the `raw` bytes: a source that
/// re-serialises an unchanged record differently (key order, whitespace) is not a change.
pub fn build(
    records: Vec<OrgRecord>,
    raw: Vec<RawRecord>,
    quarantine: Vec<Quarantined>,
    code_system: Vec<CodeSystemRole>,
    deletions: Vec<Deletion>,
) -> SnapshotTables {
    build_carried(None, records, raw, quarantine, code_system, deletions).expect("keys are unique without carried rows")
}

/// [`build`] on top of rows carried forward from the previous snapshot: the new records' rows
/// are built and hashed, then merged with the carried ones in key order, so the result is the
/// table a baseline of the same records builds (the carried rows were built the same way).
/// `None` when a new child row's key collides with a carried one (a source repeating an id
/// across organisations): the caller then builds from every record instead.
///
/// Long on purpose: one pass per step over the same rows (sort, child rows, raw hashes, row
/// hashes, batches, merge, content hash), each timed at trace level, in the order the content
/// hash depends on.
pub fn build_carried(
    carried: Option<Carried>,
    mut records: Vec<OrgRecord>,
    mut raw: Vec<RawRecord>,
    mut quarantine: Vec<Quarantined>,
    mut code_system: Vec<CodeSystemRole>,
    mut deletions: Vec<Deletion>,
) -> Option<SnapshotTables> {
    let t0 = std::time::Instant::now();
    let lap = |what: &str| tracing::trace!(ms = t0.elapsed().as_millis() as u64, what, "build tables");
    deletions.sort_by(|a, b| a.code.cmp(&b.code));
    deletions.dedup_by(|a, b| a.code == b.code);
    records.sort_by(|a, b| a.organisation.code.cmp(&b.organisation.code));
    raw.sort_by(|a, b| a.code.cmp(&b.code));
    quarantine.sort_by(|a, b| (&a.code, &a.source, &a.reason).cmp(&(&b.code, &b.source, &b.reason)));
    code_system.sort_by(|a, b| a.role_id.cmp(&b.role_id));

    // Sized up front: growing them by doubling copied every child row again and touched twice
    // the memory (millions of rows at national scale).
    let mut orgs = Vec::with_capacity(records.len());
    let mut roles = Vec::with_capacity(records.iter().map(|r| r.roles.len()).sum());
    let mut rels = Vec::with_capacity(records.iter().map(|r| r.relationships.len()).sum());
    let mut succs = Vec::with_capacity(records.iter().map(|r| r.successors.len()).sum());
    for rec in records {
        let code = rec.organisation.code.clone();
        orgs.push(OrgRow {
            org: rec.organisation,
            row_hash: 0,
        });
        for r in rec.roles {
            let uid = r.unique_role_id.clone();
            roles.push(ChildRow::new(&code, r, uid, |r| r.role_id.clone()));
        }
        for r in rec.relationships {
            let uid = r.unique_rel_id.clone();
            rels.push(ChildRow::new(&code, r, uid, |r| {
                format!("{}/{}", r.rel_type, r.target_code)
            }));
        }
        for r in rec.successors {
            let uid = r.unique_succ_id.clone();
            succs.push(ChildRow::new(&code, r, uid, |r| {
                format!("{}/{}", r.kind, r.target_code)
            }));
        }
    }
    // Child tables are sorted by their diff key, so both sides of a diff list rows in one order.
    // (Stable, so rows with one key keep their record order; on every core.)
    let mut roles = sorted_by_key(roles);
    let mut rels = sorted_by_key(rels);
    let mut succs = sorted_by_key(succs);
    unique_keys(&mut roles);
    unique_keys(&mut rels);
    unique_keys(&mut succs);
    lap("child rows");
    let raw_rows: Vec<RawRow> = {
        use rayon::prelude::*;
        raw.into_par_iter()
            .map(|r| RawRow {
                sha256: sha256_hex(&r.payload),
                raw: r,
            })
            .collect()
    };
    lap("raw sha256");
    let hashes = hash_rows(&orgs, |r, out| to_json(out, &r.org));
    orgs.iter_mut().zip(hashes).for_each(|(r, h)| r.row_hash = h);
    let hashes = hash_rows(&roles, |r, out| to_json(out, &(&r.code, &r.row)));
    roles.iter_mut().zip(hashes).for_each(|(r, h)| r.row_hash = h);
    let hashes = hash_rows(&rels, |r, out| to_json(out, &(&r.code, &r.row)));
    rels.iter_mut().zip(hashes).for_each(|(r, h)| r.row_hash = h);
    let hashes = hash_rows(&succs, |r, out| to_json(out, &(&r.code, &r.row)));
    succs.iter_mut().zip(hashes).for_each(|(r, h)| r.row_hash = h);

    lap("row hashes");
    let mut organisations = vec![batch_of(&organisation_columns(), &orgs)];
    drop(orgs);
    let mut role_batch = vec![batch_of(&role_columns(), &roles)];
    let mut rel_batch = vec![batch_of(&relationship_columns(), &rels)];
    let mut succ_batch = vec![batch_of(&successor_columns(), &succs)];
    let mut raw_batch = vec![batch_of(&raw_columns(), &raw_rows)];
    drop((roles, rels, succs, raw_rows));
    lap("batches");
    if let Some(c) = carried {
        // (Child keys are unique per table after `unique_keys`, so the key alone orders them.)
        let keep = |code: &str| c.keep.contains(code);
        organisations = merge_sorted(&c.organisations, &keep, &organisations[0], "code")?;
        role_batch = merge_sorted(&c.roles, &keep, &role_batch[0], "row_key")?;
        rel_batch = merge_sorted(&c.relationships, &keep, &rel_batch[0], "row_key")?;
        succ_batch = merge_sorted(&c.successors, &keep, &succ_batch[0], "row_key")?;
        raw_batch = merge_sorted(&c.raw, &keep, &raw_batch[0], "code")?;
    }

    lap("merged with carried");
    let mut hasher = Sha256::new();
    hasher.update(format!("odsync-schema-{}\n", super::SCHEMA_VERSION));
    for (name, batch) in [
        (Table::Organisations, &organisations),
        (Table::Roles, &role_batch),
        (Table::Relationships, &rel_batch),
        (Table::Successors, &succ_batch),
    ] {
        hasher.update(format!("#{name}\n"));
        for part in batch {
            let hashes = part
                .column_by_name("row_hash")
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
                .expect("every parsed table has its row hash");
            for h in hashes.values() {
                hasher.update(h.to_be_bytes());
            }
        }
    }
    hasher.update(b"#code_system_roles\n");
    code_system.iter().for_each(|r| json_line(&mut hasher, r));
    hasher.update(b"#deletions\n");
    deletions.iter().for_each(|r| json_line(&mut hasher, r));
    hasher.update(b"#quarantine\n");
    for q in &quarantine {
        json_line(&mut hasher, q);
        hasher.update(sha256_hex(&q.raw));
    }

    Some(SnapshotTables {
        batches: vec![
            (Table::Organisations, organisations),
            (Table::Roles, role_batch),
            (Table::Relationships, rel_batch),
            (Table::Successors, succ_batch),
            (
                Table::CodeSystemRoles,
                vec![batch_of(&code_system_columns(), &code_system)],
            ),
            (Table::Quarantine, vec![batch_of(&quarantine_columns(), &quarantine)]),
            (Table::Deletions, vec![batch_of(&deletion_columns(), &deletions)]),
            (Table::Raw, raw_batch),
        ],
        content_hash: format!("{:x}", hasher.finalize()),
    })
}

//! The diff's summary: organisations per change kind, values per field, recodings.

use super::*;

/// Counts of a diff: what `odsync diff`, `--json`, the run record and tests read.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct DiffSummary {
    pub from_version: u64,
    pub to_version: u64,
    /// Rows of `changes`.
    pub changes: u64,
    /// Distinct organisations per change kind: an organisation counts once in each kind it has
    /// (a renamed and reparented trust is one `renamed` and one `reparented`); the rows of an
    /// added or deleted organisation count only as that.
    pub by_kind: BTreeMap<String, u64>,
    /// Of `by_kind`, the organisations whose changes of that kind an accepted publication shift
    /// explains (every row marked `publication_shift`): the rest is organisational change.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_kind_publication_shift: BTreeMap<String, u64>,
    /// Changed values per `table.field` (row-level added/deleted rows count under `table.*`).
    pub by_field: BTreeMap<String, u64>,
    /// Organisations whose change takes effect after the diff's date.
    pub future_dated: u64,
    /// What the publication-shift guard looks at.
    pub shift: ShiftStats,
    /// Parent recodings: many organisations moved from one code to another in this diff.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recodings: Vec<Recoding>,
    /// Tables left out because one side's source does not supply them (e.g. `successors` when
    /// either snapshot came from FHIR), with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_compared: Vec<String>,
}

pub(super) fn summarise(batch: &RecordBatch, chunks: &[[ArrayRef; 9]], from: u64, to: u64) -> DiffSummary {
    // Per field: each chunk holds one (table, field).
    let mut by_field: BTreeMap<String, u64> = BTreeMap::new();
    for chunk in chunks {
        let label = |a: &ArrayRef| {
            let a = a.as_any().downcast_ref::<StringArray>().expect("text");
            if a.is_valid(0) {
                a.value(0).to_owned()
            } else {
                "*".to_owned()
            }
        };
        *by_field
            .entry(format!("{}.{}", label(&chunk[1]), label(&chunk[3])))
            .or_default() += chunk[0].len() as u64;
    }
    // Per kind, distinct organisations: rows are sorted by code, so one pass with the set of
    // kinds seen for the current code (a bit per kind) counts each (kind, code) once.
    let s = |name: &str| {
        col(batch, name)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("text")
            .clone()
    };
    let (code, kind) = (s("code"), s("change_kind"));
    let future = col(batch, "future_dated")
        .as_any()
        .downcast_ref::<BooleanArray>()
        .expect("bool")
        .clone();
    let mut kind_names: Vec<&str> = Vec::new();
    let mut kind_counts: Vec<u64> = Vec::new();
    let (mut seen, mut future_seen, mut future_dated) = (0u64, false, 0u64);
    for i in 0..batch.num_rows() {
        let c = code.value(i);
        if i == 0 || code.value(i - 1) != c {
            seen = 0;
            future_seen = false;
        }
        let k = kind.value(i);
        let bit = match kind_names.iter().position(|n| *n == k) {
            Some(p) => p,
            None => {
                kind_names.push(k);
                kind_counts.push(0);
                kind_names.len() - 1
            }
        };
        if seen & (1 << bit) == 0 {
            seen |= 1 << bit;
            kind_counts[bit] += 1;
        }
        if future.value(i) && !future_seen {
            future_seen = true;
            future_dated += 1;
        }
    }
    DiffSummary {
        from_version: from,
        to_version: to,
        changes: batch.num_rows() as u64,
        by_kind: kind_names
            .into_iter()
            .zip(kind_counts)
            .map(|(k, n)| (k.to_owned(), n))
            .collect(),
        by_field,
        future_dated,
        by_kind_publication_shift: BTreeMap::new(),
        shift: ShiftStats::default(),
        recodings: Vec::new(),
        not_compared: Vec::new(),
    }
}

//! `odsync bench` (`make bench`): a benchmark, not a test. It generates seeded synthetic
//! ODS-like snapshots (n organisations; the next version with 0.5% added, 0.2% removed and 2% of
//! rows with 1–3 changed fields; and a worst case where every row changed) and prints, per stage,
//! wall time, rows/s and peak RSS: snapshot write, diff, merge + conflicts + provenance.

use crate::clock::Clock;
use crate::model::states::Table;
use crate::model::tables;
use crate::model::{OrgRecord, Organisation, Period};
use crate::snapshot::{Manifest, SnapshotStore, SourceInfo};
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StageResult {
    pub rows: u64,
    pub stage: String,
    pub seconds: f64,
    pub rows_per_second: f64,
    /// Peak resident memory of the process during the stage (VmHWM, reset before it).
    pub peak_rss_mb: f64,
}

/// Resets the kernel's peak-RSS counter so the next reading covers one stage only (Linux).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

const WORDS: [&str; 16] = [
    "NORTH",
    "SOUTH",
    "EAST",
    "WEST",
    "ROYAL",
    "GENERAL",
    "COMMUNITY",
    "HEALTH",
    "CARE",
    "HOSPITAL",
    "TRUST",
    "UNIVERSITY",
    "PARTNERSHIP",
    "MENTAL",
    "CHILDREN'S",
    "SERVICES",
];
const TOWNS: [&str; 8] = [
    "LEEDS",
    "LONDON",
    "MANCHESTER",
    "BRISTOL",
    "NORWICH",
    "CARDIFF",
    "YORK",
    "EXETER",
];

fn words(rng: &mut fastrand::Rng, n: usize) -> String {
    (0..n)
        .map(|_| WORDS[rng.usize(..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

fn maybe(rng: &mut fastrand::Rng, p_null: f64, value: impl FnOnce(&mut fastrand::Rng) -> String) -> Option<String> {
    if rng.f64() < p_null { None } else { Some(value(rng)) }
}

fn date(rng: &mut fastrand::Rng) -> NaiveDate {
    NaiveDate::from_ymd_opt(1990, 1, 1).expect("date") + chrono::Days::new(rng.u64(0..12_000))
}

/// A synthetic organisation with roughly the null pattern of real ODS records.
fn organisation(rng: &mut fastrand::Rng, i: usize) -> OrgRecord {
    let code = format!("X{i:07}");
    let closed = rng.f64() < 0.15;
    let start = date(rng);
    let org = Organisation {
        code: code.clone(),
        name: format!("{} NHS {}", words(rng, 3), i),
        status: Some(if closed { "Inactive" } else { "Active" }.into()),
        record_class: Some(if rng.bool() { "RC1" } else { "RC2" }.into()),
        primary_role: Some(format!("RO{}", 170 + rng.u32(0..40))),
        operational: Period {
            start: Some(start),
            end: closed.then(|| start + chrono::Days::new(rng.u64(1..5000))),
        },
        legal: Period {
            start: (rng.f64() < 0.3).then(|| date(rng)),
            end: None,
        },
        last_change_date: Some(date(rng)),
        address_line1: Some(format!("{} {} ROAD", rng.u32(1..400), words(rng, 1))),
        address_line2: maybe(rng, 0.4, |r| words(r, 2)),
        address_line3: maybe(rng, 0.8, |r| words(r, 1)),
        town: Some(TOWNS[rng.usize(..TOWNS.len())].into()),
        county: maybe(rng, 0.5, |r| words(r, 1)),
        postcode: Some(format!(
            "{}{} {}{}{}",
            ["LS", "M", "BS", "NR"][rng.usize(..4)],
            rng.u32(1..30),
            rng.u32(1..10),
            rng.alphabetic().to_ascii_uppercase(),
            rng.alphabetic().to_ascii_uppercase()
        )),
        country: Some("ENGLAND".into()),
        uprn: maybe(rng, 0.3, |r| r.u64(10_000_000..100_000_000_000).to_string()),
        telephone: maybe(rng, 0.5, |r| {
            format!("0{} {}", r.u32(1000..9999), r.u32(100_000..999_999))
        }),
        website: maybe(rng, 0.7, |r| format!("HTTPS://WWW.{}.NHS.UK/", r.u32(0..100_000))),
        ref_only: rng.f64() < 0.02,
        org_type: None,
        health_system: None,
        foundation_trust: None,
        parent_code: None,
        parent_relationship: None,
        ..Default::default()
    };
    // Only the organisations table carries rows: the bar this benchmark is held to is a diff of one
    // wide table; the child tables' diffs are covered by the tests, not timed here.
    OrgRecord {
        organisation: org,
        roles: Vec::new(),
        relationships: Vec::new(),
        successors: Vec::new(),
    }
}

/// Changes 1–3 fields of a record.
fn mutate(rng: &mut fastrand::Rng, rec: &mut OrgRecord) {
    for _ in 0..rng.usize(1..=3) {
        let o = &mut rec.organisation;
        match rng.usize(0..6) {
            0 => o.name = format!("{} NHS FOUNDATION TRUST", words(rng, 3)),
            1 => o.postcode = Some(format!("NEW{} 1AA", rng.u32(1..99))),
            2 => o.telephone = maybe(rng, 0.3, |r| format!("0300 {}", r.u32(100_000..999_999))),
            3 => {
                o.status = Some("Inactive".into());
                o.operational.end = Some(NaiveDate::from_ymd_opt(2026, 3, 31).expect("date"));
            }
            4 => o.address_line1 = Some(format!("{} NEW STREET", rng.u32(1..99))),
            _ => o.town = Some(TOWNS[rng.usize(..TOWNS.len())].into()),
        }
    }
}

fn generate(n: usize, seed: u64) -> Vec<OrgRecord> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n).map(|i| organisation(&mut rng, i)).collect()
}

/// The next version: 0.2% removed, 2% with 1–3 changed fields, 0.5% added.
fn next_version(base: &[OrgRecord], seed: u64, every_row: bool) -> Vec<OrgRecord> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = base.len();
    let mut out = Vec::with_capacity(n + n / 200);
    for rec in base {
        if !every_row && rng.f64() < 0.002 {
            continue;
        }
        let mut rec = rec.clone();
        if every_row || rng.f64() < 0.02 {
            mutate(&mut rng, &mut rec);
        }
        out.push(rec);
    }
    if !every_row {
        out.extend((0..n / 200).map(|i| organisation(&mut rng, n + i)));
    }
    out
}

fn commit(store: &SnapshotStore, records: Vec<OrgRecord>, run_id: &str, clock: &Clock) -> anyhow::Result<u64> {
    let built = tables::build(records, Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let manifest = Manifest {
        manifest_format: crate::snapshot::MANIFEST_FORMAT,
        pipeline: "bench".into(),
        version: 0,
        previous_version: None,
        run_id: run_id.into(),
        created_at: clock.now(),
        mode: "baseline".into(),
        source: SourceInfo {
            // Synthetic rows in every table, as an ORD pull has (no table left uncompared).
            kind: crate::model::states::SourceKind::Ord,
            location: "odsync bench".into(),
            parameters: serde_json::Value::Null,
        },
        watermark: None,
        schema_version: crate::model::SCHEMA_VERSION,
        derivation: None,
        odsync_version: env!("CARGO_PKG_VERSION").into(),
        content_hash: String::new(),
        tables: BTreeMap::new(),
        summary: serde_json::Value::Null,
    };
    match store.stage(&built, manifest)? {
        crate::snapshot::Staged::Unchanged { version } => Ok(version),
        crate::snapshot::Staged::New(staged) => {
            let warehouse = store
                .root()
                .parent()
                .expect("a pipeline folder is inside the warehouse");
            let mut txn = crate::warehouse::Txn::new(warehouse, "bench", run_id);
            let version = staged.into_txn(&mut txn)?;
            txn.commit()?;
            Ok(version)
        }
    }
}

fn bench_store(work: &Path, n: usize) -> (std::path::PathBuf, SnapshotStore) {
    let warehouse = work.join(format!("bench-{n}"));
    let store = SnapshotStore::new(&warehouse, "bench");
    (warehouse, store)
}

fn bench_clock() -> Clock {
    Clock::parse("2026-01-01T00:00:00Z").expect("valid timestamp")
}

fn bench_settings() -> crate::merge::MergeSettings {
    crate::merge::MergeSettings {
        ownership: crate::model::ODS_FIELDS
            .iter()
            .map(|(f, _)| ((*f).to_owned(), crate::merge::Ownership::Review))
            .collect(),
        local_fields: vec!["trust_type".into()],
        local_table: None,
        overrides: None,
    }
}

/// One measured stage, run in its own process by [`run`] so that its peak RSS is its own.
/// `prepare` writes versions 1 (base), 2 (2% changed; the timed snapshot write) and 3 (every row
/// changed) and merges version 1; `diff-2`, `diff-3` and `merge-2` are the other stages.
pub fn stage(name: &str, n: usize, work: &Path) -> anyhow::Result<StageResult> {
    let clock = bench_clock();
    let (warehouse, store) = bench_store(work, n);
    let rows = n as u64;
    let started = Instant::now();
    let finish = |stage: &str, started: Instant| {
        let seconds = started.elapsed().as_secs_f64();
        StageResult {
            rows,
            stage: stage.to_owned(),
            seconds,
            rows_per_second: rows as f64 / seconds,
            peak_rss_mb: peak_rss_mb(),
        }
    };
    match name {
        "prepare" => {
            let _ = std::fs::remove_dir_all(&warehouse);
            let a = generate(n, 42);
            let b = next_version(&a, 43, false);
            commit(&store, a, "bench-1", &clock)?;
            reset_peak();
            let started = Instant::now();
            commit(&store, b, "bench-2", &clock)?;
            let result = finish("snapshot write (build + Parquet), 2%", started);
            // Generated after the measurement, from the same seed, so it is not in that peak.
            let worst = next_version(&generate(n, 42), 44, true);
            commit(&store, worst, "bench-3", &clock)?;
            let first = crate::merge::OdsInput::published(&store, 1)?;
            let mut txn = crate::warehouse::Txn::new(&warehouse, "bench", "bench-m1");
            crate::merge::merge(
                &warehouse,
                "bench",
                &bench_settings(),
                &first,
                "bench-m1",
                &clock,
                &mut txn,
            )?;
            txn.commit()?;
            Ok(result)
        }
        "diff-2" | "diff-3" => {
            let to = if name == "diff-2" { 2 } else { 3 };
            let diff = crate::diff::diff_versions(&store, 1, to, clock.today())?;
            let label = if to == 2 {
                "diff, 2% changed"
            } else {
                "diff, every row changed"
            };
            let mut r = finish(label, started);
            r.stage = format!("{label} ({} change rows)", diff.summary.changes);
            Ok(r)
        }
        "merge-2" => {
            // As in a run: the diff of the new version against the base comes first (timed on
            // its own above) and hands the merge the rows it read.
            let diff = crate::diff::diff_versions(&store, 1, 2, clock.today())?;
            // Rerunnable: drop a merge an earlier `merge-2` left, so this one is not a no-op.
            for v in crate::merge::merged_versions(&warehouse, "bench")
                .into_iter()
                .filter(|v| *v > 1)
            {
                for folder in store.layout().version_folders(crate::warehouse::Output::Merged, v) {
                    std::fs::remove_dir_all(folder)?;
                }
            }
            let second = crate::merge::OdsInput::published(&store, 2)?.with_changed(diff.org_rows);
            reset_peak();
            let started = Instant::now();
            let mut txn = crate::warehouse::Txn::new(&warehouse, "bench", "bench-m2");
            let m = crate::merge::merge(
                &warehouse,
                "bench",
                &bench_settings(),
                &second,
                "bench-m2",
                &clock,
                &mut txn,
            )?;
            txn.commit()?;
            let mut r = finish("merge + conflicts + provenance, 2%", started);
            r.stage = format!("merge + conflicts + provenance, 2% ({} touched)", m.touched);
            Ok(r)
        }
        other => anyhow::bail!("unknown bench stage `{other}`"),
    }
}

/// Runs every stage for each size, each in a child process; `pair_dir` also receives the
/// synthetic pair as plain Parquet for outside tools.
pub fn run(sizes: &[usize], work: &Path, pair_dir: Option<&Path>) -> anyhow::Result<Vec<StageResult>> {
    let exe = std::env::current_exe()?;
    let mut results = Vec::new();
    for &n in sizes {
        eprintln!("{n} organisations:");
        for stage_name in ["prepare", "diff-2", "diff-3", "merge-2"] {
            let out = std::process::Command::new(&exe)
                .args(["bench", "--stage", stage_name, "--rows", &n.to_string(), "--work"])
                .arg(work)
                .arg("--json")
                .stderr(std::process::Stdio::inherit())
                .output()?;
            anyhow::ensure!(out.status.success(), "bench stage `{stage_name}` failed");
            let mut r: Vec<StageResult> = serde_json::from_slice(&out.stdout)?;
            let r = r.remove(0);
            eprintln!(
                "  {:<58} {:>8.3} s {:>12.0} rows/s  peak RSS {:>7.1} MB",
                r.stage, r.seconds, r.rows_per_second, r.peak_rss_mb
            );
            results.push(r);
        }
        let (warehouse, store) = bench_store(work, n);
        if let Some(dir) = pair_dir {
            std::fs::create_dir_all(dir)?;
            for (v, label) in [(1, "a"), (2, "b"), (3, "worst")] {
                std::fs::copy(
                    store.tables(v).file(Table::Organisations),
                    dir.join(format!("organisations-{n}-{label}.parquet")),
                )?;
            }
            eprintln!("  wrote the pair to {}", dir.display());
        }
        let _ = std::fs::remove_dir_all(&warehouse);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunked path (taken above `HANDOFF_MAX_ROWS` moved rows, e.g. a publication shift) reads
    /// its rows differently (in chunks, text as string views) and must give the very same changes.
    #[test]
    fn a_chunked_diff_gives_the_same_changes_as_an_in_memory_one() {
        let work = tempfile::tempdir().unwrap();
        let clock = bench_clock();
        let (_, store) = bench_store(work.path(), 2_000);
        let base = generate(2_000, 42);
        commit(&store, next_version(&base, 43, false), "b", &clock).unwrap();
        commit(&store, base, "a", &clock).unwrap();
        commit(&store, next_version(&generate(2_000, 42), 44, true), "w", &clock).unwrap();
        let today = clock.today();
        for (from, to, chunk) in [(2, 3, 300), (1, 2, 7), (2, 1, 16)] {
            let whole = crate::diff::diff_versions(&store, from, to, today).unwrap();
            let chunked =
                crate::diff::with_chunk_rows(chunk, || crate::diff::diff_versions(&store, from, to, today)).unwrap();
            assert!(
                whole.org_rows.is_some() && chunked.org_rows.is_none(),
                "{from}→{to}: not chunked"
            );
            assert!(whole.summary.changes > 0);
            assert_eq!(whole.summary, chunked.summary, "{from}→{to}");
            assert_eq!(whole.changes, chunked.changes, "{from}→{to}");
        }
    }
}

//! `odsync bench` (`make bench`): a benchmark, not a test. It generates seeded synthetic
//! ODS-like snapshots (n organisations; the next version with 0.5% added, 0.2% removed and 2% of
//! rows with 1–3 changed fields; and a worst case where every row changed) and prints, per stage,
//! wall time, rows/s and peak RSS: snapshot write, diff, merge + conflicts + provenance.

use crate::clock::Clock;
use crate::model::tables;
use crate::model::{OrgRecord, Organisation, Period, Relationship, Role};
use crate::snapshot::{Manifest, SnapshotStore, SourceInfo};
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
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

fn measure<T>(rows: u64, stage: &str, f: impl FnOnce() -> T) -> (T, StageResult) {
    reset_peak();
    let started = Instant::now();
    let out = f();
    let seconds = started.elapsed().as_secs_f64();
    let result = StageResult {
        rows,
        stage: stage.to_owned(),
        seconds,
        rows_per_second: rows as f64 / seconds,
        peak_rss_mb: peak_rss_mb(),
    };
    eprintln!(
        "  {:<40} {:>9.3} s  {:>12.0} rows/s  peak RSS {:>7.1} MB",
        stage, result.seconds, result.rows_per_second, result.peak_rss_mb
    );
    (out, result)
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
    };
    let role = Role {
        role_id: org.primary_role.clone().expect("set"),
        unique_role_id: Some(format!("{}", 1_000_000 + i)),
        is_primary: true,
        operational: org.operational.clone(),
        legal: Period::default(),
        status: org.status.clone(),
    };
    let rel = Relationship {
        rel_type: "RE5".into(),
        target_code: format!("Q{:02}", rng.u32(0..42)),
        target_primary_role: Some("RO261".into()),
        unique_rel_id: Some(format!("{}", 5_000_000 + i)),
        operational: Period {
            start: Some(start),
            end: None,
        },
        legal: Period::default(),
        status: Some("Active".into()),
        source_field: None,
    };
    OrgRecord {
        organisation: org,
        roles: vec![role],
        relationships: vec![rel],
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
    let built = tables::build(records, Vec::new(), Vec::new(), Vec::new());
    let manifest = Manifest {
        manifest_format: crate::snapshot::MANIFEST_FORMAT,
        pipeline: "bench".into(),
        version: 0,
        previous_version: None,
        run_id: run_id.into(),
        created_at: clock.now(),
        mode: "baseline".into(),
        source: SourceInfo {
            kind: "synthetic".into(),
            location: "odsync bench".into(),
            parameters: serde_json::Value::Null,
        },
        watermark: None,
        schema_version: crate::model::SCHEMA_VERSION,
        odsync_version: env!("CARGO_PKG_VERSION").into(),
        content_hash: String::new(),
        tables: BTreeMap::new(),
        summary: serde_json::Value::Null,
    };
    match store.commit(&built, manifest)? {
        crate::snapshot::CommitOutcome::Committed { version }
        | crate::snapshot::CommitOutcome::Unchanged { version } => Ok(version),
    }
}

/// Runs the benchmark for each size; `pair_dir` also receives the synthetic pair as plain Parquet.
pub fn run(sizes: &[usize], work: &Path, pair_dir: Option<&Path>) -> anyhow::Result<Vec<StageResult>> {
    let clock = Clock::parse("2026-01-01T00:00:00Z").map_err(anyhow::Error::msg)?;
    let today = clock.today();
    let mut results = Vec::new();
    for &n in sizes {
        eprintln!("{n} organisations:");
        let warehouse = work.join(format!("bench-{n}"));
        let _ = std::fs::remove_dir_all(&warehouse);
        let store = SnapshotStore::new(&warehouse, "bench");
        let a = generate(n, 42);
        let b = next_version(&a, 43, false);
        let worst = next_version(&a, 44, true);
        let rows = n as u64;
        let v1 = commit(&store, a, "bench-1", &clock)?;
        let (v2, r) = measure(rows, "snapshot write (build + Parquet)", || {
            commit(&store, b, "bench-2", &clock)
        });
        let v2 = v2?;
        results.push(r);
        let v3 = commit(&store, worst, "bench-3", &clock)?;

        let (diff, r) = measure(rows, "diff, 2% changed", || {
            crate::diff::diff_versions(&store, v1, v2, today)
        });
        let diff = diff?;
        eprintln!(
            "    {} change rows; by kind {:?}",
            diff.summary.changes, diff.summary.by_kind
        );
        results.push(r);
        drop(diff);
        let (worst_diff, r) = measure(rows, "diff, every row changed", || {
            crate::diff::diff_versions(&store, v1, v3, today)
        });
        eprintln!("    {} change rows", worst_diff?.summary.changes);
        results.push(r);

        let settings = crate::merge::MergeSettings {
            ownership: crate::merge::ODS_FIELDS
                .iter()
                .map(|(f, _)| ((*f).to_owned(), crate::pipeline::Ownership::Review))
                .collect(),
            local_fields: vec!["trust_type".into()],
            local_table: None,
            overrides: None,
        };
        let first = crate::merge::OdsInput::published(&store, v1)?;
        let (m, r) = measure(rows, "merge (first, every row new)", || {
            crate::merge::merge(&warehouse, "bench", &settings, &first, "bench-m1", &clock)
        });
        m?;
        results.push(r);
        let second = crate::merge::OdsInput::published(&store, v2)?;
        let (m, r) = measure(rows, "merge + conflicts + provenance, 2%", || {
            crate::merge::merge(&warehouse, "bench", &settings, &second, "bench-m2", &clock)
        });
        let m = m?;
        eprintln!("    touched {}, rules {:?}", m.touched, m.rules);
        results.push(r);

        if let Some(dir) = pair_dir {
            std::fs::create_dir_all(dir)?;
            std::fs::copy(
                store.version_dir(v1).join("organisations.parquet"),
                dir.join(format!("organisations-{n}-a.parquet")),
            )?;
            std::fs::copy(
                store.version_dir(v2).join("organisations.parquet"),
                dir.join(format!("organisations-{n}-b.parquet")),
            )?;
            std::fs::copy(
                store.version_dir(v3).join("organisations.parquet"),
                dir.join(format!("organisations-{n}-worst.parquet")),
            )?;
            eprintln!("    wrote the pair to {}", dir.display());
        }
        let _ = std::fs::remove_dir_all(&warehouse);
    }
    Ok(results)
}

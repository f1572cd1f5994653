//! `odsync status`: is each pipeline healthy? Read from what the runs left behind (the committed
//! state, the latest manifest, the `runs` table and the open conflicts), never by running
//! anything, so cron, a monitor or an Airflow sensor can ask as often as it likes.
//!
//! A pipeline is unhealthy when a threshold is crossed: no successful run for too long, the
//! watermark ageing towards the 185 days ORD's `/sync` reaches back (after which the next run is
//! a full baseline), pending or quarantined codes, open conflicts piling up or left too long.

use crate::catalog::Catalog;
use crate::pipeline::runner::SYNC_MAX_DAYS;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::path::Path;

/// When `odsync status` calls a pipeline unhealthy (the flags of `odsync status`).
#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    /// Hours since the last successful run (a committed or `unchanged` run).
    pub max_hours_since_success: u64,
    /// Days left before the watermark is too old for `/sync` (API sources).
    pub min_sync_days_left: i64,
    /// Codes the last run could not fetch or read (pending).
    pub max_pending: u64,
    /// Records in the latest snapshot's quarantine.
    pub max_quarantined: u64,
    /// Open conflicts in the trust table.
    pub max_open_conflicts: u64,
    /// Days the oldest open conflict may stay open.
    pub max_conflict_age_days: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_hours_since_success: 48,
            min_sync_days_left: 30,
            max_pending: 0,
            max_quarantined: u64::MAX,
            max_open_conflicts: u64::MAX,
            max_conflict_age_days: 30,
        }
    }
}

/// One run, briefly.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunBrief {
    pub run_id: String,
    pub status: crate::model::states::RunStatus,
    pub finished_at: Option<String>,
    pub snapshot_version: Option<i64>,
    /// The first line of a failed run's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The health of one pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineHealth {
    pub pipeline: String,
    /// `ok` or `unhealthy`.
    pub status: crate::model::states::Health,
    pub last_run: Option<RunBrief>,
    pub last_success: Option<RunBrief>,
    pub hours_since_success: Option<u64>,
    pub snapshot_version: Option<u64>,
    pub watermark: Option<NaiveDate>,
    /// Days until the watermark (minus the overlap) is beyond `/sync`'s reach; `None` for sources
    /// that read whole files.
    pub sync_days_left: Option<i64>,
    pub pending: Vec<String>,
    pub quarantined: u64,
    pub open_conflicts: u64,
    pub oldest_open_conflict_days: Option<i64>,
    /// Every threshold crossed, in words.
    pub problems: Vec<String>,
}

/// What `health` needs to know about the pipeline file (absent for a pipeline known only from
/// the warehouse).
pub struct PipelineFacts {
    pub name: String,
    /// Whether the source runs deltas from a watermark (ORD, FHIR).
    pub uses_sync: bool,
    pub overlap_days: u32,
}

fn run_time(run_id: &str) -> Option<DateTime<Utc>> {
    let stamp = run_id.split('-').next()?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// The health of one pipeline at `now`.
///
/// Long on purpose: one flat list of thresholds, each adding its own problem text.
pub fn health(
    warehouse: &Path,
    facts: &PipelineFacts,
    catalog: Option<&Catalog>,
    now: DateTime<Utc>,
    limits: &Thresholds,
) -> anyhow::Result<PipelineHealth> {
    let name = facts.name.as_str();
    let runs = match catalog {
        Some(c) => c.runs(Some(name), 10_000)?,
        None => Vec::new(),
    };
    let brief = |r: &crate::catalog::RunRecord| RunBrief {
        run_id: r.run_id.clone(),
        status: r.status,
        finished_at: r.finished_at.clone(),
        snapshot_version: r.snapshot_version,
        error: r.error.as_deref().and_then(|e| e.lines().next()).map(str::to_owned),
    };
    let last_run = runs.first().map(brief);
    let last_success = runs.iter().find(|r| r.status.committed()).map(brief);
    let hours_since_success = last_success
        .as_ref()
        .and_then(|r| run_time(&r.run_id))
        .map(|t| (now - t).num_hours().max(0) as u64);
    let state = crate::warehouse::read_state(warehouse, name);
    let watermark = state.as_ref().and_then(|s| s.watermark);
    let store = crate::snapshot::SnapshotStore::new(warehouse, name);
    let latest = store.latest().ok().flatten();
    let pending: Vec<String> = latest
        .as_ref()
        .and_then(|m| m.summary.get("records")?.get("pending")?.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let quarantined = latest
        .as_ref()
        .and_then(|m| m.tables.get("quarantine"))
        .map_or(0, |t| t.rows);
    let sync_days_left = match (facts.uses_sync, watermark) {
        (true, Some(w)) => {
            let since = w - chrono::Days::new(u64::from(facts.overlap_days));
            Some(SYNC_MAX_DAYS - (now.date_naive() - since).num_days())
        }
        _ => None,
    };
    let (open_conflicts, oldest_open_conflict_days) = match catalog {
        Some(c) => open_conflicts(c, name, now),
        None => (0, None),
    };

    let mut problems = Vec::new();
    match (&last_success, hours_since_success) {
        (None, _) => problems.push("no successful run recorded".to_owned()),
        (Some(_), Some(h)) if h > limits.max_hours_since_success => problems.push(format!(
            "last successful run {h} hour{} ago (more than {})",
            if h == 1 { "" } else { "s" },
            limits.max_hours_since_success
        )),
        _ => {}
    }
    if let Some(r) = &last_run
        && r.status == crate::model::states::RunStatus::Failed
    {
        problems.push(format!(
            "the last run failed: {}",
            r.error.as_deref().unwrap_or("no error recorded")
        ));
    }
    if let Some(left) = sync_days_left
        && left < limits.min_sync_days_left
    {
        problems.push(if left < 0 {
            format!("the watermark is {} days beyond /sync's {SYNC_MAX_DAYS}-day reach: the next run is a full baseline", -left)
        } else {
            format!(
                "{left} days left before the watermark is beyond /sync's {SYNC_MAX_DAYS}-day reach (then the next run is a full baseline)"
            )
        });
    }
    if pending.len() as u64 > limits.max_pending {
        problems.push(format!(
            "{} pending codes (could not be fetched or read; the watermark is held): {}",
            pending.len(),
            pending.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if quarantined > limits.max_quarantined {
        problems.push(format!(
            "{quarantined} quarantined records (more than {})",
            limits.max_quarantined
        ));
    }
    if open_conflicts > limits.max_open_conflicts {
        problems.push(format!(
            "{open_conflicts} open conflicts (more than {})",
            limits.max_open_conflicts
        ));
    }
    if let Some(days) = oldest_open_conflict_days
        && days > limits.max_conflict_age_days
    {
        problems.push(format!(
            "the oldest open conflict is {days} days old (more than {})",
            limits.max_conflict_age_days
        ));
    }
    Ok(PipelineHealth {
        pipeline: name.to_owned(),
        status: if problems.is_empty() {
            crate::model::states::Health::Ok
        } else {
            crate::model::states::Health::Unhealthy
        },
        last_run,
        last_success,
        hours_since_success,
        snapshot_version: state.and_then(|s| s.snapshot_version),
        watermark,
        sync_days_left,
        pending,
        quarantined,
        open_conflicts,
        oldest_open_conflict_days,
        problems,
    })
}

/// Open conflicts and the age of the oldest (from the run that first saw it), or nothing when
/// the pipeline has no trust table yet.
fn open_conflicts(catalog: &Catalog, pipeline: &str, now: DateTime<Utc>) -> (u64, Option<i64>) {
    let sql = format!(
        "SELECT count(*), min(first_seen_run) FROM open_conflicts WHERE pipeline = {}",
        crate::sql::quote_text(pipeline)
    );
    let Ok(result) = catalog.query_text(&sql) else {
        return (0, None);
    };
    let row = result.rows.first();
    let count = row
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let oldest = row
        .and_then(|r| r.get(1).cloned().flatten())
        .and_then(|id| run_time(&id))
        .map(|t| (now - t).num_days());
    (count, oldest)
}

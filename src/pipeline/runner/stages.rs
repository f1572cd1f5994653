//! The stages of a run: timed laps, a span per stage for the logs, a spinner on a terminal.

use super::*;

/// Laps of one run's stages, for the summary and the logs.
/// The stages of a run's work, in order: each runs inside a `stage` span (so every log line, in
/// JSON too, names its stage) and, on a terminal, under a spinner naming it.
pub(super) const STAGES: [Stage; 10] = [
    Stage::Fetch,
    Stage::ReadPrevious,
    Stage::Parse,
    Stage::Roles,
    Stage::BuildTables,
    Stage::WriteSnapshot,
    Stage::Diff,
    Stage::History,
    Stage::Merge,
    Stage::Commit,
];

pub(super) struct StageTimes {
    pub(super) done: Vec<StageTime>,
    pub(super) started: Instant,
    pub(super) span: Option<tracing::span::EnteredSpan>,
    pub(super) spinner: indicatif::ProgressBar,
}

impl StageTimes {
    pub(super) fn start() -> Self {
        let spinner = if crate::printer::show_progress() {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("static template"),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut times = StageTimes {
            done: Vec::new(),
            started: Instant::now(),
            span: None,
            spinner,
        };
        times.enter(STAGES[0]);
        times
    }

    pub(super) fn enter(&mut self, stage: Stage) {
        self.span = None;
        self.span = Some(tracing::info_span!("stage", stage = stage.as_str()).entered());
        self.spinner.set_message(stage.as_str());
    }

    pub(super) fn lap(&mut self, stage: Stage) {
        let ms = self.started.elapsed().as_millis() as u64;
        tracing::debug!(ms, "stage done");
        self.done.push(StageTime { stage, ms });
        self.started = Instant::now();
        let next = STAGES
            .iter()
            .position(|s| *s == stage)
            .and_then(|i| STAGES.get(i + 1))
            .copied()
            .unwrap_or(Stage::Commit);
        self.enter(next);
    }

    /// The stage times, the spinner cleared and the last span left.
    pub(super) fn finish(mut self) -> Vec<StageTime> {
        self.span = None;
        self.spinner.finish_and_clear();
        std::mem::take(&mut self.done)
    }
}

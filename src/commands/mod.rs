//! One module per subcommand. Each resolves its settings (flag, then environment, then pipeline
//! file, then default), calls the library, and prints its typed summary through the `Printer`.

mod check;
mod conflicts;
mod ddl;
mod diff;
mod gc;
mod history;
mod merge;
mod migrate;
pub mod outcome;
mod provenance;
mod query;
mod report;
mod run;
mod runs;
#[cfg(feature = "testkit")]
mod serve;
mod snapshots;
mod status;
mod validate;
mod verify;

use crate::cli::{Cli, Command};
use crate::clock::Clock;
use crate::env_vars;
use crate::error::UserError;
use crate::pipeline::build::SourceOverrides;
use crate::pipeline::{self, Pipeline};
use crate::printer::Printer;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Settings every command shares.
pub struct Globals {
    pub warehouse_flag: Option<PathBuf>,
    pub pipelines_dir: PathBuf,
    pub printer: Printer,
    pub clock: Clock,
}

impl Globals {
    /// `--warehouse` / ODSYNC_WAREHOUSE, else the pipeline's `warehouse`, else `snapshots`.
    pub fn warehouse(&self, pipeline: Option<&Pipeline>) -> PathBuf {
        self.warehouse_flag
            .clone()
            .or_else(|| pipeline.and_then(|p| p.config.warehouse.clone()))
            .unwrap_or_else(|| PathBuf::from("snapshots"))
    }

    /// `ODSYNC_CONTACT`, for the User-Agent of every request.
    pub fn contact(&self) -> Option<String> {
        std::env::var(env_vars::ODSYNC_CONTACT).ok().filter(|c| !c.is_empty())
    }

    /// The pipeline's `[source]` with the command line's overrides, ready to fetch.
    pub fn source(
        &self,
        pipeline: &Pipeline,
        ord_base_url: Option<&str>,
        fhir_base_url: Option<&str>,
    ) -> anyhow::Result<pipeline::build::BuiltSource> {
        let contact = self.contact();
        let overrides = SourceOverrides {
            ord_base_url,
            fhir_base_url,
            contact: contact.as_deref(),
        };
        pipeline.config.source.build(&pipeline.config, &overrides)
    }

    pub fn load(&self, name: &str) -> anyhow::Result<Pipeline> {
        Ok(pipeline::load(name, &self.pipelines_dir)?)
    }

    /// The pipeline file of `name` when there is one (`None` for a pipeline known only from the
    /// warehouse: commands that read the warehouse work without its file). A file that exists
    /// but does not load is an error, never ignored: its settings (the warehouse, above all)
    /// would silently fall back to defaults.
    /// [`Globals::load_known`] for a command whose pipeline argument is optional.
    pub fn load_known_opt(&self, name: Option<&str>) -> anyhow::Result<Option<Pipeline>> {
        Ok(name.map(|n| self.load_known(n)).transpose()?.flatten())
    }

    pub fn load_known(&self, name: &str) -> anyhow::Result<Option<Pipeline>> {
        match pipeline::load(name, &self.pipelines_dir) {
            Ok(p) => Ok(Some(p)),
            Err(pipeline::PipelineError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

pub fn run_cli(cli: Cli) -> anyhow::Result<ExitCode> {
    let clock = match std::env::var(env_vars::ODSYNC_NOW) {
        Ok(v) if !v.is_empty() => Clock::parse(&v).map_err(|e| UserError(format!("{}: {e}", env_vars::ODSYNC_NOW)))?,
        _ => Clock::system(),
    };
    let globals = Globals {
        warehouse_flag: cli.warehouse,
        pipelines_dir: cli.pipelines_dir,
        printer: Printer {
            json: cli.json,
            quiet: cli.quiet,
        },
        clock,
    };
    match cli.command {
        Command::Run(args) => run::run(&globals, &args),
        Command::Check(args) => check::run(&globals, &args),
        Command::Diff(args) => diff::run(&globals, &args),
        Command::Merge(args) => merge::run(&globals, &args.pipeline).map(|_| ExitCode::SUCCESS),
        Command::Conflicts(cmd) => conflicts::run(&globals, &cmd),
        Command::Provenance(args) => provenance::run(&globals, &args),
        Command::History(args) => history::run(&globals, &args),
        Command::Snapshots(cmd) => snapshots::run(&globals, &cmd),
        Command::Runs(args) => runs::run(&globals, &args),
        Command::Status(args) => status::run(&globals, &args),
        Command::Verify(args) => verify::run(&globals, &args),
        Command::Gc(args) => gc::run(&globals, &args),
        Command::Migrate => migrate::run(&globals),
        Command::Ddl(args) => ddl::run(&globals, &args),
        Command::Report(args) => report::run(&globals, &args),
        Command::Query(args) => query::run(&globals, &args),
        Command::Validate(args) => validate::run(&globals, &args),
        #[cfg(feature = "testkit")]
        Command::Serve(args) => serve::run(&args),
        #[cfg(feature = "testkit")]
        Command::Bench(args) => {
            let results = match &args.stage {
                Some(stage) => vec![crate::bench::stage(stage, args.rows[0], &args.work)?],
                None => crate::bench::run(&args.rows, &args.work, args.write_pair.as_deref())?,
            };
            globals.printer.emit(&results, |rows| {
                let mut out = format!(
                    "{:>9}  {:<40} {:>9}  {:>12}  {:>12}\n",
                    "rows", "stage", "seconds", "rows/s", "peak RSS MB"
                );
                for r in rows {
                    out.push_str(&format!(
                        "{:>9}  {:<40} {:>9.3}  {:>12.0}  {:>12.1}\n",
                        r.rows, r.stage, r.seconds, r.rows_per_second, r.peak_rss_mb
                    ));
                }
                out
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn display_path(path: &Path) -> String {
    path.display().to_string()
}

/// The merge report as `odsync merge`, `odsync run` and `conflicts resolve --merge` print it.
pub fn merge_text(r: &crate::merge::MergeReport) -> String {
    if r.status == crate::model::states::MergeStatus::Unchanged {
        return format!("merge unchanged: same inputs as merged version {}\n", r.merged_version);
    }
    let rules: Vec<String> = r.rules.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let v = |x: &Option<String>| x.clone().unwrap_or_else(|| "∅".into());
    let opened: String = r
        .new_conflicts
        .iter()
        .map(|c| {
            format!(
                "    new conflict {} {} ({}): yours {} / ODS {}\n",
                c.code,
                c.field,
                c.kind,
                v(&c.local_value),
                v(&c.ods_value)
            )
        })
        .collect();
    let more = (r.conflicts_new as usize).saturating_sub(r.new_conflicts.len());
    let opened = if more > 0 {
        format!("{opened}    … {more} more (open_conflicts)\n")
    } else {
        opened
    };
    let head = format!(
        "merged version {} (snapshot {} over base {}): {} rows, {} touched, {} not in ODS\n  rules: {}\n  conflicts: {} open ({} new), {} resolved, {} superseded, {} ignored\n",
        r.merged_version,
        r.ods_version,
        r.base_version.map_or("none".into(), |v| v.to_string()),
        r.rows,
        r.touched,
        r.not_in_ods,
        rules.join(", "),
        r.conflicts_open,
        r.conflicts_new,
        r.conflicts_resolved,
        r.conflicts_superseded,
        r.conflicts_ignored
    );
    head + &opened
}

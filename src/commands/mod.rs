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
use crate::model::csv_row::CsvLayout;
use crate::pipeline::{self, Pipeline, SourceConfig};
use crate::printer::Printer;
use crate::sources::Source;
use crate::sources::csv_bulk::CsvSource;
use crate::sources::http::HttpClient;
use crate::sources::ord::OrdSource;
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

/// The source a pipeline describes, with the base-URL overrides (ORD, FHIR) applied.
pub fn build_source(
    pipeline: &Pipeline,
    base_url: Option<&str>,
    fhir_base_url: Option<&str>,
) -> anyhow::Result<(Box<dyn Source>, Option<CsvLayout>)> {
    let contact = std::env::var(env_vars::ODSYNC_CONTACT).ok().filter(|c| !c.is_empty());
    let http = HttpClient::new(pipeline.config.http.settings(contact.as_deref()))?;
    // Every credential a configured location carries is masked wherever it could appear.
    for location in [base_url, fhir_base_url].into_iter().flatten() {
        crate::redact::register_url_secrets(location);
    }
    match &pipeline.config.source {
        SourceConfig::Ord(o) => crate::redact::register_url_secrets(&o.base_url),
        SourceConfig::Fhir(f) => crate::redact::register_url_secrets(&f.base_url),
        SourceConfig::Csv(c) => crate::redact::register_url_secrets(&c.location),
        SourceConfig::TrudXml(_) => {}
    }
    Ok(match &pipeline.config.source {
        SourceConfig::Ord(ord) => {
            let base = base_url.unwrap_or(&ord.base_url);
            (
                Box::new(OrdSource::new(base, http, pipeline.config.scope.clone())?),
                None,
            )
        }
        SourceConfig::Fhir(fhir) => {
            let key = fhir.api_key().map_err(crate::error::UserError)?;
            crate::redact::register_secret(&key);
            let mut value = reqwest::header::HeaderValue::from_str(&key).map_err(|_| {
                crate::error::UserError("the FHIR API key has characters an HTTP header cannot carry".into())
            })?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("apikey", value);
            let mut settings = pipeline.config.http.settings(contact.as_deref());
            settings.requests_per_second = settings
                .requests_per_second
                .min(crate::sources::fhir::MAX_REQUESTS_PER_SECOND);
            let http = HttpClient::with_headers(settings, headers)?;
            let source = crate::sources::fhir::FhirSource::new(
                fhir_base_url.unwrap_or(&fhir.base_url),
                http,
                pipeline.config.scope.clone(),
                fhir.page_size,
            )?;
            (Box::new(source), None)
        }
        SourceConfig::Csv(csv) => {
            let layout = CsvLayout::new(csv.kind, csv.primary_role.as_deref());
            let source = CsvSource::new(&csv.location, layout.clone(), csv.zip_entry.clone(), http);
            (Box::new(source), Some(layout))
        }
        SourceConfig::TrudXml(trud) => (trud_source(trud, pipeline), None),
    })
}

fn trud_source(trud: &crate::pipeline::TrudSourceConfig, pipeline: &Pipeline) -> Box<dyn Source> {
    Box::new(crate::sources::trud_xml::TrudXmlSource::new(
        &trud.location,
        trud.sha256.clone(),
        trud.archive,
        pipeline.config.scope.clone(),
    ))
}

/// The pipeline's `[baseline]` source, if it has one (validation allows only TRUD XML).
pub fn build_baseline(pipeline: &Pipeline) -> Option<Box<dyn Source>> {
    match &pipeline.config.baseline {
        Some(SourceConfig::TrudXml(trud)) => Some(trud_source(trud, pipeline)),
        _ => None,
    }
}

pub(crate) fn display_path(path: &Path) -> String {
    path.display().to_string()
}

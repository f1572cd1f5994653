//! Making sources from a pipeline file: `[source]` (with the command line's and environment's
//! overrides) and `[baseline]`. Every credential a location or key carries is registered for
//! redaction here, before any request or log line could show it.

use super::{PipelineConfig, SourceConfig, TrudSourceConfig};
use crate::error::UserError;
use crate::model::csv_row::CsvLayout;
use crate::sources::Source;
use crate::sources::csv_bulk::CsvSource;
use crate::sources::fhir::{FhirSource, MAX_REQUESTS_PER_SECOND};
use crate::sources::http::HttpClient;
use crate::sources::ord::OrdSource;
use crate::sources::trud_xml::TrudXmlSource;

/// What a flag or an environment variable overrides in a pipeline's `[source]`, resolved by the
/// command (flag, then environment; clap reads both).
#[derive(Debug, Default, Clone, Copy)]
pub struct SourceOverrides<'a> {
    /// `--base-url` / `ODSYNC_ORD_BASE_URL`.
    pub ord_base_url: Option<&'a str>,
    /// `--fhir-base-url` / `ODSYNC_FHIR_BASE_URL`.
    pub fhir_base_url: Option<&'a str>,
    /// `ODSYNC_CONTACT`: who to call about this client, sent in the User-Agent.
    pub contact: Option<&'a str>,
}

/// A source ready to fetch, with the CSV layout when it reads bulk files.
pub struct BuiltSource {
    pub source: Box<dyn Source>,
    pub csv_layout: Option<CsvLayout>,
}

impl SourceConfig {
    /// The source this section describes, for the pipeline `config`.
    pub fn build(&self, config: &PipelineConfig, overrides: &SourceOverrides) -> anyhow::Result<BuiltSource> {
        for location in [overrides.ord_base_url, overrides.fhir_base_url].into_iter().flatten() {
            crate::redact::register_url_secrets(location);
        }
        let settings = || config.http.settings(overrides.contact);
        let (source, csv_layout): (Box<dyn Source>, _) = match self {
            SourceConfig::Ord(ord) => {
                crate::redact::register_url_secrets(&ord.base_url);
                let base = overrides.ord_base_url.unwrap_or(&ord.base_url);
                let http = HttpClient::new(settings())?;
                (Box::new(OrdSource::new(base, http, config.scope.clone())?), None)
            }
            SourceConfig::Fhir(fhir) => {
                crate::redact::register_url_secrets(&fhir.base_url);
                let key = fhir.api_key().map_err(UserError)?;
                crate::redact::register_secret(&key);
                let mut value = reqwest::header::HeaderValue::from_str(&key)
                    .map_err(|_| UserError("the FHIR API key has characters an HTTP header cannot carry".into()))?;
                value.set_sensitive(true);
                let mut headers = reqwest::header::HeaderMap::new();
                headers.insert("apikey", value);
                let mut settings = settings();
                settings.requests_per_second = settings.requests_per_second.min(MAX_REQUESTS_PER_SECOND);
                let http = HttpClient::with_headers(settings, headers)?;
                let base = overrides.fhir_base_url.unwrap_or(&fhir.base_url);
                (
                    Box::new(FhirSource::new(base, http, config.scope.clone(), fhir.page_size)?),
                    None,
                )
            }
            SourceConfig::Csv(csv) => {
                crate::redact::register_url_secrets(&csv.location);
                let layout = CsvLayout::new(csv.kind, csv.primary_role.as_deref());
                let http = HttpClient::new(settings())?;
                let source = CsvSource::new(&csv.location, layout.clone(), csv.zip_entry.clone(), http);
                (Box::new(source), Some(layout))
            }
            SourceConfig::TrudXml(trud) => (trud_source(trud, config), None),
        };
        Ok(BuiltSource { source, csv_layout })
    }
}

impl PipelineConfig {
    /// The `[baseline]` source, if the pipeline has one (validation allows only TRUD XML).
    pub fn baseline_source(&self) -> Option<Box<dyn Source>> {
        match &self.baseline {
            Some(SourceConfig::TrudXml(trud)) => Some(trud_source(trud, self)),
            _ => None,
        }
    }
}

fn trud_source(trud: &TrudSourceConfig, config: &PipelineConfig) -> Box<dyn Source> {
    Box::new(TrudXmlSource::new(
        &trud.location,
        trud.sha256.clone(),
        trud.archive,
        config.scope.clone(),
    ))
}

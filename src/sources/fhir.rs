//! The ODS FHIR R4 Organisation Data Terminology API source (REFERENCE.md section 3).
//!
//! - `apikey` header from an environment variable or a file the pipeline names (never from the
//!   pipeline file itself). The header value is marked sensitive, URLs are redacted, and the key
//!   is never formatted into an error, a log line, a manifest or a report.
//! - Baseline: `GET /Organization?roleCode=…&_count=N`, following the Bundle's `next` link until
//!   there is none. Incremental: the same with `lastChangeDate=gt<since − 1 day>`. Codes:
//!   `GET /Organization/{code}`.
//! - `next` links are followed only on the configured host: the key is never sent elsewhere.
//! - 422 ("Response exceeds APIM size limit", over 10 MB) is answered by narrowing: the same page
//!   again with half the `_count`, down to 1.
//! - Errors arrive as `OperationOutcome`; their diagnostics are surfaced as they are.
//! - The API allows 5,000 requests per 5 minutes: the throttle is capped at 16 requests/s.

use super::http::{HttpClient, HttpError, redact};
use super::{CheckReport, FetchMetrics, FetchMode, Fetched, Source, SourceError};
use crate::model::{Quarantined, RawFormat, RawRecord};
use crate::pipeline::ScopeConfig;
use reqwest::Url;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

/// 5,000 requests per 5 minutes, with a margin.
pub const MAX_REQUESTS_PER_SECOND: f64 = 16.0;

pub struct FhirSource {
    base: Url,
    http: HttpClient,
    scope: ScopeConfig,
    page_size: u32,
}

/// The text of an `OperationOutcome` body (`severity code: diagnostics; …`), if it is one.
pub fn operation_outcome(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    if v.get("resourceType")?.as_str()? != "OperationOutcome" {
        return None;
    }
    let issues: Vec<String> = v
        .get("issue")?
        .as_array()?
        .iter()
        .map(|i| {
            let s = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("");
            let text = i
                .get("diagnostics")
                .and_then(Value::as_str)
                .or_else(|| i.get("details").and_then(|d| d.get("text")).and_then(Value::as_str))
                .unwrap_or("");
            format!("{} {}: {}", s("severity"), s("code"), text)
        })
        .collect();
    Some(issues.join("; "))
}

impl FhirSource {
    pub fn new(base_url: &str, http: HttpClient, scope: ScopeConfig, page_size: u32) -> Result<Self, SourceError> {
        let with_slash = format!("{}/", base_url.trim_end_matches('/'));
        let base = Url::parse(&with_slash).map_err(|e| SourceError::BadResponse {
            url: base_url.to_owned(),
            message: format!("not a valid base URL: {e}"),
        })?;
        Ok(FhirSource {
            base,
            http,
            scope,
            page_size: page_size.clamp(1, 5000),
        })
    }

    fn search_url(&self, extra: &[(&str, String)]) -> Url {
        let mut url = self.base.join("Organization").expect("joins");
        {
            let mut q = url.query_pairs_mut();
            let roles: Vec<&str> = self
                .scope
                .primary_roles
                .iter()
                .chain(&self.scope.roles)
                .map(String::as_str)
                .collect();
            if !roles.is_empty() {
                // Comma = OR in FHIR search.
                q.append_pair("roleCode", &roles.join(","));
            }
            if let Some(status) = &self.scope.status {
                q.append_pair("active", if status == "Active" { "true" } else { "false" });
            }
            for (k, v) in extra {
                q.append_pair(k, v);
            }
            q.append_pair("_count", &self.page_size.to_string());
        }
        url
    }

    /// An HTTP error as a source error, with the OperationOutcome's text where there is one.
    fn error(&self, e: HttpError) -> SourceError {
        match e {
            HttpError::Status { url, status, body } => {
                let outcome = operation_outcome(&body);
                let help = match status {
                    401 | 403 => {
                        "\nHelp: the FHIR API refused the API key: check the key in the environment variable or file the pipeline names (source.api_key_env / source.api_key_file)"
                    }
                    _ => "",
                };
                SourceError::BadResponse {
                    url,
                    message: format!(
                        "HTTP {status}: {}{help}",
                        outcome.unwrap_or_else(|| body.chars().take(200).collect())
                    ),
                }
            }
            other => SourceError::Http(other),
        }
    }

    /// Follows a search's `next` links; narrows `_count` on 422.
    fn search(&self, first: Url, records: &mut BTreeMap<String, RawRecord>) -> Result<u64, SourceError> {
        let mut next = Some(first);
        let mut pages = 0u64;
        while let Some(url) = next.take() {
            if url.host_str() != self.base.host_str()
                || url.port_or_known_default() != self.base.port_or_known_default()
            {
                return Err(SourceError::BadResponse {
                    url: redact(&url),
                    message: format!(
                        "a `next` link points away from {}: not followed, so the API key is not sent there",
                        self.base.host_str().unwrap_or("the configured host")
                    ),
                });
            }
            let response = match self.http.get(&url) {
                Ok(r) => r,
                Err(HttpError::Status { status: 422, .. }) => {
                    let count: u32 = url
                        .query_pairs()
                        .find(|(k, _)| k == "_count")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(self.page_size);
                    if count <= 1 {
                        return Err(SourceError::BadResponse {
                            url: redact(&url),
                            message: "HTTP 422: a single record exceeds the API's response size limit".into(),
                        });
                    }
                    tracing::warn!(url = %redact(&url), count, "response over the size limit (422): asking for half the page");
                    next = Some(with_param(&url, "_count", &(count / 2).to_string()));
                    continue;
                }
                Err(e) => return Err(self.error(e)),
            };
            pages += 1;
            let bundle: Value = serde_json::from_slice(&response.body).map_err(|e| SourceError::BadResponse {
                url: response.url.clone(),
                message: format!("not a JSON Bundle: {e}"),
            })?;
            if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
                return Err(SourceError::BadResponse {
                    url: response.url.clone(),
                    message: "expected a FHIR Bundle".into(),
                });
            }
            for entry in bundle.get("entry").and_then(Value::as_array).into_iter().flatten() {
                let Some(resource) = entry.get("resource") else {
                    continue;
                };
                if resource.get("resourceType").and_then(Value::as_str) != Some("Organization") {
                    continue; // OperationOutcome entries (search warnings), included resources
                }
                let code = resource
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let origin = entry
                    .get("fullUrl")
                    .and_then(Value::as_str)
                    .map_or_else(|| response.url.clone(), str::to_owned);
                records.insert(
                    code.clone(),
                    RawRecord {
                        code,
                        format: RawFormat::FhirJson,
                        origin,
                        payload: serde_json::to_vec(resource).expect("serialises"),
                    },
                );
            }
            next = bundle
                .get("link")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
                .and_then(|l| l.get("url").and_then(Value::as_str))
                .map(|u| {
                    Url::parse(u).map_err(|e| SourceError::BadResponse {
                        url: response.url.clone(),
                        message: format!("`next` link `{u}` is not a URL: {e}"),
                    })
                })
                .transpose()?;
        }
        Ok(pages)
    }
}

fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name { value.to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    let mut out = url.clone();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

impl Source for FhirSource {
    fn kind(&self) -> &'static str {
        "fhir"
    }

    fn supports_deltas(&self) -> bool {
        true
    }

    fn fetch(&self, mode: &FetchMode) -> Result<Fetched, SourceError> {
        let started = Instant::now();
        let mut records = BTreeMap::new();
        let mut failures = Vec::new();
        let (complete, parameters) = match mode {
            FetchMode::Baseline { .. } => {
                self.search(self.search_url(&[]), &mut records)?;
                (true, serde_json::json!({"search": redact(&self.search_url(&[]))}))
            }
            FetchMode::Incremental { since } => {
                // `gt` is exclusive: ask from the day before.
                let from = *since - chrono::Duration::days(1);
                let url = self.search_url(&[("lastChangeDate", format!("gt{from}"))]);
                self.search(url.clone(), &mut records)?;
                (false, serde_json::json!({"search": redact(&url), "since": since}))
            }
            FetchMode::Codes { codes } => {
                for code in codes {
                    let url = self.base.join(&format!("Organization/{code}")).expect("joins");
                    match self.http.get(&url) {
                        Ok(r) => {
                            records.insert(
                                code.clone(),
                                RawRecord {
                                    code: code.clone(),
                                    format: RawFormat::FhirJson,
                                    origin: r.url,
                                    payload: r.body,
                                },
                            );
                        }
                        Err(HttpError::Status { url, status: 404, body }) => failures.push(Quarantined {
                            code: Some(code.clone()),
                            source: url,
                            reason: format!(
                                "HTTP 404: {}",
                                operation_outcome(&body).unwrap_or_else(|| "not found".into())
                            ),
                            raw: body.into_bytes(),
                        }),
                        Err(e) => return Err(self.error(e)),
                    }
                }
                (false, serde_json::json!({"codes": codes}))
            }
        };
        let records: Vec<RawRecord> = records.into_values().collect();
        Ok(Fetched {
            metrics: FetchMetrics {
                listed: records.len() as u64,
                total_count_header: None,
                records_fetched: records.len() as u64,
                records_failed: failures.len() as u64,
                http: self.http.metrics(),
                elapsed_ms: started.elapsed().as_millis() as u64,
            },
            records,
            failures,
            complete,
            code_system: None,
            deletions: Vec::new(),
            location: redact(&self.base),
            parameters,
        })
    }

    fn check(&self) -> Result<CheckReport, SourceError> {
        let started = Instant::now();
        let mut url = self.search_url(&[]);
        url = with_param(&url, "_count", "1");
        let response = self.http.get(&url).map_err(|e| self.error(e))?;
        let bundle: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        let first = bundle
            .get("entry")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
            .and_then(|e| e.get("resource"));
        Ok(CheckReport {
            location: redact(&self.base),
            reachable: true,
            latency_ms: started.elapsed().as_millis() as u64,
            total_in_scope: None,
            sample_code: first
                .and_then(|r| r.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            sample_name: first
                .and_then(|r| r.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            notes: vec!["FHIR: the API key was accepted".into()],
        })
    }
}

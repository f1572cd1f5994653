//! The ODS FHIR R4 Organisation Data Terminology API source (docs/ods-reference.md section 3).
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
//! - Deletions (incremental runs): `GET /List/Organization-deletion`, read as a standard FHIR
//!   List (shape UNVERIFIED); a 404 is a warning, recorded in the manifest.
//! - Relationships: after the Organizations, `GET /OrganizationAffiliation?primary-organization=
//!   <50 codes>&_include=OrganizationAffiliation:participating-organization`, paged the same way.
//!   Participating organisations the server did not `_include` are read with `Organization?_id=`.
//!   Each raw record is a `collection` Bundle of the Organization, its affiliations and the
//!   participating organisations (see `model::fhir_json`), so a replay needs nothing else.

mod affiliations;
mod deletions;

use super::http::{HttpClient, HttpError, redact};
use super::scope::ScopeConfig;
use super::{CheckReport, FetchMetrics, FetchMode, Fetched, Source, SourceError};
use crate::model::fhir_json::referenced_code;
use crate::model::states::{OrgStatus, SourceKind};
use crate::model::{Deletion, Quarantined, RawFormat, RawRecord};
use reqwest::Url;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// 5,000 requests per 5 minutes, with a margin.
pub const MAX_REQUESTS_PER_SECOND: f64 = 16.0;

pub struct FhirSource {
    base: Url,
    base_query: Vec<(String, String)>,
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
        let (base, base_query) = super::ord::split_base(base_url)?;
        Ok(FhirSource {
            base,
            base_query,
            http,
            scope,
            page_size: page_size.clamp(1, 5000),
        })
    }

    /// `path` on the configured base, with the base URL's own query parameters.
    fn endpoint(&self, path: &str) -> Url {
        super::ord::endpoint(&self.base, &self.base_query, path)
    }

    fn search_url(&self, extra: &[(&str, String)]) -> Url {
        let mut url = self.endpoint("Organization");
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
                q.append_pair(
                    "active",
                    if status == OrgStatus::Active.as_str() {
                        "true"
                    } else {
                        "false"
                    },
                );
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

    /// Follows a search's `next` links, handing every Bundle entry to `each` with the page's URL;
    /// narrows `_count` on 422. Returns the number of pages.
    fn pages(&self, first: Url, mut each: impl FnMut(&Value, &str)) -> Result<u64, SourceError> {
        let first_shown = redact(&first);
        let mut next = Some(first);
        let mut pages = 0u64;
        let mut matched = 0u64;
        let mut total: Option<u64> = None;
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
            let entries = bundle
                .get("entry")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            let page_matches = entries
                .iter()
                .filter(|e| e.get("search").and_then(|s| s.get("mode")).and_then(Value::as_str) != Some("include"))
                .count() as u64;
            matched += page_matches;
            total = total.or(bundle.get("total").and_then(Value::as_u64));
            for entry in entries {
                each(entry, &response.url);
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
            // A page that promises more but holds nothing is a broken answer, not the end.
            if page_matches == 0 && next.is_some() {
                return Err(SourceError::BadResponse {
                    url: response.url.clone(),
                    message: "a search page holds no entries but links to a next page: the answer is incomplete\nHelp: run again (nothing was committed and the watermark did not move)".into(),
                });
            }
        }
        if let Some(total) = total
            && total != matched
        {
            return Err(SourceError::BadResponse {
                url: first_shown,
                message: format!(
                    "the Bundle's total says {total} but its pages held {matched} entries: the answer is incomplete\nHelp: the listing changed while paging, or a page was lost; run again (nothing was committed and the watermark did not move)"
                ),
            });
        }
        Ok(pages)
    }

    /// `_summary=count` of a search: the number the pages must add up to (None when the server
    /// does not answer with a total, which is logged: the search then cannot be checked).
    fn count(&self, search: &Url) -> Result<Option<u64>, SourceError> {
        let mut url = search.clone();
        let pairs: Vec<(String, String)> = search
            .query_pairs()
            .filter(|(k, _)| k != "_count")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("_summary", "count");
        let response = self.http.get(&url).map_err(|e| self.error(e))?;
        let total = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|b| b.get("total").and_then(Value::as_u64));
        if total.is_none() {
            tracing::warn!(url = %response.url, "the FHIR API gave no total for `_summary=count`: this search cannot be checked for completeness");
        }
        Ok(total)
    }

    /// An Organization search: every matched Organization becomes a raw record.
    fn search(&self, first: Url, records: &mut BTreeMap<String, Value>) -> Result<u64, SourceError> {
        let expected = self.count(&first)?;
        let before = records.len() as u64;
        let shown = redact(&first);
        let pages = self.pages(first, |entry, _page| {
            let Some(resource) = entry.get("resource") else {
                return;
            };
            if resource.get("resourceType").and_then(Value::as_str) != Some("Organization") {
                return; // OperationOutcome entries (search warnings), included resources
            }
            if let Some(code) = resource.get("id").and_then(Value::as_str) {
                records.insert(code.to_owned(), resource.clone());
            }
        })?;
        let got = records.len() as u64 - before;
        if let Some(expected) = expected
            && expected != got
        {
            return Err(SourceError::BadResponse {
                url: shown,
                message: format!(
                    "`_summary=count` says {expected} organisations match but paging returned {got}: the answer is incomplete\nHelp: run again (nothing was committed and the watermark did not move)"
                ),
            });
        }
        Ok(pages)
    }

    /// `GET /Organization/{code}` for each code, checked to be that Organization, with one more
    /// try for each failure; what still fails is returned as failures (the runner decides).
    fn by_code(
        &self,
        codes: &[String],
        orgs: &mut BTreeMap<String, Value>,
        origins: &mut BTreeMap<String, String>,
    ) -> Result<Vec<Quarantined>, SourceError> {
        let one = |code: &String| -> Result<Result<(Value, String), Quarantined>, SourceError> {
            let url = self.endpoint(&format!("Organization/{code}"));
            match self.http.get(&url) {
                Ok(r) => {
                    let parsed: Result<Value, String> =
                        serde_json::from_slice(&r.body).map_err(|e| format!("not JSON: {e}"));
                    match parsed {
                        Ok(org)
                            if org.get("resourceType").and_then(Value::as_str) == Some("Organization")
                                && org.get("id").and_then(Value::as_str) == Some(code.as_str()) =>
                        {
                            Ok(Ok((org, r.url)))
                        }
                        other => Ok(Err(Quarantined {
                            code: Some(code.clone()),
                            source: r.url,
                            reason: format!(
                                "the answer is not Organization `{code}`: {}",
                                other.err().unwrap_or_else(|| "another resource".into())
                            ),
                            raw: crate::redact::text(&String::from_utf8_lossy(&r.body)).into_bytes(),
                        })),
                    }
                }
                Err(HttpError::Status { url, status, body })
                    if (400..500).contains(&status) && status != 401 && status != 403 =>
                {
                    Ok(Err(Quarantined {
                        code: Some(code.clone()),
                        source: url,
                        reason: format!(
                            "HTTP {status}: {}",
                            operation_outcome(&body).unwrap_or_else(|| "not served".into())
                        ),
                        raw: body.into_bytes(),
                    }))
                }
                Err(e) => Err(self.error(e)),
            }
        };
        let mut failed = Vec::new();
        for code in codes {
            match one(code)? {
                Ok((org, origin)) => {
                    origins.insert(code.clone(), origin);
                    orgs.insert(code.clone(), org);
                }
                Err(q) => failed.push(q),
            }
        }
        let mut failures = Vec::new();
        for q in failed {
            let code = q.code.clone().expect("has a code");
            tracing::warn!(code = %code, reason = %q.reason, "record failed; fetching it once more");
            match one(&code)? {
                Ok((org, origin)) => {
                    origins.insert(code.clone(), origin);
                    orgs.insert(code, org);
                }
                Err(mut again) => {
                    again.reason = format!("{} (twice in this run)", again.reason);
                    failures.push(again);
                }
            }
        }
        Ok(failures)
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
    fn kind(&self) -> SourceKind {
        SourceKind::Fhir
    }

    fn supports_deltas(&self) -> bool {
        true
    }

    fn fetch(&self, mode: &FetchMode, retry_codes: &[String]) -> Result<Fetched, SourceError> {
        let started = Instant::now();
        let mut orgs = BTreeMap::new();
        let mut origins: BTreeMap<String, String> = BTreeMap::new();
        let mut failures = Vec::new();
        let (complete, mut parameters) = match mode {
            FetchMode::Baseline { .. } => {
                self.search(self.search_url(&[]), &mut orgs)?;
                (true, serde_json::json!({"search": redact(&self.search_url(&[]))}))
            }
            FetchMode::Incremental { since } => {
                // `gt` is exclusive: ask from the day before.
                let from = *since - chrono::Duration::days(1);
                let url = self.search_url(&[("lastChangeDate", format!("gt{from}"))]);
                self.search(url.clone(), &mut orgs)?;
                (false, serde_json::json!({"search": redact(&url), "since": since}))
            }
            FetchMode::Codes { codes } => {
                let codes: Vec<String> = codes.iter().map(|c| c.as_str().to_owned()).collect();
                failures = self.by_code(&codes, &mut orgs, &mut origins)?;
                (false, serde_json::json!({"codes": codes}))
            }
        };
        // Codes an earlier run could not fetch, asked for again until they succeed.
        if !complete {
            let again: Vec<String> = retry_codes.iter().filter(|c| !orgs.contains_key(*c)).cloned().collect();
            failures.extend(self.by_code(&again, &mut orgs, &mut origins)?);
        }
        let base = redact(&self.base);
        let (records, affiliation_stats) = self.bundle_records(orgs, |code| {
            origins
                .get(code)
                .cloned()
                .unwrap_or_else(|| format!("{base}Organization/{code}"))
        })?;
        parameters["affiliations"] = affiliation_stats.clone();
        let deletions = match mode {
            FetchMode::Incremental { .. } => {
                let (found, stats) = self.deletions()?;
                parameters["deletions"] = stats;
                found
            }
            _ => Vec::new(),
        };
        Ok(Fetched {
            parsed: Vec::new(),
            as_of: None,
            out_of_scope: 0,
            metrics: FetchMetrics {
                listed: records.len() as u64,
                total_count_header: None,
                records_fetched: records.len() as u64,
                records_failed: failures.len() as u64,
                http: self.http.metrics(),
                elapsed_ms: started.elapsed().as_millis() as u64,
                relationships: affiliation_stats.get("relationships").and_then(Value::as_u64),
            },
            records,
            failures,
            complete,
            code_system: None,
            deletions,
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

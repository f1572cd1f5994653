//! ODS bulk CSV files (etr, ets, epraccur, eccg, wlhb, wlhbsite …) from a path or an http(s) URL,
//! plain or zipped (docs/ods-reference.md section 4).
//!
//! The file is split into lines here, each kept byte for byte as the raw payload with its
//! `file:line` origin; the fields are parsed later by `model::csv_row`, like any other record.
//! Downloads are checked for what they really are: ODS zips behind a bot wall come back as an
//! HTML challenge page, which must fail loudly instead of being read as data.

use super::http::HttpClient;
use super::{CheckReport, FetchMetrics, FetchMode, Fetched, Source, SourceError};
use crate::model::csv_row::{CsvLayout, split_fields};
use crate::model::states::SourceKind;
use crate::model::{Quarantined, RawFormat, RawRecord};
use std::collections::HashMap;
use std::io::Read;
use std::time::Instant;

pub struct CsvSource {
    location: String,
    layout: CsvLayout,
    zip_entry: Option<String>,
    http: HttpClient,
}

impl CsvSource {
    pub fn new(location: &str, layout: CsvLayout, zip_entry: Option<String>, http: HttpClient) -> Self {
        CsvSource {
            location: location.to_owned(),
            layout,
            zip_entry,
            http,
        }
    }

    fn is_url(&self) -> bool {
        self.location.starts_with("http://") || self.location.starts_with("https://")
    }

    /// The location's bytes, unzipped when needed, and the name lines are reported under.
    fn read(&self) -> Result<(Vec<u8>, String), SourceError> {
        let bytes = if self.is_url() {
            let url = reqwest::Url::parse(&self.location).map_err(|e| SourceError::Csv {
                location: crate::redact::location(&self.location),
                message: format!("not a valid URL: {e}"),
            })?;
            self.http.get(&url)?.body
        } else {
            std::fs::read(&self.location).map_err(|source| SourceError::Io {
                path: self.location.clone(),
                source,
            })?
        };
        // The file name only: a URL's query (which may carry a key) never becomes an origin.
        let name = match reqwest::Url::parse(&self.location) {
            Ok(u) if u.has_host() => u
                .path_segments()
                .and_then(|mut s| s.next_back().map(str::to_owned))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "download".into()),
            _ => self.location.rsplit('/').next().unwrap_or(&self.location).to_owned(),
        };
        let wants_zip = name.to_ascii_lowercase().ends_with(".zip");
        if bytes.starts_with(b"PK\x03\x04") {
            return self.unzip(bytes);
        }
        if wants_zip || looks_like_html(&bytes) {
            return Err(SourceError::NotAZip {
                location: crate::redact::location(&self.location),
                looks_like: describe_start(&bytes),
                help: if looks_like_html(&bytes) {
                    "this is an HTML page (ODS file downloads can be answered by a bot-challenge page); download the file in a browser and point `source.location` at the saved copy".into()
                } else {
                    "the file is damaged or not what the URL promised; download it again".into()
                },
            });
        }
        Ok((bytes, name))
    }

    fn unzip(&self, bytes: Vec<u8>) -> Result<(Vec<u8>, String), SourceError> {
        let err = |message: String| SourceError::Csv {
            location: crate::redact::location(&self.location),
            message,
        };
        let mut archive =
            zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| err(format!("unreadable zip: {e}")))?;
        let names: Vec<String> = archive.file_names().map(str::to_owned).collect();
        let entry = match &self.zip_entry {
            Some(wanted) => names.iter().find(|n| *n == wanted).cloned().ok_or_else(|| {
                err(format!(
                    "the zip has no entry `{wanted}`; it holds: {}",
                    names.join(", ")
                ))
            })?,
            None => {
                let csvs: Vec<&String> = names
                    .iter()
                    .filter(|n| n.to_ascii_lowercase().ends_with(".csv"))
                    .collect();
                match csvs.as_slice() {
                    [one] => (*one).clone(),
                    [] => {
                        return Err(err(format!(
                            "the zip holds no .csv file; it holds: {}",
                            names.join(", ")
                        )));
                    }
                    many => {
                        return Err(err(format!(
                            "the zip holds several CSV files ({}); set `source.zip_entry`",
                            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                        )));
                    }
                }
            }
        };
        let mut file = archive
            .by_name(&entry)
            .map_err(|e| err(format!("zip entry `{entry}`: {e}")))?;
        let mut out = Vec::new();
        file.read_to_end(&mut out)
            .map_err(|e| err(format!("zip entry `{entry}`: {e}")))?;
        Ok((out, entry))
    }
}

fn looks_like_html(bytes: &[u8]) -> bool {
    let start: String = String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
        .trim_start()
        .chars()
        .take(15)
        .collect::<String>()
        .to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html") || start.starts_with("<?xml")
}

/// The first bytes of a file, printable, for an error that says what the file really is.
pub(crate) fn describe_start(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("`{}`", text.trim())
}

/// Splits a whole CSV file into raw records, one per line, keeping each line's bytes.
///
/// Lines are split on `\n` (a `\r` before it is dropped). ODS files never put a line break
/// inside a quoted field, so a line that does not make 24-27 fields is quarantined with its
/// number rather than joined to the next.
pub fn split_file(bytes: &[u8], name: &str) -> (Vec<RawRecord>, Vec<Quarantined>) {
    let (records, failures, _) = split_file_profiled(bytes, name);
    (records, failures)
}

/// What a file's rows say about its publication profile (docs/ods-reference.md 4.8, 4.10), tallied while
/// the lines are split.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProfileTally {
    pub rows: u64,
    /// Rows whose status or field 26 is in the DSE form (status words, role codes).
    pub dse_rows: u64,
    /// Rows whose status or field 26 is in the legacy form (status letters, setting numbers).
    pub legacy_rows: u64,
    /// Rows with the Amended Record Indicator set (`1`).
    pub amended_rows: u64,
    /// Rows with an address line 5 (county).
    pub county_rows: u64,
}

impl ProfileTally {
    fn add(&mut self, fields: &[String]) {
        self.rows += 1;
        match crate::model::csv_row::line_profile(fields) {
            Some("dse") => self.dse_rows += 1,
            Some(_) => self.legacy_rows += 1,
            None => {}
        }
        self.amended_rows += u64::from(fields[21] == "1");
        self.county_rows += u64::from(!fields[8].is_empty());
    }

    /// The file's profile and the evidence for it: `dse` when its rows use the DSE vocabulary, or
    /// (files with no status column) when every row is marked amended and none has a county,
    /// which is how the DSE reports replicate the legacy files; else `legacy`. `mixed` when rows
    /// of both vocabularies occur: one file is one publication, so that looks like a damaged or
    /// hand-assembled file.
    pub fn profile(&self) -> (&'static str, String) {
        let pct = |n: u64| {
            if self.rows == 0 {
                0.0
            } else {
                100.0 * n as f64 / self.rows as f64
            }
        };
        if self.dse_rows > 0 && self.legacy_rows > 0 {
            return (
                "mixed",
                format!(
                    "{} rows in the DSE vocabulary and {} in the legacy one",
                    self.dse_rows, self.legacy_rows
                ),
            );
        }
        if self.dse_rows > 0 {
            return (
                "dse",
                format!(
                    "{} of {} rows use DSE status words or role codes",
                    self.dse_rows, self.rows
                ),
            );
        }
        if self.legacy_rows > 0 {
            return (
                "legacy",
                format!(
                    "{} of {} rows use legacy status letters or setting numbers",
                    self.legacy_rows, self.rows
                ),
            );
        }
        if self.rows >= 20 && self.amended_rows == self.rows && self.county_rows == 0 {
            return (
                "dse",
                format!("all {} rows marked amended and none with a county", self.rows),
            );
        }
        (
            "legacy",
            format!(
                "{:.0}% of rows marked amended, {:.0}% with a county",
                pct(self.amended_rows),
                pct(self.county_rows)
            ),
        )
    }
}

/// [`split_file`], also tallying the file's publication profile.
pub fn split_file_profiled(bytes: &[u8], name: &str) -> (Vec<RawRecord>, Vec<Quarantined>, ProfileTally) {
    let mut tally = ProfileTally::default();
    let mut records = Vec::new();
    let mut failures = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line_no = index + 1;
        let payload = line.strip_suffix(b"\r").unwrap_or(line);
        if payload.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let origin = format!("{name}:{line_no}");
        let fields = match split_fields(payload) {
            Ok(f) => f,
            Err(reason) => {
                let code = first_field(payload);
                failures.push(Quarantined {
                    code,
                    source: origin,
                    reason,
                    raw: payload.to_vec(),
                });
                continue;
            }
        };
        let code = fields[0].clone();
        if code.is_empty() {
            failures.push(Quarantined {
                code: None,
                source: origin,
                reason: "field 1 (Organisation Code) is empty".into(),
                raw: payload.to_vec(),
            });
            continue;
        }
        if let Some(first) = first_line.get(&code) {
            failures.push(Quarantined {
                code: Some(code.clone()),
                source: origin,
                reason: format!("duplicate code `{code}`: first seen at {name}:{first}; this line is not used"),
                raw: payload.to_vec(),
            });
            continue;
        }
        first_line.insert(code.clone(), line_no);
        tally.add(&fields);
        records.push(RawRecord {
            code,
            format: RawFormat::Csv,
            origin,
            payload: payload.to_vec().into(),
        });
    }
    (records, failures, tally)
}

/// When the file does not end with a line break and its last line is not a whole row, the file
/// was cut off (an interrupted download, a full disk): returns the line number and why.
pub fn truncated_tail(bytes: &[u8]) -> Option<(usize, String)> {
    let trimmed_end = bytes.iter().rposition(|b| !b.is_ascii_whitespace() || *b == b'\n')?;
    if bytes[trimmed_end] == b'\n' {
        return None;
    }
    let start = bytes[..trimmed_end]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let line_no = bytes[..start].iter().filter(|b| **b == b'\n').count() + 1;
    split_fields(&bytes[start..=trimmed_end])
        .err()
        .map(|reason| (line_no, reason))
}

fn first_field(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let first = text.split(',').next()?.trim().trim_matches('"').trim().to_owned();
    Some(first).filter(|c| !c.is_empty())
}

impl Source for CsvSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Csv
    }

    fn supports_deltas(&self) -> bool {
        false
    }

    fn fetch(&self, _mode: &FetchMode, _retry_codes: &[String]) -> Result<Fetched, SourceError> {
        let started = Instant::now();
        let (bytes, name) = self.read()?;
        let location = crate::redact::location(&self.location);
        if let Some((line, reason)) = truncated_tail(&bytes) {
            return Err(SourceError::Csv {
                location,
                message: format!(
                    "the file is truncated: it ends in the middle of line {line} ({name}:{line}: {reason}) with no line break\nHelp: the download or copy was cut off; fetch the file again (nothing was committed)"
                ),
            });
        }
        let (records, failures, tally) = split_file_profiled(&bytes, &name);
        let (profile, profile_evidence) = tally.profile();
        if records.is_empty() {
            let example = failures
                .first()
                .map(|q| format!("; {}: {}", q.source, q.reason))
                .unwrap_or_default();
            return Err(SourceError::Csv {
                location,
                message: format!(
                    "no line of `{name}` is a usable ODS row ({} lines{example})\nHelp: is this the ODS bulk file of kind `{}` (the headerless 27-field layout)? Nothing was committed",
                    failures.len(),
                    self.layout.kind.as_str()
                ),
            });
        }
        let metrics = FetchMetrics {
            listed: (records.len() + failures.len()) as u64,
            total_count_header: None,
            records_fetched: records.len() as u64,
            records_failed: failures.len() as u64,
            http: self.http.metrics(),
            elapsed_ms: started.elapsed().as_millis() as u64,
            relationships: None,
        };
        Ok(Fetched {
            parsed: Vec::new(),
            as_of: None,
            out_of_scope: 0,
            records,
            failures,
            complete: true,
            code_system: None,
            deletions: Vec::new(),
            metrics,
            location,
            parameters: serde_json::json!({
                "kind": self.layout.kind,
                "primary_role": self.layout.primary_role,
                "entry": name,
                "profile": profile,
                "profile_evidence": profile_evidence,
            }),
        })
    }

    fn check(&self) -> Result<CheckReport, SourceError> {
        let started = Instant::now();
        let (bytes, name) = self.read()?;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (records, failures) = split_file(&bytes, &name);
        let first = records.first();
        let parsed =
            first.map(|r| crate::model::csv_row::parse_line(&r.payload, &self.layout, chrono::Utc::now().date_naive()));
        let mut notes = vec![format!(
            "{} lines read from `{name}`, {} unusable",
            records.len() + failures.len(),
            failures.len()
        )];
        let sample_name = match parsed {
            Some(Ok(rec)) => Some(rec.organisation.name),
            Some(Err(e)) => {
                notes.push(format!("the first line does not parse: {e}"));
                None
            }
            None => None,
        };
        Ok(CheckReport {
            location: crate::redact::location(&self.location),
            reachable: true,
            latency_ms,
            total_in_scope: Some(records.len() as u64),
            sample_code: first.map(|r| r.code.clone()),
            sample_name,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_bytes_and_numbers_and_duplicates_are_quarantined() {
        let file = b"\"A1\",\"X\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"20200101\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"0\",\"\",\"A\",\"\",\"\",\"\"\r\nA2,Y,,,,,,,,,20200101,,,,,,,,,,,0,,A\r\n\r\nA1,Z,,,,,,,,,20200101,,,,,,,,,,,0,,A\n";
        let (records, failures) = split_file(file, "etr.csv");
        assert_eq!(records.len(), 2);
        assert!(records[0].payload.starts_with(b"\"A1\""));
        assert!(!records[0].payload.ends_with(b"\n"));
        assert_eq!(records[1].origin, "etr.csv:2");
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].source, "etr.csv:4");
        assert!(failures[0].reason.contains("duplicate"));
    }

    #[test]
    fn a_file_cut_mid_line_is_truncated_and_a_whole_one_is_not() {
        let line = "A1,X,,,,,,,,,20200101,,,,,,,,,,,0,,A\r\n";
        let whole = format!("{line}{line}");
        assert_eq!(truncated_tail(whole.as_bytes()), None);
        // A last line without a line break is fine when it is whole.
        assert_eq!(truncated_tail(whole.trim_end().as_bytes()), None);
        let cut = format!("{line}A2,Y,,,,");
        let (n, why) = truncated_tail(cut.as_bytes()).unwrap();
        assert_eq!(n, 2);
        assert!(why.contains("fields"), "{why}");
        assert!(truncated_tail(format!("{line}\"A2\",\"HALF").as_bytes()).is_some());
    }

    #[test]
    fn an_html_challenge_page_is_not_taken_for_a_zip() {
        assert!(looks_like_html(
            b"  <!DOCTYPE html><html><title>Just a moment...</title>"
        ));
        assert!(!looks_like_html(b"\"R0A\",\"MANCHESTER\""));
    }
}

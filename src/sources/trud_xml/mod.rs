//! The monthly TRUD XML release (HSCOrgRefData v2-0-0, TRUD item 341; docs/ods-reference.md section 10):
//! all of ODS in two files, the NHS-recommended way to baseline a large scope.
//!
//! `location` is the release zip as TRUD ships it (holding `fullfile.zip` and `archive.zip`, each
//! holding one XML file), an extracted `HSCOrgRefData_Full_*.xml` / `HSCOrgRefData_Archive_*.xml`,
//! or a folder holding either. Each XML file is read as a stream: the header (`Manifest`,
//! `CodeSystems`) is parsed, then the bytes are cut into `<Organisation>` elements without
//! building a document (memory grows with the records kept, not with the file), and the
//! elements are parsed on every core by `model::ord_xml`, the same mapping the ORD JSON has.
//!
//! Rules (each reported in the manifest's parameters):
//! - every file's `Manifest/RecordCount` must equal the `<Organisation>` elements read, and the
//!   file must end with `</Organisations>`: a cut-off or padded file fails the run;
//! - a `refOnly` stub is superseded by the complete record of the same code in the other file;
//!   two complete records for one code: the full file wins, within one file the later
//!   operational start (then the later element); each case is listed under `duplicates`;
//! - an element that does not parse is quarantined with `file:line (byte N)`, never dropped;
//! - the scope (roles, status, record class) is applied as records are read;
//! - the `OrganisationRole` code system (primary when `PrimaryRoleScope` lists it) is kept as the
//!   snapshot's code-system table, as ORD's `/roles` is;
//! - the release zip's sha256 is recorded, and checked when the pipeline gives one.

mod stream;

use super::scope::ScopeConfig;
use super::{CheckReport, FetchMetrics, FetchMode, Fetched, Source, SourceError};
use crate::model::states::SourceKind;
use crate::model::{OrgRecord, Quarantined, RawFormat, RawRecord};
use chrono::NaiveDate;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;
use stream::{FileKind, Header, ParseFn, XmlFile, read_xml, release_kind};

/// What the manifest records about each file.
#[derive(Debug, Clone, Serialize)]
struct FileReport {
    name: String,
    kind: FileKind,
    bytes: u64,
    records: u64,
    #[serde(flatten)]
    header: Header,
}

pub struct TrudXmlSource {
    location: PathBuf,
    sha256: Option<String>,
    archive: bool,
    scope: ScopeConfig,
}

impl TrudXmlSource {
    pub fn new(location: &Path, sha256: Option<String>, archive: bool, scope: ScopeConfig) -> Self {
        TrudXmlSource {
            location: location.to_owned(),
            sha256: sha256.map(|s| s.trim().to_ascii_lowercase()),
            archive,
            scope,
        }
    }

    fn display(&self) -> String {
        self.location.display().to_string()
    }

    fn err(&self, message: impl Into<String>, help: impl Into<String>) -> SourceError {
        SourceError::Trud {
            location: self.display(),
            message: message.into(),
            help: help.into(),
        }
    }

    fn io(&self, path: &Path, source: std::io::Error) -> SourceError {
        SourceError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Reads every release file the location holds (full first, then archive), and the zip's
    /// sha256 when the location is a zip; with `parse`, each file's elements are parsed as it is
    /// read (`XmlFile::parsed`).
    pub fn read_files(&self, parse: Option<&ParseFn>) -> Result<(Vec<XmlFile>, Option<String>), SourceError> {
        let meta = std::fs::metadata(&self.location).map_err(|e| self.io(&self.location, e))?;
        let mut files = Vec::new();
        let mut zip_sha = None;
        if meta.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(&self.location)
                .map_err(|e| self.io(&self.location, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            names.sort();
            let xmls: Vec<&PathBuf> = names.iter().filter(|p| release_kind(&file_name(p)).is_some()).collect();
            if !xmls.is_empty() {
                for path in xmls {
                    self.read_plain(path, &mut files, parse)?;
                }
            } else {
                let zips: Vec<&PathBuf> = names
                    .iter()
                    .filter(|p| file_name(p).to_ascii_lowercase().ends_with(".zip"))
                    .collect();
                match zips.as_slice() {
                    [one] => zip_sha = Some(self.read_zip_file(one, &mut files, parse)?),
                    [] => {
                        return Err(self.err(
                            format!(
                                "the folder holds no HSCOrgRefData_Full_*.xml / HSCOrgRefData_Archive_*.xml and no release zip (it holds: {})",
                                list_names(&names)
                            ),
                            "point `location` at the TRUD release zip (hscorgrefdataxml_data_*.zip), at the extracted XML files, or at the folder holding them",
                        ));
                    }
                    many => {
                        return Err(self.err(
                            format!("the folder holds several zips ({}): which release?", list_names(many)),
                            "point `location` at one release zip",
                        ));
                    }
                }
            }
        } else if is_zip(&self.location).map_err(|e| self.io(&self.location, e))? {
            zip_sha = Some(self.read_zip_file(&self.location, &mut files, parse)?);
        } else {
            self.read_plain(&self.location, &mut files, parse)?;
        }
        if let (Some(want), Some(got)) = (&self.sha256, &zip_sha)
            && want != got
        {
            return Err(self.err(
                format!("the release zip's sha256 is {got}, but the pipeline expects {want}"),
                "the download is damaged or is another release: download it again from TRUD, or update `sha256` in the pipeline file to the release's published `archiveFileSha256`",
            ));
        }
        if self.sha256.is_some() && zip_sha.is_none() {
            return Err(self.err(
                "the pipeline gives a `sha256`, which is checked against the release zip, but the location is not a zip",
                "point `location` at the release zip, or remove `sha256`",
            ));
        }
        if !self.archive {
            files.retain(|f| f.kind == FileKind::Full);
        }
        if files.is_empty() {
            return Err(self.err(
                "no HSCOrgRefData XML file was found",
                "point `location` at the TRUD release zip (hscorgrefdataxml_data_*.zip), an extracted HSCOrgRefData_Full_*.xml, or the folder holding them",
            ));
        }
        files.sort_by_key(|f| f.kind);
        for pair in files.windows(2) {
            if pair[0].kind == pair[1].kind {
                return Err(self.err(
                    format!(
                        "two {:?} files: `{}` and `{}`",
                        pair[0].kind, pair[0].name, pair[1].name
                    ),
                    "a release has one full and one archive file; keep one release in the folder",
                ));
            }
        }
        Ok((files, zip_sha))
    }

    fn read_plain(&self, path: &Path, files: &mut Vec<XmlFile>, parse: Option<&ParseFn>) -> Result<(), SourceError> {
        let file = std::fs::File::open(path).map_err(|e| self.io(path, e))?;
        let name = file_name(path);
        if !self.archive && release_kind(&name) == Some(FileKind::Archive) {
            return Ok(());
        }
        files.push(read_xml(&name, file, parse).map_err(|m| self.file_err(&name, m))?);
        Ok(())
    }

    fn file_err(&self, name: &str, (message, help): (String, String)) -> SourceError {
        SourceError::Trud {
            location: if self.display().ends_with(name) {
                self.display()
            } else {
                format!("{} → {name}", self.display())
            },
            message,
            help,
        }
    }

    /// The release zip: its entries may be the XML files, or zips (`fullfile.zip`,
    /// `archive.zip`) holding them. Returns the zip's sha256.
    fn read_zip_file(
        &self,
        path: &Path,
        files: &mut Vec<XmlFile>,
        parse: Option<&ParseFn>,
    ) -> Result<String, SourceError> {
        let bytes = std::fs::read(path).map_err(|e| self.io(path, e))?;
        let sha = format!("{:x}", Sha256::digest(&bytes));
        let outer = file_name(path);
        let found = self.read_zip(&outer, bytes, files, 0, parse)?;
        if found == 0 {
            return Err(self.err(
                format!(
                    "`{outer}` is not a TRUD HSCOrgRefData release: it holds no HSCOrgRefData_*.xml, fullfile.zip or archive.zip (it holds: {})",
                    zip_names(&std::fs::read(path).map_err(|e| self.io(path, e))?).join(", ")
                ),
                "download the \"NHS ODS XML data files\" release (TRUD item 341) and point `location` at its zip",
            ));
        }
        Ok(sha)
    }

    fn read_zip(
        &self,
        name: &str,
        bytes: Vec<u8>,
        files: &mut Vec<XmlFile>,
        depth: u32,
        parse: Option<&ParseFn>,
    ) -> Result<usize, SourceError> {
        let zerr = |e: zip::result::ZipError| {
            self.err(
                format!("`{name}` is not a readable zip: {e}"),
                "the download is damaged or incomplete; download the release again",
            )
        };
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zerr)?;
        let mut entries: Vec<String> = archive.file_names().map(str::to_owned).collect();
        entries.sort();
        let mut found = 0;
        for entry in entries {
            let base = entry.rsplit('/').next().unwrap_or(&entry).to_owned();
            let lower = base.to_ascii_lowercase();
            if let Some(kind) = release_kind(&base) {
                if !self.archive && kind == FileKind::Archive {
                    found += 1;
                    continue;
                }
                let file = archive.by_name(&entry).map_err(zerr)?;
                files.push(read_xml(&base, file, parse).map_err(|m| self.file_err(&base, m))?);
                found += 1;
            } else if lower.ends_with(".zip") && depth == 0 {
                if !self.archive && lower.contains("archive") {
                    found += 1;
                    continue;
                }
                let mut inner = Vec::new();
                archive
                    .by_name(&entry)
                    .map_err(zerr)?
                    .read_to_end(&mut inner)
                    .map_err(|e| self.err(format!("`{name}` → `{entry}`: {e}"), "download the release again"))?;
                found += self.read_zip(&base, inner, files, depth + 1, parse)?;
            }
        }
        Ok(found)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list_names(paths: &[impl AsRef<Path>]) -> String {
    let names: Vec<String> = paths.iter().take(10).map(|p| file_name(p.as_ref())).collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

fn zip_names(bytes: &[u8]) -> Vec<String> {
    zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map(|a| a.file_names().take(10).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn is_zip(path: &Path) -> std::io::Result<bool> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut magic)?;
    Ok(n == 4 && &magic == b"PK\x03\x04")
}

/// The publication date as a date (`2026-08-28`, or `20260828`), else the date in the file name.
fn publication_date(file: &XmlFile) -> Option<NaiveDate> {
    let from_header = file.header.publication_date.as_deref().and_then(|d| {
        let d = d.trim();
        NaiveDate::parse_from_str(d.get(..10).unwrap_or(d), "%Y-%m-%d")
            .or_else(|_| NaiveDate::parse_from_str(d.get(..8).unwrap_or(d), "%Y%m%d"))
            .ok()
    });
    from_header.or_else(|| {
        let digits: String = file
            .name
            .rsplit('_')
            .next()
            .unwrap_or_default()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        NaiveDate::parse_from_str(&digits, "%Y%m%d").ok()
    })
}

/// The code an unparseable element names, for its quarantine row.
fn sniff_code(payload: &[u8]) -> Option<String> {
    let at = memchr::memmem::find(payload, b"<OrgId")?;
    let rest = &payload[at..];
    let gt = memchr::memchr(b'>', rest)?;
    let tag = &rest[..gt];
    let ext = memchr::memmem::find(tag, b"extension=\"")? + b"extension=\"".len();
    let end = memchr::memchr(b'"', &tag[ext..])?;
    let code = String::from_utf8_lossy(&tag[ext..ext + end]).into_owned();
    (!code.is_empty() && code.len() <= 12).then_some(code)
}

struct Candidate {
    raw: RawRecord,
    rec: OrgRecord,
    kind: FileKind,
    /// Position in the file, for the tie-break and the report.
    index: usize,
}

/// Which of two records of one code is kept, and whether that is worth reporting.
fn prefer_new(old: &Candidate, new: &Candidate) -> (bool, Option<&'static str>) {
    let (old_stub, new_stub) = (old.rec.organisation.ref_only, new.rec.organisation.ref_only);
    match (old_stub, new_stub) {
        (true, false) => (true, None),
        (false, true) => (false, None),
        _ if old.kind != new.kind => (new.kind < old.kind, (!old_stub).then_some("the full file wins")),
        _ => {
            let (a, b) = (
                old.rec.organisation.operational.start,
                new.rec.organisation.operational.start,
            );
            let newer = (b, new.index) > (a, old.index);
            (
                newer,
                (!old_stub).then_some("the later operational start wins (then the later element)"),
            )
        }
    }
}

impl Source for TrudXmlSource {
    fn kind(&self) -> SourceKind {
        SourceKind::TrudXml
    }

    fn supports_deltas(&self) -> bool {
        false
    }

    fn fetch(&self, _mode: &FetchMode, _retry_codes: &[String]) -> Result<Fetched, SourceError> {
        let started = Instant::now();
        let (files, zip_sha) = self.read_files(Some(&crate::model::ord_xml::parse_organisation))?;
        tracing::trace!(
            ms = started.elapsed().as_millis() as u64,
            "trud files read, cut into elements and parsed"
        );
        let mut failures: Vec<Quarantined> = Vec::new();
        let mut by_code: BTreeMap<String, Candidate> = BTreeMap::new();
        let mut duplicates: Vec<String> = Vec::new();
        let mut listed = 0u64;
        let mut reports = Vec::new();
        let mut dates = Vec::new();
        for file in files {
            listed += file.elements.len() as u64;
            dates.extend(publication_date(&file));
            reports.push(FileReport {
                name: file.name.clone(),
                kind: file.kind,
                bytes: file.bytes,
                records: file.elements.len() as u64,
                header: file.header.clone(),
            });
            for (index, (element, result)) in file.elements.into_iter().zip(file.parsed).enumerate() {
                let origin = format!("{}:{}", file.name, element.line);
                let rec = match result {
                    Ok(rec) => rec,
                    Err(reason) => {
                        failures.push(Quarantined {
                            code: sniff_code(&element.payload),
                            source: format!("{origin} (byte {})", element.offset),
                            reason: if element.starts > 1 {
                                format!("{reason} (the element runs into the next one: its end tag is missing)")
                            } else {
                                reason
                            },
                            raw: element.payload,
                        });
                        continue;
                    }
                };
                let code = rec.organisation.code.clone();
                let new = Candidate {
                    raw: RawRecord {
                        code: code.clone(),
                        format: RawFormat::OrdXml,
                        origin,
                        payload: element.payload.into(),
                    },
                    rec,
                    kind: file.kind,
                    index,
                };
                let Some(old) = by_code.get(&code) else {
                    by_code.insert(code, new);
                    continue;
                };
                let (take, report) = prefer_new(old, &new);
                if let Some(rule) = report {
                    let kept = if take { &new.raw.origin } else { &old.raw.origin };
                    duplicates.push(format!(
                        "{code}: complete records at {} and {}; kept {kept} ({rule})",
                        old.raw.origin, new.raw.origin
                    ));
                }
                if take {
                    by_code.insert(code, new);
                }
            }
        }
        tracing::trace!(ms = started.elapsed().as_millis() as u64, "trud records by code");
        for d in duplicates.iter().take(20) {
            tracing::warn!("{d}");
        }
        let mut records = Vec::with_capacity(by_code.len());
        let mut parsed = Vec::with_capacity(by_code.len());
        let mut out_of_scope = 0u64;
        for (_, c) in by_code {
            if self.scope.matches(&c.rec) {
                records.push(c.raw);
                parsed.push(c.rec);
            } else {
                out_of_scope += 1;
            }
        }
        let full = reports.iter().find(|r| r.kind == FileKind::Full).or(reports.first());
        let code_system = full.map(|r| r.header.code_system.clone());
        let as_of = dates.into_iter().min();
        let metrics = FetchMetrics {
            listed,
            total_count_header: Some(reports.iter().filter_map(|r| r.header.record_count).sum()),
            records_fetched: records.len() as u64,
            records_failed: failures.len() as u64,
            elapsed_ms: started.elapsed().as_millis() as u64,
            ..FetchMetrics::default()
        };
        Ok(Fetched {
            records,
            failures,
            complete: true,
            code_system,
            deletions: Vec::new(),
            metrics,
            location: self.display(),
            parameters: serde_json::json!({
                "files": reports,
                "zip_sha256": zip_sha,
                "archive": self.archive,
                "duplicates": duplicates,
                "out_of_scope": out_of_scope,
                "publication_date": as_of,
            }),
            parsed,
            as_of,
            out_of_scope,
        })
    }

    fn check(&self) -> Result<CheckReport, SourceError> {
        let started = Instant::now();
        let (files, zip_sha) = self.read_files(None)?;
        let mut notes: Vec<String> = files
            .iter()
            .map(|f| {
                format!(
                    "{} ({:?}): {} records, RecordCount {}, published {}",
                    f.name,
                    f.kind,
                    f.elements.len(),
                    f.header.record_count.unwrap_or_default(),
                    f.header.publication_date.as_deref().unwrap_or("?")
                )
            })
            .collect();
        if let Some(sha) = zip_sha {
            notes.push(format!("zip sha256 {sha}"));
        }
        let sample = files
            .iter()
            .flat_map(|f| f.elements.first())
            .find_map(|e| crate::model::ord_xml::parse_organisation(&e.payload).ok());
        Ok(CheckReport {
            location: self.display(),
            reachable: true,
            latency_ms: started.elapsed().as_millis() as u64,
            total_in_scope: None,
            sample_code: sample.as_ref().map(|s| s.organisation.code.clone()),
            sample_name: sample.map(|s| s.organisation.name),
            notes,
        })
    }
}

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

use super::scope::ScopeConfig;
use super::{CheckReport, FetchMetrics, FetchMode, Fetched, Source, SourceError};
use crate::model::states::SourceKind;
use crate::model::tables::CodeSystemRole;
use crate::model::{OrgRecord, Quarantined, RawFormat, RawRecord};
use chrono::NaiveDate;
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How much of a file is read at a time while cutting it into elements.
const CHUNK: usize = 8 << 20;
/// The header (Manifest and CodeSystems) is a few hundred kB; more means this is not a release.
const MAX_HEADER: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Full,
    Archive,
}

/// What a file's header says.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Header {
    pub version: Option<String>,
    pub publication_type: Option<String>,
    pub publication_date: Option<String>,
    pub record_count: Option<u64>,
    #[serde(skip)]
    pub code_system: Vec<CodeSystemRole>,
}

/// One `<Organisation>` element as cut from the file.
pub struct Element {
    pub payload: Vec<u8>,
    pub line: u64,
    pub offset: u64,
    /// `<Organisation` start tags inside (1, or more when a damaged element swallowed the next).
    pub starts: u64,
}

/// One XML file, read.
pub struct XmlFile {
    pub name: String,
    pub kind: FileKind,
    pub header: Header,
    pub elements: Vec<Element>,
    pub bytes: u64,
}

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
    /// sha256 when the location is a zip.
    pub fn read_files(&self) -> Result<(Vec<XmlFile>, Option<String>), SourceError> {
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
                    self.read_plain(path, &mut files)?;
                }
            } else {
                let zips: Vec<&PathBuf> = names
                    .iter()
                    .filter(|p| file_name(p).to_ascii_lowercase().ends_with(".zip"))
                    .collect();
                match zips.as_slice() {
                    [one] => zip_sha = Some(self.read_zip_file(one, &mut files)?),
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
            zip_sha = Some(self.read_zip_file(&self.location, &mut files)?);
        } else {
            self.read_plain(&self.location, &mut files)?;
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

    fn read_plain(&self, path: &Path, files: &mut Vec<XmlFile>) -> Result<(), SourceError> {
        let file = std::fs::File::open(path).map_err(|e| self.io(path, e))?;
        let name = file_name(path);
        if !self.archive && release_kind(&name) == Some(FileKind::Archive) {
            return Ok(());
        }
        files.push(read_xml(&name, file).map_err(|m| self.file_err(&name, m))?);
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
    fn read_zip_file(&self, path: &Path, files: &mut Vec<XmlFile>) -> Result<String, SourceError> {
        let bytes = std::fs::read(path).map_err(|e| self.io(path, e))?;
        let sha = format!("{:x}", Sha256::digest(&bytes));
        let outer = file_name(path);
        let found = self.read_zip(&outer, bytes, files, 0)?;
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

    fn read_zip(&self, name: &str, bytes: Vec<u8>, files: &mut Vec<XmlFile>, depth: u32) -> Result<usize, SourceError> {
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
                files.push(read_xml(&base, file).map_err(|m| self.file_err(&base, m))?);
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
                found += self.read_zip(&base, inner, files, depth + 1)?;
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

/// `HSCOrgRefData_Full_20260828.xml` → Full; `…_Archive_…` → Archive.
pub fn release_kind(name: &str) -> Option<FileKind> {
    let lower = name.to_ascii_lowercase();
    if !lower.ends_with(".xml") || !lower.starts_with("hscorgrefdata") {
        return None;
    }
    if lower.contains("archive") {
        Some(FileKind::Archive)
    } else {
        Some(FileKind::Full)
    }
}

type FileError = (String, String);

fn damaged(message: String) -> FileError {
    (
        message,
        "the file is damaged or cut off (a partial download or extraction); download the release again. Nothing was committed".into(),
    )
}

/// Fills `buf` with up to `CHUNK` more bytes; false at the end of the input.
fn fill(reader: &mut impl Read, buf: &mut Vec<u8>) -> Result<bool, FileError> {
    let start = buf.len();
    buf.resize(start + CHUNK, 0);
    let mut filled = start;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(filled);
                return Err(damaged(format!("read error: {e}")));
            }
        }
    }
    buf.truncate(filled);
    Ok(filled > start)
}

/// Where `<Organisation` (exactly that element, not `<Organisations`) starts at or after `from`.
/// `Err(keep)`: not in the buffer; bytes from `keep` on may still begin one.
fn find_open(buf: &[u8], from: usize, finder: &memchr::memmem::Finder<'_>) -> Result<usize, usize> {
    let tag = b"<Organisation".len();
    let mut pos = from;
    while let Some(i) = finder.find(&buf[pos..]) {
        let s = pos + i;
        match buf.get(s + tag) {
            None => return Err(s),
            Some(b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/') => return Ok(s),
            Some(_) => pos = s + tag,
        }
    }
    Err(buf.len().saturating_sub(tag).max(from))
}

/// Reads one HSCOrgRefData XML file as a stream.
///
/// Long on purpose: one pass over the stream (header, then elements cut out chunk by chunk,
/// then the end check) whose buffer and offsets are shared by every step.
pub fn read_xml(name: &str, mut reader: impl Read) -> Result<XmlFile, FileError> {
    let not_release = |what: &str| {
        (
            format!("not an HSCOrgRefData (TRUD ODS XML) file: {what}"),
            "point `location` at the TRUD release zip or its HSCOrgRefData_Full_*.xml / HSCOrgRefData_Archive_*.xml"
                .to_owned(),
        )
    };
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * 2);
    let mut eof = false;
    // 1. The header, up to the <Organisations> container.
    let container = memchr::memmem::Finder::new(b"<Organisations");
    let header_end = loop {
        if let Some(i) = container.find(&buf) {
            break i;
        }
        if eof {
            return Err(if buf.is_empty() {
                not_release("it is empty")
            } else if looks_like_release(&buf) {
                damaged("the file ends before its <Organisations> element".into())
            } else {
                not_release(&format!("it starts with {}", super::csv_bulk::describe_start(&buf)))
            });
        }
        if buf.len() > MAX_HEADER {
            return Err(not_release("no <Organisations> element in its first 64 MB"));
        }
        eof = !fill(&mut reader, &mut buf)?;
    };
    let header = parse_header(&buf[..header_end]).map_err(|m| not_release(&m))?;
    let kind = release_kind(name)
        .or(match header.publication_type.as_deref() {
            Some(t) if t.eq_ignore_ascii_case("archive") => Some(FileKind::Archive),
            _ => None,
        })
        .unwrap_or(FileKind::Full);

    // 2. The elements, cut from the stream chunk by chunk.
    let open = memchr::memmem::Finder::new(b"<Organisation");
    let close = memchr::memmem::Finder::new(b"</Organisation>");
    let mut elements = Vec::new();
    let mut base_offset: u64 = 0; // file offset of buf[0]
    let mut line: u64 = 1; // line number at buf[line_pos]
    let mut line_pos = 0usize;
    let mut pos = header_end + b"<Organisations".len();
    let empty_container = has_empty_container(&buf[header_end..]);
    // Seen in a part of the buffer already dropped (the end of the file may straddle a chunk).
    let mut container_closed = false;
    loop {
        let found = find_open(&buf, pos, &open).and_then(|s| {
            // The element's end: `/>` of an empty tag, or the first `</Organisation>`.
            let gt = memchr::memchr(b'>', &buf[s..]).map(|i| s + i).ok_or(s)?;
            if buf[gt - 1] == b'/' {
                return Ok((s, gt + 1));
            }
            close
                .find(&buf[s..])
                .map(|i| (s, s + i + b"</Organisation>".len()))
                .ok_or(s)
        });
        match found {
            Ok((s, e)) => {
                line += memchr::memchr_iter(b'\n', &buf[line_pos..s]).count() as u64;
                line_pos = s;
                let payload = buf[s..e].to_vec();
                let starts = 1 + count_opens(&payload[1..], &open);
                elements.push(Element {
                    payload,
                    line,
                    offset: base_offset + s as u64,
                    starts,
                });
                pos = e;
            }
            Err(keep) if !eof => {
                // Drop what is done, keep a possible partial element, read more.
                container_closed |= memchr::memmem::find(&buf[pos.min(keep)..], b"</Organisations>").is_some();
                if line_pos < keep {
                    line += memchr::memchr_iter(b'\n', &buf[line_pos..keep]).count() as u64;
                    line_pos = keep;
                }
                buf.drain(..keep);
                base_offset += keep as u64;
                line_pos -= keep;
                pos -= keep.min(pos);
                eof = !fill(&mut reader, &mut buf)?;
            }
            Err(keep) => {
                let tail = &buf[pos.min(keep)..];
                if find_open(tail, 0, &open).is_ok() {
                    line += memchr::memchr_iter(b'\n', &buf[line_pos..keep.max(line_pos)]).count() as u64;
                    return Err(damaged(format!(
                        "the file ends inside an <Organisation> element (line {line}, byte {}): it is cut off",
                        base_offset + keep as u64
                    )));
                }
                if !container_closed && memchr::memmem::find(tail, b"</Organisations>").is_none() && !empty_container {
                    return Err(damaged(format!(
                        "the file ends without </Organisations> after {} records: it is cut off",
                        elements.len()
                    )));
                }
                break;
            }
        }
    }
    let read: u64 = elements.iter().map(|e| e.starts).sum();
    match header.record_count {
        Some(count) if count != read => {
            return Err(damaged(format!(
                "Manifest/RecordCount says {count} records but the file holds {read} <Organisation> elements"
            )));
        }
        None => {
            return Err(not_release(
                "no Manifest/RecordCount in its header (every release states its record count)",
            ));
        }
        _ => {}
    }
    Ok(XmlFile {
        name: name.to_owned(),
        kind,
        header,
        elements,
        bytes: base_offset + buf.len() as u64,
    })
}

/// `<Organisations/>`: a release with no records.
fn has_empty_container(rest: &[u8]) -> bool {
    let gt = memchr::memchr(b'>', rest);
    gt.is_some_and(|i| i > 0 && rest[i - 1] == b'/')
}

fn count_opens(bytes: &[u8], open: &memchr::memmem::Finder<'_>) -> u64 {
    let mut n = 0;
    let mut pos = 0;
    while let Ok(s) = find_open(bytes, pos, open) {
        n += 1;
        pos = s + 1;
    }
    n
}

fn looks_like_release(buf: &[u8]) -> bool {
    memchr::memmem::find(&buf[..buf.len().min(4096)], b"OrgRefData").is_some()
}

/// The `Manifest` and `CodeSystems` before `<Organisations>`.
fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut header = Header::default();
    let mut primary: Vec<String> = Vec::new();
    let mut roles: Vec<CodeSystemRole> = Vec::new();
    let mut in_role_system = false;
    let mut root_seen = false;
    loop {
        let event = match reader.read_event() {
            Ok(e) => e,
            // The header is cut just before <Organisations>: an unclosed root is expected.
            Err(e) if root_seen => return Err(format!("malformed header XML: {e}")),
            Err(e) => return Err(format!("it is not XML ({e})")),
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let local = e.local_name().as_ref().to_vec();
                let value = |n: &[u8]| -> Option<String> {
                    e.try_get_attribute(n)
                        .ok()
                        .flatten()
                        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
                };
                if stack.is_empty() {
                    if local != b"OrgRefData" {
                        return Err(format!(
                            "its root element is <{}>",
                            String::from_utf8_lossy(e.name().as_ref())
                        ));
                    }
                    root_seen = true;
                }
                let parent = stack.last().map(Vec::as_slice);
                match (local.as_slice(), parent) {
                    (b"Version", Some(b"Manifest")) => header.version = value(b"value"),
                    (b"PublicationType", Some(b"Manifest")) => header.publication_type = value(b"value"),
                    (b"PublicationDate", Some(b"Manifest")) => header.publication_date = value(b"value"),
                    (b"RecordCount", Some(b"Manifest")) => {
                        let v = value(b"value").unwrap_or_default();
                        header.record_count = Some(
                            v.trim()
                                .parse()
                                .map_err(|_| format!("Manifest/RecordCount `{v}` is not a number"))?,
                        );
                    }
                    (b"PrimaryRole", Some(b"PrimaryRoleScope")) => primary.extend(value(b"id")),
                    (b"CodeSystem", _) => in_role_system = value(b"name").as_deref() == Some("OrganisationRole"),
                    (b"concept", Some(b"CodeSystem")) if in_role_system => {
                        if let Some(id) = value(b"id") {
                            roles.push(CodeSystemRole {
                                role_id: id,
                                code: value(b"code"),
                                display_name: value(b"displayName"),
                                primary_role: false,
                            });
                        }
                    }
                    _ => {}
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(local);
                }
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Err("no root element".into());
    }
    for r in &mut roles {
        r.primary_role = primary.contains(&r.role_id);
    }
    header.code_system = roles;
    Ok(header)
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
        let (files, zip_sha) = self.read_files()?;
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
            let parsed: Vec<Result<OrgRecord, String>> = file
                .elements
                .par_iter()
                .map(|e| crate::model::ord_xml::parse_organisation(&e.payload))
                .collect();
            for (index, (element, result)) in file.elements.into_iter().zip(parsed).enumerate() {
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
                        payload: element.payload,
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
        let (files, zip_sha) = self.read_files()?;
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

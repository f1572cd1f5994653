//! Reading one HSCOrgRefData XML file as a stream: the header (`Manifest`, `CodeSystems`) parsed,
//! then the bytes cut into `<Organisation>` elements without building a document, then the end
//! checked (`</Organisations>` present, nothing after it). What the elements mean is
//! `model::ord_xml`'s job; which of them a run keeps is the source's (`mod.rs`).

use crate::model::OrgRecord;
use crate::model::tables::CodeSystemRole;
use serde::Serialize;
use std::io::Read;
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
    /// Each element parsed, in the same order, when a parser was given (else empty).
    pub parsed: Vec<Result<OrgRecord, String>>,
    pub bytes: u64,
}

/// What parses an element's bytes (`model::ord_xml::parse_organisation`).
pub type ParseFn = dyn Fn(&[u8]) -> Result<OrgRecord, String> + Sync;

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
/// With `parse`, the elements are parsed on the pool while the file is still being read: each
/// chunk's elements are handed over as soon as they are cut (decompressing and cutting keep one
/// core busy, parsing takes the others), and `XmlFile::parsed` holds the results in file order.
pub fn read_xml(name: &str, reader: impl Read, parse: Option<&ParseFn>) -> Result<XmlFile, FileError> {
    type Done = (usize, Vec<Element>, Vec<Result<OrgRecord, String>>);
    let done: std::sync::Mutex<Vec<Done>> = std::sync::Mutex::new(Vec::new());
    let mut file = rayon::in_place_scope(|scope| {
        let mut batches = 0usize;
        let mut hand_over = |elements: &mut Vec<Element>| {
            let Some(parse) = parse else { return };
            if elements.is_empty() {
                return;
            }
            let batch = std::mem::take(elements);
            let (seq, done) = (batches, &done);
            batches += 1;
            scope.spawn(move |_| {
                let parsed = batch.iter().map(|e| parse(&e.payload)).collect();
                done.lock()
                    .expect("a parse task does not panic")
                    .push((seq, batch, parsed));
            });
        };
        cut_elements(name, reader, &mut hand_over)
    })?;
    if parse.is_some() {
        let mut done = done.into_inner().expect("a parse task does not panic");
        done.sort_by_key(|(seq, _, _)| *seq);
        for (_, elements, parsed) in done {
            file.elements.extend(elements);
            file.parsed.extend(parsed);
        }
    }
    Ok(file)
}

/// The reading itself: the header, then the elements cut chunk by chunk (each chunk's handed to
/// `hand_over`, which may take them), then the end check.
///
/// Long on purpose: one pass over the stream (header, then elements cut out chunk by chunk,
/// then the end check) whose buffer and offsets are shared by every step.
fn cut_elements(
    name: &str,
    mut reader: impl Read,
    hand_over: &mut dyn FnMut(&mut Vec<Element>),
) -> Result<XmlFile, FileError> {
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
                not_release(&format!(
                    "it starts with {}",
                    crate::sources::csv_bulk::describe_start(&buf)
                ))
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
    // Elements cut, and the `<Organisation` start tags inside them (handed-over ones included).
    let (mut cut, mut read) = (0u64, 0u64);
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
                cut += 1;
                read += starts;
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
                hand_over(&mut elements);
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
                        "the file ends without </Organisations> after {cut} records: it is cut off"
                    )));
                }
                break;
            }
        }
    }
    hand_over(&mut elements);
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
        parsed: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of several read chunks: the elements parsed on the pool while it is read come back
    /// in file order, each beside its own result, and the count check still sees every element.
    #[test]
    fn elements_parsed_while_reading_keep_their_file_order() {
        let n = 60_000;
        let mut xml = format!(
            "<?xml version=\"1.0\"?><OrgRefData><Manifest><RecordCount value=\"{n}\"/></Manifest><Organisations>\n"
        );
        for i in 0..n {
            // ~300 bytes each: about 18 MB, so a little over two chunks.
            xml.push_str(&format!(
                "<Organisation orgRecordClass=\"RC1\"><Name>ORG {i}</Name><OrgId extension=\"X{i:06}\"/>{}</Organisation>\n",
                " ".repeat(220)
            ));
        }
        xml.push_str("</Organisations></OrgRefData>\n");
        assert!(xml.len() > 2 * CHUNK);
        let parse: &ParseFn = &|payload: &[u8]| Err(String::from_utf8_lossy(&payload[..60]).into_owned());
        let file = read_xml("HSCOrgRefData_Full_20260101.xml", xml.as_bytes(), Some(parse)).unwrap();
        assert_eq!(file.elements.len(), n);
        assert_eq!(file.parsed.len(), n);
        for (i, (element, parsed)) in file.elements.iter().zip(&file.parsed).enumerate() {
            assert_eq!(element.line, i as u64 + 2, "element {i} in file order");
            let name = format!("<Name>ORG {i}</Name>");
            assert!(
                parsed.as_ref().unwrap_err().contains(&name),
                "element {i}: its own result"
            );
        }
        let unparsed = read_xml("HSCOrgRefData_Full_20260101.xml", xml.as_bytes(), None).unwrap();
        assert_eq!(unparsed.elements.len(), n);
        assert!(unparsed.parsed.is_empty());
    }
}

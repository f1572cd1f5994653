//! The one redaction path. Every URL and every error text that can reach a log line, a manifest,
//! a run row, a report or `--json` output goes through here:
//! - userinfo (`user:password@`) is removed from URLs;
//! - query parameters whose names look like credentials (key, token, secret, password, signature,
//!   auth, sig, code challenge …) get `***` as their value;
//! - every secret value registered with [`register_secret`] (the FHIR API key, passwords and key
//!   parameters found in configured URLs) is replaced by `***` wherever it appears, upstream
//!   response bodies included.
//!
//! The binary also wraps stderr (logs at every level) in [`RedactingWriter`], so a dependency that
//! logs a URL at trace level cannot leak a secret either.

use std::sync::{LazyLock, RwLock};

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

static URL_USERINFO: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\x22<>]+@").expect("valid regex"));
static SECRET_PARAM: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"(?i)([?&;]|\b)((?:[a-z0-9_.-]*(?:key|token|secret|passw(?:or)?d|pwd|signature|sig|auth|credential|session)[a-z0-9_.-]*))=([^&\s'\x22<>#]+)",
    )
    .expect("valid regex")
});

/// Names of query parameters treated as secrets (same rule as the text scrubber).
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "signature",
        "sig",
        "auth",
        "credential",
        "session",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// Remembers a secret value so that it is masked in every text from now on (short values are
/// ignored: masking every "ab" would garble messages without protecting anything).
pub fn register_secret(value: &str) {
    let value = value.trim();
    if value.len() < 4 {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == value) {
        secrets.push(value.to_owned());
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        // Percent-encoded forms appear in URLs.
        let encoded: String = ::url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        if encoded != value && !secrets.contains(&encoded) {
            secrets.push(encoded);
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }
}

/// Registers the password and secret-looking query values of a configured URL (or path).
pub fn register_url_secrets(location: &str) {
    if let Ok(url) = reqwest::Url::parse(location) {
        if let Some(p) = url.password() {
            register_secret(p);
            if let Ok(decoded) = percent_decode(p) {
                register_secret(&decoded);
            }
        }
        for (k, v) in url.query_pairs() {
            if is_secret_name(&k) {
                register_secret(&v);
            }
        }
    }
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let decoded: String = ::url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .ok_or(())?;
    Ok(decoded)
}

/// A URL safe to log and record.
pub fn url(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if is_secret_name(&k) {
                "***".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if !pairs.is_empty() {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    text(url.as_str())
}

/// A location (URL or path) safe to record.
pub fn location(location: &str) -> String {
    match reqwest::Url::parse(location) {
        Ok(u) if u.has_host() => url(&u),
        _ => text(location),
    }
}

/// Any text (an error chain, an upstream body) safe to show.
pub fn text(input: &str) -> String {
    let mut out = URL_USERINFO.replace_all(input, "${1}***@").into_owned();
    out = SECRET_PARAM.replace_all(&out, "${1}${2}=***").into_owned();
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// stderr through [`text`], line by line, for the log subscriber.
pub struct RedactingWriter;

impl std::io::Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let shown = text(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(shown.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_texts_and_registered_values_are_masked() {
        let u = reqwest::Url::parse("https://u:p4ss@h/x?apikey=s3cret&Limit=1000&X-Amz-Signature=abc").unwrap();
        let shown = url(&u);
        assert!(
            !shown.contains("s3cret") && !shown.contains("p4ss") && !shown.contains("abc"),
            "{shown}"
        );
        assert!(shown.contains("Limit=1000"), "{shown}");
        let t = text("GET https://bob:hunter22@files.example/etr.zip?token=zz9 failed: apikey=k1k1k1 refused");
        assert!(
            !t.contains("hunter22") && !t.contains("zz9") && !t.contains("k1k1k1"),
            "{t}"
        );
        assert!(t.contains("files.example/etr.zip"), "{t}");
        register_secret("Sup3rSecretKeyValue");
        let body = text(r#"{"issue":[{"diagnostics":"invalid key Sup3rSecretKeyValue"}]}"#);
        assert!(!body.contains("Sup3rSecretKeyValue"), "{body}");
        register_url_secrets("https://x:pa%40ss@h/f.csv");
        assert!(!text("pa@ss and pa%40ss").contains("pa@ss"));
    }
}

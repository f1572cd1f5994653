//! The local ORD-compatible server: the stand-in for the NHS ORD API in tests and the demo.
//!
//! It speaks the documented wire format (docs/ods-reference.md 2): search with `Limit`/`Offset` paging and
//! `X-Total-Count`, 406 for `Offset` ≤ 1 and for `/sync` dates beyond 185 days,
//! `/organisations/{code}` with ORD's 404 body, `/sync`, `/roles`, `/notifications`; all under
//! `/ORD/2-0-0`. Bound to 127.0.0.1 only.
//!
//! Hand-written over `std::net` rather than on an HTTP server crate because its job is to
//! misbehave precisely: cut a body short and close the socket, reset a connection, lie in a
//! header. Test-only controls live under `/_admin/` (switch state, inject faults, read the
//! request log) and are also available as methods for in-process tests.

pub mod fhir;
pub mod fixtures;
pub mod trud;

use fixtures::{OffsetMode, ServedState, load_state};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub const BASE_PATH: &str = "/ORD/2-0-0";

/// A fault to inject into the next `times` requests whose path contains `path_contains`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub path_contains: String,
    #[serde(default = "one")]
    pub times: u32,
    pub action: FaultAction,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Answer with this status (and `Retry-After` when given) instead of the real response.
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Option<String>,
    },
    /// Wait this long, then answer normally.
    Delay { ms: u64 },
    /// Send the headers and half of the body, then close the connection.
    Truncate,
    /// Answer 200 with a body that is not JSON.
    Malformed,
    /// Close the connection without answering.
    Reset,
    /// Answer normally but add `delta` to `X-Total-Count`.
    TotalCount { delta: i64 },
    /// Answer `302 Found` with this `Location`.
    Redirect { location: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// Path and query as received.
    pub target: String,
    pub status: u16,
    /// Milliseconds since the server started.
    pub at_ms: u64,
}

struct Shared {
    states_dir: PathBuf,
    state: RwLock<ServedState>,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<LoggedRequest>>,
    started: Instant,
    stop: AtomicBool,
    port: u16,
}

pub struct OrdServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl OrdServer {
    /// Loads `state` from `states_dir` and listens on 127.0.0.1:`port` (0 = any free port).
    pub fn start(states_dir: &Path, state: &str, port: u16) -> Result<Self, String> {
        let served = load_state(states_dir, state)?;
        let listener =
            TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            states_dir: states_dir.to_owned(),
            state: RwLock::new(served),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            started: Instant::now(),
            stop: AtomicBool::new(false),
            port: addr.port(),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let s = Arc::clone(&accept_shared);
                    std::thread::spawn(move || handle(stream, &s));
                }
            }
        });
        Ok(OrdServer {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>/ORD/2-0-0`, what a pipeline's `base_url` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}{BASE_PATH}", self.addr)
    }

    /// The FHIR API's base URL on this server.
    pub fn fhir_base_url(&self) -> String {
        format!("http://{}{}", self.addr, fhir::FHIR_PATH)
    }

    pub fn set_state(&self, name: &str) -> Result<(), String> {
        let served = load_state(&self.shared.states_dir, name)?;
        *self.shared.state.write().unwrap_or_else(|e| e.into_inner()) = served;
        Ok(())
    }

    pub fn push_fault(&self, fault: Fault) {
        self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()).push(fault);
    }

    /// Drops every fault not yet used up.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Blocks until the server is stopped (for `odsync serve`).
    pub fn wait(mut self) {
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for OrdServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so its thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

struct Request {
    method: String,
    target: String,
    body: Vec<u8>,
    /// The FHIR `apikey` header (checked for presence; never logged).
    apikey: Option<String>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut content_length = 0usize;
    let mut apikey = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            } else if k.trim().eq_ignore_ascii_case("apikey") {
                apikey = Some(v.trim().to_owned());
            }
        }
    }
    let mut body = vec![0; content_length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        body,
        apikey,
    })
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, body: Vec<u8>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body,
        }
    }
    fn error(status: u16, text: &str) -> Self {
        Reply::json(
            status,
            serde_json::to_vec(&json!({"ErrorCode": status, "ErrorText": text})).expect("json"),
        )
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        406 => "Not Acceptable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_head(stream: &mut TcpStream, reply: &Reply, content_length: usize) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status)
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

fn handle(mut stream: TcpStream, shared: &Shared) {
    let Some(request) = read_request(&stream) else { return };
    let fault = take_fault(shared, &request.target);
    let log = |status: u16| {
        shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(LoggedRequest {
                method: request.method.clone(),
                target: request.target.clone(),
                status,
                at_ms: shared.started.elapsed().as_millis() as u64,
            });
    };
    let mut reply = match &fault {
        Some(FaultAction::Reset) => {
            log(0);
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        Some(FaultAction::Status {
            status,
            retry_after,
            body,
        }) => {
            let mut r = Reply::json(*status, body.clone().unwrap_or_default().into_bytes());
            if let Some(ra) = retry_after {
                r.headers.push(("Retry-After".into(), ra.clone()));
            }
            r
        }
        Some(FaultAction::Redirect { location }) => {
            let mut r = Reply::json(302, Vec::new());
            r.headers.push(("Location".into(), location.clone()));
            r
        }
        Some(FaultAction::Malformed) => Reply::json(200, br#"{"Organisation": {"Name": "TRUNC"#.to_vec()),
        _ => route(shared, &request),
    };
    if let Some(FaultAction::TotalCount { delta }) = &fault {
        for (k, v) in &mut reply.headers {
            if k == "X-Total-Count" {
                *v = (v.parse::<i64>().unwrap_or(0) + delta).to_string();
            }
        }
    }
    // Logged on arrival, before any injected delay, so the log is complete when the client is.
    log(reply.status);
    if let Some(FaultAction::Delay { ms }) = &fault {
        std::thread::sleep(Duration::from_millis(*ms));
    }
    if let Some(FaultAction::Truncate) = &fault {
        let _ = write_head(&mut stream, &reply, reply.body.len());
        let _ = stream.write_all(&reply.body[..reply.body.len() / 2]);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    let _ = write_head(&mut stream, &reply, reply.body.len()).and_then(|()| stream.write_all(&reply.body));
    let _ = stream.flush();
}

fn take_fault(shared: &Shared, target: &str) -> Option<FaultAction> {
    let mut faults = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
    let i = faults
        .iter()
        .position(|f| f.times > 0 && target.contains(&f.path_contains))?;
    faults[i].times -= 1;
    let action = faults[i].action.clone();
    if faults[i].times == 0 {
        faults.remove(i);
    }
    Some(action)
}

fn route(shared: &Shared, request: &Request) -> Reply {
    let url = match reqwest::Url::parse(&format!("http://127.0.0.1{}", request.target)) {
        Ok(u) => u,
        Err(_) => return Reply::error(400, "Bad request target"),
    };
    let params = Params(
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    );
    let path = url.path();
    if let Some(admin) = path.strip_prefix("/_admin/") {
        return admin_route(shared, &request.method, admin, &request.body);
    }
    if let Some(fhir_path) = path.strip_prefix(fhir::FHIR_PATH) {
        let base = format!("http://127.0.0.1:{}{}", shared.port, fhir::FHIR_PATH);
        let state = shared.state.read().unwrap_or_else(|e| e.into_inner());
        let (status, body) = fhir::route(&state, fhir_path, &params.0, request.apikey.as_deref(), &base);
        let mut reply = Reply::json(status, body);
        reply
            .headers
            .push(("Content-Type".into(), "application/fhir+json".into()));
        return reply;
    }
    let Some(api) = path.strip_prefix(BASE_PATH) else {
        return Reply::error(404, "Not Found.");
    };
    if request.method != "GET" {
        return Reply::error(400, "Only GET is supported");
    }
    let state = shared.state.read().unwrap_or_else(|e| e.into_inner());
    let base = format!("http://127.0.0.1:{}{BASE_PATH}", shared.port);
    match api.trim_end_matches('/') {
        "/organisations" => search(&state, &params, &base),
        "/sync" => sync(&state, params.get("LastChangeDate"), &base),
        "/roles" => Reply::json(200, state.roles_body.clone()),
        "/notifications" => Reply::json(200, state.notifications_body.clone()),
        other => match other.strip_prefix("/organisations/") {
            Some(code) => match state.records.get(&code.to_ascii_uppercase()) {
                Some(rec) => Reply::json(200, rec.body.clone()),
                None => Reply::error(404, "Not Found."),
            },
            None => Reply::error(404, "Not Found."),
        },
    }
}

/// Query parameters; ORD treats their names case-insensitively.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn paged<T: Serialize>(rows: &[T], params: &Params, mode: OffsetMode, key: &str) -> Reply {
    let limit = params
        .get("Limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(1000)
        .clamp(1, 1000);
    let offset = match params.get("Offset") {
        None => 0,
        Some(o) => match o.parse::<usize>() {
            // ORD: "406 where the supplied Offset is not greater than 1".
            Ok(n) if n > 1 => match mode {
                OffsetMode::Skip => n,
                OffsetMode::StartRow => n - 1,
            },
            _ => return Reply::error(406, "Offset must be greater than 1"),
        },
    };
    let page: Vec<&T> = rows.iter().skip(offset).take(limit).collect();
    let mut doc = serde_json::Map::new();
    doc.insert(key.to_owned(), serde_json::to_value(&page).expect("json"));
    let mut reply = Reply::json(200, serde_json::to_vec(&doc).expect("json"));
    reply.headers.push(("X-Total-Count".into(), rows.len().to_string()));
    reply
}

fn search(state: &ServedState, params: &Params, base: &str) -> Reply {
    let list = |name: &str| -> Vec<String> {
        params
            .get(name)
            .map(|v| v.split(',').map(|s| s.trim().to_ascii_uppercase()).collect())
            .unwrap_or_default()
    };
    let (primary, roles) = (list("PrimaryRoleId"), list("Roles"));
    let status = params.get("Status").map(str::to_ascii_lowercase);
    let since = params
        .get("LastChangeDate")
        .and_then(|d| d.parse::<chrono::NaiveDate>().ok());
    let name = params.get("Name").map(str::to_ascii_uppercase);
    let rows: Vec<Value> = state
        .records
        .values()
        .filter(|r| {
            let o = &r.parsed.organisation;
            (primary.is_empty() || o.primary_role.as_ref().is_some_and(|p| primary.contains(p)))
                && (roles.is_empty() || r.parsed.role_ids().any(|id| roles.iter().any(|x| x == id)))
                && status
                    .as_ref()
                    .is_none_or(|s| o.status.as_ref().is_some_and(|x| x.to_ascii_lowercase() == *s))
                && since.is_none_or(|d| o.last_change_date.is_some_and(|l| l >= d))
                && name.as_ref().is_none_or(|n| o.name.contains(n.as_str()))
        })
        .map(|r| {
            let o = &r.parsed.organisation;
            let role = o.primary_role.clone().unwrap_or_default();
            json!({
                "Name": o.name, "OrgId": o.code, "Status": o.status, "OrgRecordClass": o.record_class,
                "PostCode": o.postcode, "LastChangeDate": o.last_change_date.map(|d| d.to_string()),
                "PrimaryRoleId": role, "PrimaryRoleDescription": state.role_names.get(&role),
                "OrgLink": format!("{base}/organisations/{}", o.code),
            })
        })
        .collect();
    paged(&rows, params, state.config.offset_mode, "Organisations")
}

fn sync(state: &ServedState, since: Option<&str>, base: &str) -> Reply {
    let Some(since) = since.and_then(|d| d.parse::<chrono::NaiveDate>().ok()) else {
        return Reply::error(406, "LastChangeDate (YYYY-MM-DD) is required");
    };
    if (state.config.served_on - since).num_days() > 185 {
        return Reply::error(406, "LastChangeDate is more than 185 days ago");
    }
    let rows: Vec<Value> = state
        .records
        .values()
        .filter(|r| r.parsed.organisation.last_change_date.is_some_and(|l| l >= since))
        .map(|r| json!({"OrgLink": format!("{base}/organisations/{}", r.parsed.organisation.code)}))
        .collect();
    let mut reply = Reply::json(200, serde_json::to_vec(&json!({"Organisations": rows})).expect("json"));
    reply.headers.push(("X-Total-Count".into(), rows.len().to_string()));
    reply
}

fn admin_route(shared: &Shared, method: &str, path: &str, body: &[u8]) -> Reply {
    match (method, path) {
        ("POST", p) if p.starts_with("state/") => {
            let name = &p["state/".len()..];
            match load_state(&shared.states_dir, name) {
                Ok(s) => {
                    *shared.state.write().unwrap_or_else(|e| e.into_inner()) = s;
                    Reply::json(200, serde_json::to_vec(&json!({"state": name})).expect("json"))
                }
                Err(e) => Reply::error(400, &e),
            }
        }
        ("POST", "faults") => match serde_json::from_slice::<Vec<Fault>>(body) {
            Ok(list) => {
                shared.faults.lock().unwrap_or_else(|e| e.into_inner()).extend(list);
                Reply::json(200, b"{}".to_vec())
            }
            Err(e) => Reply::error(400, &format!("faults must be a JSON list: {e}")),
        },
        ("DELETE", "faults") => {
            shared.faults.lock().unwrap_or_else(|e| e.into_inner()).clear();
            Reply::json(200, b"{}".to_vec())
        }
        ("GET", "requests") => {
            let log = shared.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Reply::json(200, serde_json::to_vec(&log).expect("json"))
        }
        _ => Reply::error(404, "unknown admin endpoint"),
    }
}

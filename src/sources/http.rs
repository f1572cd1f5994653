//! The one HTTP client every source uses: User-Agent, timeouts, a shared throttle, and retry with
//! exponential backoff and jitter on 429 / 5xx / timeouts / connection failures, honouring
//! `Retry-After`. Other 4xx answers are permanent and returned at once.
//!
//! Blocking on purpose: concurrency is a small rayon pool (see `sources::ord`), and the throttle
//! caps the request rate however many threads share the client.

use reqwest::StatusCode;
use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub requests_per_second: f64,
    pub concurrency: usize,
    pub timeout: Duration,
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub user_agent: String,
    /// A `Retry-After` longer than this fails the request at once (the server is down for
    /// longer than a run should wait).
    pub max_retry_after: Duration,
    /// The run's overall deadline: no request starts, and no retry waits, past it.
    pub deadline: Option<Instant>,
    /// The deadline as configured, for messages.
    pub deadline_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("GET {url} answered HTTP {status}{}", snippet(body))]
    Status { url: String, status: u16, body: String },
    #[error(
        "GET {url} failed after {attempts} attempts; last error: {last}\nHelp: check the network and the base URL (`odsync check <pipeline>`), then run again; nothing was committed"
    )]
    GaveUp { url: String, attempts: u32, last: String },
    #[error(
        "GET {url} answered HTTP {status} with Retry-After {wait_secs} s, longer than {limit}\nHelp: the service asks clients to stay away for a while; run again later (nothing was committed and the watermark did not move)"
    )]
    RetryAfterTooLong {
        url: String,
        status: u16,
        wait_secs: u64,
        limit: String,
    },
    #[error(
        "the run's deadline ({secs} s, `http.deadline_secs`) passed while fetching {url}\nHelp: nothing was committed and the watermark did not move; run again, or raise `http.deadline_secs` if the source is slow"
    )]
    Deadline { url: String, secs: u64 },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl HttpError {
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn snippet(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        let cut: String = body.chars().take(200).collect();
        format!(": {cut}")
    }
}

pub struct Response {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.headers.get(name)?.to_str().ok()?.trim().parse().ok()
    }
}

/// Counters a fetch reports in its summary.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct HttpMetrics {
    pub requests: u64,
    pub retries: u64,
    pub bytes: u64,
}

/// How the client waits (the throttle, backoff, `Retry-After`): the thread sleeps, except in
/// tests, which record the delays asked for and assert them instead of waiting.
pub trait Sleeper: Send + Sync {
    fn sleep(&self, delay: Duration);
}

/// Sleeps the thread.
pub struct ThreadSleeper;

impl Sleeper for ThreadSleeper {
    fn sleep(&self, delay: Duration) {
        std::thread::sleep(delay);
    }
}

pub struct HttpClient {
    client: Client,
    settings: HttpSettings,
    sleeper: Arc<dyn Sleeper>,
    next_slot: Mutex<Instant>,
    requests: AtomicU64,
    retries: AtomicU64,
    bytes: AtomicU64,
}

impl HttpClient {
    pub fn new(settings: HttpSettings) -> Result<Self, HttpError> {
        Self::with_headers(settings, HeaderMap::new())
    }

    /// A client that sends `headers` on every request (the FHIR `apikey`; mark secret values
    /// sensitive so they never appear in debug output).
    pub fn with_headers(settings: HttpSettings, headers: HeaderMap) -> Result<Self, HttpError> {
        // Redirects are followed on the same host only: a redirect elsewhere would carry the
        // client's headers (the FHIR `apikey`) to that host. Stopped, the 3xx is an error.
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            let same_host = attempt.previous().first().is_some_and(|first| {
                first.host_str() == attempt.url().host_str()
                    && first.port_or_known_default() == attempt.url().port_or_known_default()
            });
            if !same_host {
                attempt.stop()
            } else if attempt.previous().len() > 5 {
                attempt.error("more than 5 redirects")
            } else {
                attempt.follow()
            }
        });
        let client = Client::builder()
            .redirect(redirects)
            .default_headers(headers)
            .user_agent(settings.user_agent.clone())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| HttpError::Client(e.to_string()))?;
        Ok(HttpClient {
            client,
            settings,
            sleeper: Arc::new(ThreadSleeper),
            next_slot: Mutex::new(Instant::now()),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// This client, waiting through `sleeper` instead of sleeping the thread (the tests' hook).
    #[cfg(all(test, feature = "testkit"))]
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// Waits `delay` the way the client waits between attempts (a source's own pauses).
    pub fn pause(&self, delay: Duration) {
        self.sleeper.sleep(delay);
    }

    pub fn metrics(&self) -> HttpMetrics {
        HttpMetrics {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// Waits for this request's slot: slots are spaced `1 / requests_per_second` apart, shared by
    /// every thread using the client.
    fn throttle(&self) {
        let interval = Duration::from_secs_f64(1.0 / self.settings.requests_per_second);
        let wait = {
            let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot - now
        };
        if !wait.is_zero() {
            self.sleeper.sleep(wait);
        }
    }

    /// Exponential backoff with jitter: a random delay in [d/2, d], d = base · 2^attempt, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.settings.backoff_base.as_secs_f64();
        let capped = (base * 2f64.powi(attempt as i32)).min(self.settings.backoff_max.as_secs_f64());
        Duration::from_secs_f64(capped * (0.5 + fastrand::f64() * 0.5))
    }

    /// GET with throttling and retries. 2xx → Ok; 4xx other than 429 → `HttpError::Status` at
    /// once; 429, 5xx and transport failures are retried up to `max_retries` times.
    pub fn get(&self, url: &reqwest::Url) -> Result<Response, HttpError> {
        let shown = redact(url);
        let past_deadline = |shown: &str| HttpError::Deadline {
            url: shown.to_owned(),
            secs: self.settings.deadline_secs,
        };
        let mut last = String::new();
        let attempts = self.settings.max_retries + 1;
        for attempt in 0..attempts {
            if attempt > 0 {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            self.throttle();
            if self.settings.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(past_deadline(&shown));
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let delay = match self.client.get(url.clone()).send() {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    match resp.bytes() {
                        Ok(body) if status.is_success() => {
                            self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                            return Ok(Response {
                                url: shown,
                                headers,
                                body: body.to_vec(),
                            });
                        }
                        Ok(body) if !retryable(status) => {
                            return Err(HttpError::Status {
                                url: shown,
                                status: status.as_u16(),
                                body: crate::redact::text(&String::from_utf8_lossy(&body)),
                            });
                        }
                        Ok(_) => {
                            last = format!("HTTP {status}");
                            match retry_after(&headers) {
                                Some(wait) if wait > self.settings.max_retry_after => {
                                    return Err(HttpError::RetryAfterTooLong {
                                        url: shown,
                                        status: status.as_u16(),
                                        wait_secs: wait.as_secs(),
                                        limit: format!(
                                            "`http.max_retry_after_secs` = {} s",
                                            self.settings.max_retry_after.as_secs()
                                        ),
                                    });
                                }
                                Some(wait) => wait,
                                None => self.backoff(attempt),
                            }
                        }
                        // A body cut short (connection closed mid-response) is transient.
                        Err(e) => {
                            last = format!("reading the body of an HTTP {status} answer: {e}");
                            self.backoff(attempt)
                        }
                    }
                }
                Err(e) => {
                    last = crate::redact::text(&describe(&e));
                    self.backoff(attempt)
                }
            };
            if attempt + 1 < attempts {
                if let Some(deadline) = self.settings.deadline
                    && Instant::now() + delay >= deadline
                {
                    return Err(past_deadline(&shown));
                }
                tracing::warn!(url = %shown, attempt = attempt + 1, delay_ms = delay.as_millis() as u64, "retrying: {last}");
                self.sleeper.sleep(delay);
            }
        }
        Err(HttpError::GaveUp {
            url: shown,
            attempts,
            last,
        })
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    Some(wait)
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // reqwest's Display hides the cause ("error sending request"); the source says why.
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// A URL safe to log and record (see `crate::redact`).
pub fn redact(url: &reqwest::Url) -> String {
    crate::redact::url(url)
}

// The tests talk to the local server, which only the `testkit` feature builds.
/// Every HTTP failure is the network's or the server's.
impl crate::error::Classify for HttpError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Environment
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use crate::server::{Fault, FaultAction, OrdServer};

    /// Records the delays asked for; never sleeps.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Duration>>);

    impl Sleeper for Recorder {
        fn sleep(&self, delay: Duration) {
            self.0.lock().unwrap().push(delay);
        }
    }

    fn settings() -> HttpSettings {
        HttpSettings {
            requests_per_second: 1000.0,
            concurrency: 1,
            timeout: Duration::from_secs(5),
            max_retries: 3,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(30),
            user_agent: "odsync-test".into(),
            max_retry_after: Duration::from_secs(600),
            deadline: None,
            deadline_secs: 0,
        }
    }

    /// A client on the local server with `faults` on `/organisations/RWR`, recording its waits.
    fn client_with(
        faults: &[(u32, FaultAction)],
        settings: HttpSettings,
    ) -> (OrdServer, HttpClient, Arc<Recorder>, reqwest::Url) {
        let states = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ord-states");
        let server = OrdServer::start(&states, "demo-2021", 0).expect("server starts");
        for (times, action) in faults {
            server.push_fault(Fault {
                path_contains: "/organisations/RWR".into(),
                times: *times,
                action: action.clone(),
            });
        }
        let recorder = Arc::new(Recorder::default());
        let client = HttpClient::new(settings).unwrap().with_sleeper(recorder.clone());
        let url = reqwest::Url::parse(&format!("{}/organisations/RWR", server.base_url())).unwrap();
        (server, client, recorder, url)
    }

    fn status(status: u16, retry_after: Option<&str>) -> FaultAction {
        FaultAction::Status {
            status,
            retry_after: retry_after.map(str::to_owned),
            body: None,
        }
    }

    /// The waits between attempts (the throttle's sub-millisecond slots left out).
    fn retry_waits(recorder: &Recorder) -> Vec<Duration> {
        recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|d| *d >= Duration::from_millis(100))
            .collect()
    }

    #[test]
    fn a_retry_after_is_waited_for_exactly_and_other_failures_back_off_exponentially() {
        let started = Instant::now();
        let (_server, client, recorder, url) =
            client_with(&[(1, status(429, Some("7"))), (2, status(503, None))], settings());
        let response = client.get(&url).expect("succeeds on the fourth attempt");
        assert!(!response.body.is_empty());
        let waits = retry_waits(&recorder);
        assert_eq!(waits.len(), 3, "{waits:?}");
        assert_eq!(waits[0], Duration::from_secs(7), "Retry-After honoured to the second");
        // Attempts 1 and 2 of a backoff with base 2 s: a random delay in [d/2, d], d = 2 s · 2^n.
        for (n, wait) in waits[1..].iter().enumerate() {
            let d = 2.0 * 2f64.powi(n as i32 + 1);
            assert!(
                (d / 2.0..=d).contains(&wait.as_secs_f64()),
                "attempt {}: {wait:?} outside [{}, {d}] s",
                n + 2,
                d / 2.0
            );
        }
        assert_eq!(client.metrics().retries, 3);
        assert!(started.elapsed() < Duration::from_secs(5), "nothing slept for real");
    }

    #[test]
    fn a_retry_that_would_end_past_the_deadline_fails_at_once_without_waiting() {
        let mut s = settings();
        s.deadline = Some(Instant::now() + Duration::from_secs(60));
        s.deadline_secs = 60;
        let (_server, client, recorder, url) = client_with(&[(1, status(503, Some("120")))], s);
        let err = client.get(&url).err().expect("the request fails");
        assert!(matches!(err, HttpError::Deadline { secs: 60, .. }), "{err}");
        assert!(
            retry_waits(&recorder).is_empty(),
            "it did not wait for a retry it could not make"
        );
    }

    #[test]
    fn retries_give_up_after_the_limit_naming_the_last_error() {
        let (_server, client, recorder, url) = client_with(&[(10, status(502, None))], settings());
        let err = client.get(&url).err().expect("the request fails");
        assert!(matches!(err, HttpError::GaveUp { attempts: 4, .. }), "{err}");
        assert!(err.to_string().contains("HTTP 502"), "{err}");
        // Three waits between four attempts, each within its backoff bound (capped at 30 s).
        let waits = retry_waits(&recorder);
        assert_eq!(waits.len(), 3, "{waits:?}");
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(30)), "{waits:?}");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", "99999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(99999)));
    }

    #[test]
    fn redaction_hides_credentials_and_keys() {
        let url = reqwest::Url::parse("https://u:p@h/x?apikey=s3cret&Limit=1000").unwrap();
        let shown = redact(&url);
        assert!(!shown.contains("s3cret") && !shown.contains("u:p"), "{shown}");
        assert!(shown.contains("Limit=1000"), "{shown}");
    }
}

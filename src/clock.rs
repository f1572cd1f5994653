//! The injectable clock. Every timestamp odsync records (run ids, manifests, watermarks, CSV
//! status derivation) comes from here, so tests and the demo can pin time with `ODSYNC_NOW` and
//! get byte-identical outputs.

use chrono::{DateTime, NaiveDate, Utc};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    fixed: Option<DateTime<Utc>>,
}

impl Clock {
    pub fn system() -> Self {
        Clock { fixed: None }
    }

    pub fn fixed(at: DateTime<Utc>) -> Self {
        Clock { fixed: Some(at) }
    }

    /// `ODSYNC_NOW` as an RFC 3339 timestamp or a `YYYY-MM-DD` date (midnight UTC).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(Clock::fixed(t.with_timezone(&Utc)));
        }
        if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Ok(Clock::fixed(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()));
        }
        Err(format!(
            "`{text}` is neither an RFC 3339 timestamp (2025-07-16T02:00:00Z) nor a date (2025-07-16)"
        ))
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.fixed.unwrap_or_else(Utc::now)
    }

    pub fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }
}

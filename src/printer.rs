//! All stdout output goes through here: human text or, with `--json`, one JSON document.
//! Logs and progress bars go to stderr (tracing, indicatif), so stdout stays machine-readable.

use serde::Serialize;
use std::io::Write;

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub json: bool,
}

impl Printer {
    /// Prints `value` as JSON when `--json` was given, else the text `human` renders.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce(&T) -> String) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut out, value)?;
            writeln!(out)
        } else {
            let text = human(value);
            out.write_all(text.as_bytes())?;
            if !text.ends_with('\n') {
                writeln!(out)?;
            }
            Ok(())
        }
    }
}

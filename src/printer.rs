//! All stdout output goes through here: human text or, with `--json`, one JSON document.
//! Logs and progress bars go to stderr (tracing, indicatif), so stdout stays machine-readable.

use serde::Serialize;
use std::io::Write;

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub json: bool,
    /// `--quiet`: no text summary (JSON is still printed when asked for).
    pub quiet: bool,
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set once by the binary from `--quiet`: progress bars and spinners stay hidden.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Whether progress may be drawn: on a terminal, and not `--quiet`.
pub fn show_progress() -> bool {
    use std::io::IsTerminal;
    !QUIET.load(std::sync::atomic::Ordering::Relaxed) && std::io::stderr().is_terminal()
}

impl Printer {
    /// Prints `value` as JSON when `--json` was given, else the text `human` renders.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce(&T) -> String) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut out, value)?;
            writeln!(out)
        } else if self.quiet {
            Ok(())
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

//! One writer per pipeline: `<warehouse>/<pipeline>/.lock`, held with an OS file lock (`flock`)
//! for as long as the process lives. The kernel releases it when the process dies, however it
//! dies, so a lock left by a killed run is taken over (with a warning naming the dead holder)
//! instead of blocking every later run until a person deletes it. The file's text (run id, pid,
//! start time) is only there to name the holder in messages.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "pipeline `{pipeline}` is busy: another odsync process holds `{path}` ({holder})\nHelp: wait for it to finish (runs, merges and `conflicts resolve --merge` take this lock); it is released when that process exits, even if it is killed"
    )]
    Held {
        pipeline: String,
        path: PathBuf,
        holder: String,
    },
    #[error("cannot lock `{path}`: {message}\nHelp: check that the warehouse is writable")]
    Io { path: PathBuf, message: String },
}

/// Held while a command writes a pipeline; released on drop (or by the kernel on death).
#[derive(Debug)]
pub struct PipelineLock {
    file: File,
}

impl Drop for PipelineLock {
    fn drop(&mut self) {
        // Clear the holder text first: a file with text and no lock means "died holding it".
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

pub fn lock_pipeline(warehouse: &Path, pipeline: &str, run_id: &str) -> Result<PipelineLock, LockError> {
    let dir = warehouse.join(pipeline);
    let path = dir.join(".lock");
    let io = |e: std::io::Error| LockError::Io {
        path: path.clone(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LockError::Held {
                pipeline: pipeline.to_owned(),
                path,
                holder: if holder.is_empty() {
                    "a process that has just started".into()
                } else {
                    holder.to_owned()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    let mut previous = String::new();
    let _ = file.read_to_string(&mut previous);
    let previous = previous.trim().to_owned();
    // What the previous holder left: it died holding the lock.
    if !previous.is_empty() {
        tracing::warn!(lock = %path.display(), previous = %previous, "took over the lock of an odsync process that is no longer running");
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(
        file,
        "run {run_id}, pid {}, started {}",
        std::process::id(),
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    )
    .map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(PipelineLock { file })
}

impl crate::error::Classify for LockError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Environment
    }
}

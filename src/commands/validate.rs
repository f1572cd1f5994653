//! `odsync validate [pipeline…]`: every problem in every pipeline file, at once.

use super::Globals;
use crate::cli::ValidateArgs;
use crate::pipeline;
use serde::Serialize;
use std::process::ExitCode;

#[derive(Serialize)]
struct FileReport {
    file: String,
    problems: Vec<String>,
}

pub fn run(globals: &Globals, args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let files: Vec<std::path::PathBuf> = if args.pipelines.is_empty() {
        let mut files: Vec<_> = std::fs::read_dir(&globals.pipelines_dir)
            .map_err(|e| {
                crate::error::UserError(format!(
                    "cannot read pipelines directory `{}`: {e}",
                    globals.pipelines_dir.display()
                ))
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        files
    } else {
        args.pipelines
            .iter()
            .map(|p| pipeline::locate(p, &globals.pipelines_dir))
            .collect()
    };
    let reports: Vec<FileReport> = files
        .iter()
        .map(|path| {
            // The role mapping lives beside the pipelines and is checked as what it is.
            let is_mapping = path.file_name().is_some_and(|n| n == "role_mapping.toml");
            let problems = match std::fs::read_to_string(path) {
                Err(e) => vec![format!("cannot read: {e}")],
                Ok(_) if is_mapping => pipeline::roles::load(path).err().into_iter().collect(),
                Ok(text) => match pipeline::parse(&text, path) {
                    Err(e) => vec![e.to_string()],
                    Ok(config) => pipeline::validate(&config, path),
                },
            };
            FileReport {
                file: path.display().to_string(),
                problems,
            }
        })
        .collect();
    let failed = reports.iter().any(|r| !r.problems.is_empty());
    globals.printer.emit(&reports, |reports| {
        let mut out = String::new();
        for r in reports {
            if r.problems.is_empty() {
                out.push_str(&format!("ok       {}\n", r.file));
            } else {
                out.push_str(&format!("invalid  {}\n", r.file));
                for p in &r.problems {
                    out.push_str(&format!("  - {}\n", p.replace('\n', "\n    ")));
                }
            }
        }
        out
    })?;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

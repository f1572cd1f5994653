//! Golden cases: `tests/cases/<name>/` holds a `case.toml` (the steps: odsync commands with a
//! pinned clock, optionally a state of the local ORD server), the pipeline files and inputs it
//! needs, and one expected-output file per step: exactly what a user reads (stdout, and stderr
//! when the step fails), with the temporary paths, the server's port and wall-clock durations
//! replaced by placeholders. `ODSYNC_BLESS=1 cargo test --features testkit cases` rewrites the
//! expected files after an intended change; review them in the diff like code.

use crate::common::{TestContext, repo_root, states};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case shows, for whoever reads the folder.
    #[allow(dead_code)]
    about: String,
    /// Start the local ORD server in this state (of tests/fixtures/ord-states).
    server_state: Option<String>,
    /// Files of the case folder copied into the test's pipelines directory.
    #[serde(default)]
    pipelines: Vec<String>,
    #[serde(rename = "step")]
    steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// The odsync command line (`{case}` is the case folder, `{fixtures}` tests/fixtures).
    args: Vec<String>,
    /// ODSYNC_NOW for the step.
    now: String,
    /// Switch the server to this state first.
    state: Option<String>,
    /// Copy a file (from, to) first: `to` is relative to the test's directory (`{tmp}`).
    put: Option<[String; 2]>,
    /// The expected-output file, in the case folder.
    expect: String,
    #[serde(default)]
    exit: i32,
}

/// Masks what differs between machines and runs but not between correct outputs.
fn normalise(text: &str, ctx: &TestContext, port: Option<u16>) -> String {
    let mut out = text.replace(&ctx.path().display().to_string(), "<tmp>");
    if let Some(port) = port {
        out = out.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:<port>");
    }
    // Wall-clock durations and throughput ("in 12 ms", "0.4 s", "1234 ms", "took 3.1s").
    let durations = regex::Regex::new(r"\b\d+(\.\d+)? ?(ms|s)\b").unwrap();
    let out = durations.replace_all(&out, "<t>");
    let json_durations = regex::Regex::new(r#""(duration_ms|ms|elapsed_ms|latency_ms|seconds)": \d+(\.\d+)?"#).unwrap();
    let out = json_durations.replace_all(&out, "\"$1\": <t>");
    out.into_owned()
}

fn run_case(dir: &Path) -> Vec<String> {
    let case: Case = toml::from_str(&std::fs::read_to_string(dir.join("case.toml")).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("case.toml").display()));
    let ctx = match &case.server_state {
        Some(state) => TestContext::with_server(state),
        None => TestContext::new(),
    };
    let port = ctx.server.as_ref().map(|s| {
        let url = s.base_url();
        url.split(':')
            .nth(2)
            .and_then(|p| p.split('/').next())
            .unwrap()
            .parse()
            .unwrap()
    });
    let fixtures = repo_root().join("tests/fixtures");
    let expand = |s: &str| {
        s.replace("{case}", &dir.display().to_string())
            .replace("{fixtures}", &fixtures.display().to_string())
            .replace("{states}", &states().display().to_string())
            .replace("{tmp}", &ctx.path().display().to_string())
    };
    for file in &case.pipelines {
        let text = expand(&std::fs::read_to_string(dir.join(file)).unwrap());
        std::fs::write(ctx.path().join("pipelines").join(file), text).unwrap();
    }
    let bless = std::env::var_os("ODSYNC_BLESS").is_some();
    let mut failures = Vec::new();
    for step in &case.steps {
        if let Some(state) = &step.state {
            ctx.server().set_state(state).unwrap();
        }
        if let Some([from, to]) = &step.put {
            std::fs::copy(expand(from), ctx.path().join(to)).unwrap();
        }
        let args: Vec<String> = step.args.iter().map(|a| expand(a)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ctx.odsync(&step.now, &args);
        let mut shown = format!("$ odsync {}\n{}", step.args.join(" "), out.stdout);
        if out.code != 0 {
            shown.push_str(&format!("[exit {}]\n{}", out.code, out.stderr));
        }
        let shown = normalise(&shown, &ctx, port);
        let path = dir.join(&step.expect);
        if out.code != step.exit {
            failures.push(format!(
                "{}: exit {} where {} was expected\nstdout:\n{}\nstderr:\n{}",
                path.display(),
                out.code,
                step.exit,
                out.stdout,
                out.stderr
            ));
            continue;
        }
        if bless {
            std::fs::write(&path, &shown).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        if expected != shown {
            failures.push(format!(
                "{} differs (ODSYNC_BLESS=1 rewrites it after an intended change)\n--- expected\n{expected}\n+++ got\n{shown}",
                path.display()
            ));
        }
    }
    failures
}

fn case_dirs() -> Vec<PathBuf> {
    let root = repo_root().join("tests/cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Every folder under tests/cases, each in its own warehouse; all differences reported at once.
#[test]
fn golden_cases_give_the_outputs_users_read() {
    let dirs = case_dirs();
    assert!(!dirs.is_empty(), "no golden cases under tests/cases");
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = dirs.iter().map(|d| s.spawn(move || run_case(d))).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

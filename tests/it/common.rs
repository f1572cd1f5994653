//! TestContext: a temp directory with its own warehouse and pipelines, a local ORD server, and a
//! builder for running the real binary with a pinned clock.

use odsync::server::{Fault, FaultAction, OrdServer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The checkout under test. Read at run time (cargo sets it for test processes): a test binary
/// reused from a shared target dir may have been compiled in another clone that is gone now.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

pub fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures")
}

pub fn states() -> PathBuf {
    fixtures().join("ord-states")
}

pub fn ods_csv(name: &str) -> PathBuf {
    fixtures().join("ods/csv").join(name)
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub struct TestContext {
    pub dir: tempfile::TempDir,
    pub server: Option<OrdServer>,
}

impl TestContext {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        TestContext { dir, server: None }
    }

    /// A context with the local ORD server serving `state` from tests/fixtures/ord-states.
    pub fn with_server(state: &str) -> Self {
        Self::with_server_in(&states(), state)
    }

    pub fn with_server_in(states_dir: &Path, state: &str) -> Self {
        let mut ctx = Self::new();
        ctx.server = Some(OrdServer::start(states_dir, state, 0).expect("server starts"));
        ctx
    }

    pub fn server(&self) -> &OrdServer {
        self.server.as_ref().expect("this context has a server")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn warehouse(&self) -> PathBuf {
        self.path().join("warehouse")
    }

    pub fn write_pipeline(&self, name: &str, toml: &str) -> PathBuf {
        let path = self.path().join("pipelines").join(format!("{name}.toml"));
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// An ORD pipeline fast enough for tests (the local server is not rate limited).
    pub fn ord_pipeline(&self, name: &str, roles: &[&str]) {
        let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
        self.write_pipeline(
            name,
            &format!(
                "name = \"{name}\"\n[source]\ntype = \"ord\"\nbase_url = \"http://127.0.0.1:9/ORD/2-0-0\"\n\
                 [scope]\nprimary_roles = [{}]\n\
                 [http]\nrequests_per_second = 1000.0\nconcurrency = 8\ntimeout_secs = 5\nmax_retries = 3\nbackoff_base_ms = 20\nbackoff_max_ms = 200\n",
                roles.join(", ")
            ),
        );
    }

    /// A FHIR pipeline on the local server's FHIR API, fast enough for tests; `extra` is
    /// appended (e.g. a `[quality]` table).
    pub fn fhir_pipeline(&self, name: &str, roles: &[&str], page_size: u32, extra: &str) {
        let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
        self.write_pipeline(
            name,
            &format!(
                "name = \"{name}\"\n[source]\ntype = \"fhir\"\nbase_url = \"{}\"\npage_size = {page_size}\n\
                 [scope]\nroles = [{}]\n\
                 [http]\nrequests_per_second = 1000.0\nconcurrency = 2\ntimeout_secs = 5\nmax_retries = 3\nbackoff_base_ms = 20\nbackoff_max_ms = 200\n{extra}",
                self.server().fhir_base_url(),
                roles.join(", ")
            ),
        );
    }

    pub fn csv_pipeline(&self, name: &str, kind: &str, location: &Path) {
        self.write_pipeline(
            name,
            &format!(
                "name = \"{name}\"\n[source]\ntype = \"csv\"\nkind = \"{kind}\"\nlocation = \"{}\"\n",
                location.display()
            ),
        );
    }

    /// Runs the real binary with this context's warehouse, pipelines and server, at `now`.
    pub fn odsync(&self, now: &str, args: &[&str]) -> Output {
        self.odsync_env(now, args, &[])
    }

    /// As [`Self::odsync`], with extra environment variables.
    pub fn odsync_env(&self, now: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.command(now, args, env).output().expect("odsync runs");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The real binary with this context's warehouse, pipelines and server, not yet started.
    pub fn command(&self, now: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_odsync"));
        cmd.args(args)
            .current_dir(self.path())
            .env("ODSYNC_WAREHOUSE", self.warehouse())
            .env("ODSYNC_PIPELINES_DIR", self.path().join("pipelines"))
            .env("ODSYNC_NOW", now)
            .env("ODSYNC_LOG", "warn")
            .env_remove("ODSYNC_ORD_BASE_URL")
            .env_remove("ODSYNC_FHIR_BASE_URL")
            .env_remove("ODSYNC_FHIR_API_KEY")
            .env_remove("ODSYNC_CONTACT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(server) = &self.server {
            cmd.env("ODSYNC_ORD_BASE_URL", server.base_url());
        }
        cmd
    }

    /// `odsync run <pipeline> --json` at `now`, expected to succeed; returns the summary.
    pub fn run_ok(&self, now: &str, pipeline: &str, extra: &[&str]) -> Value {
        let mut args = vec!["run", pipeline, "--json"];
        args.extend_from_slice(extra);
        self.odsync(now, &args).ok().json()
    }

    /// The committed snapshot versions (`version=NNNNNN`), from their manifests.
    pub fn versions(&self, pipeline: &str) -> Vec<String> {
        let dir = self.warehouse().join(pipeline).join("_meta/ods");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Rows of a catalog query, every value as text.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let out = self.odsync("2025-07-16", &["query", sql, "--json"]).ok().json();
        serde_json::from_value(out["rows"].clone()).unwrap()
    }

    /// Rows of a catalog query with NULL shown as `∅`, for compact assertions.
    pub fn cells(&self, sql: &str) -> Vec<Vec<String>> {
        self.query(sql)
            .into_iter()
            .map(|r| r.into_iter().map(|v| v.unwrap_or_else(|| "∅".into())).collect())
            .collect()
    }

    pub fn fault(&self, path_contains: &str, times: u32, action: FaultAction) {
        self.server().push_fault(Fault {
            path_contains: path_contains.into(),
            times,
            action,
        });
    }
}

/// Writes a state folder in `dir` that points at the shared fixtures (absolute paths).
pub fn write_state(dir: &Path, name: &str, body: &str) {
    let state = dir.join(name);
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("state.toml"), body).unwrap();
}

/// Every path under `dir`, depth first.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok) {
        let p = e.path();
        out.push(p.clone());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

/// What a crash or a failure may not leave behind: temporary outputs and a commit journal.
pub fn leftovers(warehouse: &Path) -> Vec<String> {
    walk(warehouse)
        .into_iter()
        .map(|p| p.display().to_string())
        .filter(|p| p.contains("/.tmp-") || p.ends_with(".commit-journal.json"))
        .collect()
}

//! The module graph ARCHITECTURE.md draws, checked against the code: no import cycle between the
//! top-level modules of `src/`, and the leaves import no other module.

use crate::common::repo_root;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `crate::<module>` a top-level module names outside its test code.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = repo_root().join("src");
    let mut modules: BTreeMap<String, Vec<std::path::PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        collect(&path, &mut files);
        modules.insert(name, files);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let reference = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    modules
        .into_iter()
        .map(|(name, files)| {
            let mut deps = BTreeSet::new();
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap();
                // Test modules sit at the end of a file; what they import is not the module's.
                let code = text.split("\n#[cfg(test)]").next().unwrap();
                let code = code.split("\n#[cfg(all(test").next().unwrap();
                for c in reference.captures_iter(code) {
                    let dep = c[1].to_owned();
                    if dep != name && names.contains(&dep) {
                        deps.insert(dep);
                    }
                }
            }
            (name, deps)
        })
        .collect()
}

fn collect(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            collect(&e.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

#[test]
fn the_module_graph_has_no_cycle_and_the_leaves_import_nothing() {
    let graph = imports();
    // Depth-first search for a back edge, naming the cycle it closes.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for d in &graph[m] {
            if let Some(c) = visit(d, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
    for leaf in ["cli", "clock", "env_vars", "error", "model", "printer", "redact", "sql"] {
        assert!(
            graph[leaf].is_empty(),
            "`{leaf}` is a leaf but imports {:?}",
            graph[leaf]
        );
    }
    // The pipeline sequencer sits above the stages; no stage reaches up into it or the commands.
    for (m, deps) in &graph {
        if m != "commands" {
            assert!(!deps.contains("commands"), "`{m}` imports the command layer");
        }
        if !["commands", "status"].contains(&m.as_str()) {
            assert!(!deps.contains("pipeline"), "`{m}` imports the pipeline layer above it");
        }
    }
}

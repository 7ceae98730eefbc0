//! The crate's imports point one way. Read from the `use` lines (and
//! `crate::…` paths) of every module's non-test code: no cycle between
//! top-level modules, the sources (`source/*`) sit above `translate` and
//! never import one another, the identity core imports neither the proxy
//! nor the model, the pure modules (`model`, `translate`) do no I/O and
//! import no source, and the proxy never reaches into a source or `kube`.
//! The policy engine is a crate of its own (crates/policy): it cannot import
//! these modules at all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Non-test source of a top-level module: every file under it, each cut at
/// its `#[cfg(test)]` module; `tests.rs` files are left out.
fn sources(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        collect(&path, &mut files);
        let mut text = String::new();
        for f in files {
            let file_name = f.file_name().unwrap().to_string_lossy().into_owned();
            if file_name == "tests.rs" || file_name.ends_with("_tests.rs") {
                continue;
            }
            let body = std::fs::read_to_string(&f).unwrap();
            let live = body.split("#[cfg(test)]").next().unwrap_or_default();
            text.push_str(live);
            text.push('\n');
        }
        out.insert(name, text);
    }
    out
}

fn collect(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            collect(&e.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// `crate::<module>` references of each module, other than to itself.
fn graph(src: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    src.iter()
        .map(|(name, text)| {
            let deps = text
                .match_indices("crate::")
                .map(|(i, _)| {
                    text[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .filter(|d| d != name && src.contains_key(d))
                .collect();
            (name.clone(), deps)
        })
        .collect()
}

fn path_to(
    g: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in g.get(from).into_iter().flatten() {
        if next == to {
            return Some(vec![next.clone()]);
        }
        if seen.insert(next.clone())
            && let Some(mut rest) = path_to(g, next, to, seen)
        {
            rest.insert(0, next.clone());
            return Some(rest);
        }
    }
    None
}

#[test]
fn imports_point_one_way() {
    let src = sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let g = graph(&src);
    assert!(
        ["identity", "model", "proxy", "source", "translate"]
            .iter()
            .all(|m| g.contains_key(*m)),
        "modules moved: {:?}",
        g.keys()
    );

    // No cycle between top-level modules.
    for m in g.keys() {
        if let Some(cycle) = path_to(&g, m, m, &mut BTreeSet::new()) {
            panic!("import cycle: {m} -> {}", cycle.join(" -> "));
        }
    }

    let forbidden: &[(&str, &[&str])] = &[
        (
            "identity",
            &["proxy", "model", "snapshot", "translate", "source"],
        ),
        (
            "model",
            &["proxy", "translate", "source", "snapshot", "settings"],
        ),
        ("translate", &["proxy", "source"]),
        ("proxy", &["source", "translate", "settings", "crd", "demo"]),
    ];
    for (module, never) in forbidden {
        for n in *never {
            assert!(
                !g[*module].contains(*n),
                "{module} imports {n}: {:?}",
                g[*module]
            );
        }
    }

    // The pure core does no I/O; the proxy never talks to the API server.
    for module in ["model", "translate"] {
        for io in ["tokio::", "hyper::", "kube::Client", "reqwest"] {
            assert!(!src[module].contains(io), "{module} uses {io}");
        }
    }
    assert!(!src["proxy"].contains("kube::"), "proxy uses kube");
}

/// The sources under `src/source/`, each with its non-test code: `file`
/// (`file.rs` or `file/`), `cluster`, and any added later.
fn each_source(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("source")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "mod" || name.ends_with("_tests") || name == "tests" {
            continue;
        }
        let mut files = Vec::new();
        collect(&path, &mut files);
        let text = files
            .iter()
            .filter(|f| {
                let n = f.file_name().unwrap().to_string_lossy();
                n != "tests.rs" && !n.ends_with("_tests.rs")
            })
            .map(|f| {
                let body = std::fs::read_to_string(f).unwrap();
                body.split("#[cfg(test)]")
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n");
        out.insert(name, text);
    }
    out
}

/// Pairs `(source, other)` where one source names another (through
/// `crate::source::other` or a `super::` path up to it).
fn cross_source_imports(sources: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (name, text) in sources {
        for other in sources.keys().filter(|o| *o != name) {
            let named = [
                format!("crate::source::{other}"),
                format!("source::{other}::"),
                format!("super::{other}"),
                format!("super::super::{other}"),
            ];
            if named.iter().any(|n| text.contains(n.as_str())) {
                found.push((name.clone(), other.clone()));
            }
        }
    }
    found
}

#[test]
fn no_source_imports_another() {
    let sources = each_source(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        sources.contains_key("file") && sources.contains_key("cluster"),
        "sources moved: {:?}",
        sources.keys()
    );
    assert_eq!(cross_source_imports(&sources), Vec::new());
}

#[test]
fn a_source_importing_another_is_found() {
    // The checker itself: `cluster` naming `file` is reported, a source
    // using its parent's shared helpers is not.
    let mut src = BTreeMap::new();
    src.insert(
        "cluster".to_string(),
        "use crate::source::file::Reading;".to_string(),
    );
    src.insert(
        "file".to_string(),
        "use super::read_referenced;".to_string(),
    );
    assert_eq!(
        cross_source_imports(&src),
        vec![("cluster".to_string(), "file".to_string())]
    );
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    // The checker itself: a graph with a loop is reported.
    let mut src = BTreeMap::new();
    src.insert("a".to_string(), "use crate::b::X;".to_string());
    src.insert("b".to_string(), "fn f() { crate::c::g() }".to_string());
    src.insert("c".to_string(), "use crate::a;".to_string());
    src.insert("d".to_string(), "use crate::a;".to_string());
    let g = graph(&src);
    assert_eq!(
        path_to(&g, "a", "a", &mut BTreeSet::new()),
        Some(vec!["b".into(), "c".into(), "a".into()])
    );
    assert_eq!(path_to(&g, "d", "d", &mut BTreeSet::new()), None);
}

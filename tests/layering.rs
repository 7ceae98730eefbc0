//! The crate's imports point one way. Read from the `use` lines (and
//! `crate::…` paths) of every module's non-test code: no cycle between
//! top-level modules, the sources (`source/*`) sit above `translate` and
//! never import one another, the identity core imports neither the proxy
//! nor the model, the pure modules (`model`, `translate`) do no I/O and
//! import no source, and the proxy never reaches into a source or `kube`.
//! Inside `src/proxy/`, no two files import each other round a cycle, and
//! nothing under `proxy/auth/` names an item of `proxy/mod.rs` (`Proxy`).
//! Files a `mod.rs` declares under `#[cfg(test)]` count as tests.
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
            if file_name == "tests.rs" || file_name.ends_with("_tests.rs") || test_only(&f) {
                continue;
            }
            let body = std::fs::read_to_string(&f).unwrap();
            let live = live_code(&body);
            text.push_str(&live);
            text.push('\n');
        }
        out.insert(name, text);
    }
    out
}

/// `text` without its `#[cfg(test)]` items (a `mod tests;` line, an inline
/// test module, a test-only function): only those, so what follows them
/// still counts.
fn live_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "#[cfg(test)]" {
            i = closing_line(&lines, i + 1) + 1;
            continue;
        }
        out.push_str(lines[i]);
        out.push('\n');
        i += 1;
    }
    out
}

/// A file its parent `mod.rs` declares under `#[cfg(test)]` (fixtures).
fn test_only(f: &Path) -> bool {
    let (Some(dir), Some(stem)) = (f.parent(), f.file_stem()) else {
        return false;
    };
    let Ok(parent) = std::fs::read_to_string(dir.join("mod.rs")) else {
        return false;
    };
    let stem = stem.to_string_lossy();
    let lines: Vec<&str> = parent.lines().map(str::trim).collect();
    lines.windows(2).any(|w| {
        w[0] == "#[cfg(test)]"
            && w[1].ends_with(&format!("mod {stem};"))
            && w[1].split_whitespace().count() <= 3
    })
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
            .map(|f| live_code(&std::fs::read_to_string(f).unwrap()))
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

/// The non-test code of each file under `src/proxy/`, keyed by its place:
/// `mod`, `server`, … for `proxy/*.rs`, `auth/mod`, `auth/state`, … below.
fn proxy_files(root: &Path) -> BTreeMap<String, String> {
    let mut files = Vec::new();
    collect(&root.join("proxy"), &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(root.join("proxy")).unwrap();
        let key = rel.with_extension("").to_string_lossy().replace('\\', "/");
        if key.ends_with("tests") || test_only(&f) {
            continue;
        }
        let body = std::fs::read_to_string(&f).unwrap();
        let live = live_code(&body);
        out.insert(key, live.to_string());
    }
    out
}

/// Every path a file names inside the proxy, as segments from `src/proxy/`:
/// `crate::proxy::a::b`, `super::…` (one level up from the file's module),
/// grouped `use super::{a::X, b}` items, and in a `mod.rs` its children by
/// bare name.
fn proxy_paths(key: &str, text: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let base: Vec<String> = match key.rsplit_once('/') {
        Some((dir, _)) => dir.split('/').map(String::from).collect(),
        None => Vec::new(),
    };
    let is_mod = key == "mod" || key.ends_with("/mod");
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let after_ident = text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| ident(c) || c == ':');
        let (mut at, mut here) = (base.clone(), None);
        if !after_ident && rest.starts_with("crate::proxy::") {
            at.clear();
            here = Some(i + "crate::proxy::".len());
        } else if !after_ident && rest.starts_with("super::") {
            let mut j = i;
            let mut up = 0;
            while text[j..].starts_with("super::") {
                j += "super::".len();
                up += 1;
            }
            // The file's module is `base` for a `mod.rs`, else one deeper.
            let depth = base.len() + usize::from(!is_mod);
            if up <= depth {
                at.truncate(depth - up);
                here = Some(j);
            } else {
                i = j;
                continue;
            }
        } else if !after_ident
            && is_mod
            && children.iter().any(|c| rest.starts_with(&format!("{c}::")))
        {
            here = Some(i);
        }
        let Some(start) = here else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let tail = &text[start..];
        let items: Vec<&str> = if let Some(group) = tail.strip_prefix('{') {
            group
                .split('}')
                .next()
                .unwrap_or_default()
                .split(',')
                .collect()
        } else {
            vec![tail]
        };
        for item in items {
            let segs: Vec<String> = item
                .trim_start()
                .split("::")
                .map(|s| s.chars().take_while(|c| ident(*c)).collect::<String>())
                .take_while(|s| !s.is_empty())
                .collect();
            let mut path = at.clone();
            path.extend(segs);
            found.push(path);
        }
        i = start.max(i + 1);
    }
    found
}

/// The file a path from `src/proxy/` lands in: the deepest module file it
/// names, else the `mod.rs` holding the item.
fn proxy_file_of(path: &[String], files: &BTreeMap<String, String>) -> String {
    let mut dir = String::new();
    for seg in path {
        let candidate = format!("{dir}{seg}");
        if files.contains_key(&candidate) {
            return candidate;
        }
        if files.contains_key(&format!("{candidate}/mod")) {
            dir = format!("{candidate}/");
            continue;
        }
        break;
    }
    format!("{dir}mod")
}

/// The file-level import graph inside `src/proxy/`.
fn proxy_graph(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    files
        .iter()
        .map(|(key, text)| {
            let dir = key
                .rsplit_once('/')
                .map_or(String::new(), |(d, _)| format!("{d}/"));
            let children: BTreeSet<String> = files
                .keys()
                .filter_map(|k| k.strip_prefix(dir.as_str()))
                .map(|k| k.split('/').next().unwrap_or_default().to_string())
                .filter(|k| k != "mod")
                .collect();
            let deps = proxy_paths(key, text, &children)
                .iter()
                .map(|p| proxy_file_of(p, files))
                .filter(|d| d != key)
                .collect();
            (key.clone(), deps)
        })
        .collect()
}

/// A cycle in the graph, if there is one.
fn a_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    g.keys().find_map(|k| {
        path_to(g, k, k, &mut BTreeSet::new()).map(|mut p| {
            p.insert(0, k.clone());
            p
        })
    })
}

/// Files under `proxy/auth/` that name an item of `proxy/mod.rs` (`Proxy`).
fn auth_reaching_up(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    g.iter()
        .filter(|(k, deps)| k.starts_with("auth/") && deps.contains("mod"))
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn proxy_files_import_without_cycles_and_auth_stays_below_proxy() {
    let files = proxy_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(files.contains_key("mod") && files.contains_key("auth/state"));
    let g = proxy_graph(&files);
    assert_eq!(a_cycle(&g), None, "import cycle inside src/proxy/");
    assert_eq!(auth_reaching_up(&g), Vec::<String>::new());
}

#[test]
fn a_proxy_cycle_and_auth_reaching_up_are_found() {
    // The checker itself.
    let mut files = BTreeMap::new();
    files.insert(
        "mod".to_string(),
        "mod auth; mod send; use send::go;".to_string(),
    );
    files.insert(
        "send".to_string(),
        "use super::{body::Body, Proxy};".to_string(),
    );
    files.insert(
        "body".to_string(),
        "use crate::proxy::auth::state::X;".to_string(),
    );
    files.insert("auth/mod".to_string(), "pub mod state;".to_string());
    files.insert(
        "auth/state".to_string(),
        "use super::super::Proxy;".to_string(),
    );
    let g = proxy_graph(&files);
    assert_eq!(
        a_cycle(&g),
        Some(vec![
            "auth/state".into(),
            "mod".into(),
            "send".into(),
            "body".into(),
            "auth/state".into()
        ])
    );
    assert_eq!(auth_reaching_up(&g), vec!["auth/state".to_string()]);
    files.insert(
        "auth/state".to_string(),
        "use super::cookies::C;".to_string(),
    );
    files.insert("mod".to_string(), "mod auth;".to_string());
    files.insert("send".to_string(), "use super::body::Body;".to_string());
    files.insert(
        "auth/cookies".to_string(),
        "use crate::proxy::body::Body;".to_string(),
    );
    files.insert("body".to_string(), String::new());
    assert_eq!(a_cycle(&proxy_graph(&files)), None);
}

/// The longest a function of the library may be, in lines.
const MAX_FUNCTION_LINES: usize = 80;

/// Lines of every function in the non-test code of `files`, as
/// `(path:line name, lines)`: from the `fn` line to its closing brace,
/// counting braces outside strings, characters and comments.
fn function_lengths(files: &[std::path::PathBuf]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let body = live_code(&text);
        let lines: Vec<&str> = body.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            match fn_name(lines[i]) {
                Some(name) => {
                    let end = closing_line(&lines, i);
                    out.push((format!("{}:{} {name}", file.display(), i + 1), end - i + 1));
                    i += 1;
                }
                None => i += 1,
            }
        }
    }
    out
}

/// The name of the function a line declares, if it declares one.
fn fn_name(line: &str) -> Option<&str> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "fn")?;
    let before_ok = words[..at].iter().all(|w| {
        matches!(*w, "pub" | "async" | "const" | "unsafe" | "extern") || w.starts_with("pub(")
    });
    let name = words.get(at + 1)?.split(['(', '<']).next()?;
    (before_ok && !name.is_empty()).then_some(name)
}

/// The line holding the brace that closes the item starting at `start`
/// (the same line for a declaration without a body).
fn closing_line(lines: &[&str], start: usize) -> usize {
    let mut depth = 0i64;
    let mut opened = false;
    for (n, line) in lines.iter().enumerate().skip(start) {
        let code = strip_literals(line);
        let code = code.split("//").next().unwrap_or_default();
        for c in code.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        if (opened && depth <= 0) || (!opened && code.trim_end().ends_with(';')) {
            return n;
        }
    }
    lines.len() - 1
}

/// `line` with the insides of string and character literals blanked, so
/// braces in them do not count.
fn strip_literals(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        match (in_str, c) {
            (true, '\\') => {
                chars.next();
            }
            (true, '"') => {
                in_str = false;
                out.push('"');
            }
            (true, _) => {}
            (false, '"') => {
                in_str = true;
                out.push('"');
            }
            (false, '\'') if matches!(chars.peek(), Some('{') | Some('}')) => {
                chars.next();
            }
            (false, _) => out.push(c),
        }
    }
    out
}

#[test]
fn no_function_is_longer_than_eighty_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "crates/verify/src", "crates/policy/src"] {
        collect(&root.join(dir), &mut files);
    }
    files.retain(|f| {
        let name = f.file_name().unwrap().to_string_lossy();
        name != "tests.rs" && !name.ends_with("_tests.rs")
    });
    let long: Vec<_> = function_lengths(&files)
        .into_iter()
        .filter(|(_, n)| *n > MAX_FUNCTION_LINES)
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: {long:?}"
    );
}

#[test]
fn the_function_length_check_measures_a_known_function() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sample.rs");
    let body: String = (0..90)
        .map(|i| format!("    let _x{i} = \"{{\";\n"))
        .collect();
    std::fs::write(
        &file,
        format!("pub async fn long() {{\n{body}}}\nfn short() {{}}\n"),
    )
    .unwrap();
    let found = function_lengths(&[file]);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].1, 92);
    assert_eq!(found[1].1, 1);
}

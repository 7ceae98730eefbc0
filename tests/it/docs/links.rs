//! Every relative link in the documentation resolves: README.md,
//! ARCHITECTURE.md and the Markdown files under docs/, bench/ and examples/
//! link only to files that exist and, after a `#`, to headings those files
//! have (GitHub's anchors). Links to other sites are not followed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The Markdown files whose links are checked, relative to the crate root.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md"]
        .iter()
        .map(|f| root.join(f))
        .filter(|p| p.is_file())
        .collect();
    for dir in ["docs", "bench", "examples"] {
        collect_markdown(&root.join(dir), &mut out);
    }
    out.sort();
    out
}

fn collect_markdown(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_markdown(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// The lines of a Markdown text outside fenced code blocks, with their
/// 1-based numbers.
fn prose_lines(md: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in md.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// A line without its inline code spans.
fn without_code_spans(line: &str) -> String {
    line.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The targets of the inline links `[text](target)` of a line.
fn link_targets(line: &str) -> Vec<String> {
    let text = without_code_spans(line);
    text.match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &text[i + 2..];
            rest.find(')').map(|end| rest[..end].trim().to_string())
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (repeated headings get `-1`,
/// `-2`… as on GitHub).
fn anchors(md: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for (_, line) in prose_lines(md) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let base = slug(heading.trim_start_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while out.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        out.insert(anchor);
    }
    out
}

/// The broken relative links of one document, as `file:line: target (why)`.
fn broken_links(root: &Path, doc: &Path) -> Vec<String> {
    let md = std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let name = doc.strip_prefix(root).unwrap_or(doc).display().to_string();
    let mut broken = Vec::new();
    for (line_no, line) in prose_lines(&md) {
        for target in link_targets(line) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                doc.to_path_buf()
            } else {
                doc.parent().unwrap_or(root).join(file)
            };
            if !path.exists() {
                broken.push(format!("{name}:{line_no}: {target} (no such file)"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if path.extension().is_some_and(|e| e == "md") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if !anchors(&text).contains(anchor) {
                    broken.push(format!("{name}:{line_no}: {target} (no such heading)"));
                }
            }
        }
    }
    broken
}

#[test]
fn every_relative_documentation_link_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = documents(root);
    assert!(
        docs.iter().any(|d| d.ends_with("docs/kubernetes.md")),
        "the docs folder was not found: {docs:?}"
    );
    let broken: Vec<String> = docs.iter().flat_map(|d| broken_links(root, d)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn headings_become_githubs_anchors() {
    for (heading, anchor) in [
        (
            "Moving from Pomerium's ingress controller",
            "moving-from-pomeriums-ingress-controller",
        ),
        (
            "Multi-tenancy: who owns a host",
            "multi-tenancy-who-owns-a-host",
        ),
        (
            "Signing in to several hosts: `depends_on`",
            "signing-in-to-several-hosts-depends_on",
        ),
    ] {
        assert_eq!(slug(heading), anchor, "{heading}");
    }
}

#[test]
fn a_missing_file_or_heading_is_reported() {
    let dir = std::env::temp_dir().join(format!("docs-links-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let doc = dir.join("a.md");
    std::fs::write(
        &doc,
        "# A\n\n## Here\n\n[ok](#here) [gone](b.md) [bad](#there) `[code](c.md)`\n\
         ```\n[fenced](d.md)\n```\n",
    )
    .unwrap();
    let broken = broken_links(&dir, &doc);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        broken,
        [
            "a.md:5: b.md (no such file)",
            "a.md:5: #there (no such heading)"
        ]
    );
}

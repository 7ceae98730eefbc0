//! The documentation's policies, run through the `jetbridge` binary as a
//! user would: every PPL example (an Ingress `policy` annotation, a `Policy`
//! object) in README.md, docs/ and the chart's NOTES.txt must pass `jetbridge
//! policy check`, and every `jetbridge policy` transcript in them must
//! print what it shows, errors included. The CLI reads documents through the
//! same functions as the controller, so an example that passes here is one
//! the controller accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The documents whose examples are checked.
const DOCS: [&str; 4] = [
    "README.md",
    "docs/kubernetes.md",
    "docs/operations.md",
    "charts/jetbridge/templates/NOTES.txt",
];

fn read_doc(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fenced code block: its language tag, first line number and text.
struct Block {
    lang: String,
    line: usize,
    text: String,
}

/// The fenced code blocks of a Markdown text.
fn fenced_blocks(md: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in md.lines().enumerate() {
        let trimmed = line.trim_start();
        match (&mut open, trimmed.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_string(),
                    line: i + 2,
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some(b), None) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The bodies of `<<'EOF'` here-documents in a shell text.
fn heredocs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.contains("<<'EOF'") || line.contains("<<EOF") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "EOF").collect();
            out.push(body.join("\n") + "\n");
        }
    }
    out
}

/// The YAML documents of the README's `yaml` blocks and shell here-documents.
fn yaml_documents(md: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    for b in fenced_blocks(md) {
        let texts = match b.lang.as_str() {
            "yaml" => vec![b.text.clone()],
            "sh" | "console" => heredocs(&b.text),
            _ => continue,
        };
        for t in texts {
            for doc in t.split("\n---\n") {
                docs.push((b.line, doc.to_string()));
            }
        }
    }
    docs
}

/// `(name, text)` of every `Policy` object in the README.
fn policy_objects(md: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (line, doc) in yaml_documents(md) {
        let Ok(v) = serde_saphyr::from_str::<serde_json::Value>(&doc) else {
            continue;
        };
        if v["kind"] == "Policy" {
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("README line {line}: a Policy without a name"));
            out.push((name.to_string(), doc));
        }
    }
    out
}

/// `(line, value)` of every `…/policy: |` annotation in a text: the block
/// of lines indented deeper than the key, dedented.
fn policy_annotations(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let key = line.trim_start();
        if !(key.starts_with("jetbridge.dev/policy: |")
            || key.starts_with("ingress.pomerium.io/policy: |"))
        {
            continue;
        }
        let indent = line.len() - key.len();
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.len() - l.trim_start().len() > indent && !l.trim().is_empty())
            .copied()
            .collect();
        let cut = body
            .iter()
            .map(|l| l.len() - l.trim_start().len())
            .min()
            .unwrap_or(0);
        let value: String = body.iter().map(|l| format!("{}\n", &l[cut..])).collect();
        out.push((i + 1, value));
    }
    out
}

/// A scratch directory with `bin/jetbridge` and the README's Policies as
/// `<name>.yaml`.
fn workdir(md: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_jetbridge"), bin.join("jetbridge")).unwrap();
    for (name, text) in policy_objects(md) {
        std::fs::write(dir.path().join(format!("{name}.yaml")), text).unwrap();
    }
    (dir, bin)
}

/// Runs `policy check` on `text`: (exit code, stdout + stderr).
fn check(dir: &Path, text: &str) -> (i32, String) {
    let file = dir.join("example.yaml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args(["policy", "check"])
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn every_documented_policy_passes_policy_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut examples: Vec<(String, String)> = Vec::new();
    for doc in DOCS {
        let text = read_doc(doc);
        for (line, value) in policy_annotations(&text) {
            examples.push((format!("{doc}:{line} (annotation)"), value));
        }
        if doc.ends_with(".md") {
            for (name, text) in policy_objects(&text) {
                examples.push((format!("{doc}: Policy {name}"), text));
            }
        }
    }
    // The quickstart's annotation and `admins`, the reference's `staff`
    // (allow plus rules), the chart notes' annotation.
    let names: Vec<&str> = examples.iter().map(|(n, _)| n.as_str()).collect();
    assert!(examples.len() >= 4, "too few examples found: {names:?}");
    for want in ["Policy admins", "Policy staff", "NOTES.txt"] {
        assert!(names.iter().any(|n| n.contains(want)), "{want}: {names:?}");
    }
    for (name, text) in &examples {
        let (code, out) = check(dir.path(), text);
        assert_eq!(code, 0, "{name}: {out}\n{text}");
        assert!(out.starts_with("ok: "), "{name}: {out}");
    }
}

/// One `$ command` of a transcript and the output shown under it.
struct Step {
    command: String,
    output: String,
}

/// The steps of a console transcript (continuation lines joined).
fn steps(text: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut continuing = false;
    for line in text.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push(Step {
                command: cmd.to_string(),
                output: String::new(),
            });
            continuing = cmd.ends_with('\\');
        } else if let Some(last) = out.last_mut() {
            if continuing {
                last.command.push('\n');
                last.command.push_str(line);
                continuing = line.ends_with('\\');
            } else {
                last.output.push_str(line);
                last.output.push('\n');
            }
        }
    }
    out
}

#[test]
fn readme_policy_transcripts_print_what_they_show() {
    let docs: Vec<(&str, String)> = DOCS
        .iter()
        .filter(|d| d.ends_with(".md"))
        .map(|d| (*d, read_doc(d)))
        .collect();
    let all: String = docs.iter().map(|(_, md)| md.as_str()).collect();
    let (dir, bin) = workdir(&all);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for (doc, b) in docs
        .iter()
        .flat_map(|(doc, md)| fenced_blocks(md).into_iter().map(move |b| (doc, b)))
    {
        if b.lang != "console" || !b.text.contains("jetbridge policy") {
            continue;
        }
        for step in steps(&b.text) {
            // `$ cat FILE` shows a file the following steps use.
            if let Some(file) = step.command.strip_prefix("cat ") {
                std::fs::write(dir.path().join(file.trim()), &step.output).unwrap();
                continue;
            }
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("exec 2>&1\n{}", step.command))
                .current_dir(dir.path())
                .env("PATH", &path)
                .output()
                .unwrap();
            let got = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                got.trim_end(),
                step.output.trim_end(),
                "{doc} block at line {}: $ {}",
                b.line,
                step.command
            );
            ran += 1;
        }
    }
    // check staff.yaml, four evals and the typo's error at least.
    assert!(ran >= 6, "only {ran} transcript steps found");
}

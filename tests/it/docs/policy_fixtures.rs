//! Runs the policy fixtures in `tests/fixtures/policy/` through the
//! `eval` and `check` command helpers, and keeps the policy module a leaf.

use std::fs;
use std::path::{Path, PathBuf};

use jetbridge::policy::cli::{check_command, eval_command};
use serde::Deserialize;
use time::macros::datetime;

#[derive(Deserialize)]
struct Case {
    name: String,
    policy: String,
    input: serde_json::Value,
    code: i32,
    output: String,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy")
}

#[test]
fn fixture_cases_decide_as_expected() {
    let dir = fixtures();
    let cases: Vec<Case> =
        serde_json::from_str(&fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    assert!(!cases.is_empty());
    // A Wednesday, for cases that leave out "time".
    let now = datetime!(2024-01-03 12:00 UTC);
    for case in cases {
        let policy = fs::read_to_string(dir.join(&case.policy)).unwrap();
        let (code, output) = eval_command(&policy, &case.input.to_string(), now);
        assert_eq!(
            (code, output.as_str()),
            (case.code, case.output.as_str()),
            "{}",
            case.name
        );
    }
}

#[test]
fn fixture_policies_pass_the_linter() {
    for entry in fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "cases.json") {
            continue;
        }
        let (code, output) = check_command(&fs::read_to_string(&path).unwrap());
        assert_eq!(code, 0, "{}: {output}", path.display());
        assert!(output.starts_with("ok: "), "{output}");
    }
}

#[test]
fn policy_module_stays_free_of_io_and_async_crates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/policy/src");
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        for banned in [
            "tokio::",
            "hyper::",
            "kube::",
            "std::fs",
            "std::net::Tcp",
            "SystemTime::now",
            "OffsetDateTime::now",
        ] {
            assert!(
                !text.contains(banned),
                "{} mentions {banned}",
                path.display()
            );
        }
    }
}

//! The `jetbridge` binary's offline subcommands, run as a user would.

use crate::harness::login::run_to_end;
use std::process::Command;

fn jetbridge(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let (status, out, err) = run_to_end(
        Command::new(env!("CARGO_BIN_EXE_jetbridge")).args(args),
        stdin,
    );
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn gen_secrets_prints_a_secret_whose_keys_load() {
    let (code, out, _) = jetbridge(
        &["gen-secrets", "--namespace", "ns1", "--name", "boot"],
        None,
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("kind: Secret")
            && out.contains("namespace: ns1")
            && out.contains("name: boot"),
        "{out}"
    );
    let pem: String = out
        .lines()
        .skip_while(|l| !l.contains("signing_key: |"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    jetbridge::identity::KeySet::parse(&pem).unwrap();
    let (code, cfg, _) = jetbridge(&["gen-secrets", "--format", "config"], None);
    assert_eq!(code, 0);
    let parsed = jetbridge::settings::ConfigFile::parse("generated", &cfg).unwrap();
    jetbridge::identity::KeySet::parse(parsed.signing_key.as_deref().unwrap()).unwrap();
    jetbridge::identity::secrets::Secret32::parse(
        "cookie_secret",
        parsed.cookie_secret.as_deref().unwrap(),
    )
    .unwrap();
    let (_, again, _) = jetbridge(&["gen-secrets", "--format", "config"], None);
    assert_ne!(cfg, again, "fresh secrets every time");
    let (code, _, err) = jetbridge(&["gen-secrets", "--format", "xml"], None);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn policy_eval_exit_codes_follow_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, "allow:\n  or:\n    - email:\n        is: alice@example.com\ndeny:\n  or:\n    - http_path:\n        starts_with: /admin\n").unwrap();
    let p = policy.to_str().unwrap();
    let input = |email: &str, path: &str| {
        format!(
            r#"{{"user": {{"id":"u1","email":"{email}","name":"","groups":[],"claims":{{}}}}, "request": {{"method":"GET","host":"a.example.com","path":"{path}","source_ip":"10.0.0.1","headers":{{}}}}, "time":"2026-11-29T10:00:00Z"}}"#
        )
    };
    let (code, out, _) = jetbridge(
        &["policy", "eval", "--policy", p, "--input", "-"],
        Some(&input("alice@example.com", "/")),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("allow"), "{out}");
    let (code, out, _) = jetbridge(
        &["policy", "eval", "--policy", p, "--input", "-"],
        Some(&input("alice@example.com", "/admin/x")),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("deny"), "{out}");
    let (code, out, _) = jetbridge(
        &["policy", "eval", "--policy", p, "--input", "-"],
        Some(&input("bob@example.com", "/")),
    );
    assert_eq!(code, 1, "{out}");
    let (code, _, err) = jetbridge(
        &["policy", "eval", "--policy", p, "--input", "-"],
        Some("{not json"),
    );
    assert_eq!(code, 2, "{err}");
    std::fs::write(&policy, "allow:\n  and:\n    - emial: a@b.c\n").unwrap();
    let (code, _, err) = jetbridge(&["policy", "check", p], None);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean \"email\""), "{err}");
}

#[test]
fn gen_secrets_refuses_names_that_are_not_kubernetes_names() {
    for (flag, bad) in [
        ("--name", "boot\nkind: Pod"),
        ("--name", "Boot"),
        ("--name", "a b"),
        ("--name", "x: y"),
        ("--namespace", "ns.with.dots"),
        ("--namespace", "-ns"),
        ("--namespace", "ns\"; rm"),
        ("--name", ""),
    ] {
        let (code, out, err) = jetbridge(&["gen-secrets", flag, bad], None);
        assert_eq!(code, 2, "{flag} {bad:?}: {out}");
        assert!(out.is_empty(), "nothing is printed: {out}");
        assert!(err.starts_with("error: "), "{err}");
    }
    // A dotted name is a valid Secret name.
    let (code, out, _) = jetbridge(&["gen-secrets", "--name", "jetbridge.bootstrap"], None);
    assert_eq!(code, 0);
    assert!(out.contains("name: jetbridge.bootstrap"), "{out}");
}

/// `a: b: b: c` style repetition of a prefix in any error message.
fn repeated_prefix(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split(": ").map(str::trim).collect();
    parts
        .windows(2)
        .find(|w| w[0].eq_ignore_ascii_case(w[1]) || w[0].ends_with(&format!(" {}", w[1])))
        .map(|w| w[1].to_string())
}

#[test]
fn error_messages_never_repeat_their_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let policies = [
        "3",
        "allow: [\n",
        "allow:\n  or:\n    - emial: {is: a}\n",
        "policy:\n  allow: {or: [{accept: true}]}\n",
        "kind: Policy\nspec: 3\n",
        "apiVersion: v1\nkind: Policy\nspec: {}\n",
        "",
    ];
    let input = write("in.json", "{}");
    let mut outputs = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        let path = write(&format!("p{i}.yaml"), p);
        outputs.push(jetbridge(
            &["policy", "eval", "--policy", &path, "--input", &input],
            None,
        ));
        outputs.push(jetbridge(&["policy", "check", &path], None));
        let cfg = write(
            &format!("d{i}.yaml"),
            &format!(
                "routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n    policy: {}\n",
                serde_json::to_string(p).unwrap()
            ),
        );
        outputs.push(jetbridge(&["standalone", "--config", &cfg], None));
    }
    outputs.push(jetbridge(
        &[
            "policy",
            "eval",
            "--policy",
            "/nonexistent",
            "--input",
            &input,
        ],
        None,
    ));
    outputs.push(jetbridge(&["standalone", "--config", "/nonexistent"], None));
    outputs.push(jetbridge(&["verify", "--jwks-url", "not a url"], None));
    let mut errors = 0;
    for (code, out, err) in &outputs {
        for line in out.lines().chain(err.lines()) {
            if let Some(p) = repeated_prefix(line) {
                panic!("{p:?} repeated in: {line}");
            }
        }
        if *code != 0 {
            errors += 1;
        }
    }
    assert!(
        errors >= policies.len() * 2,
        "the bad inputs failed: {outputs:?}"
    );
}

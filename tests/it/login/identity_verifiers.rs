//! Assertions minted by the identity core, checked by third-party verifiers
//! (npm `jose`, PyPI `PyJWT`) against the JWKS document, and the `kid`
//! checked against `jose`'s RFC 7638 thumbprint.

use crate::harness;
use harness::login::support_dir;
use jetbridge::identity::jwks::jwks_for;
use jetbridge::identity::{Identity, IssuerFormat, KeySet, jwt};
use std::process::Command;

fn seed_keys() -> KeySet {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/keys/seed-quickstart.b64",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    KeySet::parse(&text).unwrap()
}

fn run(prog: &str, args: &[&str]) -> (bool, serde_json::Value) {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e} (run ./scripts/test)"));
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "{prog} {args:?}: {text:?} {}: {e}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

fn python() -> String {
    std::env::var("JETBRIDGE_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/venv/bin/python", env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn seed_key_jwks_kid_is_the_rfc7638_thumbprint_jose_computes() {
    let keys = seed_keys();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, &jwks_for(&keys).body).unwrap();
    let (ok, out) = run(
        "node",
        &[
            &format!("{}/thumbprint.mjs", support_dir()),
            "--jwks-file",
            jwks.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(out["keys"][0]["thumbprint_hex"], keys.signer().kid());
    assert_eq!(out["keys"][0]["matches_kid"], true);
}

#[test]
fn seed_key_assertion_verifies_with_jose_and_pyjwt_and_fails_tampered() {
    let keys = seed_keys();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, &jwks_for(&keys).body).unwrap();
    let identity = Identity {
        sub: "u-1".into(),
        email: "user@example.com".into(),
        name: "User".into(),
        groups: vec![],
        sid: "s-1".into(),
    };
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let (token, _) = jwt::mint(
        &keys,
        &identity,
        "verify.localhost.pomerium.io",
        IssuerFormat::Host,
        now,
    )
    .unwrap();
    let jose = format!("{}/verify_jose.mjs", support_dir());
    let pyjwt = format!("{}/verify_pyjwt.py", support_dir());
    let py = python();
    let args = |t: &str| {
        vec![
            "--jwks-file".to_string(),
            jwks.to_str().unwrap().to_string(),
            "--token".into(),
            t.to_string(),
            "--issuer".into(),
            "verify.localhost.pomerium.io".into(),
            "--audience".into(),
            "verify.localhost.pomerium.io".into(),
        ]
    };
    for (prog, script) in [("node", &jose), (py.as_str(), &pyjwt)] {
        let mut a = vec![script.clone()];
        a.extend(args(&token));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (ok, out) = run(prog, &a);
        assert!(ok, "{script}: {out}");
        assert_eq!(out["payload"]["groups"], serde_json::json!([]));
        assert_eq!(out["header"]["kid"], keys.signer().kid());
        // Tamper with the payload: must fail.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, br#"{"iss":"verify.localhost.pomerium.io","aud":"verify.localhost.pomerium.io","sub":"admin","exp":9999999999}"#);
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        let mut a = vec![script.clone()];
        a.extend(args(&forged));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (ok, _) = run(prog, &a);
        assert!(!ok, "{script} accepted a forged payload");
    }
}

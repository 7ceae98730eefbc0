//! The config-file source: reading, reloading and what a reload refuses.

use super::*;
use crate::identity::KeySet;
use crate::identity::secrets::Bootstrap;
use crate::translate::config::*;

fn write(dir: &std::path::Path, body: &str) -> String {
    let p = dir.join("config.yaml");
    std::fs::write(&p, body).unwrap();
    p.to_string_lossy().into_owned()
}

fn kids(publisher: &Driver) -> Vec<String> {
    let s = publisher.reader().load().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&s.identity.jwks.body).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn rotated_signing_key_keeps_the_old_key_published_until_its_assertions_expire() {
    let dir = tempfile::tempdir().unwrap();
    let a = Bootstrap::generate().to_config_yaml();
    let b = Bootstrap::generate().to_config_yaml();
    let route = "routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n    allow_public_unauthenticated_access: true\n";
    let (mut p, mut g) = (Driver::new(), Generated::default());
    let path = write(dir.path(), &format!("{a}{route}"));
    load_and_publish(&path, &mut p, &mut g, 1000).unwrap();
    let old = kids(&p);
    assert_eq!(old.len(), 1);
    let path = write(dir.path(), &format!("{b}{route}"));
    load_and_publish(&path, &mut p, &mut g, 1010).unwrap();
    let both = kids(&p);
    assert_eq!(both.len(), 2, "new key first, old key still published");
    assert_eq!(both[1], old[0]);
    let signer = p
        .reader()
        .load()
        .unwrap()
        .identity
        .keys
        .signer()
        .kid()
        .to_string();
    assert_eq!(signer, both[0], "the new key signs");
    // After the grace period the old key is dropped.
    load_and_publish(
        &path,
        &mut p,
        &mut g,
        1010 + crate::snapshot::RETIRED_KEY_GRACE_SECS,
    )
    .unwrap();
    assert_eq!(kids(&p), vec![both[0].clone()]);
}

#[test]
fn invalid_edit_keeps_the_last_good_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, mut g) = (Driver::new(), Generated::default());
    let path = write(
        dir.path(),
        "routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n",
    );
    assert_eq!(
        load_and_publish(&path, &mut p, &mut g, 0).unwrap().0,
        Some(1)
    );
    write(
        dir.path(),
        "routes:\n  - from: https://a.example.com\n    too: http://127.0.0.1:1\n",
    );
    let err = load_and_publish(&path, &mut p, &mut g, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("too") && err.contains("line 3"), "{err}");
    assert_eq!(p.reader().generation(), 1);
    assert!(
        p.reader()
            .load()
            .unwrap()
            .route("a.example.com", "/")
            .is_some()
    );
}

fn fresh() -> (Driver, Generated) {
    (Driver::new(), Generated::default())
}

const ROUTES: &str = "routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n    allow_public_unauthenticated_access: true\n  - from: https://b.example.com\n    to: http://127.0.0.1:2\n    allow_public_unauthenticated_access: true\n";

#[test]
fn a_reload_that_loses_secrets_or_every_route_keeps_the_running_config() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = Bootstrap::generate().to_config_yaml();
    let (mut p, mut g) = fresh();
    let path = write(dir.path(), &format!("{secrets}{ROUTES}"));
    load_and_publish(&path, &mut p, &mut g, 0).unwrap();
    let kid = kids(&p);
    let lines: Vec<&str> = secrets.lines().collect();
    // Truncations and partial writes of the same file, each refused.
    let broken = [
        String::new(),
        "# comment only\n".to_string(),
        ROUTES.to_string(),
        format!("{}\n{ROUTES}", lines[0]),
        format!("{}\n{}\n{ROUTES}", lines[0], lines[1]),
        format!("{}\n{}\n{ROUTES}", lines[1], lines[2]),
        secrets.clone(),
        format!("{secrets}routes: []\n"),
        format!("{}{}", &secrets[..secrets.len() / 2], ""),
        format!("{secrets}{}", &ROUTES[..40]),
    ];
    for (i, text) in broken.iter().enumerate() {
        write(dir.path(), text);
        let err = load_and_publish(&path, &mut p, &mut g, 1)
            .unwrap_err()
            .to_string();
        assert!(!err.is_empty(), "case {i}");
        assert_eq!(p.reader().generation(), 1, "case {i}: {err}");
        assert_eq!(kids(&p), kid, "case {i}: keys unchanged");
        let s = p.reader().load().unwrap();
        assert!(s.route("a.example.com", "/").is_some(), "case {i}");
        assert!(s.route("b.example.com", "/").is_some(), "case {i}");
    }
    // The message says what was lost.
    write(dir.path(), &format!("{}\n{}\n{ROUTES}", lines[1], lines[2]));
    let err = load_and_publish(&path, &mut p, &mut g, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("signing_key"), "{err}");
    write(dir.path(), &format!("{secrets}routes: []\n"));
    let err = load_and_publish(&path, &mut p, &mut g, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no routes") && err.contains("has 2"), "{err}");
    // A deliberate edit that keeps the secrets still applies.
    write(
        dir.path(),
        &format!(
            "{secrets}{}",
            &ROUTES[..ROUTES.find("  - from: https://b").unwrap()]
        ),
    );
    assert_eq!(
        load_and_publish(&path, &mut p, &mut g, 2).unwrap().0,
        Some(2)
    );
    assert!(
        p.reader()
            .load()
            .unwrap()
            .route("b.example.com", "/")
            .is_none()
    );
    assert_eq!(kids(&p), kid);
}

#[test]
fn secrets_generated_at_first_start_are_reused_never_invented_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, mut g) = fresh();
    let path = write(dir.path(), ROUTES);
    let (_, warnings) = load_and_publish(&path, &mut p, &mut g, 0).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.to_string().contains("cookie_secret is not set"))
    );
    let kid = kids(&p);
    let cookie = p.reader().load().unwrap().auth.cookie_secret;
    // Edit the file (still without secrets): the same generated ones stay.
    write(dir.path(), &ROUTES.replace("127.0.0.1:2", "127.0.0.1:3"));
    let (generation, warnings) = load_and_publish(&path, &mut p, &mut g, 1).unwrap();
    assert_eq!(generation, Some(2));
    assert!(
        warnings.iter().all(|w| !w.to_string().contains("not set")),
        "{warnings:?}"
    );
    assert_eq!(kids(&p), kid);
    assert_eq!(p.reader().load().unwrap().auth.cookie_secret, cookie);
}

#[test]
fn a_configured_key_is_not_replaced_by_one_derived_from_the_shared_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, mut g) = fresh();
    let b = Bootstrap::generate().to_config_yaml();
    let path = write(dir.path(), &format!("{b}{ROUTES}"));
    load_and_publish(&path, &mut p, &mut g, 0).unwrap();
    let without_key: String = b
        .lines()
        .filter(|l| !l.starts_with("signing_key"))
        .map(|l| format!("{l}\n"))
        .collect();
    write(dir.path(), &format!("{without_key}{ROUTES}"));
    let err = load_and_publish(&path, &mut p, &mut g, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("signing_key"), "{err}");
    assert_eq!(p.reader().generation(), 1);
}

#[test]
fn a_change_to_a_referenced_file_changes_the_reading() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, KeySet::generate().signer().to_sec1_pem()).unwrap();
    let path = write(
        dir.path(),
        &format!("signing_key_file: {}\n{ROUTES}", key_path.display()),
    );
    let a = Reading::read(&path);
    assert!(a.parsed.is_ok());
    assert_eq!(Reading::read(&path).fingerprint, a.fingerprint);
    // The watch loop's look without parsing agrees with a full reading…
    let seen = Seen::of(&a);
    assert_eq!(seen.files.len(), 1);
    assert_eq!(seen.fingerprint(&path), Some(a.fingerprint));
    std::fs::write(&key_path, KeySet::generate().signer().to_sec1_pem()).unwrap();
    let b = Reading::read(&path);
    assert_ne!(b.fingerprint, a.fingerprint);
    // …also when only a file it names changed…
    assert_eq!(seen.fingerprint(&path), Some(b.fingerprint));
    // …and asks for a full reading once the config file itself changes.
    write(
        dir.path(),
        &format!(
            "signing_key_file: {}\n{ROUTES}# edited\n",
            key_path.display()
        ),
    );
    assert_eq!(seen.fingerprint(&path), None);
    let unparsable = write(dir.path(), "routes: [\n");
    let bad = Reading::read(&unparsable);
    assert!(bad.parsed.is_err());
    assert_eq!(
        Seen::of(&bad).fingerprint(&unparsable),
        Some(bad.fingerprint)
    );
    write(
        dir.path(),
        &format!("signing_key_file: {}\n{ROUTES}", key_path.display()),
    );
    // A key file caught empty mid-write is an error, not a new random key.
    std::fs::write(&key_path, "").unwrap();
    let (mut p, mut g) = fresh();
    assert!(apply(&path, &Reading::read(&path), &mut p, &mut g, 0).is_err());
}

#[test]
fn the_idp_client_secret_can_come_from_a_mounted_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, "from-a-file\n").unwrap();
    let cfg = ConfigFile::parse(
        "c",
        &format!(
            "authenticate_service_url: https://auth.example.com\nidp_provider_url: https://idp.example.com\nidp_client_id: app\nidp_client_secret_file: {}\n",
            secret.display()
        ),
    )
    .unwrap();
    let inputs = inputs_from_config(&cfg, &mut Generated::default(), &mut Vec::new()).unwrap();
    assert_eq!(inputs.global.auth.idp.unwrap().client_secret, "from-a-file");
    std::fs::remove_file(&secret).unwrap();
    let err = inputs_from_config(&cfg, &mut Generated::default(), &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("idp_client_secret_file"), "{err}");
}

#[test]
fn pomeriums_oidc_providers_load_and_github_or_unknown_ones_say_why_not() {
    let cfg = |provider: &str, url: bool| {
        let url = if url {
            "idp_provider_url: https://idp.example.com\n"
        } else {
            ""
        };
        ConfigFile::parse(
            "c",
            &format!("authenticate_service_url: https://auth.example.com\nidp_provider: {provider}\n{url}idp_client_id: app\n"),
        )
        .unwrap()
    };
    let load = |c: &ConfigFile| {
        inputs_from_config(c, &mut Generated::default(), &mut Vec::new()).map_err(|e| e.to_string())
    };
    for p in OIDC_PROVIDERS {
        let idp = load(&cfg(p, true)).unwrap().global.auth.idp.unwrap();
        assert_eq!(
            (idp.provider.as_str(), idp.issuer_url.as_str()),
            (*p, "https://idp.example.com")
        );
    }
    let google = load(&cfg("google", false))
        .unwrap()
        .global
        .auth
        .idp
        .unwrap();
    assert_eq!(google.issuer_url, "https://accounts.google.com");
    let e = load(&cfg("azure", false)).unwrap_err();
    assert!(e.contains("login.microsoftonline.com"), "{e}");
    let e = load(&cfg("github", true)).unwrap_err();
    assert!(e.contains("not OpenID Connect") && e.contains("Dex"), "{e}");
    let e = load(&cfg("gitlabb", true)).unwrap_err();
    assert!(e.contains("expected one of oidc, google"), "{e}");
}

#[test]
fn a_service_account_token_file_fills_the_routes_token_and_a_bad_one_denies_it() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "mounted-sa-token\n").unwrap();
    let route = |host: &str, extra: &str| {
        format!(
            "  - from: https://{host}\n    to: http://127.0.0.1:1\n    allow_any_authenticated_user: true\n{extra}"
        )
    };
    let cfg = ConfigFile::parse(
        "c",
        &format!(
            "routes:\n{}{}{}",
            route("k8s.test", &format!("    kubernetes_service_account_token_file: {}\n", token.display())),
            route("gone.test", "    kubernetes_service_account_token_file: /nonexistent/token\n"),
            route("both.test", &format!("    kubernetes_service_account_token: x\n    kubernetes_service_account_token_file: {}\n", token.display())),
        ),
    )
    .unwrap();
    let inputs = inputs_from_config(&cfg, &mut Generated::default(), &mut Vec::new()).unwrap();
    assert!(referenced_files(&cfg).contains(&token.display().to_string()));
    let snap = crate::translate::translate(&inputs);
    let header = snap.routes[0].kubernetes_token.as_ref().unwrap();
    assert_eq!(header.to_str().unwrap(), "Bearer mounted-sa-token");
    for (i, needle) in [
        (1, "kubernetes_service_account_token_file"),
        (2, "not both"),
    ] {
        assert!(
            matches!(&snap.routes[i].access, crate::model::Access::Invalid(m) if m.contains(needle)),
            "{:?}",
            snap.routes[i].access
        );
    }
}

#[test]
fn addresses_accept_pomerium_forms() {
    assert_eq!(parse_address(":443").unwrap().to_string(), "0.0.0.0:443");
    assert_eq!(
        parse_address("localhost:8443").unwrap().to_string(),
        "127.0.0.1:8443"
    );
    assert_eq!(
        parse_address("[::1]:8443").unwrap().to_string(),
        "[::1]:8443"
    );
    assert!(parse_address("nonsense").is_err());
}

#[test]
fn missing_signing_key_is_derived_from_the_shared_secret_stably() {
    let cfg = ConfigFile::parse(
        "c",
        "shared_secret: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    )
    .unwrap();
    let mut w = Vec::new();
    let a = inputs_from_config(&cfg, &mut Generated::default(), &mut w).unwrap();
    let b = inputs_from_config(&cfg, &mut Generated::default(), &mut w).unwrap();
    assert_eq!(a.global.keys.signer().kid(), b.global.keys.signer().kid());
}

use super::*;

#[test]
fn pkce_s256_accepts_the_rfc_7636_example_and_rejects_others() {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    assert!(pkce_s256_matches(verifier, challenge));
    let cases = [
        (
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            "one character changed",
        ),
        ("short", "shorter than 43 characters"),
        (&"a".repeat(129), "longer than 128 characters"),
        (
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjX+",
            "not an unreserved character",
        ),
    ];
    for (v, why) in cases {
        assert!(!pkce_s256_matches(v, challenge), "{why}");
    }
    // The plain method (verifier == challenge) is not accepted.
    assert!(!pkce_s256_matches(challenge, challenge));
}

#[test]
fn repeated_parameters_are_rejected() {
    assert!(parse_params("a=1&b=2").is_ok());
    assert!(parse_params("client_id=a&client_id=b").is_err());
}

#[test]
fn basic_credentials_are_form_decoded() {
    assert_eq!(form_decode("my%3Aclient+id"), "my:client id");
}

#[test]
fn invalid_configurations_are_refused() {
    let client = DevClient {
        id: "app".into(),
        secret: "s".into(),
        redirect_uris: vec!["http://127.0.0.1:8080/cb".into()],
        post_logout_redirect_uris: vec![],
    };
    let cfg = |issuer: &str, clients: Vec<DevClient>| DevIdpConfig {
        issuer: issuer.into(),
        clients,
        users: vec![],
    };
    assert!(Provider::new(cfg("http://127.0.0.1:5556", vec![client.clone()])).is_ok());
    let mut no_secret = client.clone();
    no_secret.secret.clear();
    let mut bad_redirect = client.clone();
    bad_redirect.redirect_uris = vec!["/relative".into()];
    let cases = [
        cfg("not a url", vec![client.clone()]),
        cfg("http://127.0.0.1:5556/?q=1", vec![client.clone()]),
        cfg("http://127.0.0.1:5556", vec![]),
        cfg("http://127.0.0.1:5556", vec![no_secret]),
        cfg("http://127.0.0.1:5556", vec![bad_redirect]),
        cfg(
            "http://127.0.0.1:5556",
            vec![client.clone(), client.clone()],
        ),
    ];
    for c in cases {
        let desc = format!("{c:?}");
        assert!(
            matches!(Provider::new(c), Err(DevIdpError::Config(_))),
            "{desc}"
        );
    }
}

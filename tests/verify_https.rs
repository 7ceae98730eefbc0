//! The verifier fetching its JWKS over HTTPS.
//!
//! Its own test binary: the verifier trusts the system roots, and this test
//! points them (`SSL_CERT_FILE`) at a self-signed certificate before any
//! verifier exists.

// The verify part of the one harness (tests/it/harness); this binary uses its
// keys, tokens and JWKS server only.
#[allow(
    dead_code,
    reason = "the HTTP clients serve the it binary's verify tier"
)]
#[path = "it/harness/verify.rs"]
mod verify_support;

use std::sync::Arc;

use jetbridge::verify::{Verifier, VerifierConfig, VerifyError};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use verify_support::{HOST, JwksServer, TestKey, claims, init, unix_now};

#[tokio::test]
async fn jwks_is_fetched_over_https_from_a_trusted_server_only() {
    init();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, certified.cert.pem()).unwrap();
    // SAFETY: set before any other thread of this test binary reads the environment.
    unsafe { std::env::set_var("SSL_CERT_FILE", &ca_file) };

    let mut server_config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![certified.cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                certified.signing_key.serialize_der(),
            )),
        )
        .unwrap();
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));

    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start_tls(&[&key], acceptor).await;
    assert_eq!(server.url.scheme(), "https");
    let config = VerifierConfig::new(server.url.clone())
        .issuer(HOST)
        .audience(HOST);
    let token = key.mint(&claims(unix_now()));

    let verified = Verifier::new(config.clone())
        .unwrap()
        .verify(&token)
        .await
        .unwrap();
    assert_eq!(verified.email, "ada@example.com");
    assert_eq!(server.requests(), 1);

    // The same server under a name its certificate does not carry is refused.
    let mut wrong_name = config;
    wrong_name.jwks_url.set_host(Some("127.0.0.1")).unwrap();
    let err = Verifier::new(wrong_name)
        .unwrap()
        .verify(&token)
        .await
        .unwrap_err();
    assert!(matches!(err, VerifyError::JwksFetch { .. }), "{err:?}");
    assert_eq!(server.requests(), 1);
}

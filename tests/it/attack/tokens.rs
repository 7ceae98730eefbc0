//! Token tricks on the verifier (the `jetbridge::verify` module behind
//! `jetbridge verify`): headers that name their own keys, duplicate keys,
//! and malformed ES256 signatures, each with an otherwise valid token.

use crate::harness;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use harness::verify::{HOST, JwksServer, TestKey, at, claims, init, unix_now};
use jetbridge::verify::{Verifier, VerifierConfig};

fn verifier(server: &JwksServer) -> Verifier {
    init();
    Verifier::new(
        VerifierConfig::new(server.url.clone())
            .issuer(HOST)
            .audience(HOST),
    )
    .unwrap()
}

#[tokio::test]
async fn headers_naming_their_own_keys_and_odd_headers_are_refused() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let v = verifier(&server);
    let now = unix_now();
    let payload = claims(now).to_string();
    // The control: the same signing path with a plain header verifies.
    let ok = key.sign_raw(r#"{"alg":"ES256","typ":"JWT","kid":"key-1"}"#, &payload);
    v.verify_at(&ok, at(now))
        .await
        .expect("plain header verifies");
    let jwk = key.jwk().to_string();
    for header in [
        r#"{"alg":"ES256","kid":"key-1","jku":"https://evil.example/jwks.json"}"#.to_string(),
        r#"{"alg":"ES256","kid":"key-1","x5u":"https://evil.example/cert.pem"}"#.to_string(),
        r#"{"alg":"ES256","kid":"key-1","x5c":["MIIB"]}"#.to_string(),
        format!(r#"{{"alg":"ES256","kid":"key-1","jwk":{jwk}}}"#),
        r#"{"alg":"ES256","kid":"key-1","crit":["exp"]}"#.to_string(),
        r#"{"alg":"none","kid":"key-1"}"#.to_string(),
        r#"{"alg":"ES256","alg":"none","kid":"key-1"}"#.to_string(),
        r#"{"alg":"none","alg":"ES256","kid":"key-1","alg":"HS256"}"#.to_string(),
        r#"{"alg":"ES256","kid":["key-1"]}"#.to_string(),
        r#"{"alg":"ES256","kid":"key-1","typ":"at+jwt"}"#.to_string(),
        r#"["alg","ES256"]"#.to_string(),
    ] {
        let token = key.sign_raw(&header, &payload);
        let r = v.verify_at(&token, at(now)).await;
        assert!(r.is_err(), "accepted header {header}");
    }
}

#[tokio::test]
async fn payload_tricks_are_refused() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let v = verifier(&server);
    let now = unix_now();
    let header = r#"{"alg":"ES256","typ":"JWT","kid":"key-1"}"#;
    let good = claims(now);
    let exp = good["exp"].as_i64().unwrap();
    for payload in [
        // A later duplicate must not smuggle an expired or foreign value past
        // a check made on the earlier one, whichever a parser keeps.
        format!(r#"{{"iss":"{HOST}","aud":"{HOST}","exp":{exp},"exp":1,"iat":{now}}}"#),
        format!(r#"{{"iss":"{HOST}","aud":"evil.example","aud":"{HOST}","exp":1,"iat":{now}}}"#),
        format!(r#"{{"iss":"{HOST}","aud":"{HOST}","exp":"{exp}","iat":{now}}}"#),
        format!(r#"{{"iss":"{HOST}","aud":["evil.example"],"exp":{exp},"iat":{now}}}"#),
        "[]".to_string(),
        "null".to_string(),
    ] {
        let token = key.sign_raw(header, &payload);
        assert!(
            v.verify_at(&token, at(now)).await.is_err(),
            "accepted payload {payload}"
        );
    }
}

#[tokio::test]
async fn malformed_es256_signatures_are_refused() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let v = verifier(&server);
    let now = unix_now();
    let token = key.mint(&claims(now));
    v.verify_at(&token, at(now))
        .await
        .expect("the genuine token verifies");
    let (input, sig_b64) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
    let der = p256::ecdsa::Signature::from_slice(&sig).unwrap().to_der();
    let mut flipped = sig.clone();
    flipped[63] ^= 1;
    for (what, bytes) in [
        ("r = s = 0", vec![0u8; 64]),
        ("r = 0", [vec![0u8; 32], sig[32..].to_vec()].concat()),
        ("DER-encoded", der.as_bytes().to_vec()),
        ("63 bytes", sig[..63].to_vec()),
        ("65 bytes", [sig.clone(), vec![0]].concat()),
        ("empty", Vec::new()),
        ("one bit flipped", flipped),
    ] {
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert!(
            v.verify_at(&forged, at(now)).await.is_err(),
            "accepted: {what}"
        );
    }
    // Not base64url, or padded: refused.
    for bad in [
        format!("{input}.{sig_b64}="),
        format!("{input}.{}", sig_b64.replace('-', "+")),
    ] {
        if bad != token {
            assert!(v.verify_at(&bad, at(now)).await.is_err(), "accepted {bad}");
        }
    }
}

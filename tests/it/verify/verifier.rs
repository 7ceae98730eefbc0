//! The verifier against real ES256 tokens and a JWKS served over HTTP.

use crate::harness;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use harness::verify::{HOST, JwksReply, JwksServer, TestKey, at, claims, init, unix_now};
use http::StatusCode;
use jetbridge::verify::{VerifiedClaims, Verifier, VerifierConfig, VerifyError};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn verifier(server: &JwksServer) -> Verifier {
    verifier_with(server, |c| c)
}

fn verifier_with(
    server: &JwksServer,
    tweak: impl FnOnce(VerifierConfig) -> VerifierConfig,
) -> Verifier {
    init();
    Verifier::new(tweak(
        VerifierConfig::new(server.url.clone())
            .issuer(HOST)
            .audience(HOST),
    ))
    .unwrap()
}

/// Keys `key-old` and `key-new`, a JWKS server publishing only the old one,
/// and a verifier that has verified one old-key token (one fetch so far).
async fn verified_once_with_the_old_key() -> (TestKey, TestKey, JwksServer, Verifier) {
    let old = TestKey::new(1, "key-old");
    let new = TestKey::new(2, "key-new");
    let server = JwksServer::start(&[&old]).await;
    let v = verifier(&server);
    v.verify(&old.mint(&claims(unix_now()))).await.unwrap();
    (old, new, server, v)
}

/// The outcomes of `n` verifications of `token` started at once.
async fn verify_at_once(
    v: &Verifier,
    token: &str,
    n: usize,
) -> Vec<Result<VerifiedClaims, VerifyError>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (v, token) = (v.clone(), token.to_string());
            tokio::spawn(async move { v.verify(&token).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

#[tokio::test]
async fn valid_token_verifies_and_yields_its_claims() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let now = unix_now();
    let mut payload = claims(now);
    payload["department"] = json!("research");

    let verified = verifier(&server).verify(&key.mint(&payload)).await.unwrap();

    assert_eq!(verified.iss, HOST);
    assert_eq!(verified.aud, [HOST]);
    assert_eq!(verified.sub, "user-1");
    assert_eq!(verified.user, "user-1");
    assert_eq!(verified.email, "ada@example.com");
    assert_eq!(verified.name, "Ada Lovelace");
    assert_eq!(verified.groups, ["engineering", "g-42"]);
    assert_eq!(verified.sid, "session-1");
    assert_eq!(verified.jti, "6d1c9a8e-0000-4000-8000-000000000001");
    assert_eq!((verified.iat, verified.exp), (Some(now), now + 300));
    assert_eq!(verified.extra["department"], "research");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn jwks_is_fetched_once_and_reused() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let v = verifier(&server);
    for _ in 0..5 {
        v.verify(&key.mint(&claims(unix_now()))).await.unwrap();
    }
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_rejected() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let v = verifier(&server);
    let now = unix_now();

    let mut other_iss = claims(now);
    other_iss["iss"] = json!("other.example.com");
    assert!(matches!(
        v.verify(&key.mint(&other_iss)).await,
        Err(VerifyError::WrongIssuer { actual, .. }) if actual == "other.example.com"
    ));

    for aud in [
        json!("other.example.com"),
        json!(["a.example.com", "b.example.com"]),
    ] {
        let mut other_aud = claims(now);
        other_aud["aud"] = aud.clone();
        assert!(
            matches!(
                v.verify(&key.mint(&other_aud)).await,
                Err(VerifyError::WrongAudience { .. })
            ),
            "aud {aud}"
        );
    }

    let mut listed = claims(now);
    listed["aud"] = json!(["a.example.com", HOST]);
    assert!(v.verify(&key.mint(&listed)).await.is_ok());
}

#[tokio::test]
async fn token_expired_beyond_the_leeway_is_rejected_and_within_it_accepted() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let v = verifier(&server);
    let iat = 1_700_000_000;
    let token = key.mint(&claims(iat));
    let exp = iat + 300;

    assert!(v.verify_at(&token, at(exp + 59)).await.is_ok());
    assert!(v.verify_at(&token, at(exp + 60)).await.is_ok());
    assert_eq!(
        v.verify_at(&token, at(exp + 61)).await,
        Err(VerifyError::Expired { exp, now: exp + 61 })
    );
}

#[tokio::test]
async fn smaller_leeway_is_honoured() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let v = verifier_with(&server, |c| VerifierConfig {
        leeway: Duration::from_secs(5),
        ..c
    });
    let iat = 1_700_000_000;
    let token = key.mint(&claims(iat));
    assert!(v.verify_at(&token, at(iat + 305)).await.is_ok());
    assert!(matches!(
        v.verify_at(&token, at(iat + 306)).await,
        Err(VerifyError::Expired { .. })
    ));
}

#[tokio::test]
async fn token_issued_in_the_future_beyond_the_leeway_is_rejected() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let v = verifier(&server);
    let now = 1_700_000_000;
    assert!(
        v.verify_at(&key.mint(&claims(now + 60)), at(now))
            .await
            .is_ok()
    );
    assert!(matches!(
        v.verify_at(&key.mint(&claims(now + 61)), at(now)).await,
        Err(VerifyError::NotYetValid { claim: "iat", .. })
    ));
}

#[tokio::test]
async fn token_without_exp_is_rejected() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let mut payload = claims(unix_now());
    payload.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        verifier(&server).verify(&key.mint(&payload)).await,
        Err(VerifyError::Malformed(m)) if m.contains("exp")
    ));
}

#[tokio::test]
async fn alg_none_token_is_rejected_without_touching_the_jwks() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let payload = b64(claims(unix_now()));
    let v = verifier(&server);
    for header in [
        json!({"alg": "none", "kid": "key-1"}),
        json!({"alg": "None", "kid": "key-1", "typ": "JWT"}),
    ] {
        let token = format!("{}.{payload}.", b64(header));
        assert!(matches!(
            v.verify(&token).await,
            Err(VerifyError::BadAlgorithm(_))
        ));
    }
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn hs256_token_keyed_with_the_public_key_is_rejected() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let v = verifier(&server);
    let payload = claims(unix_now());
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("key-1".into());
    // The classic confusion attack: the public key, as the verifier might hold it, used as an HMAC secret.
    for secret in [key.public_sec1(), key.jwk().to_string().into_bytes()] {
        let token = jsonwebtoken::encode(
            &header,
            &payload,
            &EncodingKey::from_secret(&secret).unwrap(),
        )
        .unwrap();
        assert_eq!(
            v.verify(&token).await,
            Err(VerifyError::BadAlgorithm("HS256".into()))
        );
    }
}

#[tokio::test]
async fn tampered_payload_is_rejected() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let token = key.mint(&claims(unix_now()));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["email"] = json!("admin@example.com");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    let tampered = parts.join(".");

    assert_eq!(
        verifier(&server).verify(&tampered).await,
        Err(VerifyError::BadSignature)
    );
}

#[tokio::test]
async fn token_signed_by_an_unpublished_key_under_a_published_kid_is_rejected() {
    let published = TestKey::new(1, "key-1");
    let attacker = TestKey::new(9, "key-1");
    let server = JwksServer::start(&[&published]).await;
    let token = attacker.mint(&claims(unix_now()));
    assert_eq!(
        verifier(&server).verify(&token).await,
        Err(VerifyError::BadSignature)
    );
}

#[tokio::test]
async fn token_without_kid_is_rejected() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let token = key.mint_with_kid(&claims(unix_now()), "");
    assert_eq!(
        verifier(&server).verify(&token).await,
        Err(VerifyError::MissingKid)
    );
}

#[tokio::test]
async fn unknown_kid_triggers_a_refetch_that_picks_up_a_rotated_key() {
    let (old, new, server, v) = verified_once_with_the_old_key().await;
    assert_eq!(server.requests(), 1);

    server.publish(&[&new, &old]);
    let verified = v.verify(&new.mint(&claims(unix_now()))).await.unwrap();
    assert_eq!(verified.email, "ada@example.com");
    assert_eq!(server.requests(), 2);
    // Both keys are now cached.
    v.verify(&old.mint(&claims(unix_now()))).await.unwrap();
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn second_unknown_kid_within_the_rate_limit_window_does_not_refetch() {
    let old = TestKey::new(1, "key-old");
    let new = TestKey::new(2, "key-new");
    let stray = TestKey::new(3, "key-stray");
    let server = JwksServer::start(&[&old]).await;
    let v = verifier(&server);
    v.verify(&old.mint(&claims(unix_now()))).await.unwrap();

    // First unknown kid: one refetch, still unknown.
    assert_eq!(
        v.verify(&stray.mint(&claims(unix_now()))).await,
        Err(VerifyError::UnknownKid("key-stray".into()))
    );
    assert_eq!(server.requests(), 2);

    // Second unknown kid inside the window: no request, even though the key is now published.
    server.publish(&[&new, &old]);
    for _ in 0..3 {
        assert_eq!(
            v.verify(&new.mint(&claims(unix_now()))).await,
            Err(VerifyError::UnknownKid("key-new".into()))
        );
    }
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn refetch_is_allowed_again_once_the_window_has_passed() {
    let old = TestKey::new(1, "key-old");
    let new = TestKey::new(2, "key-new");
    let server = JwksServer::start(&[&old]).await;
    let window = Duration::from_millis(200);
    let v = verifier_with(&server, |c| VerifierConfig {
        refetch_min_interval: window,
        ..c
    });
    v.verify(&old.mint(&claims(unix_now()))).await.unwrap();
    assert!(
        v.verify(&TestKey::new(3, "stray").mint(&claims(unix_now())))
            .await
            .is_err()
    );
    assert_eq!(server.requests(), 2);

    server.publish(&[&new, &old]);
    tokio::time::sleep(window + Duration::from_millis(50)).await;
    v.verify(&new.mint(&claims(unix_now()))).await.unwrap();
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn key_dropped_from_the_jwks_stops_verifying_after_a_refetch() {
    let (old, new, server, v) = verified_once_with_the_old_key().await;

    server.publish(&[&new]);
    v.verify(&new.mint(&claims(unix_now()))).await.unwrap();
    assert_eq!(
        v.verify(&old.mint(&claims(unix_now()))).await,
        Err(VerifyError::UnknownKid("key-old".into()))
    );
}

#[tokio::test]
async fn concurrent_first_verifications_share_one_fetch() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    server.set_delay(Duration::from_millis(200));
    let v = verifier(&server);
    let token = key.mint(&claims(unix_now()));
    for outcome in verify_at_once(&v, &token, 16).await {
        outcome.unwrap();
    }
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_refetch() {
    let (old, new, server, v) = verified_once_with_the_old_key().await;
    server.publish(&[&new, &old]);
    server.set_delay(Duration::from_millis(200));
    let token = new.mint(&claims(unix_now()));
    for outcome in verify_at_once(&v, &token, 16).await {
        outcome.unwrap();
    }
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn jwks_that_cannot_be_fetched_is_reported_as_such() {
    let key = TestKey::new(1, "key-1");
    let token = key.mint(&claims(unix_now()));
    let cases = [
        (JwksReply::Status(StatusCode::INTERNAL_SERVER_ERROR), "500"),
        (
            JwksReply::Body(Bytes::from_static(b"<html>nope</html>")),
            "not valid JSON",
        ),
        (
            JwksReply::Body(Bytes::from(vec![b' '; 1024 * 1024 + 1])),
            "larger than",
        ),
    ];
    for (reply, expected) in cases {
        let server = JwksServer::start(&[]).await;
        server.set_reply(reply);
        match verifier(&server).verify(&token).await {
            Err(VerifyError::JwksFetch { reason, url }) => {
                assert!(reason.contains(expected), "{reason}");
                assert_eq!(url, server.url.as_str());
            }
            other => panic!("expected a fetch error containing {expected:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unreachable_jwks_is_reported_as_a_fetch_failure() {
    init();
    // Bind, then drop, to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let v = Verifier::new(VerifierConfig::new(
        format!("http://127.0.0.1:{port}/jwks.json")
            .parse()
            .unwrap(),
    ))
    .unwrap();
    let token = TestKey::new(1, "key-1").mint(&claims(unix_now()));
    let err = v.verify(&token).await.unwrap_err();
    assert!(matches!(err, VerifyError::JwksFetch { .. }), "{err:?}");
    assert!(err.to_string().contains("fetching the JWKS"), "{err}");
}

#[tokio::test]
async fn jwks_failure_on_first_load_recovers_once_the_server_does() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[]).await;
    server.set_reply(JwksReply::Status(StatusCode::SERVICE_UNAVAILABLE));
    let v = verifier(&server);
    let token = key.mint(&claims(unix_now()));
    assert!(matches!(
        v.verify(&token).await,
        Err(VerifyError::JwksFetch { .. })
    ));
    // Within the backoff the failure is repeated without a request.
    assert!(matches!(
        v.verify(&token).await,
        Err(VerifyError::JwksFetch { .. })
    ));
    assert_eq!(server.requests(), 1);

    server.publish(&[&key]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    v.verify(&token).await.unwrap();
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn callers_waiting_on_a_refetch_share_it_even_without_a_rate_limit() {
    let key = TestKey::new(1, "key-1");
    let server = JwksServer::start(&[&key]).await;
    let v = verifier_with(&server, |c| VerifierConfig {
        refetch_min_interval: Duration::ZERO,
        ..c
    });
    v.verify(&key.mint(&claims(unix_now()))).await.unwrap();
    server.set_delay(Duration::from_millis(200));
    let stray = TestKey::new(3, "key-stray").mint(&claims(unix_now()));
    for outcome in verify_at_once(&v, &stray, 16).await {
        assert_eq!(outcome, Err(VerifyError::UnknownKid("key-stray".into())));
    }
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn caller_dropped_mid_refetch_does_not_use_up_the_rate_limit() {
    let (old, new, server, v) = verified_once_with_the_old_key().await;
    server.publish(&[&new, &old]);
    server.set_delay(Duration::from_millis(300));
    let token = new.mint(&claims(unix_now()));

    let abandoned = tokio::time::timeout(Duration::from_millis(50), v.verify(&token)).await;
    assert!(
        abandoned.is_err(),
        "the first refetch should still be in flight"
    );
    server.set_delay(Duration::ZERO);
    v.verify(&token).await.unwrap();
    assert_eq!(server.requests(), 3);
}

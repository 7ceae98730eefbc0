//! Assertion decoding and verification never panic.
//!
//! The first byte picks the mode. Even: the rest is a token, given to
//! `decode_unverified` and to `Verifier::verify_at`. Odd: the rest is a
//! payload, signed with the key the verifier trusts, so the claim checks see
//! arbitrary claims behind a good signature; it must then fail only on its
//! claims, never on the signature or the key. The verifier fetches its JWKS
//! from a loopback listener started here; nothing leaves the machine.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jetbridge::identity::SigningKey;
use jetbridge::identity::jwks::jwks_document;
use jetbridge::verify::{Verifier, VerifierConfig, VerifyError, decode_unverified};
use libfuzzer_sys::fuzz_target;
use std::io::{Read as _, Write as _};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NOW: u64 = 1_767_225_600;

struct Fixture {
    key: SigningKey,
    verifier: Verifier,
    runtime: tokio::runtime::Runtime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let secret = p256::SecretKey::from_slice(&[7; 32]).expect("a valid scalar");
    let key = SigningKey::from_secret(secret).expect("a P-256 key");
    let body = jwks_document([&key]).body.to_vec();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback listener");
    let addr = listener.local_addr().expect("bound address");
    std::thread::spawn(move || serve_jwks(listener, &body));
    let url = format!("http://{addr}/.well-known/pomerium/jwks.json");
    let config = VerifierConfig::new(url.parse().expect("JWKS URL"))
        .issuer("app.example.com")
        .audience("app.example.com");
    let verifier = Verifier::new(config).expect("verifier");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    Fixture {
        key,
        verifier,
        runtime,
    }
});

/// Answers every request on `listener` with the JWKS `body`.
fn serve_jwks(listener: std::net::TcpListener, body: &[u8]) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let header = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(header.as_bytes());
        let _ = stream.write_all(body);
    }
}

fn sign(key: &SigningKey, payload: &[u8]) -> String {
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": key.kid()});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = key.sign_es256(input.as_bytes()).expect("signing");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = &*FIXTURE;
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    if mode % 2 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        let _ = decode_unverified(token);
        let _ = verify(f, token, now);
    } else {
        let token = sign(&f.key, rest);
        let decoded = decode_unverified(&token);
        match verify(f, &token, now) {
            Err(
                e @ (VerifyError::BadSignature
                | VerifyError::UnknownKid(_)
                | VerifyError::MissingKid
                | VerifyError::BadAlgorithm(_)
                | VerifyError::JwksFetch { .. }),
            ) => {
                panic!("a well-signed token failed on its signature or key: {e}")
            }
            Err(_) => {}
            Ok(claims) => {
                let decoded = decoded.expect("a verified token decodes");
                assert!(decoded.claims.get("exp").is_some_and(|v| v.is_number()));
                assert_eq!(decoded.claims.get("iss"), Some(&"app.example.com".into()));
                let _ = claims;
            }
        }
    }
});

fn verify(
    f: &Fixture,
    token: &str,
    now: SystemTime,
) -> Result<jetbridge::verify::VerifiedClaims, VerifyError> {
    f.runtime.block_on(f.verifier.verify_at(token, now))
}

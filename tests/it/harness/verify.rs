//! Shared fixtures for the verifier tests: signing keys, token minting, and a
//! JWKS server on 127.0.0.1 that counts its requests.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::SecretKey;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use p256::pkcs8::EncodePrivateKey as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const HOST: &str = "verify.example.com";

/// Installs the process-wide rustls provider (idempotent).
pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix as u64)
}

/// A P-256 signing key from fixed test bytes, published under `kid`.
pub struct TestKey {
    pub kid: String,
    secret: SecretKey,
}

impl TestKey {
    pub fn new(seed: u8, kid: &str) -> Self {
        let mut bytes = [seed; 32];
        bytes[0] = 0x11; // keeps the scalar well below the curve order
        Self {
            kid: kid.to_owned(),
            secret: SecretKey::from_slice(&bytes).expect("valid test scalar"),
        }
    }

    /// Uncompressed SEC1 public point, `04 ‖ x ‖ y`.
    pub fn public_sec1(&self) -> Vec<u8> {
        self.secret
            .public_key()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec()
    }

    /// The JWK as Pomerium publishes it.
    pub fn jwk(&self) -> Value {
        let point = self.public_sec1();
        json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        })
    }

    /// An ES256 JWT over `claims`, header `{alg, typ: JWT, kid}`.
    /// Signs `header.payload` as given (raw JSON texts, so duplicate keys and
    /// odd headers can be sent), with a valid ES256 signature.
    pub fn sign_raw(&self, header: &str, payload: &str) -> String {
        use base64::Engine as _;
        use p256::ecdsa::signature::Signer as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let key = p256::ecdsa::SigningKey::from(&self.secret);
        let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
        format!("{input}.{}", b64(&sig.to_bytes()))
    }

    pub fn mint(&self, claims: &Value) -> String {
        self.mint_with_kid(claims, &self.kid)
    }

    pub fn mint_with_kid(&self, claims: &Value, kid: &str) -> String {
        let der = self.secret.to_pkcs8_der().expect("pkcs8");
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(der.as_bytes()))
            .expect("sign")
    }
}

/// Pomerium-shaped claims for `HOST`, issued at `iat`.
pub fn claims(iat: i64) -> Value {
    json!({
        "iss": HOST, "aud": HOST,
        "sub": "user-1", "user": "user-1",
        "email": "ada@example.com", "name": "Ada Lovelace",
        "groups": ["engineering", "g-42"],
        "sid": "session-1", "jti": "6d1c9a8e-0000-4000-8000-000000000001",
        "iat": iat, "exp": iat + 300,
    })
}

/// What the JWKS server answers.
#[derive(Clone)]
pub enum JwksReply {
    Keys(Vec<Value>),
    Status(StatusCode),
    Body(Bytes),
}

/// A JWKS server on 127.0.0.1:0 whose answer can change between requests.
#[derive(Clone)]
pub struct JwksServer {
    pub url: url::Url,
    reply: Arc<Mutex<JwksReply>>,
    requests: Arc<AtomicUsize>,
    delay: Arc<Mutex<Duration>>,
}

impl JwksServer {
    pub async fn start(keys: &[&TestKey]) -> Self {
        Self::start_with(keys, None).await
    }

    /// Like [`start`](Self::start), over TLS; the URL names host `localhost`.
    #[allow(
        dead_code,
        reason = "used by tests/verify_https.rs, a binary of its own: it sets SSL_CERT_FILE"
    )]
    pub async fn start_tls(keys: &[&TestKey], tls: tokio_rustls::TlsAcceptor) -> Self {
        Self::start_with(keys, Some(tls)).await
    }

    async fn start_with(keys: &[&TestKey], tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = match tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let server = Self {
            url: format!("{origin}/.well-known/pomerium/jwks.json")
                .parse()
                .unwrap(),
            reply: Arc::new(Mutex::new(JwksReply::Keys(Vec::new()))),
            requests: Arc::new(AtomicUsize::new(0)),
            delay: Arc::new(Mutex::new(Duration::ZERO)),
        };
        server.publish(keys);
        let state = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.answer(req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        server
    }

    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if req.uri().path() != self.url.path() {
            return status(StatusCode::NOT_FOUND);
        }
        let reply = self.reply.lock().unwrap().clone();
        match reply {
            JwksReply::Keys(keys) => {
                let body = json!({ "keys": keys }).to_string();
                Response::builder()
                    .header("content-type", "application/json")
                    .header("cache-control", "max-age=60")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap()
            }
            JwksReply::Status(code) => status(code),
            JwksReply::Body(body) => Response::new(Full::new(body)),
        }
    }

    /// Serve exactly these keys from now on.
    pub fn publish(&self, keys: &[&TestKey]) {
        self.set_reply(JwksReply::Keys(keys.iter().map(|k| k.jwk()).collect()));
    }

    pub fn set_reply(&self, reply: JwksReply) {
        *self.reply.lock().unwrap() = reply;
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// How many requests the server has received.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// A plain HTTP/1.1 GET; returns status, headers and body.
pub async fn http_get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Bytes) {
    get_with(
        Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        url,
        headers,
    )
    .await
}

/// A GET over cleartext HTTP/2 with prior knowledge (h2c).
pub async fn h2c_get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new());
    get_with(client, url, headers).await
}

async fn get_with(
    client: Client<HttpConnector, Empty<Bytes>>,
    url: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = Request::get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

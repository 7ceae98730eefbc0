//! The Verify app end to end over HTTP, with a JWKS served from another socket.

use crate::harness;

use std::net::SocketAddr;
use std::time::Duration;

use harness::verify::{HOST, JwksServer, TestKey, claims, h2c_get, http_get, init, unix_now};
use http::StatusCode;
use jetbridge::verify::{Verifier, VerifierConfig, app};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct App {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), app::Error>>,
}

impl App {
    async fn start(jwks: &JwksServer) -> Self {
        init();
        let verifier = Verifier::new(
            VerifierConfig::new(jwks.url.clone())
                .issuer(HOST)
                .audience(HOST),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(app::serve(listener, verifier, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            done,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get_json(&self, path: &str, headers: &[(&str, &str)]) -> Value {
        self.get_json_status(path, headers, StatusCode::OK).await
    }

    async fn get_json_status(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        expected: StatusCode,
    ) -> Value {
        let (status, response_headers, body) = http_get(&self.url(path), headers).await;
        assert_eq!(status, expected, "{}", String::from_utf8_lossy(&body));
        assert_eq!(response_headers["content-type"], "application/json");
        serde_json::from_slice(&body).unwrap()
    }
}

async fn fixture() -> (TestKey, JwksServer, App) {
    let key = TestKey::new(1, "key-1");
    let jwks = JwksServer::start(&[&key]).await;
    let app = App::start(&jwks).await;
    (key, jwks, app)
}

#[tokio::test]
async fn json_endpoint_reports_verified_claims_for_a_valid_assertion() {
    let (key, _jwks, app) = fixture().await;
    let token = key.mint(&claims(unix_now()));
    let body = app
        .get_json("/json", &[("x-pomerium-jwt-assertion", &token)])
        .await;
    assert_eq!(body["verified"], true);
    assert_eq!(body["error"], Value::Null);
    assert_eq!(body["claims"]["email"], "ada@example.com");
    assert_eq!(body["claims"]["aud"], json!([HOST]));
    assert_eq!(body["claims"]["groups"], json!(["engineering", "g-42"]));
}

#[tokio::test]
async fn json_endpoint_reports_why_an_assertion_is_missing_or_invalid() {
    let (key, _jwks, app) = fixture().await;

    // A failed verification says so in the status too (scripts and monitors read it).
    let missing = app
        .get_json_status("/json", &[], StatusCode::UNAUTHORIZED)
        .await;
    assert_eq!(missing["verified"], false);
    assert_eq!(missing["claims"], Value::Null);
    assert_eq!(missing["error"], "missing X-Pomerium-Jwt-Assertion header");

    let mut wrong_aud = claims(unix_now());
    wrong_aud["aud"] = json!("elsewhere.example.com");
    let token = key.mint(&wrong_aud);
    let rejected = app
        .get_json_status(
            "/json",
            &[("X-Pomerium-Jwt-Assertion", &token)],
            StatusCode::UNAUTHORIZED,
        )
        .await;
    assert_eq!(rejected["verified"], false);
    assert_eq!(rejected["claims"], Value::Null);
    let error = rejected["error"].as_str().unwrap();
    assert!(error.starts_with("wrong audience"), "{error}");
}

#[tokio::test]
async fn headers_endpoint_echoes_every_request_header_with_repeats_joined() {
    let (_key, _jwks, app) = fixture().await;
    let body = app
        .get_json(
            "/headers",
            &[
                ("x-pomerium-claim-email", "ada@example.com"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-for", "10.0.0.2"),
                ("X-Mixed-Case", "v"),
            ],
        )
        .await;
    let headers = &body["headers"];
    assert_eq!(headers["x-pomerium-claim-email"], "ada@example.com");
    assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 10.0.0.2");
    assert_eq!(headers["x-mixed-case"], "v");
    assert_eq!(headers["host"], app.addr.to_string());
}

#[tokio::test]
async fn root_page_says_identity_verified_and_lists_claims_and_claim_headers() {
    let (key, _jwks, app) = fixture().await;
    let mut payload = claims(unix_now());
    payload["name"] = json!("Ada <script>alert(1)</script>");
    let token = key.mint(&payload);
    let (status, headers, body) = http_get(
        &app.url("/"),
        &[
            ("x-pomerium-jwt-assertion", &token),
            ("x-pomerium-claim-email", "ada@example.com"),
        ],
    )
    .await;
    let page = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        page.contains("<h1 class=\"ok\">Identity verified</h1>"),
        "{page}"
    );
    assert!(page.contains("<td>ada@example.com</td>"));
    assert!(page.contains("Ada &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>"));
    assert!(page.contains("<th>x-pomerium-claim-email</th>"));
}

#[tokio::test]
async fn root_page_shows_the_error_and_unverified_claims_for_a_forged_assertion() {
    let (_key, _jwks, app) = fixture().await;
    let forger = TestKey::new(7, "key-1");
    let token = forger.mint(&claims(unix_now()));
    let (status, _, body) = http_get(&app.url("/"), &[("x-pomerium-jwt-assertion", &token)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let page = String::from_utf8(body.to_vec()).unwrap();
    assert!(page.contains("Identity not verified"));
    assert!(page.contains("bad signature"));
    assert!(page.contains("UNVERIFIED claims"));
    assert!(page.contains("<td>ada@example.com</td>"));
}

#[tokio::test]
async fn app_speaks_cleartext_http2() {
    let (key, _jwks, app) = fixture().await;
    let token = key.mint(&claims(unix_now()));
    let (status, _, body) =
        h2c_get(&app.url("/json"), &[("x-pomerium-jwt-assertion", &token)]).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["verified"], true);
}

#[tokio::test]
async fn health_and_unknown_paths_answer_plainly() {
    let (_key, _jwks, app) = fixture().await;
    let (status, _, body) = http_get(&app.url("/healthz"), &[]).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok\n"[..]));
    let (status, _, _) = http_get(&app.url("/nope"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn server_stops_when_shutdown_completes() {
    let (_key, _jwks, mut app) = fixture().await;
    let (status, _, _) = http_get(&app.url("/healthz"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    app.stop.take().unwrap().send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), &mut app.done)
        .await
        .expect("serve returns after shutdown")
        .unwrap();
    assert!(result.is_ok());
    assert!(tokio::net::TcpStream::connect(app.addr).await.is_err());
}

#[tokio::test]
async fn run_refuses_an_unusable_configuration() {
    let config = VerifierConfig::new("ftp://example.com/jwks.json".parse().unwrap());
    let err = app::run("127.0.0.1:0".parse().unwrap(), config, async {})
        .await
        .unwrap_err();
    assert!(matches!(err, app::Error::Verifier(_)), "{err:?}");
}

//! Login tier, faults: ID-token validation against tokens a real IdP cannot be
//! made to send, and the proxy's behaviour while the IdP is unreachable.
//!
//! Each fault must end the login at `/oauth2/callback` with a 4xx page and no
//! session cookie on the route host; a control login through the same fake
//! provider succeeds, so the fault tests can fail.

use crate::harness;
use harness::config::*;
use harness::login::*;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use jetbridge::identity::keys::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const CLIENT_ID: &str = "jetbridge";
const CLIENT_SECRET: &str = "jetbridge-secret-0123456789abcdef";
/// `expires_in` of the fake's access tokens: short enough that every session
/// it creates is due for a refresh on its next request.
const TOKEN_LIFETIME: i64 = 10;

/// What the fake provider does wrong in the next token response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// A correct ID token and userinfo.
    None,
    WrongNonce,
    MissingNonce,
    WrongIssuer,
    WrongAudience,
    /// `aud: [client, other]` and no `azp`.
    ExtraAudienceNoAzp,
    /// `aud: [client, other]` and `azp: other`.
    ExtraAudienceForeignAzp,
    /// `aud: [client, other]` and `azp: client`: the extra audience is still not trusted.
    ExtraAudienceOwnAzp,
    /// `aud: client` but `azp: other`.
    ForeignAzp,
    /// Unsigned (`alg: none`).
    AlgNone,
    /// HS256 with the client secret as the key; the provider advertises only ES256.
    Hs256ClientSecret,
    /// ES256 by a key that is not in the JWKS, under the published key's `kid`.
    UnpublishedKey,
    /// ES256 by a key that is not in the JWKS, under an unknown `kid`.
    UnknownKid,
    Expired,
    IssuedInTheFuture,
    /// Userinfo answers for another subject than the ID token's.
    UserinfoOtherSubject,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One authorization request the fake has answered.
struct Grant {
    nonce: Option<String>,
    code_challenge: String,
    redirect_uri: String,
}

struct FakeState {
    issuer: String,
    fault: Fault,
    key: SigningKey,
    rogue: SigningKey,
    codes: HashMap<String, Grant>,
    /// Token requests answered, by grant type.
    token_requests: HashMap<String, usize>,
    next: u64,
    /// Requests are taken in and never answered (a hung provider).
    silent: bool,
}

/// A fake OpenID Connect provider (hyper on 127.0.0.1:0). It exists only to
/// inject faults the real `oidc-provider` used by `login_oidc.rs` cannot
/// produce: `/authorize` redirects straight back with a code (no login page),
/// `/token` returns an ID token crafted for the configured [`Fault`].
struct FakeIdp {
    issuer: String,
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    stop: CancellationToken,
    accept_loop: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeIdp {
    async fn start() -> FakeIdp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let state = Arc::new(Mutex::new(FakeState {
            issuer: issuer.clone(),
            fault: Fault::None,
            key: SigningKey::generate(),
            rogue: SigningKey::generate(),
            codes: HashMap::new(),
            token_requests: HashMap::new(),
            next: 0,
            silent: false,
        }));
        let stop = CancellationToken::new();
        let (s, st) = (state.clone(), stop.clone());
        let accept_loop = tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = st.cancelled() => return, // drops the listener: connections are refused
                    a = listener.accept() => match a { Ok((stream, _)) => stream, Err(_) => return },
                };
                let (s, st) = (s.clone(), st.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&s, req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    // Stopping also closes kept-alive connections, as a dead process would.
                    tokio::select! {
                        _ = conn => {}
                        () = st.cancelled() => {}
                    }
                });
            }
        });
        FakeIdp {
            issuer,
            addr,
            state,
            stop,
            accept_loop: Mutex::new(Some(accept_loop)),
        }
    }

    /// An ID token as this provider would issue it with `fault`, outside
    /// any sign-in (no nonce).
    fn mint_id_token(&self, fault: Fault) -> String {
        id_token(&self.state.lock().unwrap(), fault, None)
    }

    /// From now on requests hang unanswered; connections are still taken.
    fn go_silent(&self) {
        self.state.lock().unwrap().silent = true;
    }

    fn set_fault(&self, fault: Fault) {
        self.state.lock().unwrap().fault = fault;
    }

    fn token_requests(&self, grant_type: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .token_requests
            .get(grant_type)
            .copied()
            .unwrap_or(0)
    }

    /// Takes the provider down: the port refuses connections from now on.
    async fn stop(&self) {
        self.stop.cancel();
        let accept_loop = self.accept_loop.lock().unwrap().take();
        if let Some(h) = accept_loop {
            h.await.unwrap();
        }
        let refused = tokio::net::TcpStream::connect(self.addr).await;
        assert!(refused.is_err(), "the fake IdP still accepts connections");
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<bytes::Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap()
}

fn json_reply(status: StatusCode, v: Value) -> Response<Full<bytes::Bytes>> {
    reply(status, "application/json", v.to_string())
}

fn form(s: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(s.as_bytes())
        .into_owned()
        .collect()
}

async fn handle(
    state: &Mutex<FakeState>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<bytes::Bytes>> {
    let silent = state.lock().unwrap().silent;
    if silent {
        std::future::pending::<()>().await;
    }
    let path = req.uri().path().to_string();
    let query = form(req.uri().query().unwrap_or(""));
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut st = state.lock().unwrap();
    let issuer = st.issuer.clone();
    match path.as_str() {
        "/.well-known/openid-configuration" => json_reply(
            StatusCode::OK,
            json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "userinfo_endpoint": format!("{issuer}/userinfo"),
                "jwks_uri": format!("{issuer}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile", "groups"],
            }),
        ),
        "/jwks" => reply(
            StatusCode::OK,
            "application/json",
            String::from_utf8(
                jetbridge::identity::jwks::jwks_document([&st.key])
                    .body
                    .to_vec(),
            )
            .unwrap(),
        ),
        "/authorize" => {
            let (Some(redirect_uri), Some(state_param), Some(challenge)) = (
                query.get("redirect_uri"),
                query.get("state"),
                query.get("code_challenge"),
            ) else {
                return json_reply(StatusCode::BAD_REQUEST, json!({"error": "invalid_request"}));
            };
            if query.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || query.get("code_challenge_method").map(String::as_str) != Some("S256")
            {
                return json_reply(StatusCode::BAD_REQUEST, json!({"error": "invalid_request"}));
            }
            st.next += 1;
            let code = format!("code-{}", st.next);
            st.codes.insert(
                code.clone(),
                Grant {
                    nonce: query.get("nonce").cloned(),
                    code_challenge: challenge.clone(),
                    redirect_uri: redirect_uri.clone(),
                },
            );
            let mut to = url::Url::parse(redirect_uri).unwrap();
            to.query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", state_param);
            Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, to.as_str())
                .body(Full::default())
                .unwrap()
        }
        "/token" => {
            use base64::Engine as _;
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
            );
            if auth != expected {
                return json_reply(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
            }
            let f = form(std::str::from_utf8(&body).unwrap_or(""));
            let grant_type = f.get("grant_type").cloned().unwrap_or_default();
            *st.token_requests.entry(grant_type.clone()).or_default() += 1;
            let (fault, nonce) = match grant_type.as_str() {
                "authorization_code" => {
                    let Some(g) = f.get("code").and_then(|c| st.codes.remove(c)) else {
                        return json_reply(
                            StatusCode::BAD_REQUEST,
                            json!({"error": "invalid_grant"}),
                        );
                    };
                    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                    if b64(&Sha256::digest(verifier.as_bytes())) != g.code_challenge
                        || f.get("redirect_uri") != Some(&g.redirect_uri)
                    {
                        return json_reply(
                            StatusCode::BAD_REQUEST,
                            json!({"error": "invalid_grant"}),
                        );
                    }
                    (st.fault, g.nonce)
                }
                "refresh_token"
                    if f.get("refresh_token").map(String::as_str) == Some("refresh-alice") =>
                {
                    (Fault::None, None)
                }
                _ => return json_reply(StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"})),
            };
            json_reply(
                StatusCode::OK,
                json!({
                    "access_token": "access-alice",
                    "token_type": "Bearer",
                    "expires_in": TOKEN_LIFETIME,
                    "refresh_token": "refresh-alice",
                    "id_token": id_token(&st, fault, nonce.as_deref()),
                }),
            )
        }
        "/userinfo" => {
            if auth != "Bearer access-alice" {
                return json_reply(StatusCode::UNAUTHORIZED, json!({"error": "invalid_token"}));
            }
            let sub = if st.fault == Fault::UserinfoOtherSubject {
                "mallory"
            } else {
                "alice"
            };
            json_reply(
                StatusCode::OK,
                json!({"sub": sub, "email": format!("{sub}@example.com"), "name": "Alice", "groups": ["users"]}),
            )
        }
        _ => json_reply(StatusCode::NOT_FOUND, json!({"error": "not_found"})),
    }
}

/// The ID token for `fault`; `nonce` is the one sent to `/authorize`.
fn id_token(st: &FakeState, fault: Fault, nonce: Option<&str>) -> String {
    let now = unix_now();
    let mut c = json!({
        "iss": st.issuer, "sub": "alice", "aud": CLIENT_ID, "iat": now, "exp": now + 300,
        "email": "alice@example.com", "email_verified": true, "name": "Alice", "groups": ["users"],
    });
    if let Some(n) = nonce {
        c["nonce"] = json!(n);
    }
    match fault {
        Fault::WrongNonce => c["nonce"] = json!("a-nonce-this-login-never-sent"),
        Fault::MissingNonce => {
            c.as_object_mut().unwrap().remove("nonce");
        }
        Fault::WrongIssuer => c["iss"] = json!(format!("{}/other-tenant", st.issuer)),
        Fault::WrongAudience => c["aud"] = json!("another-client"),
        Fault::ExtraAudienceNoAzp => c["aud"] = json!([CLIENT_ID, "another-client"]),
        Fault::ExtraAudienceForeignAzp => {
            c["aud"] = json!([CLIENT_ID, "another-client"]);
            c["azp"] = json!("another-client");
        }
        Fault::ForeignAzp => c["azp"] = json!("another-client"),
        Fault::ExtraAudienceOwnAzp => {
            c["aud"] = json!([CLIENT_ID, "another-client"]);
            c["azp"] = json!(CLIENT_ID);
        }
        Fault::Expired => {
            // Issued within the accepted window, expired well beyond any clock skew.
            c["iat"] = json!(now - 400);
            c["exp"] = json!(now - 300);
        }
        Fault::IssuedInTheFuture => {
            c["iat"] = json!(now + 3600);
            c["exp"] = json!(now + 3900);
        }
        _ => {}
    }
    let es256 = |key: &SigningKey, kid: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.to_string());
        jsonwebtoken::encode(&h, &c, key.encoding_key()).unwrap()
    };
    match fault {
        Fault::AlgNone => format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(c.to_string().as_bytes())
        ),
        Fault::Hs256ClientSecret => jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()).unwrap(),
        )
        .unwrap(),
        Fault::UnpublishedKey => es256(&st.rogue, st.key.kid()),
        Fault::UnknownKid => es256(&st.rogue, st.rogue.kid()),
        _ => es256(&st.key, st.key.kid()),
    }
}

struct World {
    _proxy: RunningProxy,
    idp: FakeIdp,
    port: u16,
}

impl World {
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}.localhost:{}{path}", self.port)
    }
}

/// The page says the identity provider is unavailable and sets no session.
fn assert_idp_unavailable_without_a_session(r: &Reply) {
    assert!(
        r.body
            .contains("identity provider is unavailable; try again shortly"),
        "{}",
        r.body
    );
    assert!(!sets_session_cookie(r));
}

fn config(port: u16, issuer: &str, upstream: SocketAddr) -> ConfigFile {
    let to = format!("http://{upstream}");
    let token_route = |host: &str, format: &str| RouteConfig {
        pass_identity_headers: Some(true),
        bearer_token_format: Some(format.into()),
        ..signed_in_route(host, &to)
    };
    ConfigFile {
        jwt_claims_headers: claim_list(&["email"]),
        ..sign_in_config(
            port,
            issuer,
            CLIENT_ID,
            CLIENT_SECRET,
            [
                RouteConfig {
                    pass_identity_headers: Some(true),
                    policy: ppl("allow: {or: [{email: {is: alice@example.com}}]}"),
                    ..route("app.localhost", &to)
                },
                token_route("idt.localhost", "idp_identity_token"),
                token_route("api.localhost", "idp_access_token"),
            ],
        )
    }
}

async fn world() -> World {
    let idp = FakeIdp::start().await;
    let https = bind_https().await;
    let port = https.local_addr().unwrap().port();
    let (up, _) = echo_upstream().await;
    let proxy = start_proxy(https, &config(port, &idp.issuer, up)).await;
    World {
        _proxy: proxy,
        idp,
        port,
    }
}

/// Runs the login from the route to the IdP's redirect back to
/// `/oauth2/callback` and returns that callback URL (not yet followed).
async fn to_callback(b: &mut Browser, w: &World) -> String {
    let r = b.get(&w.url("app", "/")).await;
    assert_eq!(
        r.status,
        StatusCode::FOUND,
        "unauthenticated request: {}",
        r.body
    );
    let sign_in = r.location().unwrap();
    let r = b.get(&sign_in).await;
    assert_eq!(r.status, StatusCode::FOUND, "sign_in: {}", r.body);
    let authorize = r.location().unwrap();
    assert!(
        authorize.starts_with(&format!("{}/authorize?", w.idp.issuer)),
        "{authorize}"
    );
    assert!(
        authorize.contains("nonce=") && authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    let r = b.get(&authorize).await;
    let callback = r
        .location()
        .unwrap_or_else(|| panic!("fake /authorize gave {} {}", r.status, r.body));
    assert!(
        callback.starts_with(&w.url("authenticate", "/oauth2/callback?")),
        "{callback}"
    );
    callback
}

fn sets_session_cookie(r: &Reply) -> bool {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("_jetbridge=") && !c.starts_with("_jetbridge=;"))
}

/// The route still treats an API client with this browser's cookies as signed out.
async fn has_no_session(b: &mut Browser, w: &World) -> bool {
    let session = b
        .jar
        .get("app.localhost")
        .is_some_and(|j| j.contains_key("_jetbridge"));
    let accept = std::mem::replace(&mut b.accept, "application/json".into());
    let r = b.get(&w.url("app", "/")).await;
    b.accept = accept;
    !session && r.status == StatusCode::UNAUTHORIZED
}

/// A complete, successful login through the fake; returns the final response.
async fn login(b: &mut Browser, w: &World) -> Reply {
    let callback = to_callback(b, w).await;
    let (url, r) = follow(b, callback, "never", 5).await;
    assert_eq!(url, w.url("app", "/"), "lands back on the route");
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_provider_logs_alice_in_when_its_tokens_are_correct() {
    let w = world().await;
    let mut b = Browser::new();
    let r = login(&mut b, &w).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let echoed: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        echoed["headers"]["x-pomerium-claim-email"],
        "alice@example.com"
    );
    assert!(b.jar["app.localhost"].contains_key("_jetbridge"));
    assert_eq!(w.idp.token_requests("authorization_code"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn id_tokens_failing_validation_end_sign_in_with_a_4xx_and_no_session() {
    let w = world().await;
    // Each fault with words the page must show, so a login failing for
    // another reason (a broken fake, say) does not pass for this one.
    // HS256 keyed with the client secret is allowed by OIDC Core 3.1.3.7
    // step 8 only for an algorithm the client registered or the provider
    // advertises; this provider advertises ES256 only, so it is refused (the
    // proxy accepts asymmetric algorithms only).
    let table: &[(Fault, &str)] = &[
        (Fault::WrongNonce, "nonce mismatch"),
        (Fault::MissingNonce, "missing nonce"),
        (Fault::WrongIssuer, "invalid issuer"),
        (Fault::WrongAudience, "audiences: must contain `jetbridge`"),
        (Fault::ExtraAudienceNoAzp, "not a trusted audience"),
        (Fault::ExtraAudienceForeignAzp, "not a trusted audience"),
        (Fault::ExtraAudienceOwnAzp, "not a trusted audience"),
        (Fault::ForeignAzp, "authorized party (azp) `another-client`"),
        (Fault::AlgNone, "no signature found"),
        (Fault::Hs256ClientSecret, "algorithm `HS256` is not one of"),
        (Fault::UnpublishedKey, "signature was wrong"),
        (Fault::UnknownKid, "no matching key"),
        (Fault::Expired, "ID token expired at"),
        (Fault::IssuedInTheFuture, "in the future"),
        (
            Fault::UserinfoOtherSubject,
            "userinfo subject does not match",
        ),
    ];
    for (fault, reason) in table {
        w.idp.set_fault(*fault);
        let mut b = Browser::new();
        let callback = to_callback(&mut b, &w).await;
        let r = b.get(&callback).await;
        assert!(
            r.status.is_client_error(),
            "{fault:?}: {} {:?} {}",
            r.status,
            r.location(),
            r.body
        );
        assert!(r.body.contains("sign-in failed"), "{fault:?}: {}", r.body);
        assert!(
            r.body.to_lowercase().contains(&reason.to_lowercase()),
            "{fault:?}: page does not say {reason:?}: {}",
            r.body
        );
        assert!(!sets_session_cookie(&r), "{fault:?}: session cookie set");
        assert!(
            r.location().is_none(),
            "{fault:?}: redirected to {:?}",
            r.location()
        );
        assert!(
            has_no_session(&mut b, &w).await,
            "{fault:?}: the route has a session"
        );
    }
    // The same world still logs in with a correct token.
    w.idp.set_fault(Fault::None);
    let mut b = Browser::new();
    assert_eq!(login(&mut b, &w).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_while_the_idp_is_unreachable_is_a_readable_503() {
    // A port nobody listens on: connections are refused.
    let dead = refused_addr();
    let https = bind_https().await;
    let port = https.local_addr().unwrap().port();
    let (up, seen) = echo_upstream().await;
    let _proxy = start_proxy(https, &config(port, &format!("http://{dead}"), up)).await;
    let mut b = Browser::new();
    let r = b.get(&format!("https://app.localhost:{port}/")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let r = b.get(&r.location().unwrap()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_idp_unavailable_without_a_session(&r);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn callback_while_the_idp_is_unreachable_is_a_readable_503() {
    let w = world().await;
    let mut b = Browser::new();
    // The provider was discovered when sign-in started; it dies before the code exchange.
    let callback = to_callback(&mut b, &w).await;
    w.idp.stop().await;
    let r = b.get(&callback).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_idp_unavailable_without_a_session(&r);
    assert!(has_no_session(&mut b, &w).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_session_keeps_working_while_the_idp_is_down() {
    let w = world().await;
    let mut b = Browser::new();
    assert_eq!(login(&mut b, &w).await.status, StatusCode::OK);
    // Tokens live TOKEN_LIFETIME seconds, so the session is due for a refresh
    // on every request; while the IdP is up that refresh succeeds.
    let r = b.get(&w.url("app", "/again")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        w.idp.token_requests("refresh_token") >= 1,
        "the session was never due for a refresh"
    );

    w.idp.stop().await;
    for path in ["/down-1", "/down-2"] {
        let r = b.get(&w.url("app", path)).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{path}: {} {:?} {}",
            r.status,
            r.location(),
            r.body
        );
        let echoed: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            echoed["headers"]["x-pomerium-claim-email"],
            "alice@example.com"
        );
        assert!(
            b.jar
                .get("app.localhost")
                .is_some_and(|j| j.contains_key("_jetbridge")),
            "{path}: cookie cleared"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_idp_neither_stalls_existing_sessions_nor_holds_a_callback_past_its_timeout() {
    let w = world().await;
    let mut b = Browser::new();
    assert_eq!(login(&mut b, &w).await.status, StatusCode::OK);
    let mut late = Browser::new();
    let callback = to_callback(&mut late, &w).await;
    let refreshes = w.idp.token_requests("refresh_token");
    w.idp.go_silent();
    // The session is due for a refresh on every request. The first waits
    // for the silent provider at most REFRESH_WAIT (3 s), far short of the
    // IdP timeout (10 s); refreshes then pause, so the next requests wait
    // on nothing. All are served with the session they have.
    let started = Instant::now();
    let r = b.get(&w.url("app", "/hung-0")).await;
    let first = started.elapsed();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        first < Duration::from_secs(8),
        "the first request waited {first:?}"
    );
    let started = Instant::now();
    for i in 1..=5 {
        let r = b.get(&w.url("app", &format!("/hung-{i}"))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let echoed: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            echoed["headers"]["x-pomerium-claim-email"],
            "alice@example.com"
        );
    }
    let rest = started.elapsed();
    assert!(
        rest < Duration::from_secs(3),
        "five more requests took {rest:?}: each waited on the IdP"
    );
    assert_eq!(
        w.idp.token_requests("refresh_token"),
        refreshes,
        "a refresh was answered"
    );
    // A sign-in that reached its callback before the provider hung ends in
    // a readable 503 once the IdP timeout (10 s) passes, with no session.
    let started = Instant::now();
    let r = late.get(&callback).await;
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(
        took < Duration::from_secs(16),
        "the callback was held {took:?}"
    );
    assert!(!sets_session_cookie(&r));
    println!("hung IdP: first request {first:?}, five more {rest:?}, callback 503 after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_provider_tokens_failing_validation_are_refused_as_bearer_credentials() {
    let w = world().await;
    let mut api = Browser::new();
    api.accept = "application/json".into();
    let mut get = async |host: &str, token: &str| {
        let r = api
            .request_with(
                "GET",
                &w.url(host, "/bearer"),
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await;
        r.status
    };
    // The control: a correct ID token, and the provider's access token.
    assert_eq!(
        get("idt", &w.idp.mint_id_token(Fault::None)).await,
        StatusCode::OK
    );
    assert_eq!(get("api", "access-alice").await, StatusCode::OK);
    // Every way an ID token can be wrong, as a bearer credential.
    for fault in [
        Fault::WrongIssuer,
        Fault::WrongAudience,
        Fault::ExtraAudienceNoAzp,
        Fault::ExtraAudienceForeignAzp,
        Fault::ExtraAudienceOwnAzp,
        Fault::ForeignAzp,
        Fault::AlgNone,
        Fault::Hs256ClientSecret,
        Fault::UnpublishedKey,
        Fault::UnknownKid,
        Fault::Expired,
        Fault::IssuedInTheFuture,
    ] {
        let token = w.idp.mint_id_token(fault);
        assert_eq!(
            get("idt", &token).await,
            StatusCode::UNAUTHORIZED,
            "{fault:?}"
        );
    }
    // An access token the provider does not know.
    assert_eq!(get("api", "access-mallory").await, StatusCode::UNAUTHORIZED);
    // A provider that is down: a token it never checked is a 503, not a 401
    // (the client's token may be fine); one it checked recently is reused.
    w.idp.stop().await;
    assert_eq!(get("api", "access-alice").await, StatusCode::OK);
    assert_eq!(
        get("api", "access-someone-else").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

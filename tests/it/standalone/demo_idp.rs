//! The development OpenID Connect provider, driven over HTTP like a real
//! relying party would: discovery, the user picker, the code flow with PKCE,
//! token verification against the JWKS, userinfo, refresh and logout.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jetbridge::demo::idp::{DevClient, DevIdpConfig, DevIdpError, DevUser, default_users, serve};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const CLIENT_ID: &str = "demo-app";
const SECRET: &str = "demo secret:with+specials";
const REDIRECT: &str = "http://127.0.0.1:9/oauth2/callback";
const LOGOUT_RETURN: &str = "http://127.0.0.1:9/signed-out";

struct Idp {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
    shutdown: CancellationToken,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn location(&self) -> url::Url {
        let loc = self
            .headers
            .get(header::LOCATION)
            .expect("a Location header");
        url::Url::parse(loc.to_str().unwrap()).unwrap()
    }
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn query_param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

struct Pkce {
    verifier: String,
    challenge: String,
}

impl Pkce {
    fn new() -> Self {
        let verifier = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

fn client() -> DevClient {
    DevClient {
        id: CLIENT_ID.into(),
        secret: SECRET.into(),
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: vec![LOGOUT_RETURN.into()],
    }
}

async fn start_with(users: Vec<DevUser>) -> Idp {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cfg = DevIdpConfig {
        issuer: base.clone(),
        clients: vec![client()],
        users,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(listener, cfg, shutdown.clone()));
    Idp {
        base,
        http: Client::builder(TokioExecutor::new()).build_http(),
        shutdown,
    }
}

async fn start() -> Idp {
    start_with(Vec::new()).await
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form(&[("x", s)])[2..].to_string();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

impl Idp {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> Reply {
        let uri = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .http
            .request(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], String::new()).await
    }

    async fn post(&self, path: &str, auth: Option<&str>, pairs: &[(&str, &str)]) -> Reply {
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        self.send(Method::POST, path, &headers, form(pairs)).await
    }

    fn authorize_path(&self, pkce: &Pkce, nonce: &str, extra: &[(&str, &str)]) -> String {
        let mut pairs = vec![
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid email profile groups"),
            ("state", "st&te=1"),
            ("nonce", nonce),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        for (k, v) in extra {
            pairs.retain(|(pk, _)| pk != k);
            if !v.is_empty() {
                pairs.push((k, v));
            }
        }
        format!("/authorize?{}", form(&pairs))
    }

    /// Opens the picker page for `authorize_path` and returns its transaction id.
    async fn open_picker(&self, authorize_path: &str) -> String {
        let page = self.get(authorize_path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        transaction_id(&page.body)
    }

    /// Signs in as `user` and returns the authorization code.
    async fn sign_in(&self, user: &str, pkce: &Pkce, nonce: &str) -> String {
        let txn = self
            .open_picker(&self.authorize_path(pkce, nonce, &[]))
            .await;
        let picked = self
            .post("/authorize", None, &[("txn", &txn), ("user", user)])
            .await;
        assert_eq!(picked.status, StatusCode::SEE_OTHER, "{}", picked.body);
        query_param(&picked.location(), "code").expect("a code")
    }

    async fn redeem(&self, code: &str, verifier: &str) -> Reply {
        self.post(
            "/token",
            Some(&basic(CLIENT_ID, SECRET)),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    async fn userinfo(&self, token: &str) -> Reply {
        let auth = format!("Bearer {token}");
        self.send(
            Method::GET,
            "/userinfo",
            &[("authorization", &auth)],
            String::new(),
        )
        .await
    }
}

fn transaction_id(page: &str) -> String {
    let marker = "name=\"txn\" value=\"";
    let start = page.find(marker).expect("a transaction id in the page") + marker.len();
    let len = page[start..].find('"').unwrap();
    page[start..start + len].to_string()
}

#[tokio::test]
async fn code_flow_with_pkce_issues_an_id_token_that_verifies_against_the_jwks() {
    let idp = start().await;

    let disco = idp.get("/.well-known/openid-configuration").await.json();
    assert_eq!(disco["issuer"], idp.base.as_str());
    for (field, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks"),
        ("end_session_endpoint", "/logout"),
    ] {
        assert_eq!(disco[field], format!("{}{path}", idp.base), "{field}");
    }
    assert_eq!(
        disco["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        disco["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(
        disco["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        disco["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(
        disco["grant_types_supported"],
        serde_json::json!(["authorization_code", "refresh_token"])
    );

    let pkce = Pkce::new();
    let page = idp.get(&idp.authorize_path(&pkce, "n-0S6", &[])).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Development identity provider"));
    for u in default_users() {
        assert!(
            page.body.contains(&format!("value=\"{}\"", u.sub)),
            "{}",
            u.sub
        );
    }
    let txn = transaction_id(&page.body);
    let picked = idp
        .post("/authorize", None, &[("txn", &txn), ("user", "bob")])
        .await;
    assert_eq!(picked.status, StatusCode::SEE_OTHER);
    let back = picked.location();
    assert_eq!(&back.as_str()[..REDIRECT.len()], REDIRECT);
    assert_eq!(query_param(&back, "state").as_deref(), Some("st&te=1"));
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(idp.base.as_str())
    );
    let code = query_param(&back, "code").unwrap();

    let reply = idp.redeem(&code, &pkce.verifier).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let tokens = reply.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert!(
        tokens["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let id_token = tokens["id_token"].as_str().unwrap();

    // Verify with only what a relying party has: the JWKS URL from discovery.
    let jwks = idp.get(disco["jwks_uri"].as_str().unwrap()).await.json();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let kid = header.kid.expect("a kid header");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the signing key in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[&idp.base]);
    validation.set_audience(&[CLIENT_ID]);
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["azp"], CLIENT_ID);
    assert_eq!(claims["nonce"], "n-0S6");
    assert_eq!(claims["email"], "bob@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["groups"], serde_json::json!(["users", "admins"]));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );

    // A different audience does not verify.
    let mut other = validation.clone();
    other.set_audience(&["someone-else"]);
    assert!(jsonwebtoken::decode::<Value>(id_token, &key, &other).is_err());

    let info = idp.userinfo(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(info.status, StatusCode::OK);
    let info = info.json();
    assert_eq!(info["sub"], "bob");
    assert_eq!(info["email"], "bob@example.com");
    assert_eq!(info["name"], "Bob Example");
    assert_eq!(info["groups"], serde_json::json!(["users", "admins"]));
}

/// The relying-party library the proxy uses, unmodified, against the provider.
#[tokio::test]
async fn openidconnect_crate_completes_the_flow_unchanged() {
    use openidconnect::core::{
        CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
        CoreUserInfoClaims,
    };
    use openidconnect::{
        AccessTokenHash, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
        IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope,
        TokenResponse,
    };

    let idp = start().await;
    let http_client = idp.http.clone();
    let http = move |req: openidconnect::HttpRequest| {
        let client = http_client.clone();
        async move {
            let (parts, body) = req.into_parts();
            let resp = client
                .request(Request::from_parts(parts, Full::new(Bytes::from(body))))
                .await
                .map_err(std::io::Error::other)?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(http::Response::from_parts(parts, body.to_bytes().to_vec()))
        }
    };

    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(idp.base.clone()).unwrap(), &http)
            .await
            .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(CLIENT_ID.into()),
        Some(ClientSecret::new(SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("groups".into()))
        .set_pkce_challenge(challenge)
        .url();

    let txn = idp.open_picker(auth_url.as_str()).await;
    let picked = idp
        .post("/authorize", None, &[("txn", &txn), ("user", "carol")])
        .await;
    let back = picked.location();
    assert_eq!(
        query_param(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    let code = query_param(&back, "code").unwrap();

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let id_verifier = client
        .id_token_verifier()
        .set_allowed_algs([CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let claims = id_token
        .claims(&id_verifier, &nonce)
        .expect("a valid ID token");
    assert_eq!(claims.subject().as_str(), "carol");
    assert_eq!(
        claims.email().map(|e| e.as_str()),
        Some("carol@example.com")
    );
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&id_verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));

    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), "carol");

    let refreshed = client
        .exchange_refresh_token(tokens.refresh_token().expect("a refresh token"))
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    let claims = refreshed
        .id_token()
        .expect("an ID token on refresh")
        .claims(&id_verifier, &nonce)
        .expect("a valid refreshed ID token");
    assert_eq!(claims.subject().as_str(), "carol");
}

#[tokio::test]
async fn wrong_code_verifier_is_rejected() {
    let idp = start().await;
    let pkce = Pkce::new();
    let code = idp.sign_in("alice", &pkce, "n").await;
    let other = Pkce::new();
    let reply = idp.redeem(&code, &other.verifier).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "invalid_grant");
    // Missing verifier too.
    let code = idp.sign_in("alice", &pkce, "n").await;
    let reply = idp
        .post(
            "/token",
            Some(&basic(CLIENT_ID, SECRET)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_eq!(reply.error(), "invalid_grant");
}

#[tokio::test]
async fn reused_code_is_rejected_and_revokes_the_tokens_it_yielded() {
    let idp = start().await;
    let pkce = Pkce::new();
    let code = idp.sign_in("alice", &pkce, "n").await;
    let first = idp.redeem(&code, &pkce.verifier).await;
    assert_eq!(first.status, StatusCode::OK);
    let tokens = first.json();
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(idp.userinfo(access).await.status, StatusCode::OK);

    let again = idp.redeem(&code, &pkce.verifier).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.error(), "invalid_grant");

    assert_eq!(idp.userinfo(access).await.status, StatusCode::UNAUTHORIZED);
    let refresh = idp
        .post(
            "/token",
            Some(&basic(CLIENT_ID, SECRET)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(refresh.error(), "invalid_grant");
}

#[tokio::test]
async fn token_request_with_a_different_redirect_uri_is_rejected() {
    let idp = start().await;
    let pkce = Pkce::new();
    let code = idp.sign_in("alice", &pkce, "n").await;
    let reply = idp
        .post(
            "/token",
            Some(&basic(CLIENT_ID, SECRET)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:9/other"),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "invalid_grant");
}

#[tokio::test]
async fn wrong_or_unknown_client_credentials_are_rejected() {
    let idp = start().await;
    let pkce = Pkce::new();
    let code = idp.sign_in("alice", &pkce, "n").await;
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    let with_post = |id: &'static str, secret: &'static str| {
        let mut g = grant.to_vec();
        g.push(("client_id", id));
        g.push(("client_secret", secret));
        g
    };
    let cases = [
        (
            "wrong secret, basic",
            Some(basic(CLIENT_ID, "nope")),
            grant.to_vec(),
        ),
        (
            "unknown client, basic",
            Some(basic("intruder", SECRET)),
            grant.to_vec(),
        ),
        ("wrong secret, post", None, with_post(CLIENT_ID, "nope")),
        ("unknown client, post", None, with_post("intruder", SECRET)),
        ("no credentials", None, grant.to_vec()),
    ];
    for (why, auth, pairs) in cases {
        let reply = idp.post("/token", auth.as_deref(), &pairs).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{why}");
        assert_eq!(reply.error(), "invalid_client", "{why}");
        assert!(
            reply.headers.contains_key(header::WWW_AUTHENTICATE),
            "{why}"
        );
    }
    // The code was not consumed by those attempts; the real client can redeem it
    // with client_secret_post.
    let reply = idp
        .post("/token", None, &with_post(CLIENT_ID, SECRET))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn invalid_client_or_redirect_uri_gets_an_error_page_never_a_redirect() {
    let idp = start().await;
    let pkce = Pkce::new();
    let cases = [
        ("unknown client", ("client_id", "intruder")),
        ("missing client", ("client_id", "")),
        (
            "unregistered redirect",
            ("redirect_uri", "http://evil.example/cb"),
        ),
        (
            "redirect prefix only",
            ("redirect_uri", "http://127.0.0.1:9/oauth2/callback/x"),
        ),
        ("missing redirect", ("redirect_uri", "")),
    ];
    for (why, extra) in cases {
        let reply = idp.get(&idp.authorize_path(&pkce, "n", &[extra])).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{why}");
        assert!(!reply.headers.contains_key(header::LOCATION), "{why}");
        assert!(!reply.body.contains("name=\"txn\""), "{why}");
    }
}

#[tokio::test]
async fn authorize_errors_after_client_checks_go_back_to_the_client() {
    let idp = start().await;
    let pkce = Pkce::new();
    let cases = [
        (
            "no PKCE",
            vec![("code_challenge", ""), ("code_challenge_method", "")],
            "invalid_request",
        ),
        (
            "plain PKCE",
            vec![("code_challenge_method", "plain")],
            "invalid_request",
        ),
        (
            "implicit flow",
            vec![("response_type", "id_token")],
            "unsupported_response_type",
        ),
        ("no openid scope", vec![("scope", "email")], "invalid_scope"),
        ("prompt=none", vec![("prompt", "none")], "login_required"),
    ];
    for (why, extra, error) in cases {
        let reply = idp.get(&idp.authorize_path(&pkce, "n", &extra)).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{why}");
        let back = reply.location();
        assert!(back.as_str().starts_with(REDIRECT), "{why}");
        assert_eq!(query_param(&back, "error").as_deref(), Some(error), "{why}");
        assert_eq!(
            query_param(&back, "state").as_deref(),
            Some("st&te=1"),
            "{why}"
        );
    }
}

#[tokio::test]
async fn picker_transaction_is_one_time_and_hidden_fields_cannot_change_the_client() {
    let idp = start().await;
    let pkce = Pkce::new();
    let txn = idp.open_picker(&idp.authorize_path(&pkce, "n", &[])).await;
    // Extra form fields are ignored: the redirect comes from the server-side request.
    let first = idp
        .post(
            "/authorize",
            None,
            &[
                ("txn", &txn),
                ("user", "alice"),
                ("redirect_uri", "http://evil.example/"),
            ],
        )
        .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert!(first.location().as_str().starts_with(REDIRECT));

    let second = idp
        .post("/authorize", None, &[("txn", &txn), ("user", "alice")])
        .await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert!(!second.headers.contains_key(header::LOCATION));

    let forged = idp
        .post("/authorize", None, &[("txn", "made-up"), ("user", "alice")])
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn cancelling_on_the_picker_returns_access_denied() {
    let idp = start().await;
    let pkce = Pkce::new();
    let txn = idp.open_picker(&idp.authorize_path(&pkce, "n", &[])).await;
    let reply = idp
        .post("/authorize", None, &[("txn", &txn), ("cancel", "1")])
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        query_param(&reply.location(), "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(query_param(&reply.location(), "code"), None);
}

#[tokio::test]
async fn picker_page_escapes_user_data() {
    let idp = start_with(vec![DevUser {
        sub: "x\"><script>alert(1)</script>".into(),
        email: "<b>@example.com".into(),
        name: "<img src=x onerror=alert(1)>".into(),
        groups: vec!["<g>".into()],
    }])
    .await;
    let pkce = Pkce::new();
    let page = idp.get(&idp.authorize_path(&pkce, "n", &[])).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script>"));
    assert!(!page.body.contains("<img"));
    assert!(!page.body.contains("<b>"));
    assert!(page.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(page.headers.contains_key(header::CONTENT_SECURITY_POLICY));
}

#[tokio::test]
async fn refresh_token_grant_rotates_tokens() {
    let idp = start().await;
    let pkce = Pkce::new();
    let code = idp.sign_in("bob", &pkce, "n").await;
    let tokens = idp.redeem(&code, &pkce.verifier).await.json();
    let old_refresh = tokens["refresh_token"].as_str().unwrap();
    let idp = &idp;
    let refresh = |rt: String| async move {
        idp.post(
            "/token",
            Some(&basic(CLIENT_ID, SECRET)),
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await
    };
    let fresh = refresh(old_refresh.to_string()).await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
    let fresh = fresh.json();
    assert_ne!(fresh["access_token"], tokens["access_token"]);
    assert_ne!(fresh["refresh_token"], tokens["refresh_token"]);
    assert!(fresh["id_token"].as_str().is_some());
    assert_eq!(
        idp.userinfo(fresh["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );
    // The old refresh token was rotated away.
    assert_eq!(
        refresh(old_refresh.to_string()).await.error(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn userinfo_with_a_bad_token_is_unauthorized() {
    let idp = start().await;
    let bad = idp.userinfo("not-a-token").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let challenge = bad.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let missing = idp.get("/userinfo").await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_redirects_only_to_a_registered_post_logout_uri() {
    let idp = start().await;
    let registered = idp
        .get(&format!(
            "/logout?{}",
            form(&[
                ("client_id", CLIENT_ID),
                ("post_logout_redirect_uri", LOGOUT_RETURN),
                ("state", "bye")
            ])
        ))
        .await;
    assert_eq!(registered.status, StatusCode::SEE_OTHER);
    let back = registered.location();
    assert!(back.as_str().starts_with(LOGOUT_RETURN));
    assert_eq!(query_param(&back, "state").as_deref(), Some("bye"));

    for (why, pairs) in [
        (
            "unregistered URI",
            vec![
                ("client_id", CLIENT_ID),
                ("post_logout_redirect_uri", "http://evil.example/"),
            ],
        ),
        (
            "no client to check against",
            vec![("post_logout_redirect_uri", LOGOUT_RETURN)],
        ),
        (
            "unknown client",
            vec![
                ("client_id", "intruder"),
                ("post_logout_redirect_uri", LOGOUT_RETURN),
            ],
        ),
    ] {
        let reply = idp.get(&format!("/logout?{}", form(&pairs))).await;
        assert_eq!(reply.status, StatusCode::OK, "{why}");
        assert!(!reply.headers.contains_key(header::LOCATION), "{why}");
        assert!(reply.body.contains("Signed out"), "{why}");
    }
}

#[tokio::test]
async fn logout_with_an_id_token_hint_revokes_that_users_tokens() {
    let idp = start().await;
    let pkce = Pkce::new();
    let code = idp.sign_in("alice", &pkce, "n").await;
    let tokens = idp.redeem(&code, &pkce.verifier).await.json();
    let reply = idp
        .get(&format!(
            "/logout?{}",
            form(&[
                ("id_token_hint", tokens["id_token"].as_str().unwrap()),
                ("post_logout_redirect_uri", LOGOUT_RETURN),
            ])
        ))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        idp.userinfo(tokens["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn non_loopback_listener_is_refused() {
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let cfg = DevIdpConfig {
        issuer: "http://127.0.0.1:5556".into(),
        clients: vec![client()],
        users: Vec::new(),
    };
    // Refusal is immediate; a provider that started serving would never return.
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        serve(listener, cfg, CancellationToken::new()),
    )
    .await
    .expect("serve returns at once for a non-loopback listener");
    assert!(
        matches!(result, Err(DevIdpError::NotLoopback(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn issuer_with_a_path_serves_endpoints_under_it() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/idp", listener.local_addr().unwrap());
    let cfg = DevIdpConfig {
        issuer: base.clone(),
        clients: vec![client()],
        users: Vec::new(),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(listener, cfg, shutdown.clone()));
    let idp = Idp {
        base: base.clone(),
        http: Client::builder(TokioExecutor::new()).build_http(),
        shutdown,
    };
    let disco = idp.get("/.well-known/openid-configuration").await.json();
    assert_eq!(disco["issuer"], base.as_str());
    assert_eq!(disco["token_endpoint"], format!("{base}/token"));
    let jwks = idp.get("/jwks").await;
    assert_eq!(jwks.status, StatusCode::OK);
}

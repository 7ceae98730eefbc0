//! A development OpenID Connect provider for `jetbridge demo`.
//!
//! It speaks real OpenID Connect (discovery, authorization code flow with
//! PKCE S256, ES256 ID tokens, userinfo, JWKS, refresh tokens, RP-initiated
//! logout), so the proxy's ordinary OIDC client works against it unchanged.
//! Instead of a password prompt it shows a page with one button per demo
//! user: anyone who can reach it can sign in as anyone. It therefore serves
//! only on a loopback listener and exists for demonstrations only.
//!
//! All state (pending sign-ins, codes, tokens) lives in memory behind one
//! mutex; this is not a hot path. The signing key is generated at start, so
//! tokens do not survive a restart.

use crate::identity::jwks::{Document, jwks_document};
use crate::identity::{KeySet, random_bytes};
use crate::proxy::body::{Body, empty, full, own_response};
use crate::proxy::pages::html_escape;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Lifetime of ID and access tokens, in seconds.
pub const TOKEN_TTL_SECS: u64 = 3600;
/// Lifetime of refresh tokens, in seconds.
pub const REFRESH_TTL_SECS: u64 = 8 * 3600;
/// Lifetime of a pending sign-in (the user-picker page), in seconds.
pub const TRANSACTION_TTL_SECS: u64 = 120;
/// Lifetime of an authorization code, in seconds.
pub const CODE_TTL_SECS: u64 = 60;

/// Upper bound on pending sign-ins, so repeated page loads cannot grow memory without limit.
const MAX_PENDING: usize = 1024;
/// Upper bound on form bodies.
const MAX_FORM_BYTES: usize = 64 * 1024;

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const AUTHORIZE_PATH: &str = "/authorize";
const TOKEN_PATH: &str = "/token";
const USERINFO_PATH: &str = "/userinfo";
const JWKS_PATH: &str = "/jwks";
const LOGOUT_PATH: &str = "/logout";

const SCOPES: &[&str] = &["openid", "email", "profile", "groups", "offline_access"];

/// Errors from starting the development provider.
#[derive(Debug, thiserror::Error)]
pub enum DevIdpError {
    #[error(
        "the development identity provider refuses to listen on {0}: it signs in anyone, so it serves loopback only"
    )]
    NotLoopback(SocketAddr),
    #[error("development identity provider configuration: {0}")]
    Config(String),
    #[error("development identity provider: {0}")]
    Io(#[from] std::io::Error),
}

type Result<T, E = DevIdpError> = std::result::Result<T, E>;

/// Configuration of the development provider.
#[derive(Clone, Debug)]
pub struct DevIdpConfig {
    /// The issuer URL, exactly as clients will be configured with it, e.g.
    /// `http://127.0.0.1:5556`. Endpoints are served under its path.
    pub issuer: String,
    /// Registered (confidential) clients.
    pub clients: Vec<DevClient>,
    /// The users offered on the sign-in page; [`default_users`] if empty.
    pub users: Vec<DevUser>,
}

/// A registered client. Redirect URIs are compared exactly.
#[derive(Clone)]
pub struct DevClient {
    pub id: String,
    pub secret: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
}

impl fmt::Debug for DevClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevClient")
            .field("id", &self.id)
            .field("redirect_uris", &self.redirect_uris)
            .field("post_logout_redirect_uris", &self.post_logout_redirect_uris)
            .finish_non_exhaustive()
    }
}

/// A demo user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevUser {
    pub sub: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
}

/// Three users with different groups, enough to show group-based policy.
pub fn default_users() -> Vec<DevUser> {
    let user = |sub: &str, name: &str, groups: &[&str]| DevUser {
        sub: sub.to_string(),
        email: format!("{sub}@example.com"),
        name: name.to_string(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    vec![
        user("alice", "Alice Example", &["users"]),
        user("bob", "Bob Example", &["users", "admins"]),
        user("carol", "Carol Example", &["contractors"]),
    ]
}

/// Serves the provider on `listener` (plain HTTP) until `shutdown` is cancelled.
///
/// Fails if the listener is not bound to a loopback address or the
/// configuration is invalid.
pub async fn serve(
    listener: TcpListener,
    cfg: DevIdpConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().to_canonical().is_loopback() {
        return Err(DevIdpError::NotLoopback(addr));
    }
    let provider = Arc::new(Provider::new(cfg)?);
    tracing::warn!(
        issuer = %provider.issuer,
        %addr,
        "DEVELOPMENT IDENTITY PROVIDER RUNNING: anyone who reaches it can sign in as any demo user \
         without a password. For demos only; never use it to protect anything real"
    );
    crate::proxy::server::serve_plain(
        listener,
        move |req, _remote| {
            let provider = provider.clone();
            async move { provider.handle(req).await }
        },
        shutdown,
    )
    .await;
    Ok(())
}

/// A sign-in waiting for the user to pick a demo user.
struct Pending {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scope: String,
    challenge: String,
    expires: u64,
}

/// An issued authorization code. Kept after redemption so a replay is
/// recognised and the tokens issued for it can be revoked.
struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    grant: Grant,
    expires: u64,
    redeemed: bool,
}

/// What a token stands for. Tokens carry the code they descend from, so a
/// replayed code revokes the whole lineage (refreshes included).
#[derive(Clone)]
struct Grant {
    client_id: String,
    sub: String,
    scope: String,
    nonce: Option<String>,
    auth_time: u64,
    code: String,
}

struct TokenEntry {
    grant: Grant,
    expires: u64,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, Pending>,
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, TokenEntry>,
    refresh: HashMap<String, TokenEntry>,
}

impl State {
    fn prune(&mut self, now: u64) {
        self.pending.retain(|_, p| p.expires > now);
        self.codes.retain(|_, c| {
            let keep_until = if c.redeemed {
                c.expires + REFRESH_TTL_SECS
            } else {
                c.expires
            };
            keep_until > now
        });
        self.access.retain(|_, t| t.expires > now);
        self.refresh.retain(|_, t| t.expires > now);
    }

    fn revoke(&mut self, keep: impl Fn(&Grant) -> bool) {
        self.access.retain(|_, t| keep(&t.grant));
        self.refresh.retain(|_, t| keep(&t.grant));
    }
}

struct Provider {
    issuer: String,
    /// The issuer URL's path without a trailing slash; every endpoint lives under it.
    base_path: String,
    clients: Vec<DevClient>,
    users: Vec<DevUser>,
    keys: KeySet,
    jwks: Document,
    discovery: Bytes,
    state: Mutex<State>,
}

impl Provider {
    fn new(cfg: DevIdpConfig) -> Result<Self> {
        let issuer_url = url::Url::parse(&cfg.issuer)
            .map_err(|e| DevIdpError::Config(format!("issuer {:?}: {e}", cfg.issuer)))?;
        if !matches!(issuer_url.scheme(), "http" | "https")
            || issuer_url.query().is_some()
            || issuer_url.fragment().is_some()
        {
            return Err(DevIdpError::Config(format!(
                "issuer {:?} must be an http(s) URL without query or fragment",
                cfg.issuer
            )));
        }
        if cfg.clients.is_empty() {
            return Err(DevIdpError::Config("no clients registered".into()));
        }
        for (i, c) in cfg.clients.iter().enumerate() {
            if c.id.is_empty() || c.secret.is_empty() {
                return Err(DevIdpError::Config(format!(
                    "client {}: id and secret must not be empty",
                    i + 1
                )));
            }
            if cfg.clients[..i].iter().any(|o| o.id == c.id) {
                return Err(DevIdpError::Config(format!(
                    "duplicate client id {:?}",
                    c.id
                )));
            }
            if c.redirect_uris.is_empty() {
                return Err(DevIdpError::Config(format!(
                    "client {:?}: no redirect_uris",
                    c.id
                )));
            }
            for uri in c.redirect_uris.iter().chain(&c.post_logout_redirect_uris) {
                match url::Url::parse(uri) {
                    Ok(u) if u.fragment().is_none() && !u.cannot_be_a_base() => {}
                    _ => {
                        return Err(DevIdpError::Config(format!(
                            "client {:?}: {uri:?} is not an absolute URL without fragment",
                            c.id
                        )));
                    }
                }
            }
        }
        let users = if cfg.users.is_empty() {
            default_users()
        } else {
            cfg.users
        };
        for (i, u) in users.iter().enumerate() {
            if u.sub.is_empty() {
                return Err(DevIdpError::Config(format!("user {}: empty sub", i + 1)));
            }
            if users[..i].iter().any(|o| o.sub == u.sub) {
                return Err(DevIdpError::Config(format!(
                    "duplicate user sub {:?}",
                    u.sub
                )));
            }
        }
        let base_url = cfg.issuer.trim_end_matches('/').to_string();
        let base_path = issuer_url.path().trim_end_matches('/').to_string();
        let keys = KeySet::generate();
        let jwks = jwks_document(keys.keys());
        let discovery = discovery_json(&cfg.issuer, &base_url);
        Ok(Provider {
            issuer: cfg.issuer,
            base_path,
            clients: cfg.clients,
            users,
            keys,
            jwks,
            discovery,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves maps that are still
        // internally consistent (each update is a single insert/remove).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client(&self, id: &str) -> Option<&DevClient> {
        self.clients.iter().find(|c| c.id == id)
    }

    fn user(&self, sub: &str) -> Option<&DevUser> {
        self.users.iter().find(|u| u.sub == sub)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let now = unix_now();
        let (parts, body) = req.into_parts();
        let Some(path) = parts.uri.path().strip_prefix(self.base_path.as_str()) else {
            return not_found();
        };
        let query = parts.uri.query().unwrap_or("");
        let headers = &parts.headers;
        match (&parts.method, path) {
            (&Method::GET | &Method::HEAD, DISCOVERY_PATH) => {
                json_bytes(StatusCode::OK, self.discovery.clone(), "max-age=60")
            }
            (&Method::GET | &Method::HEAD, JWKS_PATH) => {
                let mut r = json_bytes(StatusCode::OK, self.jwks.body.clone(), "max-age=60");
                if let Ok(etag) = HeaderValue::from_str(&self.jwks.etag) {
                    r.headers_mut().insert(header::ETAG, etag);
                }
                r
            }
            (&Method::GET, AUTHORIZE_PATH) => match parse_params(query) {
                Ok(params) => self.authorize_start(&params, now),
                Err(e) => error_page(StatusCode::BAD_REQUEST, &e),
            },
            (&Method::POST, AUTHORIZE_PATH) => match read_form(headers, body)
                .await
                .and_then(|b| parse_params(&b))
            {
                Ok(params) => self.authorize_finish(&params, now),
                Err(e) => error_page(StatusCode::BAD_REQUEST, &e),
            },
            (&Method::POST, TOKEN_PATH) => {
                match read_form(headers, body)
                    .await
                    .and_then(|b| parse_params(&b))
                {
                    Ok(params) => match self.token(headers, &params, now) {
                        Ok(body) => json_value(StatusCode::OK, &body),
                        Err(e) => e.into_response(),
                    },
                    Err(e) => OAuthError::invalid_request(e).into_response(),
                }
            }
            (&Method::GET | &Method::POST, USERINFO_PATH) => self.userinfo(headers, now),
            (&Method::GET, LOGOUT_PATH) => match parse_params(query) {
                Ok(params) => self.logout(&params, now),
                Err(e) => error_page(StatusCode::BAD_REQUEST, &e),
            },
            (&Method::POST, LOGOUT_PATH) => match read_form(headers, body)
                .await
                .and_then(|b| parse_params(&b))
            {
                Ok(params) => self.logout(&params, now),
                Err(e) => error_page(StatusCode::BAD_REQUEST, &e),
            },
            (
                _,
                DISCOVERY_PATH | JWKS_PATH | AUTHORIZE_PATH | TOKEN_PATH | USERINFO_PATH
                | LOGOUT_PATH,
            ) => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
                r
            }
            _ => not_found(),
        }
    }

    /// `GET /authorize`: validate the request and show the user picker.
    fn authorize_start(&self, params: &HashMap<String, String>, now: u64) -> Response<Body> {
        let get = |k: &str| params.get(k).map(String::as_str);
        let (client, redirect_uri) = match self.authorize_client(params) {
            Ok(found) => found,
            Err(message) => return error_page(StatusCode::BAD_REQUEST, &message),
        };
        // From here on errors go back to the (verified) client, per RFC 6749 §4.1.2.1.
        let state = get("state");
        let challenge = match authorize_challenge(params) {
            Ok(challenge) => challenge,
            Err((code, desc)) => {
                return self.redirect_with(
                    redirect_uri,
                    &[("error", code), ("error_description", desc)],
                    state,
                );
            }
        };
        let pending = Pending {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.to_string(),
            state: state.map(str::to_string),
            nonce: get("nonce").map(str::to_string),
            scope: get("scope").unwrap_or("").to_string(),
            challenge: challenge.to_string(),
            expires: now + TRANSACTION_TTL_SECS,
        };
        let Some(txn) = self.begin_sign_in(pending, now) else {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many sign-ins in progress; try again in two minutes.",
            );
        };
        html(
            StatusCode::OK,
            &self.picker_page(&client.id, redirect_uri, &txn),
        )
    }

    /// The request's registered client and redirect URI, or the message of
    /// the error page shown to the user (an unverified redirect URI gets no
    /// redirect).
    fn authorize_client<'a>(
        &'a self,
        params: &'a HashMap<String, String>,
    ) -> Result<(&'a DevClient, &'a str), String> {
        let get = |k: &str| params.get(k).map(String::as_str);
        let Some(client) = get("client_id").and_then(|id| self.client(id)) else {
            return Err("Unknown or missing client_id. Check the client registered with the development identity provider.".to_string());
        };
        let Some(redirect_uri) =
            get("redirect_uri").filter(|r| client.redirect_uris.iter().any(|u| u == r))
        else {
            return Err(format!(
                "The redirect_uri is missing or not registered for client {}. Registered: {}.",
                client.id,
                client.redirect_uris.join(", ")
            ));
        };
        Ok((client, redirect_uri))
    }

    /// Records a sign-in in progress under a fresh transaction id; `None`
    /// when too many are pending.
    fn begin_sign_in(&self, pending: Pending, now: u64) -> Option<String> {
        let txn = random_token();
        let mut st = self.state();
        st.prune(now);
        if st.pending.len() >= MAX_PENDING {
            return None;
        }
        st.pending.insert(txn.clone(), pending);
        Some(txn)
    }

    fn picker_page(&self, client_id: &str, redirect_uri: &str, txn: &str) -> String {
        let action = format!("{}{AUTHORIZE_PATH}", self.base_path);
        let mut buttons = String::new();
        for u in &self.users {
            let groups = if u.groups.is_empty() {
                "no groups".to_string()
            } else {
                u.groups.join(", ")
            };
            buttons.push_str(&format!(
                "<li><button type=\"submit\" name=\"user\" value=\"{sub}\"><strong>{name}</strong><br>{email}<br><small>groups: {groups}</small></button></li>\n",
                sub = html_escape(&u.sub),
                name = html_escape(&u.name),
                email = html_escape(&u.email),
                groups = html_escape(&groups),
            ));
        }
        let body = format!(
            "<div class=\"banner\" role=\"alert\"><strong>Development identity provider.</strong> \
             Not for real use: anyone who can open this page can sign in as any of these users, \
             without a password.</div>\n\
             <h1>Pick a demo user</h1>\n\
             <p>Signing in to <code>{client}</code>, returning to <code>{redirect}</code>.</p>\n\
             <form method=\"post\" action=\"{action}\">\n\
             <input type=\"hidden\" name=\"txn\" value=\"{txn}\">\n\
             <ul>\n{buttons}</ul>\n\
             <p><button type=\"submit\" name=\"cancel\" value=\"1\" class=\"cancel\">Cancel</button></p>\n\
             </form>\n\
             <p><small>This page expires in two minutes.</small></p>",
            client = html_escape(client_id),
            redirect = html_escape(redirect_uri),
            action = html_escape(&action),
            txn = html_escape(txn),
        );
        page("Pick a demo user", &body)
    }

    /// `POST /authorize`: the user picked someone (or cancelled).
    fn authorize_finish(&self, params: &HashMap<String, String>, now: u64) -> Response<Body> {
        let pending = {
            let mut st = self.state();
            st.prune(now);
            params.get("txn").and_then(|t| st.pending.remove(t))
        };
        let Some(p) = pending else {
            return error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in request is unknown, already used or expired. Go back to the application and sign in again.",
            );
        };
        let state = p.state.as_deref();
        if params.contains_key("cancel") {
            return self.redirect_with(
                &p.redirect_uri,
                &[
                    ("error", "access_denied"),
                    ("error_description", "the user cancelled the sign-in"),
                ],
                state,
            );
        }
        let Some(user) = params.get("user").and_then(|s| self.user(s)) else {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Unknown demo user. Go back to the application and sign in again.",
            );
        };
        let code = random_token();
        let grant = Grant {
            client_id: p.client_id.clone(),
            sub: user.sub.clone(),
            scope: p.scope,
            nonce: p.nonce,
            auth_time: now,
            code: code.clone(),
        };
        self.state().codes.insert(
            code.clone(),
            CodeGrant {
                client_id: p.client_id,
                redirect_uri: p.redirect_uri.clone(),
                challenge: p.challenge,
                grant,
                expires: now + CODE_TTL_SECS,
                redeemed: false,
            },
        );
        tracing::info!(user = %user.sub, "development identity provider: issued an authorization code");
        self.redirect_with(&p.redirect_uri, &[("code", &code)], state)
    }

    /// 303 to a registered `uri` with `params`, `state` (if any) and `iss` (RFC 9207).
    fn redirect_with(
        &self,
        uri: &str,
        params: &[(&str, &str)],
        state: Option<&str>,
    ) -> Response<Body> {
        let Ok(mut url) = url::Url::parse(uri) else {
            return error_page(
                StatusCode::BAD_REQUEST,
                "The redirect_uri is not a valid URL.",
            );
        };
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(s) = state {
                q.append_pair("state", s);
            }
            q.append_pair("iss", &self.issuer);
        }
        see_other(url.as_str())
    }

    /// `POST /token`.
    fn token(
        &self,
        headers: &HeaderMap,
        params: &HashMap<String, String>,
        now: u64,
    ) -> Result<serde_json::Value, OAuthError> {
        let client = self.authenticate(headers, params)?;
        match params.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.redeem_code(client, params, now),
            Some("refresh_token") => self.refresh(client, params, now),
            Some(_) => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "supported grant types: authorization_code, refresh_token",
            )),
            None => Err(OAuthError::invalid_request("grant_type is required")),
        }
    }

    /// Client authentication: `client_secret_basic` or `client_secret_post`.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        params: &HashMap<String, String>,
    ) -> Result<&DevClient, OAuthError> {
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, creds)| creds.trim());
        let (id, secret) = match (basic, params.get("client_secret")) {
            (Some(_), Some(_)) => {
                return Err(OAuthError::invalid_request(
                    "use exactly one client authentication method",
                ));
            }
            (Some(creds), None) => {
                let decoded = STANDARD
                    .decode(creds)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
                let (id, secret) = decoded
                    .split_once(':')
                    .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
                // RFC 6749 §2.3.1: both parts are form-urlencoded before encoding.
                let (id, secret) = (form_decode(id), form_decode(secret));
                if params.get("client_id").is_some_and(|c| *c != id) {
                    return Err(OAuthError::invalid_client(
                        "client_id does not match the credentials",
                    ));
                }
                (id, secret)
            }
            (None, Some(secret)) => {
                let id = params.get("client_id").ok_or_else(|| {
                    OAuthError::invalid_client("client_id is required with client_secret")
                })?;
                (id.clone(), secret.clone())
            }
            (None, None) => {
                return Err(OAuthError::invalid_client(
                    "client authentication is required",
                ));
            }
        };
        match self.client(&id) {
            Some(c) if constant_time_eq(c.secret.as_bytes(), secret.as_bytes()) => Ok(c),
            _ => Err(OAuthError::invalid_client("unknown client or wrong secret")),
        }
    }

    fn redeem_code(
        &self,
        client: &DevClient,
        params: &HashMap<String, String>,
        now: u64,
    ) -> Result<serde_json::Value, OAuthError> {
        let code = params
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        let mut st = self.state();
        st.prune(now);
        let Some(entry) = st.codes.get_mut(code).filter(|c| c.client_id == client.id) else {
            return Err(OAuthError::invalid_grant(
                "unknown or expired authorization code",
            ));
        };
        if entry.redeemed {
            // RFC 6749 §4.1.2: a replayed code revokes what it was exchanged for.
            st.revoke(|g| g.code != *code);
            tracing::warn!(client = %client.id, "development identity provider: authorization code replayed; its tokens are revoked");
            return Err(OAuthError::invalid_grant("authorization code already used"));
        }
        // Any redemption attempt by the owning client consumes the code.
        entry.redeemed = true;
        if entry.expires <= now {
            return Err(OAuthError::invalid_grant("authorization code expired"));
        }
        if params.get("redirect_uri") != Some(&entry.redirect_uri) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        let Some(verifier) = params.get("code_verifier") else {
            return Err(OAuthError::invalid_grant(
                "code_verifier is required (PKCE)",
            ));
        };
        if !pkce_s256_matches(verifier, &entry.challenge) {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        let grant = entry.grant.clone();
        self.issue(&mut st, grant, now)
    }

    fn refresh(
        &self,
        client: &DevClient,
        params: &HashMap<String, String>,
        now: u64,
    ) -> Result<serde_json::Value, OAuthError> {
        let token = params
            .get("refresh_token")
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
        let mut st = self.state();
        st.prune(now);
        let old = match st.refresh.entry(token.clone()) {
            Entry::Occupied(e) if e.get().grant.client_id == client.id => e.remove(),
            _ => {
                return Err(OAuthError::invalid_grant(
                    "unknown, expired or revoked refresh token",
                ));
            }
        };
        let mut grant = old.grant;
        if let Some(scope) = params.get("scope") {
            let granted: Vec<&str> = grant.scope.split(' ').collect();
            if !scope.split(' ').all(|s| granted.contains(&s)) {
                st.refresh.insert(
                    token.clone(),
                    TokenEntry {
                        grant,
                        expires: old.expires,
                    },
                );
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "the requested scope exceeds the original grant",
                ));
            }
            grant.scope = scope.clone();
        }
        self.issue(&mut st, grant, now)
    }

    /// Mints an access token, a refresh token and an ID token for `grant`.
    fn issue(
        &self,
        st: &mut State,
        grant: Grant,
        now: u64,
    ) -> Result<serde_json::Value, OAuthError> {
        let user = self
            .user(&grant.sub)
            .ok_or_else(|| OAuthError::invalid_grant("the user no longer exists"))?;
        let access_token = random_token();
        let refresh_token = random_token();
        let digest = Sha256::digest(access_token.as_bytes());
        let claims = IdTokenClaims {
            iss: &self.issuer,
            sub: &user.sub,
            aud: &grant.client_id,
            azp: &grant.client_id,
            exp: now + TOKEN_TTL_SECS,
            iat: now,
            auth_time: grant.auth_time,
            nonce: grant.nonce.as_deref(),
            at_hash: URL_SAFE_NO_PAD.encode(&digest[..16]),
            email: &user.email,
            email_verified: true,
            name: &user.name,
            groups: &user.groups,
        };
        let signer = self.keys.signer();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(signer.kid().to_string());
        let id_token = jsonwebtoken::encode(&header, &claims, signer.encoding_key()).map_err(|e| {
            tracing::error!(error = %e, "development identity provider: cannot sign an ID token");
            OAuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "cannot sign the ID token")
        })?;
        let scope = grant.scope.clone();
        st.access.insert(
            access_token.clone(),
            TokenEntry {
                grant: grant.clone(),
                expires: now + TOKEN_TTL_SECS,
            },
        );
        st.refresh.insert(
            refresh_token.clone(),
            TokenEntry {
                grant,
                expires: now + REFRESH_TTL_SECS,
            },
        );
        Ok(serde_json::json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL_SECS,
            "id_token": id_token,
            "refresh_token": refresh_token,
            "scope": scope,
        }))
    }

    /// `GET|POST /userinfo` with a Bearer access token.
    fn userinfo(&self, headers: &HeaderMap, now: u64) -> Response<Body> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        let Some(token) = token else {
            return unauthorized("Bearer");
        };
        let sub = {
            let mut st = self.state();
            st.prune(now);
            st.access.get(token).map(|t| t.grant.sub.clone())
        };
        match sub.as_deref().and_then(|s| self.user(s)) {
            Some(u) => json_value(
                StatusCode::OK,
                &serde_json::json!({
                    "sub": u.sub,
                    "email": u.email,
                    "email_verified": true,
                    "name": u.name,
                    "groups": u.groups,
                }),
            ),
            None => unauthorized(
                "Bearer error=\"invalid_token\", error_description=\"unknown, expired or revoked access token\"",
            ),
        }
    }

    /// `GET|POST /logout` (RP-initiated logout). There is no session here;
    /// with a valid `id_token_hint` the user's tokens for that client are
    /// revoked. Redirects only to a post-logout URI registered for the client.
    fn logout(&self, params: &HashMap<String, String>, now: u64) -> Response<Body> {
        let hint = params
            .get("id_token_hint")
            .and_then(|t| self.verify_hint(t));
        let client_id = match (params.get("client_id"), &hint) {
            (Some(id), Some(h)) if *id != h.aud => None,
            (Some(id), _) => Some(id.clone()),
            (None, Some(h)) => Some(h.aud.clone()),
            (None, None) => None,
        };
        if let Some(h) = &hint {
            let mut st = self.state();
            st.prune(now);
            st.revoke(|g| !(g.sub == h.sub && g.client_id == h.aud));
        }
        let target = params.get("post_logout_redirect_uri");
        let client = client_id.as_deref().and_then(|id| self.client(id));
        if let (Some(uri), Some(client)) = (target, client)
            && client.post_logout_redirect_uris.iter().any(|u| u == uri)
            && let Ok(mut url) = url::Url::parse(uri)
        {
            if let Some(state) = params.get("state") {
                url.query_pairs_mut().append_pair("state", state);
            }
            return see_other(url.as_str());
        }
        let note = match target {
            Some(uri) => format!(
                "<p>Not returning to <code>{}</code>: it is not a registered post-logout redirect URI for this client.</p>",
                html_escape(uri)
            ),
            None => String::new(),
        };
        html(
            StatusCode::OK,
            &page(
                "Signed out",
                &format!(
                    "<div class=\"banner\" role=\"alert\"><strong>Development identity provider.</strong> Not for real use.</div>\n\
                     <h1>Signed out</h1>\n{note}<p>You can close this tab.</p>"
                ),
            ),
        )
    }

    /// Verifies an ID token we issued (expired ones are accepted as hints).
    fn verify_hint(&self, token: &str) -> Option<HintClaims> {
        let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
        let key = self.keys.get(&kid)?;
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        v.set_issuer(&[&self.issuer]);
        jsonwebtoken::decode::<HintClaims>(token, key.decoding_key(), &v)
            .ok()
            .map(|d| d.claims)
    }
}

#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    azp: &'a str,
    exp: u64,
    iat: u64,
    auth_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    at_hash: String,
    email: &'a str,
    email_verified: bool,
    name: &'a str,
    groups: &'a [String],
}

#[derive(Deserialize)]
struct HintClaims {
    sub: String,
    aud: String,
}

/// An RFC 6749 §5.2 error response.
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            code,
            description: description.into(),
        }
    }
    fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
    fn into_response(self) -> Response<Body> {
        let mut r = json_value(
            self.status,
            &serde_json::json!({ "error": self.code, "error_description": self.description }),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"jetbridge development identity provider\""),
            );
        }
        r
    }
}

fn discovery_json(issuer: &str, base: &str) -> Bytes {
    let doc = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "userinfo_endpoint": format!("{base}{USERINFO_PATH}"),
        "jwks_uri": format!("{base}{JWKS_PATH}"),
        "end_session_endpoint": format!("{base}{LOGOUT_PATH}"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "claims_supported": ["iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "at_hash",
                             "email", "email_verified", "name", "groups"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    });
    Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
}

/// Reads a bounded `application/x-www-form-urlencoded` body.
async fn read_form(headers: &HeaderMap, body: Incoming) -> std::result::Result<String, String> {
    if !is_form(headers) {
        return Err("the body must be application/x-www-form-urlencoded".to_string());
    }
    let bytes = Limited::new(body, MAX_FORM_BYTES)
        .collect()
        .await
        .map_err(|e| format!("cannot read the request body: {e}"))?
        .to_bytes();
    String::from_utf8(bytes.to_vec()).map_err(|_| "the body is not UTF-8".to_string())
}

/// Parses `application/x-www-form-urlencoded` text; a repeated parameter is
/// an error (RFC 6749 §3.1, §3.2).
fn parse_params(s: &str) -> std::result::Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(s.as_bytes()) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!("parameter {k:?} is repeated"));
        }
    }
    Ok(out)
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The PKCE challenge of an authorization request this provider supports,
/// or the OAuth error (`error`, `error_description`) to send the client.
fn authorize_challenge(
    params: &HashMap<String, String>,
) -> Result<&str, (&'static str, &'static str)> {
    let get = |k: &str| params.get(k).map(String::as_str);
    if get("response_type") != Some("code") {
        return Err((
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    if get("response_mode").is_some_and(|m| m != "query") {
        return Err(("invalid_request", "only response_mode=query is supported"));
    }
    if get("request").is_some() {
        return Err(("request_not_supported", "request objects are not supported"));
    }
    if get("request_uri").is_some() {
        return Err(("request_uri_not_supported", "request_uri is not supported"));
    }
    if !get("scope").unwrap_or("").split(' ').any(|s| s == "openid") {
        return Err(("invalid_scope", "the openid scope is required"));
    }
    if get("code_challenge_method") != Some("S256") {
        return Err((
            "invalid_request",
            "PKCE is required: code_challenge_method must be S256",
        ));
    }
    let Some(challenge) =
        get("code_challenge").filter(|c| c.len() == 43 && c.bytes().all(is_b64url))
    else {
        return Err((
            "invalid_request",
            "code_challenge must be a base64url SHA-256 digest (43 characters)",
        ));
    };
    if get("prompt").is_some_and(|p| p.split(' ').any(|p| p == "none")) {
        return Err((
            "login_required",
            "the development provider keeps no sessions; a user must be picked",
        ));
    }
    Ok(challenge)
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, with the
/// verifier 43–128 unreserved characters.
fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    well_formed
        && constant_time_eq(
            URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()))
                .as_bytes(),
            challenge.as_bytes(),
        )
}

/// Compares SHA-256 digests so neither length nor content leaks through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// 32 random bytes, base64url.
fn random_token() -> String {
    let mut b = [0u8; 32];
    random_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · jetbridge development identity provider</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}}\
         .banner{{background:#fff3cd;border:2px solid #d39e00;padding:.75rem 1rem;border-radius:.5rem}}\
         ul{{list-style:none;padding:0}}li{{margin:.5rem 0}}\
         button{{width:100%;text-align:left;padding:.75rem;font:inherit;cursor:pointer}}\
         .cancel{{width:auto}}</style></head>\n<body>\n{body}\n</body></html>\n",
        title = html_escape(title),
    )
}

fn error_page(status: StatusCode, message: &str) -> Response<Body> {
    html(
        status,
        &page(
            "Sign-in error",
            &format!(
                "<div class=\"banner\" role=\"alert\"><strong>Development identity provider.</strong> Not for real use.</div>\n\
                 <h1>Sign-in error</h1>\n<p>{}</p>",
                html_escape(message)
            ),
        ),
    )
}

fn html(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = own_response(status, "text/html; charset=utf-8", body.to_string(), None);
    let h = r.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn json_value(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let body = Bytes::from(serde_json::to_vec(v).unwrap_or_default());
    json_bytes(status, body, "no-store")
}

fn json_bytes(status: StatusCode, body: Bytes, cache: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if cache == "no-store" {
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "not found\n")
}

fn see_other(location: &str) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    let h = r.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            h.insert(header::LOCATION, v);
        }
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "cannot build the redirect"),
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn unauthorized(challenge: &'static str) -> Response<Body> {
    let mut r = json_value(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({ "error": "invalid_token", "error_description": "a valid Bearer access token is required" }),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

#[cfg(test)]
#[path = "idp_tests.rs"]
mod tests;

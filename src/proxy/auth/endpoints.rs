//! The proxy's own endpoints: the sign-in flow on the authenticate host,
//! the hand-off, user and sign-out endpoints on route hosts, programmatic
//! login, and the session checks the pipeline asks for.

use super::cookies::{
    BROWSER_COOKIE, binding_of, constant_time_eq, cookie_header, is_binding, login_cookie_name,
    presents_nonce, state_cookie_name,
};
use super::credentials::{IdpToken, validate_programmatic_redirect};
use super::state::{
    Authenticator, IDP_ACCESS_TOKEN_REUSE_SECS, IDP_IDENTITY_TOKEN_REUSE_SECS, IDP_SESSIONS_CAP,
    REFRESH_PAUSE_SECS, REFRESH_WAIT,
};

use crate::identity::oidc::{LoginResult, PendingLogin, random_token};
use crate::identity::seal::Sealer;
use crate::identity::session::{IdpTokens, Session};
use crate::model::Snapshot;
use crate::proxy::body::{Body, empty, full};
use crate::proxy::clock::unix_now;
use crate::proxy::error::{ProxyError, page};
use crate::proxy::pages::{Action, Page, Tone};
use crate::proxy::upstream::Upstreams;
use base64::Engine as _;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;

/// Path prefix of the proxy's own endpoints on every host.
pub const POMERIUM_PREFIX: &str = "/.pomerium";

/// Lifetime of a hand-off from the authenticate host to a route host.
pub(super) const HANDOFF_TTL: i64 = 60;
/// Lifetime of a sign-in's nonce cookie (as long as the sign-in state).
pub(super) const LOGIN_TTL: i64 = 600;
/// Query parameter of `/.pomerium/sign_in` carrying the nonce's hash.
pub(super) const BINDING_PARAM: &str = "jetbridge_login";

/// The browser-session cookie's content.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct BrowserSession {
    sid: String,
    exp: i64,
}

/// The longest URL the proxy sends a browser to or checks for another proxy.
const MAX_URL: usize = 4096;

/// The checks every URL the proxy is handed to send a browser to (or to
/// check for another proxy) passes: absolute, https, at most [`MAX_URL`]
/// bytes, no credentials, control characters or backslashes, and a host
/// name (not an address). The parsed URL and its host name as written, or
/// why it is refused.
pub(crate) fn https_url(raw: &str) -> Result<(url::Url, String), &'static str> {
    if raw.len() > MAX_URL || raw.chars().any(|c| c.is_control() || c == '\\') {
        return Err("too long, or has control characters or backslashes");
    }
    let url = url::Url::parse(raw).map_err(|_| "not an absolute URL")?;
    if url.scheme() != "https" {
        return Err("not https (session cookies are sent over https only)");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("has credentials");
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        _ => return Err("no host name"),
    };
    Ok((url, host))
}

/// Validates a return-to URL: [`https_url`], on a route host (or the
/// authenticate host). Any port is allowed: the proxy may be reached
/// through a load balancer or NodePort, and the host is what decides where
/// the browser goes.
pub fn validate_return_to(raw: &str, snapshot: &Snapshot) -> Option<String> {
    let (url, host) = https_url(raw).ok()?;
    let host = host.to_ascii_lowercase();
    let known = snapshot.table.host_known(&host)
        || snapshot.auth.authenticate_host.as_deref() == Some(host.as_str());
    known.then(|| url.to_string())
}

/// `https://host[:port]` (the port is left out when it is 443).
pub fn origin(host: &str, port: u16) -> String {
    if port == 443 {
        format!("https://{host}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// The port the client addressed (from `:authority` or `Host`), 443 if none.
pub fn client_port<B>(req: &Request<B>) -> u16 {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        });
    authority
        .and_then(|a| a.parse::<http::uri::Authority>().ok())
        .and_then(|a| a.port_u16())
        .unwrap_or(443)
}

pub(super) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(super) fn redirect(location: &str) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Where a `depends_on` sign-in continues, on each host in turn.
pub(super) const CHAIN_PATH: &str = "/.pomerium/depends_on";
pub(super) const CHAIN_PARAM: &str = "jetbridge_chain";
/// How long a `depends_on` chain may take.
pub(super) const CHAIN_TTL: i64 = 600;
/// A return URL longer than this is not carried through a `depends_on`
/// chain (the chain URL must stay a valid sign-in target); the browser
/// lands on the first host's root instead.
pub(super) const CHAIN_MAX_RETURN: usize = 1024;

/// The rest of a `depends_on` chain, sealed for the host it is sent to.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Chain {
    /// Hosts still to sign in to, after the one this chain is sealed for.
    rest: Vec<String>,
    /// Where the browser goes at the end.
    to: String,
    exp: i64,
}

/// The next stop of a `depends_on` chain: the first of `hosts` that is
/// still a route host, carrying the others; `to` when none is left.
pub(super) fn chain_next(
    snapshot: &Snapshot,
    hosts: &[String],
    to: &str,
    port: u16,
    now: i64,
) -> String {
    let mut hosts = hosts.iter().filter(|h| snapshot.table.host_known(h));
    let Some(next) = hosts.next() else {
        return to.to_string();
    };
    let chain = Chain {
        rest: hosts.cloned().collect(),
        to: to.to_string(),
        exp: now + CHAIN_TTL,
    };
    let sealed = sealer_chain(snapshot).seal(
        next.as_bytes(),
        &serde_json::to_vec(&chain).unwrap_or_default(),
    );
    format!("{}{CHAIN_PATH}?{CHAIN_PARAM}={sealed}", origin(next, port))
}

/// Where a browser that just got its session on `host` goes: `return_to`,
/// or first through the `depends_on` hosts of the route it returns to.
pub(super) fn after_sign_in(
    snapshot: &Snapshot,
    host: &str,
    return_to: &str,
    port: u16,
    now: i64,
) -> String {
    let Some(target) = url::Url::parse(return_to).ok() else {
        return "/".into();
    };
    if !target
        .host_str()
        .is_some_and(|t| t.eq_ignore_ascii_case(host))
    {
        return "/".into();
    }
    // A chain's own stop, or any endpoint of ours, starts no chain.
    if target.path().starts_with(POMERIUM_PREFIX) {
        return return_to.to_string();
    }
    let deps: Vec<String> = snapshot
        .route(host, target.path())
        .map(|r| {
            r.depends_on
                .iter()
                .filter(|d| d.as_str() != host)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if deps.is_empty() {
        return return_to.to_string();
    }
    let to = if return_to.len() > CHAIN_MAX_RETURN {
        format!("{}/", origin(host, port))
    } else {
        return_to.to_string()
    };
    chain_next(snapshot, &deps, &to, port, now)
}

pub(super) fn sealer_chain(snapshot: &Snapshot) -> Sealer {
    Sealer::new(&snapshot.auth.cookie_secret, "depends-on")
}
pub(super) fn sealer_handoff(snapshot: &Snapshot) -> Sealer {
    Sealer::new(&snapshot.auth.shared_secret, "handoff")
}
pub(super) fn sealer_state(snapshot: &Snapshot) -> Sealer {
    Sealer::new(&snapshot.auth.cookie_secret, "login-state")
}
pub(super) fn sealer_browser(snapshot: &Snapshot) -> Sealer {
    Sealer::new(&snapshot.auth.cookie_secret, "browser-session")
}
pub(super) fn authenticate_host(snapshot: &Snapshot) -> &[u8] {
    snapshot
        .auth
        .authenticate_host
        .as_deref()
        .unwrap_or("")
        .as_bytes()
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Handoff {
    id: String,
    exp: i64,
    return_to: String,
    /// Hash of the nonce of the browser that started the sign-in.
    binding: String,
    session: Session,
}

/// The sealed content of a state cookie on the authenticate host.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct LoginState {
    pending: PendingLogin,
    /// Hash of the nonce of the browser that started the sign-in.
    binding: String,
    /// The OAuth client signed in through (`RouteIdp::id`; empty: global).
    #[serde(default)]
    idp: String,
}

/// The sign-in state sealed in a state cookie's value.
pub(super) fn open_login_state(snapshot: &Snapshot, cookie: &str) -> Option<LoginState> {
    sealer_state(snapshot)
        .open(authenticate_host(snapshot), cookie)
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// The identity provider answered the callback with `error`: the page says
/// so in its words and offers to try again from the page the sign-in was
/// for (read from this browser's sign-in state, when it is still there).
pub(super) fn sign_in_refused<B>(
    snapshot: &Snapshot,
    req: &Request<B>,
    query: Option<&str>,
    err: &str,
) -> ProxyError {
    let desc = query_param(query, "error_description").unwrap_or_default();
    let mut message = format!("the identity provider refused sign-in: {err}");
    if !desc.is_empty() {
        message.push_str(&format!(" ({desc})"));
    }
    message.truncate(300);
    let retry = query_param(query, "state")
        .and_then(|state| state_cookie_name(&state))
        .and_then(|name| crate::proxy::headers::cookie(req.headers(), &name))
        .and_then(|cookie| open_login_state(snapshot, cookie))
        .and_then(|state| validate_return_to(&state.pending.return_to, snapshot));
    tracing::info!(error = %err, "the identity provider refused a sign-in");
    ProxyError::SignInRefused { message, retry }
}

/// `/.pomerium/signed_out` on the authenticate host: says the session is
/// over and links back to the page signed out from (`state`, as the
/// identity provider hands it back, or `pomerium_redirect_uri`).
pub(super) fn signed_out_page(
    snapshot: &Snapshot,
    query: Option<&str>,
    id: &str,
    json: bool,
) -> Response<Body> {
    if json {
        return page(StatusCode::OK, "You are signed out.", id, true);
    }
    let back = query_param(query, "state")
        .or_else(|| query_param(query, "pomerium_redirect_uri"))
        .and_then(|raw| validate_return_to(&raw, snapshot));
    let mut p = Page::new(
        StatusCode::OK,
        Tone::Good,
        "You are signed out",
        "Your session has ended on every site it was shared with.",
        id,
    );
    match back {
        Some(url) => p.actions = vec![Action::link("Sign in again", url)],
        None => p
            .text
            .push("Open the app you were using again to sign in.".into()),
    }
    p.response()
}

/// Names a route's own OAuth client in a sign-in link.
pub(super) const IDP_PARAM: &str = "jetbridge_idp";

/// The URL that starts sign-in for a request to `return_to`, bound to the
/// nonce whose hash is `binding`, through the OAuth client `idp` (a route's
/// own, or the global one when empty).
pub(super) fn sign_in_url(
    snapshot: &Snapshot,
    return_to: &str,
    binding: &str,
    idp: &str,
) -> Option<String> {
    let base = snapshot.auth.authenticate_url.as_ref()?;
    snapshot.auth.idp.as_ref()?;
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("pomerium_redirect_uri", return_to)
        .append_pair(BINDING_PARAM, binding);
    if !idp.is_empty() {
        q.append_pair(IDP_PARAM, idp);
    }
    Some(format!("{base}/.pomerium/sign_in?{}", q.finish()))
}

/// The redirect that sends a browser from a route host to sign in for
/// `return_to`, with a fresh nonce cookie on the route host binding the
/// sign-in to this browser. `None` when sign-in is not configured.
pub fn start_sign_in(snapshot: &Snapshot, return_to: &str, idp: &str) -> Option<Response<Body>> {
    let nonce = random_token();
    let binding = binding_of(&nonce);
    let url = sign_in_url(snapshot, return_to, &binding, idp)?;
    let mut r = redirect(&url);
    let cookie = cookie_header(&login_cookie_name(&binding)?, &nonce, LOGIN_TTL)?;
    r.headers_mut().append(header::SET_COOKIE, cookie);
    Some(r)
}

/// The proxy's own endpoints and the session checks the pipeline asks
/// for: the sign-in state and the upstream clients they reach the identity
/// provider through.
pub struct Endpoints<'a> {
    /// Sign-in state and the identity provider client.
    pub auth: &'a Authenticator,
    /// Where the identity provider is reached through.
    pub upstreams: &'a Upstreams,
}

impl Endpoints<'_> {
    /// Handles requests for the authenticate host. `None` if the path is not one of its endpoints.
    pub async fn authenticate_endpoint<B>(
        &self,
        snapshot: &Snapshot,
        req: &Request<B>,
        path: &str,
        query: Option<&str>,
        id: &str,
        json: bool,
    ) -> Option<Result<Response<Body>, ProxyError>> {
        let now = unix_now();
        Some(match path {
            "/.pomerium/sign_in" => self.sign_in(snapshot, query, now).await,
            "/oauth2/callback" => {
                let callback = self.oauth_callback(snapshot, req, query, now);
                crate::proxy::trace::step("jetbridge.sign_in.callback", callback).await
            }
            "/.pomerium/signed_out" => {
                let mut r = signed_out_page(snapshot, query, id, json);
                if let Some(c) = cookie_header(BROWSER_COOKIE, "", 0) {
                    r.headers_mut().append(header::SET_COOKIE, c);
                }
                Ok(r)
            }
            _ => return None,
        })
    }

    async fn sign_in(
        &self,
        snapshot: &Snapshot,
        query: Option<&str>,
        now: i64,
    ) -> Result<Response<Body>, ProxyError> {
        let raw = query_param(query, "pomerium_redirect_uri")
            .or_else(|| query_param(query, "redirect_uri"))
            .unwrap_or_default();
        let return_to = validate_return_to(&raw, snapshot)
            .ok_or_else(|| ProxyError::BadRequest("invalid redirect target".into()))?;
        let Some(binding) = query_param(query, BINDING_PARAM) else {
            // Not sent here by a route host (a bookmarked or hand-made link):
            // the target's host starts a sign-in bound to this browser if it
            // needs one, so the browser goes there first.
            return Ok(redirect(&return_to));
        };
        if !is_binding(&binding) {
            return Err(ProxyError::BadRequest("invalid sign-in binding".into()));
        }
        let idp = query_param(query, IDP_PARAM).unwrap_or_default();
        let provider = self
            .auth
            .provider_for(self.upstreams, snapshot, &idp)
            .await?;
        let (url, pending) = provider.begin(return_to, now);
        let name = state_cookie_name(&pending.state)
            .ok_or_else(|| ProxyError::Identity("invalid sign-in state".into()))?;
        let state = LoginState {
            pending,
            binding,
            idp,
        };
        let sealed = sealer_state(snapshot).seal(
            authenticate_host(snapshot),
            &serde_json::to_vec(&state).unwrap_or_default(),
        );
        let mut r = redirect(&url);
        if let Some(c) = cookie_header(&name, &sealed, 600) {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
        Ok(r)
    }

    /// `/oauth2/callback`: the identity provider's answer is checked against
    /// the sign-in state, exchanged for a session, and handed off to the
    /// route host the sign-in started on.
    async fn oauth_callback<B>(
        &self,
        snapshot: &Snapshot,
        req: &Request<B>,
        query: Option<&str>,
        now: i64,
    ) -> Result<Response<Body>, ProxyError> {
        let callback = self.callback_state(snapshot, req, query, now)?;
        let mut session = self.exchange(snapshot, &callback, now).await?;
        let browser = crate::proxy::headers::cookie(req.headers(), BROWSER_COOKIE)
            .and_then(|c| sealer_browser(snapshot).open(authenticate_host(snapshot), c))
            .and_then(|b| serde_json::from_slice::<BrowserSession>(&b).ok())
            .filter(|b| b.exp > now + 60 && !self.auth.revocations.is_revoked(&b.sid));
        if let Some(b) = &browser {
            session.id = b.sid.clone();
            session.exp = b.exp.min(session.exp);
        }
        tracing::info!(sub = %session.sub, sid = %session.id, "signed in");
        handoff_response(snapshot, callback, session, browser.is_none(), now)
    }

    /// The callback's sign-in state: present in its cookie, not expired,
    /// matching the `state` parameter, and used only once.
    fn callback_state<B>(
        &self,
        snapshot: &Snapshot,
        req: &Request<B>,
        query: Option<&str>,
        now: i64,
    ) -> Result<Callback, ProxyError> {
        if let Some(err) = query_param(query, "error") {
            return Err(sign_in_refused(snapshot, req, query, &err));
        }
        let state = query_param(query, "state")
            .ok_or_else(|| ProxyError::BadRequest("missing state".into()))?;
        let code = query_param(query, "code")
            .ok_or_else(|| ProxyError::BadRequest("missing code".into()))?;
        let state_cookie = state_cookie_name(&state)
            .ok_or_else(|| ProxyError::BadRequest("state mismatch".into()))?;
        let cookie =
            crate::proxy::headers::cookie(req.headers(), &state_cookie).ok_or_else(|| {
                ProxyError::BadRequest(
                    "sign-in state cookie missing or expired; start again".into(),
                )
            })?;
        let login = open_login_state(snapshot, cookie)
            .ok_or_else(|| ProxyError::BadRequest("invalid sign-in state; start again".into()))?;
        if login.pending.exp < now {
            return Err(ProxyError::BadRequest(
                "sign-in took too long; start again".into(),
            ));
        }
        if !constant_time_eq(login.pending.state.as_bytes(), state.as_bytes()) {
            return Err(ProxyError::BadRequest("state mismatch".into()));
        }
        if !self
            .auth
            .first_use(&format!("state:{state}"), login.pending.exp, now)
        {
            return Err(ProxyError::BadRequest(
                "this sign-in response was already used".into(),
            ));
        }
        Ok(Callback {
            state_cookie,
            code,
            login,
        })
    }

    /// The authorization code exchanged at the provider for the new session.
    async fn exchange(
        &self,
        snapshot: &Snapshot,
        callback: &Callback,
        now: i64,
    ) -> Result<Session, ProxyError> {
        let LoginState { pending, idp, .. } = &callback.login;
        let provider = self
            .auth
            .provider_for(self.upstreams, snapshot, idp)
            .await?;
        let finished = provider.finish(&callback.code, pending, now).await;
        if let Err(crate::identity::oidc::OidcError::IdToken(_)) = &finished {
            self.auth.expire_provider().await;
        }
        let login = finished.map_err(|e| {
            tracing::warn!(error = %e, "sign-in failed");
            match e {
                crate::identity::oidc::OidcError::Unreachable(m) => ProxyError::IdpUnavailable(m),
                other => ProxyError::BadRequest(format!("sign-in failed: {other}")),
            }
        })?;
        let mut session = new_session(&login, snapshot, now);
        session.idp = idp.clone();
        Ok(session)
    }

    /// Handles `/.pomerium/*` on a route host. `None` if not one of ours.
    #[allow(clippy::too_many_arguments)]
    pub async fn route_host_endpoint<B>(
        &self,
        snapshot: &Snapshot,
        req: &Request<B>,
        host: &str,
        path: &str,
        query: Option<&str>,
        session: Option<&Session>,
        id: &str,
        json: bool,
    ) -> Option<Result<Response<Body>, ProxyError>> {
        let now = unix_now();
        Some(match path {
            "/.pomerium/callback" | "/.pomerium/callback/" => {
                self.host_callback(snapshot, req, host, query, now)
            }
            CHAIN_PATH => depends_on_step(snapshot, req, host, query, session, now),
            "/.pomerium/user" => Ok(user_json(session, host)),
            "/.pomerium/api/v1/login" => programmatic_login(req, host, query),
            "/.pomerium/api/v1/finish" => programmatic_finish(snapshot, req, host, query, session),
            "/.pomerium/routes" => match session {
                Some(_) => Ok(routes_json(snapshot)),
                None => Err(ProxyError::Unauthenticated),
            },
            "/.pomerium/jwt" if snapshot.auth.jwt_endpoint => match session {
                Some(s) => self.jwt_endpoint(snapshot, host, s),
                None => Err(ProxyError::Unauthenticated),
            },
            "/.pomerium" | "/.pomerium/" => Ok(user_page(
                session,
                host,
                &format!("{}/", origin(host, client_port(req))),
                id,
            )),
            "/.pomerium/sign_out" => {
                if req.method() != Method::GET && req.method() != Method::POST {
                    return Some(Err(ProxyError::MethodNotAllowed));
                }
                if let Some(s) = session {
                    self.auth.revocations.revoke(s, now);
                    tracing::info!(sub = %s.sub, sid = %s.id, "signed out; session revoked");
                }
                Ok(self.sign_out(snapshot, host, client_port(req), query).await)
            }
            p if p.starts_with("/.pomerium/") => {
                Ok(page(StatusCode::NOT_FOUND, "not found", id, json))
            }
            _ => return None,
        })
    }

    fn host_callback<B>(
        &self,
        snapshot: &Snapshot,
        req: &Request<B>,
        host: &str,
        query: Option<&str>,
        now: i64,
    ) -> Result<Response<Body>, ProxyError> {
        let headers = req.headers();
        let raw = query_param(query, "pomerium_handoff")
            .ok_or_else(|| ProxyError::BadRequest("missing hand-off".into()))?;
        let h: Handoff = sealer_handoff(snapshot)
            .open(host.as_bytes(), &raw)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ProxyError::BadRequest("invalid hand-off".into()))?;
        if h.exp < now {
            return Err(ProxyError::BadRequest(
                "hand-off expired; sign in again".into(),
            ));
        }
        // Checked before the hand-off is marked used, so a copy tried in
        // another browser cannot use it up for the browser it belongs to.
        if !presents_nonce(headers, &h.binding) {
            return Err(ProxyError::SignInElsewhere);
        }
        if !self
            .auth
            .first_use(&format!("handoff:{}", h.id), h.exp, now)
        {
            return Err(ProxyError::BadRequest("hand-off already used".into()));
        }
        let location = after_sign_in(snapshot, host, &h.return_to, client_port(req), now);
        let value = snapshot.sessions.seal(host, &h.session);
        let mut r = redirect(&location);
        if let Some(c) = cookie_header(&snapshot.auth.cookie_name, &value, h.session.exp - now) {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
        // The nonce is used up: this hand-off, replayed on any replica, now
        // finds no nonce in this browser either.
        if let Some(c) = login_cookie_name(&h.binding).and_then(|n| cookie_header(&n, "", 0)) {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
        Ok(r)
    }

    async fn sign_out(
        &self,
        snapshot: &Snapshot,
        host: &str,
        port: u16,
        query: Option<&str>,
    ) -> Response<Body> {
        let explicit = query_param(query, "pomerium_redirect_uri")
            .or_else(|| query_param(query, "redirect_uri"))
            .and_then(|raw| validate_return_to(&raw, snapshot));
        let signed_out = snapshot
            .auth
            .authenticate_url
            .as_ref()
            .map(|a| format!("{a}/.pomerium/signed_out"));
        // Where "Sign in again" on the signed-out page leads.
        let again = explicit
            .clone()
            .unwrap_or_else(|| format!("{}/", origin(host, port)));
        let mut location = explicit
            .clone()
            .or_else(|| {
                signed_out.as_ref().map(|s| {
                    let mut q = url::form_urlencoded::Serializer::new(String::new());
                    q.append_pair("pomerium_redirect_uri", &again);
                    format!("{s}?{}", q.finish())
                })
            })
            .unwrap_or_else(|| again.clone());
        if snapshot.auth.idp.is_some()
            && let Ok(p) = self.auth.provider(self.upstreams, snapshot).await
            && let (Some(end), Some(post)) = (&p.end_session_endpoint, &signed_out)
            && let Ok(mut u) = url::Url::parse(end)
            && let Some(idp) = &snapshot.auth.idp
        {
            u.query_pairs_mut()
                .append_pair("client_id", &idp.client_id)
                .append_pair("post_logout_redirect_uri", post)
                .append_pair("state", &again);
            location = u.to_string();
        }
        let mut r = redirect(&location);
        if let Some(c) = cookie_header(&snapshot.auth.cookie_name, "", 0) {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
        r
    }

    /// The session an identity-provider token stands for: checked at the
    /// provider (userinfo for an access token, its keys for an ID token),
    /// then reused for a while. `None`: the provider refused the token.
    pub async fn idp_token_session(
        &self,
        snapshot: &Snapshot,
        kind: IdpToken,
        token: &str,
        audiences: &[String],
    ) -> Result<Option<Session>, ProxyError> {
        let now = unix_now();
        let mut h = Sha256::new();
        h.update([kind as u8]);
        h.update(token.as_bytes());
        // A token accepted for one route's audiences is not thereby
        // accepted for another's.
        if kind == IdpToken::Access {
            for a in audiences {
                h.update((a.len() as u64).to_be_bytes());
                h.update(a.as_bytes());
            }
        }
        let key: [u8; 32] = h.finalize().into();
        if let Ok(m) = self.auth.idp_sessions.lock()
            && let Some((s, until)) = m.get(&key)
            && now < *until
        {
            return Ok(Some(s.clone()));
        }
        let _turn = self
            .auth
            .idp_checks
            .acquire()
            .await
            .map_err(|_| ProxyError::IdpUnavailable("shutting down".into()))?;
        let provider = self.auth.provider(self.upstreams, snapshot).await?;
        let checked = match kind {
            IdpToken::Identity => provider.identity_token_login(token, now),
            IdpToken::Access if !audiences.is_empty() => {
                provider.access_token_jwt_login(token, audiences, now)
            }
            IdpToken::Access => provider.access_token_login(token).await,
        };
        let login = match checked {
            Ok(l) => l,
            Err(crate::identity::oidc::OidcError::Unreachable(e)) => {
                return Err(ProxyError::IdpUnavailable(e));
            }
            Err(e) => {
                tracing::info!(kind = ?kind, error = %e, "identity provider token refused");
                return Ok(None);
            }
        };
        let until = match (kind, login.expires_at) {
            (IdpToken::Identity, Some(exp)) => exp.min(now + IDP_IDENTITY_TOKEN_REUSE_SECS),
            (IdpToken::Access, Some(exp)) => exp.min(now + IDP_ACCESS_TOKEN_REUSE_SECS),
            _ => now + IDP_ACCESS_TOKEN_REUSE_SECS,
        };
        let mut s = new_session(&login, snapshot, now);
        s.id = format!(
            "idp-{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key[..12])
        );
        s.exp = until;
        s.refresh_token = None;
        s.refresh_at = 0;
        if let Ok(mut m) = self.auth.idp_sessions.lock() {
            if m.len() >= IDP_SESSIONS_CAP {
                m.retain(|_, (_, until)| *until > now);
                if m.len() >= IDP_SESSIONS_CAP {
                    m.clear();
                }
            }
            m.insert(key, (s.clone(), until));
        }
        Ok(Some(s))
    }

    /// Refreshes a session whose IdP tokens are due. Returns the session to
    /// use (None = ended) and a cookie to set.
    pub async fn maybe_refresh(
        &self,
        snapshot: &Snapshot,
        host: &str,
        s: Session,
    ) -> (Option<Session>, Option<HeaderValue>) {
        let now = unix_now();
        let (Some(rt), true) = (
            s.refresh_token.clone(),
            s.refresh_at > 0 && now >= s.refresh_at - 30,
        ) else {
            return (Some(s), None);
        };
        let paused = &self.auth.refresh_paused_until;
        if now < paused.load(Ordering::Relaxed) {
            return (Some(s), None);
        }
        // IdP down or silent: existing sessions keep working, and for a
        // while nobody waits on it.
        let pause = |why: &str| {
            paused.store(now + REFRESH_PAUSE_SECS, Ordering::Relaxed);
            tracing::warn!(sid = %s.id, error = %why, pause_s = REFRESH_PAUSE_SECS, "session refresh failed; keeping the session and pausing refreshes");
        };
        let refreshed = tokio::time::timeout(REFRESH_WAIT, async {
            let provider = self
                .auth
                .provider_for(self.upstreams, snapshot, &s.idp)
                .await?;
            Ok::<_, ProxyError>(provider.refresh(&rt, &s.sub, now).await)
        })
        .await;
        let refreshed = match refreshed {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                pause(&e.to_string());
                return (Some(s), None);
            }
            Err(_) => {
                pause("no answer from the identity provider in time");
                return (Some(s), None);
            }
        };
        match refreshed {
            Ok(login) => {
                let mut fresh = new_session(&login, snapshot, now);
                // A refresh without a new ID token keeps the last one.
                if let (Some(t), Some(old)) = (&mut fresh.idp_tokens, &s.idp_tokens)
                    && t.id_token.is_none()
                {
                    t.id_token = old.id_token.clone();
                }
                fresh.id = s.id.clone();
                fresh.iat = s.iat;
                fresh.exp = s.exp;
                fresh.idp = s.idp.clone();
                let value = snapshot.sessions.seal(host, &fresh);
                (
                    Some(fresh),
                    cookie_header(&snapshot.auth.cookie_name, &value, s.exp - now),
                )
            }
            Err(crate::identity::oidc::OidcError::Exchange(e)) => {
                tracing::info!(sid = %s.id, error = %e, "session refresh refused by the identity provider; session ended");
                (None, cookie_header(&snapshot.auth.cookie_name, "", 0))
            }
            Err(e) => {
                pause(&e.to_string());
                (Some(s), None)
            }
        }
    }
}

/// A checked identity-provider callback.
pub(super) struct Callback {
    /// The name of the sign-in's state cookie (cleared on the way out).
    state_cookie: String,
    /// The authorization code.
    code: String,
    /// The sign-in's state.
    login: LoginState,
}

/// The redirect that hands the new session off to the route host the
/// sign-in started on; a browser without a browser-session cookie gets one.
fn handoff_response(
    snapshot: &Snapshot,
    callback: Callback,
    session: Session,
    new_browser: bool,
    now: i64,
) -> Result<Response<Body>, ProxyError> {
    let LoginState {
        pending, binding, ..
    } = callback.login;
    let target = url::Url::parse(&pending.return_to)
        .map_err(|_| ProxyError::BadRequest("invalid redirect target".into()))?;
    let host = target.host_str().unwrap_or_default().to_ascii_lowercase();
    let handoff = Handoff {
        id: random_token(),
        exp: now + HANDOFF_TTL,
        return_to: pending.return_to.clone(),
        binding,
        session,
    };
    let sealed = sealer_handoff(snapshot).seal(
        host.as_bytes(),
        &serde_json::to_vec(&handoff).unwrap_or_default(),
    );
    let mut r = redirect(&format!(
        "{}{POMERIUM_PREFIX}/callback?pomerium_handoff={sealed}",
        target.origin().ascii_serialization()
    ));
    if let Some(c) = cookie_header(&callback.state_cookie, "", 0) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    if new_browser {
        let b = BrowserSession {
            sid: handoff.session.id.clone(),
            exp: handoff.session.exp,
        };
        let sealed = sealer_browser(snapshot).seal(
            authenticate_host(snapshot),
            &serde_json::to_vec(&b).unwrap_or_default(),
        );
        if let Some(c) = cookie_header(BROWSER_COOKIE, &sealed, b.exp - now) {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    Ok(r)
}

pub(super) fn new_session(login: &LoginResult, snapshot: &Snapshot, now: i64) -> Session {
    Session {
        id: random_token()[..22].to_string(),
        sub: login.sub.clone(),
        email: login.email.clone(),
        name: login.name.clone(),
        groups: login.groups.clone(),
        claims: login.claims.clone(),
        truncated: false,
        iat: now,
        exp: now + snapshot.auth.cookie_expire.as_secs() as i64,
        refresh_token: login.refresh_token.clone(),
        refresh_at: login.expires_at.unwrap_or(0),
        idp_tokens: snapshot.keep_idp_tokens.then(|| IdpTokens {
            id_token: login.id_token.clone(),
            access_token: login.access_token.clone(),
        }),
        idp: String::new(),
    }
}

/// `/.pomerium/depends_on` on a route host: one stop of a `depends_on`
/// chain. With a session here the browser moves on to the next host (or
/// its destination); without one it signs in here first, coming back to
/// this same stop, which then finds the session.
pub(super) fn depends_on_step<B>(
    snapshot: &Snapshot,
    req: &Request<B>,
    host: &str,
    query: Option<&str>,
    session: Option<&Session>,
    now: i64,
) -> Result<Response<Body>, ProxyError> {
    let raw = query_param(query, CHAIN_PARAM)
        .ok_or_else(|| ProxyError::BadRequest("missing sign-in chain".into()))?;
    let chain: Chain = sealer_chain(snapshot)
        .open(host.as_bytes(), &raw)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ProxyError::BadRequest("invalid sign-in chain".into()))?;
    if chain.exp < now {
        return Err(ProxyError::BadRequest(
            "sign-in chain expired; open the page again".into(),
        ));
    }
    let port = client_port(req);
    if session.is_some() {
        return Ok(redirect(&chain_next(
            snapshot,
            &chain.rest,
            &chain.to,
            port,
            now,
        )));
    }
    let here = format!("{}{CHAIN_PATH}?{CHAIN_PARAM}={raw}", origin(host, port));
    let idp = snapshot.route(host, "/").map_or("", |r| r.idp_id());
    start_sign_in(snapshot, &here, idp).ok_or(ProxyError::Unauthenticated)
}

pub(super) fn user_json(session: Option<&Session>, host: &str) -> Response<Body> {
    let (status, body) = match session {
        Some(s) => (
            StatusCode::OK,
            serde_json::json!({
                "sub": s.sub, "user": s.sub, "email": s.email, "name": s.name,
                "groups": s.groups, "sid": s.id, "exp": s.exp, "iat": s.iat,
                "aud": host, "claims": s.claims,
            }),
        ),
        None => (
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "not signed in"}),
        ),
    };
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `/.pomerium/`: who is signed in to `host`, their session's claims, and
/// the ways out (sign out; sign in as someone else).
pub(super) fn user_page(
    session: Option<&Session>,
    host: &str,
    here: &str,
    id: &str,
) -> Response<Body> {
    let Some(s) = session else {
        let mut p = Page::new(
            StatusCode::UNAUTHORIZED,
            Tone::Bad,
            "You are not signed in",
            &format!("No one is signed in to {host} in this browser."),
            id,
        );
        p.actions = vec![Action::link("Sign in", "/")];
        return p.response();
    };
    let mut p = Page::new(
        StatusCode::OK,
        Tone::Good,
        &format!("Signed in to {host}"),
        "This is what the proxy knows about you; apps behind it receive it in a signed assertion.",
        id,
    );
    p.who = Some(crate::proxy::pages::who(s));
    p.rows = vec![
        ("Subject".into(), s.sub.clone()),
        ("Email".into(), s.email.clone()),
        ("Name".into(), s.name.clone()),
        ("Groups".into(), s.groups.join(", ")),
        ("Session".into(), s.id.clone()),
        ("Expires".into(), crate::proxy::pages::date(s.exp)),
    ];
    // The identity provider's other claims (those above are not repeated).
    p.rows.extend(
        s.claims
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "sub" | "email" | "name" | "groups"))
            .map(|(k, v)| (k.clone(), crate::proxy::pages::claim_text(v))),
    );
    p.actions = vec![
        Action::post("Sign out", "/.pomerium/sign_out"),
        Action::link(
            "Sign in as someone else",
            crate::proxy::pages::switch_user_url(here),
        ),
    ];
    p.response()
}

/// `/.pomerium/api/v1/login?pomerium_redirect_uri=<loopback URL>`: answers,
/// as text, the URL a command-line client opens in a browser. Signing in
/// there ends with a redirect to the client's URL carrying
/// `pomerium_jwt=<token>` for `Authorization: Pomerium <token>`.
pub(super) fn programmatic_login<B>(
    req: &Request<B>,
    host: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ProxyError> {
    let target = query_param(query, "pomerium_redirect_uri")
        .and_then(|t| validate_programmatic_redirect(&t))
        .ok_or_else(|| {
            ProxyError::BadRequest(
                "pomerium_redirect_uri must be an http(s) URL on localhost".into(),
            )
        })?;
    let url = format!(
        "{}{POMERIUM_PREFIX}/api/v1/finish?pomerium_redirect_uri={}",
        origin(host, client_port(req)),
        url::form_urlencoded::byte_serialize(target.as_str().as_bytes()).collect::<String>()
    );
    let mut r = Response::new(full(url.into_bytes()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The browser end of a programmatic login: without a session it signs in
/// (bound to this browser like any sign-in); with one it hands the session
/// to the client's loopback URL as `pomerium_jwt`.
pub(super) fn programmatic_finish<B>(
    snapshot: &Snapshot,
    req: &Request<B>,
    host: &str,
    query: Option<&str>,
    session: Option<&Session>,
) -> Result<Response<Body>, ProxyError> {
    let mut target = query_param(query, "pomerium_redirect_uri")
        .and_then(|t| validate_programmatic_redirect(&t))
        .ok_or_else(|| {
            ProxyError::BadRequest(
                "pomerium_redirect_uri must be an http(s) URL on localhost".into(),
            )
        })?;
    let Some(session) = session else {
        let here = format!(
            "{}{POMERIUM_PREFIX}/api/v1/finish?{}",
            origin(host, client_port(req)),
            query.unwrap_or("")
        );
        return start_sign_in(snapshot, &here, "").ok_or(ProxyError::Unauthenticated);
    };
    let token = crate::identity::programmatic::issue(
        &snapshot.auth.cookie_secret,
        &snapshot.sessions,
        host,
        session,
        unix_now(),
    )
    .map_err(|e| ProxyError::Identity(e.to_string()))?;
    target.query_pairs_mut().append_pair("pomerium_jwt", &token);
    Ok(redirect(target.as_str()))
}

pub(super) fn host_text(h: &crate::model::routing::HostMatch) -> String {
    use crate::model::routing::HostMatch;
    match h {
        HostMatch::Exact(h) => h.clone(),
        HostMatch::Wildcard(s) | HostMatch::WildcardAny(s) => format!("*.{s}"),
        HostMatch::Any => "*".into(),
    }
}

/// `/.pomerium/routes`: the routes this proxy serves (for a signed-in user).
pub(super) fn routes_json(snapshot: &Snapshot) -> Response<Body> {
    let routes: Vec<serde_json::Value> = snapshot
        .routes
        .iter()
        .filter(|r| !matches!(r.access, crate::model::Access::Invalid(_)))
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "from": format!("https://{}{}", host_text(&r.host), r.path.as_str()),
                "name": r.info.name,
                "description": r.info.description,
                "logo_url": r.info.logo_url,
            })
        })
        .collect();
    let mut resp = Response::new(full(
        serde_json::to_vec(&serde_json::json!({ "routes": routes })).unwrap_or_default(),
    ));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

impl Endpoints<'_> {
    /// `/.pomerium/jwt` (runtime flag `pomerium_jwt_endpoint`): the route
    /// host's assertion for the signed-in user, as text.
    fn jwt_endpoint(
        &self,
        snapshot: &Snapshot,
        host: &str,
        s: &Session,
    ) -> Result<Response<Body>, ProxyError> {
        let (token, _) = crate::identity::jwt::mint(
            &snapshot.identity.keys,
            &s.identity(),
            host,
            snapshot
                .route(host, "/")
                .map_or(snapshot.identity.issuer_format, |r| r.issuer_format),
            unix_now(),
        )
        .map_err(|e| ProxyError::Identity(e.to_string()))?;
        let mut r = Response::new(full(token.into_bytes()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/jwt"),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    }
}

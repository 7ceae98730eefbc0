//! The sign-in state shared by every request: discovered identity
//! providers, identity-provider token sessions, revocations, refresh pauses.

use crate::identity::oidc::{OidcHttp, Provider};
use crate::identity::revocation::Revocations;
use crate::identity::session::Session;
use crate::model::{IdpConfig, Snapshot};
use crate::proxy::clock::unix_now;
use crate::proxy::error::ProxyError;
use crate::proxy::upstream::Upstreams;
use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Login state and caches shared by all requests.
pub struct Authenticator {
    /// The discovered provider, read without a lock.
    pub(super) provider: ArcSwapOption<CachedProvider>,
    /// The same for the routes' own clients (`idp_client_id`), by id.
    pub(super) route_providers: arc_swap::ArcSwap<HashMap<String, Arc<CachedProvider>>>,
    /// Held by the one request that (re-)discovers; others keep using the
    /// last good provider meanwhile, or wait only when there is none.
    pub(super) discovering: tokio::sync::Mutex<()>,
    /// One-time values already used (state ids, hand-off ids) → expiry.
    pub(super) used: Mutex<HashMap<String, i64>>,
    /// Sessions ended by sign-out.
    pub revocations: Arc<Revocations>,
    /// Unix second before which no session refresh is tried: the IdP did
    /// not answer one in time, and every request waiting on it would stall.
    pub(super) refresh_paused_until: std::sync::atomic::AtomicI64,
    /// Sessions made from identity-provider tokens, by SHA-256 of the kind
    /// and the token, with the unix second until which they are reused.
    pub(super) idp_sessions: Mutex<HashMap<[u8; 32], (Session, i64)>>,
    /// Checks of identity-provider tokens at the provider, at most this many
    /// at once, so requests with made-up tokens cannot flood it.
    pub(super) idp_checks: tokio::sync::Semaphore,
    /// The latest discovery outcome of each provider client.
    pub idp_board: crate::proxy::idp_board::IdpBoard,
}

/// How long a session made from an IdP access token is reused before the
/// provider is asked again (so a revoked token stops working within it).
pub const IDP_ACCESS_TOKEN_REUSE_SECS: i64 = 60;
/// How long a session made from an IdP ID token is reused at most (never
/// past the token's `exp`).
pub const IDP_IDENTITY_TOKEN_REUSE_SECS: i64 = 300;
/// Sessions kept from IdP tokens at most.
pub(super) const IDP_SESSIONS_CAP: usize = 10_000;
/// Concurrent checks of IdP tokens at the provider.
pub(super) const IDP_CHECKS: usize = 16;

/// How long a request waits for a due session refresh (discovery
/// included) before it goes on with the session it has.
pub const REFRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// After a refresh fails for want of an answer, how long sessions go
/// unrefreshed (and requests unstalled) before the IdP is tried again.
pub const REFRESH_PAUSE_SECS: i64 = 30;

/// A discovered provider, re-discovered after [`PROVIDER_TTL`] so the IdP's
/// key rotations are picked up; if re-discovery fails the old one stays.
pub(super) struct CachedProvider {
    config: IdpConfig,
    redirect_uri: String,
    provider: Arc<Provider>,
    at: std::time::Instant,
}

/// How long discovery results (endpoints and the IdP's keys) are reused.
pub const PROVIDER_TTL: std::time::Duration = std::time::Duration::from_secs(300);

impl Default for Authenticator {
    fn default() -> Self {
        Self::new(Arc::new(Revocations::default()))
    }
}

impl Authenticator {
    /// An authenticator sharing `revocations` (e.g. with a task that keeps
    /// them in sync with other replicas).
    pub fn new(revocations: Arc<Revocations>) -> Self {
        Authenticator {
            provider: ArcSwapOption::empty(),
            route_providers: Default::default(),
            discovering: tokio::sync::Mutex::new(()),
            used: Mutex::new(HashMap::new()),
            revocations,
            refresh_paused_until: Default::default(),
            idp_sessions: Mutex::new(HashMap::new()),
            idp_checks: tokio::sync::Semaphore::new(IDP_CHECKS),
            idp_board: Default::default(),
        }
    }

    /// Forces re-discovery on the next use (e.g. after an ID token signed by
    /// a key the cached JWKS does not have).
    pub async fn expire_provider(&self) {
        let Some(t) = std::time::Instant::now().checked_sub(PROVIDER_TTL) else {
            return;
        };
        let aged = |c: &CachedProvider| {
            Arc::new(CachedProvider {
                config: c.config.clone(),
                redirect_uri: c.redirect_uri.clone(),
                provider: c.provider.clone(),
                at: t,
            })
        };
        if let Some(c) = self.provider.load_full() {
            self.provider.store(Some(aged(&c)));
        }
        self.route_providers.rcu(|m| {
            m.iter()
                .map(|(k, c)| (k.clone(), aged(c)))
                .collect::<HashMap<_, _>>()
        });
    }

    pub(super) fn cached(&self, idp_id: &str) -> Option<Arc<CachedProvider>> {
        match idp_id {
            "" => self.provider.load_full(),
            id => self.route_providers.load().get(id).cloned(),
        }
    }

    pub(super) fn cache(&self, idp_id: &str, c: Arc<CachedProvider>) {
        match idp_id {
            "" => self.provider.store(Some(c)),
            id => {
                self.route_providers.rcu(|m| {
                    let mut m = HashMap::clone(m);
                    m.insert(id.to_string(), c.clone());
                    m
                });
            }
        }
    }

    /// Marks a one-time value as used; false if it was used before.
    pub(super) fn first_use(&self, id: &str, exp: i64, now: i64) -> bool {
        let Ok(mut m) = self.used.lock() else {
            return false;
        };
        if m.len() > 10_000 {
            m.retain(|_, e| *e > now);
        }
        if m.contains_key(id) {
            return false;
        }
        m.insert(id.to_string(), exp);
        true
    }

    /// The discovered provider for the current IdP settings (discovered on
    /// first use and again when the settings change or discovery failed).
    pub async fn provider(
        &self,
        upstreams: &Upstreams,
        snapshot: &Snapshot,
    ) -> Result<Arc<Provider>, ProxyError> {
        self.provider_for(upstreams, snapshot, "").await
    }

    /// The discovered provider for the OAuth client `idp_id`: a route's own
    /// (`RouteIdp::id`), or the global one when empty.
    pub async fn provider_for(
        &self,
        upstreams: &Upstreams,
        snapshot: &Snapshot,
        idp_id: &str,
    ) -> Result<Arc<Provider>, ProxyError> {
        let (idp, redirect_uri) = idp_settings(snapshot, idp_id)?;
        let current = |p: &Option<Arc<CachedProvider>>| {
            p.clone()
                .filter(|c| c.config == *idp && c.redirect_uri == redirect_uri)
        };
        let cached = current(&self.cached(idp_id));
        if let Some(c) = &cached
            && c.at.elapsed() < PROVIDER_TTL
        {
            return Ok(c.provider.clone());
        }
        // Stale: one request re-discovers, the others go on with the old one.
        // None at all: wait for the one discovery in flight, then use it.
        let _turn = match &cached {
            Some(c) => match self.discovering.try_lock() {
                Ok(turn) => turn,
                Err(_) => return Ok(c.provider.clone()),
            },
            None => {
                let turn = self.discovering.lock().await;
                if let Some(c) = current(&self.cached(idp_id))
                    && c.at.elapsed() < PROVIDER_TTL
                {
                    return Ok(c.provider.clone());
                }
                turn
            }
        };
        let discovery = self.discover(upstreams, idp_id, idp, redirect_uri, cached);
        crate::proxy::trace::task("jetbridge.idp.discover", discovery).await
    }

    /// Fetches the provider's discovery document and keys, records how it
    /// went, and caches the result; while the provider is unreachable the
    /// last good discovery (`stale`) stays in use.
    async fn discover(
        &self,
        upstreams: &Upstreams,
        idp_id: &str,
        idp: &IdpConfig,
        redirect_uri: String,
        stale: Option<Arc<CachedProvider>>,
    ) -> Result<Arc<Provider>, ProxyError> {
        let client = upstreams
            .client(
                &crate::model::Upstream {
                    scheme: crate::model::UpstreamScheme::Https,
                    authority: String::new(),
                    base_path: String::new(),
                },
                &Default::default(),
            )
            .map_err(|e| ProxyError::Identity(e.to_string()))?;
        let provider = match Provider::discover(
            idp,
            &redirect_uri,
            OidcHttp::new(crate::proxy::upstream::IdpTransport(client)),
        )
        .await
        {
            Ok(p) => {
                self.idp_board
                    .record(idp_id, &idp.issuer_url, Ok(()), unix_now());
                p
            }
            Err(e) => {
                self.idp_board
                    .record(idp_id, &idp.issuer_url, Err(&e), unix_now());
                if let Some(c) = stale {
                    // Keep the last good discovery while the IdP is unreachable.
                    return Ok(c.provider.clone());
                }
                return Err(ProxyError::IdpUnavailable(format!(
                    "{}: {e}",
                    idp.issuer_url
                )));
            }
        };
        let p = Arc::new(provider);
        self.cache(
            idp_id,
            Arc::new(CachedProvider {
                config: idp.clone(),
                redirect_uri,
                provider: p.clone(),
                at: std::time::Instant::now(),
            }),
        );
        Ok(p)
    }
}

/// The OAuth client `idp_id` names (a route's own, or the global one when
/// empty) and the redirect URI it signs in with.
fn idp_settings<'s>(
    snapshot: &'s Snapshot,
    idp_id: &str,
) -> Result<(&'s IdpConfig, String), ProxyError> {
    let idp = match idp_id {
        "" => snapshot.auth.idp.as_ref().ok_or_else(|| {
            ProxyError::Identity("sign-in is not configured (no identity provider)".into())
        })?,
        id => snapshot
            .auth
            .route_idps
            .get(id)
            .map(|c| c.as_ref())
            .ok_or_else(|| {
                ProxyError::BadRequest("sign-in names an unknown identity provider client".into())
            })?,
    };
    let auth_url =
        snapshot.auth.authenticate_url.as_ref().ok_or_else(|| {
            ProxyError::Identity("authenticate_service_url is not configured".into())
        })?;
    Ok((idp, format!("{auth_url}/oauth2/callback")))
}

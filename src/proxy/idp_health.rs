//! Identity-provider discovery, checked ahead of the first sign-in.
//!
//! A task fetches each configured provider's discovery document (the
//! global client and every route's own client) as soon as a configuration
//! names it, and again whenever the configuration changes it: a wrong
//! `idp_provider_url` is reported within seconds of start, not at the first
//! sign-in. A failing provider is retried with backoff (1 s doubling to
//! 30 s); a working one is checked again when its cached discovery ages
//! out. Each outcome, whoever caused it (this task or a sign-in), is
//! recorded on the [`IdpBoard`]: a log line naming the URL when a provider
//! starts failing or recovers, the `jetbridge_idp_discovery_ok` metric and
//! the internal listener's `/healthz/idp`.
//!
//! Readiness does not depend on it: public routes keep serving while the
//! provider is unreachable, and routes that need sign-in answer 503 naming
//! the provider's URL.

use super::Proxy;
use crate::model::Snapshot;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First retry delay after a failed discovery.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often the task looks for a changed configuration.
const TICK: Duration = Duration::from_millis(500);

/// The label of the global OAuth client (routes' own clients are labelled
/// by their [`crate::model::RouteIdp::id`]).
pub const GLOBAL_LABEL: &str = "default";

/// What is known about one provider client's discovery.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IdpState {
    /// `default`, or a route's own client id label.
    pub idp: String,
    /// The issuer URL discovered.
    pub issuer: String,
    /// `None` until the first attempt ends.
    pub ok: Option<bool>,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix second of the last attempt's end (0: none yet).
    pub checked_at: i64,
}

/// The latest discovery outcome per provider client, read without a lock.
#[derive(Default)]
pub struct IdpBoard {
    states: ArcSwap<BTreeMap<String, IdpState>>,
}

/// The board's key and label for the client `idp_id` (empty: global).
fn label(idp_id: &str) -> &str {
    match idp_id {
        "" => GLOBAL_LABEL,
        id => id,
    }
}

impl IdpBoard {
    /// Every client's state, by label.
    pub fn states(&self) -> Vec<IdpState> {
        self.states.load().values().cloned().collect()
    }

    /// True when every configured client's last discovery worked.
    pub fn all_ok(&self) -> bool {
        self.states.load().values().all(|s| s.ok == Some(true))
    }

    /// The state of the client `idp_id` (empty: global).
    pub fn state(&self, idp_id: &str) -> Option<IdpState> {
        self.states.load().get(label(idp_id)).cloned()
    }

    /// Records a discovery of `issuer` for the client `idp_id`; logs when
    /// the client starts failing, fails differently, or recovers.
    pub fn record(&self, idp_id: &str, issuer: &str, outcome: Result<(), String>, now: i64) {
        let name = label(idp_id).to_string();
        let before = self.state(idp_id).filter(|s| s.issuer == issuer);
        let state = IdpState {
            idp: name.clone(),
            issuer: issuer.to_string(),
            ok: Some(outcome.is_ok()),
            error: outcome.err(),
            checked_at: now,
        };
        log_change(before.as_ref(), &state);
        self.states.rcu(|m| {
            let mut m = BTreeMap::clone(m);
            m.insert(name.clone(), state.clone());
            m
        });
    }

    /// Keeps exactly the clients of `wanted` (label → issuer): a client no
    /// longer configured is forgotten, a new one or one whose issuer
    /// changed starts unknown.
    fn track(&self, wanted: &BTreeMap<String, String>) {
        let current = self.states.load();
        let same = current.len() == wanted.len()
            && wanted
                .iter()
                .all(|(k, issuer)| current.get(k).is_some_and(|s| &s.issuer == issuer));
        if same {
            return;
        }
        self.states.rcu(|m| {
            wanted
                .iter()
                .map(|(k, issuer)| {
                    let kept = m.get(k).filter(|s| &s.issuer == issuer).cloned();
                    let state = kept.unwrap_or_else(|| IdpState {
                        idp: k.clone(),
                        issuer: issuer.clone(),
                        ok: None,
                        error: None,
                        checked_at: 0,
                    });
                    (k.clone(), state)
                })
                .collect::<BTreeMap<_, _>>()
        });
    }
}

/// The log line for a change of a client's discovery state.
fn log_change(before: Option<&IdpState>, now: &IdpState) {
    match (&now.error, before.and_then(|b| b.ok)) {
        (Some(e), _) if before.and_then(|b| b.error.as_ref()) != Some(e) => tracing::error!(
            idp = %now.idp,
            issuer = %now.issuer,
            error = %e,
            "identity provider discovery failed for {}: sign-in fails (503) until it succeeds; retrying",
            now.issuer
        ),
        (None, Some(false)) => tracing::info!(
            idp = %now.idp,
            issuer = %now.issuer,
            "identity provider discovery succeeded for {} again; sign-in works",
            now.issuer
        ),
        (None, None) if before.is_none_or(|b| b.checked_at == 0) => tracing::info!(
            idp = %now.idp,
            issuer = %now.issuer,
            "identity provider discovered at {}",
            now.issuer
        ),
        _ => {}
    }
}

/// The clients a snapshot configures: label → (client id for
/// [`super::auth::Authenticator::provider_for`], issuer URL); empty without
/// `authenticate_service_url` (sign-in is then not configured at all).
fn configured(snapshot: &Snapshot) -> BTreeMap<String, (String, String)> {
    let auth = &snapshot.auth;
    if auth.authenticate_url.is_none() {
        return BTreeMap::new();
    }
    let global = auth
        .idp
        .as_ref()
        .map(|i| (String::new(), i.issuer_url.clone()));
    let routes = auth
        .route_idps
        .iter()
        .map(|(id, c)| (id.clone(), c.issuer_url.clone()));
    global
        .into_iter()
        .chain(routes)
        .map(|(id, issuer)| (label(&id).to_string(), (id, issuer)))
        .collect()
}

/// When a client is checked next, the delay that led there, and whether
/// its last check failed (so the next failure doubles the delay).
#[derive(Clone, Copy)]
struct Schedule {
    next: Instant,
    delay: Duration,
    failing: bool,
}

/// Checks discovery of every configured client until `shutdown`: at once
/// for a new or changed client, then with backoff while it fails and at
/// the discovery cache's age limit while it works.
pub async fn run(proxy: Arc<Proxy>, shutdown: CancellationToken) {
    let mut schedule: HashMap<String, Schedule> = HashMap::new();
    loop {
        if let Some(snapshot) = proxy.reader.load() {
            let clients = configured(&snapshot);
            let wanted = clients
                .iter()
                .map(|(k, (_, issuer))| (k.clone(), issuer.clone()))
                .collect();
            proxy.auth.idp_board.track(&wanted);
            schedule.retain(|k, _| clients.contains_key(k));
            for (name, (id, _)) in &clients {
                if shutdown.is_cancelled() {
                    return;
                }
                check_if_due(&proxy, &snapshot, name, id, &mut schedule).await;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Checks the client `id` (labelled `name`) if it is new, changed or due,
/// and plans its next check from the outcome the board recorded.
async fn check_if_due(
    proxy: &Proxy,
    snapshot: &Snapshot,
    name: &str,
    id: &str,
    schedule: &mut HashMap<String, Schedule>,
) {
    let fresh = proxy
        .auth
        .idp_board
        .state(id)
        .is_some_and(|s| s.ok.is_none());
    let due = match schedule.get(name) {
        Some(s) => fresh || Instant::now() >= s.next,
        None => true,
    };
    if !due {
        return;
    }
    // The outcome is recorded on the board by the discovery itself.
    let _ = proxy
        .auth
        .provider_for(&proxy.upstreams, snapshot, id)
        .await;
    let failed = proxy
        .auth
        .idp_board
        .state(id)
        .is_some_and(|s| s.ok == Some(false));
    let delay = match (failed, schedule.get(name)) {
        (false, _) => super::auth::PROVIDER_TTL,
        (true, Some(s)) if s.failing && !fresh => (s.delay * 2).min(RETRY_MAX),
        (true, _) => RETRY_FIRST,
    };
    let next = Instant::now() + delay;
    schedule.insert(
        name.to_string(),
        Schedule {
            next,
            delay,
            failing: failed,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_keeps_configured_clients_and_forgets_the_rest() {
        let b = IdpBoard::default();
        let wanted: BTreeMap<String, String> =
            [("default".to_string(), "https://idp.example".to_string())].into();
        b.track(&wanted);
        assert_eq!(b.state("").unwrap().ok, None);
        assert!(!b.all_ok());
        b.record("", "https://idp.example", Err("refused".into()), 5);
        assert_eq!(b.state("").unwrap().ok, Some(false));
        b.record("", "https://idp.example", Ok(()), 6);
        assert!(b.all_ok());
        // A changed issuer starts unknown again; an unconfigured client goes.
        let moved: BTreeMap<String, String> =
            [("default".to_string(), "https://other.example".to_string())].into();
        b.track(&moved);
        assert_eq!(b.state("").unwrap().ok, None);
        b.track(&BTreeMap::new());
        assert!(b.states().is_empty());
    }
}

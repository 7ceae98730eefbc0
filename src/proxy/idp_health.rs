//! Identity-provider discovery, checked ahead of the first sign-in.
//!
//! A task fetches each configured provider's discovery document (the
//! global client and every route's own client) as soon as a configuration
//! names it, and again whenever the configuration changes it: a wrong
//! `idp_provider_url` is reported within seconds of start, not at the first
//! sign-in. A failing provider is retried with backoff (1 s doubling to
//! 30 s); a working one is checked again when its cached discovery ages
//! out. Each outcome, whoever caused it (this task or a sign-in), is
//! recorded on the [`IdpBoard`](super::idp_board::IdpBoard): a log line naming the URL when a provider
//! starts failing or recovers, the `jetbridge_idp_discovery_ok` metric and
//! the internal listener's `/healthz/idp`.
//!
//! Readiness does not depend on it: public routes keep serving while the
//! provider is unreachable, and routes that need sign-in answer 503 naming
//! the provider's URL.

use super::Proxy;
use super::idp_board::label;
use crate::model::Snapshot;
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

/// The clients a snapshot configures: label → (client id for
/// [`super::auth::state::Authenticator::provider_for`], issuer URL); empty without
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
        (false, _) => super::auth::state::PROVIDER_TTL,
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
    use super::super::idp_board::IdpBoard;
    use super::*;

    #[test]
    fn the_board_keeps_configured_clients_and_forgets_the_rest() {
        let b = IdpBoard::default();
        let wanted: BTreeMap<String, String> =
            [("default".to_string(), "https://idp.example".to_string())].into();
        b.track(&wanted);
        assert_eq!(b.state("").unwrap().ok, None);
        assert!(!b.all_ok());
        b.record(
            "",
            "https://idp.example",
            Err(&crate::identity::oidc::OidcError::Unreachable(
                "refused".into(),
            )),
            5,
        );
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

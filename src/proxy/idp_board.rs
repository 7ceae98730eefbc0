//! The latest identity-provider discovery outcome per provider client, as
//! the metrics, the internal listener and sign-in read it; written by
//! discovery (the `idp_health` task or a sign-in). Imports no other proxy
//! module.

use crate::identity::oidc::OidcError;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;

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
pub(crate) fn label(idp_id: &str) -> &str {
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
    pub fn record(&self, idp_id: &str, issuer: &str, outcome: Result<(), &OidcError>, now: i64) {
        let name = label(idp_id).to_string();
        let before = self.state(idp_id).filter(|s| s.issuer == issuer);
        let state = IdpState {
            idp: name.clone(),
            issuer: issuer.to_string(),
            ok: Some(outcome.is_ok()),
            error: outcome.err().map(ToString::to_string),
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
    pub(crate) fn track(&self, wanted: &BTreeMap<String, String>) {
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

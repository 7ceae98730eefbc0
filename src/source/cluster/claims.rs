//! Host claims shared by the replicas and kept across restarts: the claims
//! worth storing ([`crate::translate::hosts::Assignment::stored`]) live in a
//! ConfigMap in the bootstrap Secret's namespace, one key per host
//! ([`host_key`]), valued `namespace` or `namespace released=<unix seconds>`.
//! An administrator releases a held host by deleting its key.
//!
//! Every translation reads the stored claims ([`ClaimStore::stored`]) next to
//! the ones it remembers; a writer task keeps the ConfigMap equal to the
//! latest claims worth storing. Writes carry the resourceVersion they were
//! computed from, so two replicas never overwrite each other blindly: the
//! loser re-reads and tries again with what is current.

use super::leader::Leadership;
use crate::translate::hosts::{HostClaim, HostClaims, host_key, key_host};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The claims ConfigMap, watched.
#[derive(Clone)]
pub struct ClaimStore {
    store: Store<ConfigMap>,
}

impl ClaimStore {
    /// Starts watching the ConfigMap `name`; every change wakes `changed`.
    pub fn start(api: Api<ConfigMap>, name: &str, changed: Arc<Notify>) -> Self {
        let store = super::watch_config_map(api, name, changed, "host claims", false);
        ClaimStore { store }
    }

    /// Waits for the first list.
    pub async fn wait_until_ready(&self) {
        let _ = self.store.wait_until_ready().await;
    }

    /// The stored claims (entries that cannot be read are skipped).
    pub fn stored(&self) -> HostClaims {
        self.store
            .state()
            .first()
            .map(|cm| read(cm))
            .unwrap_or_default()
    }
}

fn read(cm: &ConfigMap) -> HostClaims {
    cm.data
        .iter()
        .flatten()
        .filter_map(|(k, v)| HostClaim::from_text(v).map(|c| (key_host(k), c)))
        .collect()
}

/// What this replica remembers between translations.
#[derive(Default)]
pub struct Memory {
    remembered: HostClaims,
    last_stored: HostClaims,
}

impl Memory {
    /// The claims a translation starts from: what it remembers, with every
    /// stored claim taking precedence (the store is what all replicas
    /// share). A key deleted from the store since the last look is
    /// forgotten: that is how an administrator releases a held host.
    pub fn start_from(&mut self, stored: HostClaims) -> HostClaims {
        for gone in self.last_stored.keys().filter(|h| !stored.contains_key(*h)) {
            self.remembered.remove(gone);
        }
        let mut out = self.remembered.clone();
        out.extend(stored.iter().map(|(h, c)| (h.clone(), c.clone())));
        self.last_stored = stored;
        out
    }

    /// Remembers a translation's claims.
    pub fn remember(&mut self, claims: HostClaims) {
        self.remembered = claims;
    }
}

/// Keeps the ConfigMap `name` equal to the latest claims sent on `latest`
/// until `shutdown`, while this replica holds the Lease (the others only
/// read it).
pub async fn write(
    api: Api<ConfigMap>,
    name: String,
    mut latest: watch::Receiver<HostClaims>,
    leadership: Leadership,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut leading = leadership.subscribe();
    loop {
        let retry = if *leading.borrow_and_update() {
            let want = latest.borrow_and_update().clone();
            match sync_once(&api, &name, &want).await {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(configmap = %name, error = %e, "cannot store host claims; retrying");
                    true
                }
            }
        } else {
            false
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = latest.changed(), if !retry => if r.is_err() { return },
            r = leading.changed(), if !retry => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)), if retry => {}
        }
    }
}

/// One read-compare-write of the ConfigMap.
async fn sync_once(api: &Api<ConfigMap>, name: &str, want: &HostClaims) -> Result<(), kube::Error> {
    let data: BTreeMap<String, String> = want
        .iter()
        .map(|(h, c)| (host_key(h), c.to_text()))
        .collect();
    let current = match api.get_opt(name).await? {
        Some(cm) => cm,
        None if data.is_empty() => return Ok(()),
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            return api.create(&PostParams::default(), &cm).await.map(|_| ());
        }
    };
    let have = current.data.clone().unwrap_or_default();
    if have == data {
        return Ok(());
    }
    let mut patch = serde_json::Map::new();
    for (k, v) in &data {
        if have.get(k) != Some(v) {
            patch.insert(k.clone(), v.clone().into());
        }
    }
    for k in have.keys().filter(|k| !data.contains_key(*k)) {
        patch.insert(k.clone(), serde_json::Value::Null);
    }
    let body = serde_json::json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "data": patch,
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
}

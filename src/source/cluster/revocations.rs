//! Sign-outs shared between replicas: every replica keeps the revoked
//! session ids it learns in a ConfigMap (`<sid>: <expiry>`, in the bootstrap
//! Secret's namespace) and merges what the others wrote. Entries are pruned
//! once their session would have expired, so the object stays small; no
//! store of our own is needed.

use crate::identity::revocation::Revocations;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Entries of the ConfigMap: `sid → expiry` (unix seconds).
fn entries(cm: &ConfigMap) -> BTreeMap<String, i64> {
    cm.data
        .iter()
        .flatten()
        .filter_map(|(k, v)| v.trim().parse::<i64>().ok().map(|e| (k.clone(), e)))
        .collect()
}

/// Keeps `revocations` and the ConfigMap `name` in step until `shutdown`.
pub async fn sync(
    api: Api<ConfigMap>,
    name: String,
    revocations: Arc<Revocations>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let remote = Arc::new(tokio::sync::Notify::new());
    let store =
        super::watch_config_map(api.clone(), &name, remote.clone(), "revocation list", true);
    loop {
        let now = crate::proxy::clock::unix_now();
        let current = store.state().first().map(|cm| entries(cm));
        if let Some(remote_entries) = &current {
            let added = revocations.merge(remote_entries.clone(), now);
            if added > 0 {
                tracing::info!(added, "sessions revoked on other replicas");
            }
        }
        let local: BTreeMap<String, i64> = revocations.entries(now).into_iter().collect();
        match &current {
            None if !local.is_empty() => create(&api, &name, &local, &remote).await,
            None => {}
            Some(remote_entries) => update(&api, &name, &local, remote_entries, now).await,
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = revocations.changed() => {}
            _ = remote.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// Creates the ConfigMap with this replica's entries; when another replica
/// created it first, `remote` is woken to merge and patch instead.
async fn create(
    api: &Api<ConfigMap>,
    name: &str,
    local: &BTreeMap<String, i64>,
    remote: &tokio::sync::Notify,
) {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(
            local
                .iter()
                .map(|(k, e)| (k.clone(), e.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &cm).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => remote.notify_one(),
        Err(e) => tracing::warn!(error = %e, "cannot create the revocation list"),
    }
}

/// Patches the ConfigMap: adds the entries it misses, drops the expired ones.
async fn update(
    api: &Api<ConfigMap>,
    name: &str,
    local: &BTreeMap<String, i64>,
    remote_entries: &BTreeMap<String, i64>,
    now: i64,
) {
    let mut data = serde_json::Map::new();
    for (k, e) in local
        .iter()
        .filter(|(k, e)| remote_entries.get(*k) != Some(*e))
    {
        data.insert(k.clone(), e.to_string().into());
    }
    for (k, _) in remote_entries.iter().filter(|(_, e)| **e <= now) {
        data.insert(k.clone(), serde_json::Value::Null);
    }
    if data.is_empty() {
        return;
    }
    let patch = serde_json::json!({"data": data});
    if let Err(e) = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(error = %e, "cannot update the revocation list");
    }
}

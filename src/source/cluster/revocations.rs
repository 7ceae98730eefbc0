//! Revocations shared between replicas: one ConfigMap (in the bootstrap
//! Secret's namespace) holds the table of `identity::revocation` — session
//! entries from sign-outs, user entries from `jetbridge revoke` and from
//! compaction. Every replica watches it and merges what it holds; a replica
//! writes only what it revoked itself, and deletes what expired or a user
//! entry covers, so the object stays under its limit and replicas never
//! write back what another removed. Near the limit a Warning Event is
//! written on the ConfigMap; over it, the users with most entries are
//! compacted (see `identity::revocation`). No store of our own is needed.

use super::events::{EventWriter, Kind};
use crate::identity::revocation::{self, NEAR_LIMIT_PERCENT, Revocations, Revoke, Table};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Where the table is kept and how it is bounded.
#[derive(Clone, Debug)]
pub struct Store {
    pub namespace: String,
    pub name: String,
    /// The longest a session lives (seconds): how long a user entry without
    /// its own expiry is kept.
    pub lifetime: i64,
    /// The most bytes of data the ConfigMap is given.
    pub max_bytes: usize,
}

/// The data of the ConfigMap.
fn data_of(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

/// The ConfigMap, for Events.
fn reference(store: &Store, cm: Option<&ConfigMap>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        namespace: Some(store.namespace.clone()),
        name: Some(store.name.clone()),
        uid: cm.and_then(|c| c.metadata.uid.clone()),
        ..Default::default()
    }
}

/// Keeps `revocations` and the ConfigMap in step until `shutdown`.
pub async fn sync(
    client: Client,
    store: Store,
    instance: String,
    revocations: Arc<Revocations>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &store.namespace);
    let remote = Arc::new(tokio::sync::Notify::new());
    let watched = super::watch_config_map(
        api.clone(),
        &store.name,
        remote.clone(),
        "revocation list",
        true,
    );
    let mut events = EventWriter::new(client, "jetbridge", &instance);
    let stats = &revocations.stats;
    stats
        .max_bytes
        .store(store.max_bytes as u64, std::sync::atomic::Ordering::Relaxed);
    let mut near = false;
    loop {
        let now = crate::proxy::clock::unix_now();
        let cm = watched.state().first().map(|c| ConfigMap::clone(c));
        let size = step(
            &api,
            &store,
            cm.as_ref(),
            &revocations,
            &mut events,
            &remote,
            now,
        )
        .await;
        let is_near = size * 100 >= store.max_bytes * NEAR_LIMIT_PERCENT;
        if is_near && !near {
            let note = format!(
                "revocation list {}/{} holds {size} of {} bytes; over the limit the users with most signed-out sessions are compacted into one entry each",
                store.namespace, store.name, store.max_bytes
            );
            tracing::warn!("{note}");
            let r = reference(&store, cm.as_ref());
            publish(
                &mut events,
                &r,
                Kind::Warning,
                "RevocationsNearLimit",
                &note,
            )
            .await;
        }
        near = is_near;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = revocations.changed() => {}
            _ = remote.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// One round: merges the ConfigMap, writes what this replica revoked and
/// what expired; returns the size of the stored data.
async fn step(
    api: &Api<ConfigMap>,
    store: &Store,
    cm: Option<&ConfigMap>,
    revocations: &Revocations,
    events: &mut EventWriter,
    remote: &tokio::sync::Notify,
    now: i64,
) -> usize {
    use std::sync::atomic::Ordering::Relaxed;
    let data = cm.map(data_of).unwrap_or_default();
    let added = revocations.merge(&Table::decode(&data, store.lifetime), now);
    if added > 0 {
        tracing::info!(added, "revocations learned from the shared list");
    }
    let pending = revocations.take_pending();
    let plan = revocation::plan(&data, &pending, now, store.lifetime, store.max_bytes);
    let stats = &revocations.stats;
    if plan.changes.is_empty() {
        stats.bytes.store(plan.size as u64, Relaxed);
        return plan.size;
    }
    Revocations::count(&stats.writes);
    if let Err(e) = write(api, &store.name, cm.is_some(), &plan.changes, remote).await {
        revocations.restore_pending(&pending);
        Revocations::count(&stats.write_failures);
        tracing::warn!(error = %e, list = %store.name, "cannot update the revocation list; this replica keeps refusing the sessions it revoked and retries");
        let size = revocation::data_size(&data);
        stats.bytes.store(size as u64, Relaxed);
        return size;
    }
    stats.bytes.store(plan.size as u64, Relaxed);
    if plan.compaction.users > 0 {
        Revocations::count(&stats.compactions);
        let note = format!(
            "revocation list over {} bytes: {} signed-out sessions of {} users replaced by one not-before entry per user (their other sessions issued before now sign in again); now {} bytes",
            store.max_bytes, plan.compaction.removed, plan.compaction.users, plan.size
        );
        tracing::warn!("{note}");
        let r = reference(store, cm);
        publish(events, &r, Kind::Warning, "RevocationsCompacted", &note).await;
    }
    plan.size
}

/// Writes an Event, logging a failure.
async fn publish(
    events: &mut EventWriter,
    r: &ObjectReference,
    kind: Kind,
    reason: &str,
    note: &str,
) {
    if let Err(e) = events.publish(r, kind, reason, note).await {
        tracing::warn!(error = %e, reason, "cannot write the revocation Event");
    }
}

/// Applies `changes` to the ConfigMap `name` (created when `exists` is
/// false); when another writer created it first, `remote` is woken to merge
/// and write again.
async fn write(
    api: &Api<ConfigMap>,
    name: &str,
    exists: bool,
    changes: &BTreeMap<String, Option<String>>,
    remote: &tokio::sync::Notify,
) -> Result<(), kube::Error> {
    if !exists {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            data: Some(
                changes
                    .iter()
                    .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                    .collect(),
            ),
            ..Default::default()
        };
        return match api.create(&PostParams::default(), &cm).await {
            Ok(_) => Ok(()),
            Err(e) => {
                if matches!(&e, kube::Error::Api(s) if s.code == 409) {
                    remote.notify_one();
                }
                Err(e)
            }
        };
    }
    let patch = serde_json::json!({ "data": changes });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Revokes for an operator: writes the user's not-before (or the one
/// session's entry) into the ConfigMap every replica watches, and records
/// an Event on it naming the user and who ran it. Returns the Event's note.
pub async fn revoke(client: Client, store: &Store, what: &Revoke) -> Result<String, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &store.namespace);
    let now = crate::proxy::clock::unix_now();
    let entry = what.entry(now, store.lifetime);
    let cm = store_entry(&api, &store.name, &entry).await?;
    let who = whoami(&client).await;
    let note = what.note(&who);
    tracing::info!(user = %what.user, session = ?what.session, by = %who, configmap = %store.name, "{note}");
    let mut events = EventWriter::new(client, "jetbridge", "jetbridge-revoke");
    events
        .publish(&reference(store, Some(&cm)), Kind::Normal, "Revoked", &note)
        .await?;
    Ok(note)
}

/// Adds `entry` to the ConfigMap (created if missing), keeping the later
/// cutoff and expiry when the key is already there.
async fn store_entry(
    api: &Api<ConfigMap>,
    name: &str,
    entry: &BTreeMap<String, String>,
) -> Result<ConfigMap, kube::Error> {
    let mut attempt = 0;
    loop {
        let current = api.get_opt(name).await?;
        let data = current.as_ref().map(data_of).unwrap_or_default();
        let changes = revocation::entry_changes(&data, entry);
        let remote = tokio::sync::Notify::new();
        match write(api, name, current.is_some(), &changes, &remote).await {
            Ok(()) => return api.get(name).await,
            // Created or changed meanwhile: read it again.
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 3 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Who the client authenticates as (the API server's answer), or `unknown`.
async fn whoami(client: &Client) -> String {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    match api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
    {
        Ok(r) => r
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .unwrap_or_else(|| "unknown".into()),
        Err(e) => {
            tracing::debug!(error = %e, "cannot tell who the client is");
            "unknown".into()
        }
    }
}

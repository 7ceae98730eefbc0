//! `jetbridge controller`: the only user of `kube::Client`.
//!
//! Reflectors (kube-runtime watchers with backoff) keep stores of
//! IngressClasses, Ingresses, Policies, Services, EndpointSlices, TLS
//! Secrets and the bootstrap Secret. After the initial sync, and then after
//! every burst of changes (debounced), the stores are read into
//! [`crate::translate::cluster::from_cluster`], translated with the global
//! settings and the bootstrap keys, and published only if the snapshot
//! changed. Problems become Warning Events on their objects (once, not per
//! resync) and Policy status conditions. A watch that fails keeps its last
//! store: an API server outage never turns into an empty configuration.

pub mod bootstrap;
pub mod claims;
pub mod leader;
pub mod revocations;

use crate::crd::{Condition, Policy, PolicyStatus, WatchedPolicy};
use crate::model::{Diagnostic, ObjectRef, Severity};
use crate::settings::ConfigFile;
use crate::standalone::{Generated, inputs_from_config};
use crate::translate::cluster::{Cluster, ClusterSettings, PolicyOutcome, from_cluster};
use crate::translate::driver::{Applied, Driver};
use bootstrap::BootstrapKeys;
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Resource, ResourceExt as _};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Errors of the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("bootstrap Secret: {0}")]
    Bootstrap(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// How the controller reads the cluster.
#[derive(Clone, Debug)]
pub struct Options {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// Namespace and name of the bootstrap Secret.
    pub bootstrap_namespace: String,
    pub bootstrap_name: String,
    pub cluster: ClusterSettings,
    /// This replica's name (Events' reporting instance).
    pub instance: String,
    /// Quiet time after a change before translating (bursts become one publish).
    pub debounce: Duration,
    /// Where Ingress `status.loadBalancer` comes from (nothing is written
    /// when neither is set).
    pub publish_service: Option<(String, String)>,
    pub publish_addresses: Vec<String>,
    /// The Lease (in the bootstrap Secret's namespace) that elects the
    /// replica writing Ingress status.
    pub lease_name: String,
    pub lease: leader::Timing,
    /// The ConfigMap (in the bootstrap Secret's namespace) that shares
    /// sign-outs between replicas.
    pub revocations_name: String,
    /// The ConfigMap (in the bootstrap Secret's namespace) that keeps host
    /// claims across redeploys, replicas and restarts.
    pub claims_name: String,
}

/// One reflector store per watched namespace (or one for all).
struct Stores<K: Resource + Clone + 'static>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    stores: Vec<Store<K>>,
}

impl<K> Stores<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Default,
{
    /// Starts watchers; every event wakes `changed`.
    fn start(
        apis: Vec<Api<K>>,
        config: watcher::Config,
        changed: Arc<Notify>,
        what: &'static str,
    ) -> Self {
        let mut stores = Vec::new();
        for api in apis {
            let (store, writer) = reflector::store::<K>();
            let stream =
                reflector::reflector(writer, watcher(api, config.clone()).default_backoff());
            let changed = changed.clone();
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(_) => changed.notify_one(),
                        Err(e) => {
                            tracing::warn!(kind = what, error = %e, "watch failed; keeping the last known objects and retrying")
                        }
                    }
                }
            });
            stores.push(store);
        }
        Stores { stores }
    }

    async fn wait_until_ready(&self) {
        for s in &self.stores {
            let _ = s.wait_until_ready().await;
        }
    }

    fn state(&self) -> Vec<Arc<K>> {
        self.stores.iter().flat_map(|s| s.state()).collect()
    }
}

fn apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// Runs the controller until `shutdown`: publishes the first snapshot after
/// the initial sync and the bootstrap keys, then one per burst of changes.
pub async fn run(
    client: Client,
    options: Options,
    base: ConfigFile,
    mut driver: Driver,
    revoked: Arc<crate::identity::revocation::Revocations>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), Error> {
    tokio::spawn(revocations::sync(
        Api::namespaced(client.clone(), &options.bootstrap_namespace),
        options.revocations_name.clone(),
        revoked,
        shutdown.clone(),
    ));
    let changed = Arc::new(Notify::new());
    let ns = &options.namespaces;
    let classes = Stores::<IngressClass>::start(
        vec![Api::all(client.clone())],
        watcher::Config::default(),
        changed.clone(),
        "IngressClass",
    );
    let ingresses = Stores::<Ingress>::start(
        apis(&client, ns),
        watcher::Config::default(),
        changed.clone(),
        "Ingress",
    );
    let policies = Stores::<WatchedPolicy>::start(
        apis(&client, ns),
        watcher::Config::default(),
        changed.clone(),
        "Policy",
    );
    let services = Stores::<Service>::start(
        apis(&client, ns),
        watcher::Config::default(),
        changed.clone(),
        "Service",
    );
    let slices = Stores::<EndpointSlice>::start(
        apis(&client, ns),
        watcher::Config::default(),
        changed.clone(),
        "EndpointSlice",
    );
    // Only the Secret types routes can name: TLS Secrets (spec.tls), Opaque
    // ones (`tls_custom_ca_secret`, `set_*_headers_secret`) and
    // service-account tokens (`kubernetes_service_account_token_secret`).
    // Other types (e.g. helm release records) are never fetched.
    let tls = Stores::<Secret>::start(
        apis(&client, ns),
        watcher::Config::default().fields("type=kubernetes.io/tls"),
        changed.clone(),
        "Secret",
    );
    let opaque = Stores::<Secret>::start(
        apis(&client, ns),
        watcher::Config::default().fields("type=Opaque"),
        changed.clone(),
        "Secret (Opaque)",
    );
    let sa_tokens = Stores::<Secret>::start(
        apis(&client, ns),
        watcher::Config::default().fields("type=kubernetes.io/service-account-token"),
        changed.clone(),
        "Secret (service-account-token)",
    );
    let claims_api = Api::namespaced(client.clone(), &options.bootstrap_namespace);
    let claim_store =
        claims::ClaimStore::start(claims_api.clone(), &options.claims_name, changed.clone());
    let (claims_tx, claims_rx) = tokio::sync::watch::channel(Default::default());
    let bootstrap_api: Api<Secret> = Api::namespaced(client.clone(), &options.bootstrap_namespace);
    let boot = Stores::<Secret>::start(
        vec![bootstrap_api.clone()],
        watcher::Config::default().fields(&format!("metadata.name={}", options.bootstrap_name)),
        changed.clone(),
        "bootstrap Secret",
    );

    // The bootstrap keys first: without them nothing is published (not ready).
    let mut keys = loop {
        match bootstrap::ensure(
            &bootstrap_api,
            &options.bootstrap_name,
            BootstrapKeys::generate(),
        )
        .await
        {
            Ok(k) => break k,
            Err(e) => {
                tracing::error!(error = %e, "cannot load the bootstrap Secret; retrying (not ready)");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    tracing::info!(kid = %keys.kid(), secret = %format!("{}/{}", options.bootstrap_namespace, options.bootstrap_name), "bootstrap keys loaded");

    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        _ = async {
            classes.wait_until_ready().await;
            ingresses.wait_until_ready().await;
            policies.wait_until_ready().await;
            services.wait_until_ready().await;
            slices.wait_until_ready().await;
            tls.wait_until_ready().await;
            opaque.wait_until_ready().await;
            sa_tokens.wait_until_ready().await;
            boot.wait_until_ready().await;
            claim_store.wait_until_ready().await;
        } => {}
    }
    tracing::info!("initial sync complete");

    let leadership = leader::Leadership::default();
    let publishing = options.publish_service.is_some() || !options.publish_addresses.is_empty();
    if publishing {
        tokio::spawn(leader::run(
            Api::namespaced(client.clone(), &options.bootstrap_namespace),
            options.lease_name.clone(),
            options.instance.clone(),
            options.lease,
            leadership.clone(),
            changed.clone(),
            shutdown.clone(),
        ));
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "jetbridge".into(),
            instance: Some(options.instance.clone()),
        },
    );
    // Events and status are written by a task of their own, from the latest
    // outcome: publishing never waits for the API server's writes (the first
    // sync of 1k Ingresses writes 1k Events).
    let (outcomes, latest) = tokio::sync::watch::channel::<Option<Arc<Reported>>>(None);
    tokio::spawn(reporter(
        latest,
        recorder.clone(),
        client.clone(),
        options.clone(),
        publishing,
        leadership.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(claims::write(
        claims_api,
        options.claims_name.clone(),
        claims_rx,
        shutdown.clone(),
    ));
    let mut memory = claims::Memory::default();
    let mut generated = Generated::default();
    let mut bootstrap_seen = false;
    let mut bootstrap_error: Option<String> = None;
    loop {
        // Bootstrap Secret: follow edits, keep the last good keys when it is
        // corrupt, re-create it from memory when it is deleted.
        match boot.state().first() {
            Some(s) => {
                bootstrap_seen = true;
                match bootstrap::parse(s) {
                    Ok(k) => {
                        if k != keys {
                            tracing::info!(kid = %k.kid(), "bootstrap Secret changed; new keys");
                            keys = k;
                        }
                        bootstrap_error = None;
                    }
                    Err(e) => {
                        driver.record_failure();
                        if bootstrap_error.as_deref() != Some(e.as_str()) {
                            tracing::error!(secret = %format!("{}/{}", options.bootstrap_namespace, options.bootstrap_name), error = %e, "bootstrap Secret is corrupt; keeping the last good keys");
                            let reference = s.object_ref(&());
                            warn_event(
                                &recorder,
                                &reference,
                                "InvalidBootstrapSecret",
                                &format!("{e}; the last good keys stay in use"),
                            )
                            .await;
                            bootstrap_error = Some(e);
                        }
                    }
                }
            }
            None if bootstrap_seen => {
                tracing::warn!("bootstrap Secret deleted; re-creating it from the keys in memory");
                if let Err(e) =
                    bootstrap::ensure(&bootstrap_api, &options.bootstrap_name, keys.clone()).await
                {
                    tracing::error!(error = %e, "cannot re-create the bootstrap Secret");
                }
                bootstrap_seen = false;
            }
            None => {}
        }

        let cluster = Cluster {
            ingresses: ingresses.state(),
            classes: classes.state(),
            policies: policies.state(),
            services: services.state(),
            slices: slices.state(),
            secrets: [tls.state(), opaque.state(), sa_tokens.state()].concat(),
            claims: memory.start_from(claim_store.stored()),
            now: crate::proxy::unix_now(),
        };
        let outcome = from_cluster(&cluster, &options.cluster);
        memory.remember(outcome.hosts.claims.clone());
        let stored = outcome.hosts.stored();
        claims_tx.send_if_modified(|c| {
            let changed = *c != stored;
            *c = stored;
            changed
        });
        let next_expiry = next_release(&outcome.hosts, cluster.now);
        let mut cfg = base.clone();
        cfg.signing_key = Some(keys.signing_key.clone());
        cfg.signing_key_file = None;
        cfg.cookie_secret = Some(keys.cookie_secret.to_base64());
        cfg.shared_secret = Some(keys.shared_secret.to_base64());
        let mut warnings = Vec::new();
        // A cluster is never all or nothing: a bad object is its own route's
        // problem, so the driver is told to accept every snapshot.
        let applied =
            inputs_from_config(&cfg, &mut generated, &mut warnings).and_then(|mut inputs| {
                inputs.routes.extend(outcome.routes.iter().cloned());
                inputs
                    .diagnostics
                    .extend(outcome.diagnostics.iter().cloned());
                inputs
                    .global
                    .certificates
                    .extend(outcome.certificates.iter().cloned());
                driver.apply(inputs, crate::proxy::unix_now(), |_| Ok(()))
            });
        match applied {
            Ok(Applied {
                generation,
                diagnostics,
            }) => {
                if let Some(generation) = generation {
                    tracing::info!(
                        generation,
                        routes = outcome.routes.len(),
                        ingresses = outcome.managed.len(),
                        "configuration published"
                    );
                }
                driver.record_success();
                let _ = outcomes.send(Some(Arc::new(Reported {
                    cluster,
                    diagnostics,
                    managed: outcome.managed,
                    policies: outcome.policies,
                })));
            }
            Err(e) => {
                driver.record_failure();
                tracing::error!(error = %e, "global settings invalid; keeping the running configuration");
            }
        }
        crate::memory::release();

        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = changed.notified() => {}
            _ = tokio::time::sleep(next_expiry) => {} // retired keys, held hosts, re-checks
        }
        // Debounce: wait for a quiet moment so a burst publishes once.
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = changed.notified() => continue,
                _ = tokio::time::sleep(options.debounce) => break,
            }
        }
    }
}

/// How long until the next re-check: 30 s, or sooner when a held host's
/// claim ends before that.
fn next_release(hosts: &crate::translate::hosts::Assignment, now: i64) -> Duration {
    hosts
        .owners
        .values()
        .filter_map(|o| match o.ownership {
            crate::translate::hosts::Ownership::Held { until } => Some(until),
            _ => None,
        })
        .map(|until| Duration::from_secs(until.saturating_sub(now).clamp(1, 30) as u64))
        .min()
        .unwrap_or(Duration::from_secs(30))
}

/// What one translation tells the cluster about.
struct Reported {
    cluster: Cluster,
    diagnostics: Vec<Diagnostic>,
    managed: Vec<String>,
    policies: Vec<PolicyOutcome>,
}

/// Writes Events, Policy status and (on the leader) Ingress status for the
/// latest outcome; skips intermediate ones when it falls behind.
async fn reporter(
    mut latest: tokio::sync::watch::Receiver<Option<Arc<Reported>>>,
    recorder: Recorder,
    client: Client,
    options: Options,
    publishing: bool,
    leadership: leader::Leadership,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut reported: BTreeSet<(ObjectRef, String)> = BTreeSet::new();
    let mut programmed: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = latest.changed() => if r.is_err() { return },
        }
        let Some(r) = latest.borrow_and_update().clone() else {
            continue;
        };
        report(
            &recorder,
            &r.cluster,
            &r.diagnostics,
            &r.managed,
            &mut reported,
            &mut programmed,
        )
        .await;
        update_policy_status(&client, &r.cluster, &r.policies).await;
        if publishing && leadership.is_leader() {
            write_ingress_status(&client, &options, &r.cluster, &r.managed, &leadership).await;
        }
    }
}

fn find_ref<K: Resource<DynamicType = ()>>(
    objs: &[Arc<K>],
    ns: &str,
    name: &str,
) -> Option<ObjectReference> {
    objs.iter()
        .find(|o| {
            o.meta().namespace.as_deref() == Some(ns) && o.meta().name.as_deref() == Some(name)
        })
        .map(|o| o.object_ref(&()))
}

/// The Kubernetes object a diagnostic is about.
fn reference(cluster: &Cluster, object: &ObjectRef) -> Option<ObjectReference> {
    let (ns, name) = (object.namespace.as_str(), object.name.as_str());
    match object.kind.as_str() {
        "Ingress" => find_ref(&cluster.ingresses, ns, name),
        "Policy" => find_ref(&cluster.policies, ns, name),
        "Secret" => find_ref(&cluster.secrets, ns, name),
        _ => None,
    }
}

async fn warn_event(recorder: &Recorder, reference: &ObjectReference, reason: &str, note: &str) {
    let mut note = note.to_string();
    note.truncate(1000);
    let ev = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, reference).await {
        tracing::warn!(error = %e, "cannot record an Event");
    }
}

/// Warning Events for new problems (each once while it lasts) and a Normal
/// Event when an Ingress is first programmed without problems.
async fn report(
    recorder: &Recorder,
    cluster: &Cluster,
    diagnostics: &[Diagnostic],
    managed: &[String],
    reported: &mut BTreeSet<(ObjectRef, String)>,
    programmed: &mut BTreeSet<String>,
) {
    let current: BTreeSet<(ObjectRef, String)> = diagnostics
        .iter()
        .map(|d| (d.object.clone(), d.message.clone()))
        .collect();
    for d in diagnostics {
        let k = (d.object.clone(), d.message.clone());
        if reported.contains(&k) {
            continue;
        }
        match d.severity {
            Severity::Error => tracing::error!(object = %d.object, "{}", d.message),
            Severity::Warning => tracing::warn!(object = %d.object, "{}", d.message),
        }
        if let Some(r) = reference(cluster, &d.object) {
            warn_event(recorder, &r, d.reason.as_str(), &d.message).await;
        }
    }
    *reported = current;
    let troubled: BTreeSet<&ObjectRef> = diagnostics.iter().map(|d| &d.object).collect();
    for key in managed {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let object = ObjectRef::kube("Ingress", ns, name);
        if programmed.contains(key) || troubled.contains(&object) {
            continue;
        }
        if let Some(r) = reference(cluster, &object) {
            let ev = Event {
                type_: EventType::Normal,
                reason: "Programmed".into(),
                note: Some("routes are served by jetbridge".into()),
                action: "Reconcile".into(),
                secondary: None,
            };
            if recorder.publish(&ev, &r).await.is_ok() {
                programmed.insert(key.clone());
            }
        }
    }
    programmed.retain(|k| managed.contains(k));
}

/// Writes each Policy's `Accepted` condition when it changed.
async fn update_policy_status(client: &Client, cluster: &Cluster, outcomes: &[PolicyOutcome]) {
    let by_key: HashMap<(String, String), &Arc<WatchedPolicy>> = cluster
        .policies
        .iter()
        .map(|p| ((p.namespace().unwrap_or_default(), p.name_any()), p))
        .collect();
    for o in outcomes {
        let Some(p) = by_key.get(&(o.namespace.clone(), o.name.clone())) else {
            continue;
        };
        let (status, reason, message) = match (&o.error, o.warnings.as_slice()) {
            (None, []) => ("True", "Compiled", "the rules compile".to_string()),
            (None, w) => (
                "True",
                "CompiledWithWarnings",
                format!("the rules compile with warnings: {}", w.join("; ")),
            ),
            (Some(e), _) => ("False", "InvalidPolicy", e.clone()),
        };
        let current = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Accepted"));
        if current.is_some_and(|c| {
            c.status == status
                && c.reason == reason
                && c.message.as_deref() == Some(message.as_str())
                && c.observed_generation == o.generation
        }) {
            continue;
        }
        let transition = match current {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => None,
        }
        .or_else(|| {
            time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
        let new = PolicyStatus {
            conditions: vec![Condition {
                type_: "Accepted".into(),
                status: status.into(),
                reason: reason.into(),
                message: Some(message),
                observed_generation: o.generation,
                last_transition_time: transition,
            }],
        };
        let api: Api<Policy> = Api::namespaced(client.clone(), &o.namespace);
        let patch = serde_json::json!({"status": new});
        if let Err(e) = api
            .patch_status(&o.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(policy = %format!("{}/{}", o.namespace, o.name), error = %e, "cannot write the Policy status");
        }
    }
}

/// The `status.loadBalancer.ingress` entries to publish.
async fn desired_load_balancer(
    client: &Client,
    options: &Options,
) -> Option<Vec<serde_json::Value>> {
    let entry = |a: &str| {
        if a.parse::<std::net::IpAddr>().is_ok() {
            serde_json::json!({"ip": a})
        } else {
            serde_json::json!({"hostname": a})
        }
    };
    if let Some((ns, name)) = &options.publish_service {
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        let svc = match api.get_opt(name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                tracing::warn!(service = %format!("{ns}/{name}"), "publish Service not found; Ingress status not written");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the publish Service");
                return None;
            }
        };
        let lb: Vec<serde_json::Value> = svc
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i.ip.as_deref().or(i.hostname.as_deref()).map(entry))
            .collect();
        if !lb.is_empty() {
            return Some(lb);
        }
        // No load balancer (yet): the Service's cluster IPs, as ingress-nginx does for NodePort.
        let ips: Vec<serde_json::Value> = svc
            .spec
            .and_then(|s| s.cluster_ip)
            .filter(|ip| !ip.is_empty() && ip != "None")
            .map(|ip| vec![entry(&ip)])
            .unwrap_or_default();
        return Some(ips);
    }
    Some(options.publish_addresses.iter().map(|a| entry(a)).collect())
}

/// Writes `status.loadBalancer` of every managed Ingress whose status differs.
/// Called by the Lease holder only, and it checks again before each write.
async fn write_ingress_status(
    client: &Client,
    options: &Options,
    cluster: &Cluster,
    managed: &[String],
    leadership: &leader::Leadership,
) {
    let Some(desired) = desired_load_balancer(client, options).await else {
        return;
    };
    for key in managed {
        let Some((ns, name)) = key.split_once('/') else {
            continue;
        };
        let Some(ing) = cluster.ingresses.iter().find(|i| {
            i.metadata.namespace.as_deref() == Some(ns) && i.metadata.name.as_deref() == Some(name)
        }) else {
            continue;
        };
        let current = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|v| serde_json::to_value(v).unwrap_or_default())
            .unwrap_or(serde_json::json!([]));
        if current == serde_json::Value::Array(desired.clone()) {
            continue;
        }
        if !leadership.is_leader() {
            return;
        }
        let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": desired}}});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(ingress = %key, "status.loadBalancer written"),
            Err(e) => tracing::warn!(ingress = %key, error = %e, "cannot write Ingress status"),
        }
    }
}

/// A client from `--kubeconfig`, else the environment (in-cluster or `KUBECONFIG`).
pub async fn client(kubeconfig: Option<&str>) -> Result<Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("{path}: {e}")))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| Error::Config(format!("{path}: {e}")))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    Client::try_from(config).map_err(Error::Kube)
}

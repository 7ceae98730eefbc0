//! The cluster source (`jetbridge controller`): the only user of
//! `kube::Client`.
//!
//! Reflectors (kube-runtime watchers with backoff) keep stores of
//! IngressClasses, Ingresses, Policies, Services, EndpointSlices, TLS
//! Secrets and the bootstrap Secret. After the initial sync, and then after
//! every burst of changes (debounced), the stores are read into
//! [`crate::translate::cluster::from_cluster`] (through
//! [`ClusterMemo`], which reads again only the Ingresses the objects changed
//! since the last burst reach, and the driver rebuilds only their routes),
//! translated with the global
//! settings and the bootstrap keys (as typed [`Secrets`], never written back
//! into the settings as text), and published only if the snapshot
//! changed. Problems become Warning Events on their objects (once, not per
//! resync), each Ingress's state an annotation and `status.loadBalancer`, and
//! each Policy's a status condition, all written by the elected replica only
//! ([`leader`]; the `report` module writes them). A watch that fails keeps its
//! last store: an API server outage never turns into an empty configuration.

pub mod bootstrap;
pub mod claims;
pub mod events;
pub mod gateway;
mod gateway_service;
mod gateway_status;
pub mod ingress_status;
pub mod leader;
mod policy_filter;
mod report;
pub mod revocations;

use crate::crd::WatchedPolicy;
use crate::identity::secrets::Secrets;
use crate::model::Diagnostic;
use crate::settings::ConfigFile;
use crate::translate::cluster::{Cluster, ClusterInputs, ClusterSettings};
use crate::translate::config::{Generated, inputs_with_secrets};
use crate::translate::driver::{Applied, Driver};
use crate::translate::hosts::HostClaims;
use crate::translate::incremental_cluster::ClusterMemo;
use bootstrap::BootstrapKeys;
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Resource};
use report::Reported;
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
    /// Where Ingress `status.loadBalancer` comes from (no address is
    /// written when neither is set). When the Service is gone or being
    /// deleted, the addresses it gave are cleared.
    pub publish_service: Option<(String, String)>,
    pub publish_addresses: Vec<String>,
    /// The Lease (in the bootstrap Secret's namespace) that elects the one
    /// replica writing Events and status; every replica takes part.
    pub lease_name: String,
    pub lease: leader::Timing,
    /// The ConfigMap (in the bootstrap Secret's namespace) that shares
    /// sign-outs between replicas.
    pub revocations_name: String,
    /// The most bytes of data that ConfigMap is given (compacted beyond).
    pub revocations_max_bytes: usize,
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

/// What the controller watches: one store per kind (per namespace), the
/// host claims and the bootstrap Secret.
struct Watched {
    classes: Stores<IngressClass>,
    ingresses: Stores<Ingress>,
    policies: Stores<WatchedPolicy>,
    services: Stores<Service>,
    slices: Stores<EndpointSlice>,
    tls: Stores<Secret>,
    opaque: Stores<Secret>,
    sa_tokens: Stores<Secret>,
    boot: Stores<Secret>,
    claim_store: claims::ClaimStore,
    /// The Gateway API kinds, when the API server serves them.
    gateway: Option<gateway::GatewayStores>,
    /// Pomerium's PolicyFilters, when the API server serves them.
    policy_filters: Option<Stores<crate::crd::policy_filter::PolicyFilter>>,
}

impl Watched {
    /// Starts every watcher; each event wakes `changed`.
    fn start(
        client: &Client,
        options: &Options,
        served: (gateway::Served, bool),
        changed: &Arc<Notify>,
    ) -> Self {
        let (served, policy_filters) = served;
        let ns = &options.namespaces;
        let all = watcher::Config::default;
        let secrets = |field: &str, what| {
            Stores::<Secret>::start(apis(client, ns), all().fields(field), changed.clone(), what)
        };
        Watched {
            classes: Stores::start(
                vec![Api::all(client.clone())],
                all(),
                changed.clone(),
                "IngressClass",
            ),
            ingresses: Stores::start(apis(client, ns), all(), changed.clone(), "Ingress"),
            policies: Stores::start(apis(client, ns), all(), changed.clone(), "Policy"),
            services: Stores::start(apis(client, ns), all(), changed.clone(), "Service"),
            slices: Stores::start(apis(client, ns), all(), changed.clone(), "EndpointSlice"),
            // Only the Secret types routes can name: TLS Secrets (spec.tls),
            // Opaque ones (`tls_custom_ca_secret`, `set_*_headers_secret`)
            // and service-account tokens
            // (`kubernetes_service_account_token_secret`). Other types (e.g.
            // helm release records) are never fetched.
            tls: secrets("type=kubernetes.io/tls", "Secret"),
            opaque: secrets("type=Opaque", "Secret (Opaque)"),
            sa_tokens: secrets(
                "type=kubernetes.io/service-account-token",
                "Secret (service-account-token)",
            ),
            boot: Stores::start(
                vec![Api::namespaced(
                    client.clone(),
                    &options.bootstrap_namespace,
                )],
                all().fields(&format!("metadata.name={}", options.bootstrap_name)),
                changed.clone(),
                "bootstrap Secret",
            ),
            claim_store: claims::ClaimStore::start(
                Api::namespaced(client.clone(), &options.bootstrap_namespace),
                &options.claims_name,
                changed.clone(),
            ),
            gateway: gateway::GatewayStores::start(client, ns, served, changed),
            policy_filters: policy_filter::start(client, ns, policy_filters, changed),
        }
    }

    /// Waits for every store's initial list.
    async fn wait_until_ready(&self) {
        self.classes.wait_until_ready().await;
        self.ingresses.wait_until_ready().await;
        self.policies.wait_until_ready().await;
        self.services.wait_until_ready().await;
        self.slices.wait_until_ready().await;
        self.tls.wait_until_ready().await;
        self.opaque.wait_until_ready().await;
        self.sa_tokens.wait_until_ready().await;
        self.boot.wait_until_ready().await;
        self.claim_store.wait_until_ready().await;
        if let Some(g) = &self.gateway {
            g.wait_until_ready().await;
        }
        if let Some(f) = &self.policy_filters {
            f.wait_until_ready().await;
        }
    }

    /// The stores as read now, with the claims to start from.
    fn cluster(&self, memory: &mut claims::Memory) -> Cluster {
        Cluster {
            ingresses: self.ingresses.state(),
            classes: self.classes.state(),
            policies: self.policies.state(),
            services: self.services.state(),
            slices: self.slices.state(),
            secrets: [
                self.tls.state(),
                self.opaque.state(),
                self.sa_tokens.state(),
            ]
            .concat(),
            claims: memory.start_from(self.claim_store.stored()),
            now: crate::proxy::clock::unix_now(),
            gateway: crate::translate::gateway::GatewayObjects {
                policy_filters: self
                    .policy_filters
                    .as_ref()
                    .map(Stores::state)
                    .unwrap_or_default(),
                ..self
                    .gateway
                    .as_ref()
                    .map(gateway::GatewayStores::objects)
                    .unwrap_or_default()
            },
        }
    }
}

/// Runs the controller until `shutdown`: publishes the first snapshot after
/// the initial sync and the bootstrap keys, then one per burst of changes.
pub async fn run(
    client: Client,
    options: Options,
    base: ConfigFile,
    driver: Driver,
    revoked: Arc<crate::identity::revocation::Revocations>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), Error> {
    tokio::spawn(revocations::sync(
        client.clone(),
        revocations::Store {
            namespace: options.bootstrap_namespace.clone(),
            name: options.revocations_name.clone(),
            lifetime: base
                .cookie_expire
                .unwrap_or(crate::translate::config::DEFAULT_COOKIE_EXPIRE)
                .as_secs() as i64,
            max_bytes: options.revocations_max_bytes,
        },
        options.instance.clone(),
        revoked,
        shutdown.clone(),
    ));
    let changed = Arc::new(Notify::new());
    let served = (
        gateway::discover(&client).await,
        policy_filter::discover(&client, &options.namespaces).await,
    );
    let watched = Watched::start(&client, &options, served, &changed);
    let bootstrap_api: Api<Secret> = Api::namespaced(client.clone(), &options.bootstrap_namespace);
    // The bootstrap keys first: without them nothing is published (not ready).
    let Some(keys) = load_bootstrap(&bootstrap_api, &options, &shutdown).await else {
        return Ok(());
    };
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        _ = watched.wait_until_ready() => {}
    }
    tracing::info!("initial sync complete");
    let (claims_tx, claims_rx) = tokio::sync::watch::channel(Default::default());
    // Whether this replica holds the Lease: every write to the API server
    // on the controller's behalf asks it first.
    let leadership = leader::Leadership::default();
    tokio::spawn(claims::write(
        Api::namespaced(client.clone(), &options.bootstrap_namespace),
        options.claims_name.clone(),
        claims_rx,
        leadership.clone(),
        shutdown.clone(),
    ));
    let (outcomes, writers) = start_writers(&client, &options, leadership, driver.reader());
    let mut translator = Translator::new(base, driver, keys, &options);
    loop {
        translator
            .follow_bootstrap(&watched, &bootstrap_api, &options)
            .await;
        let next_expiry = translator.publish(&watched, &options, &claims_tx, &outcomes);
        crate::memory::release();
        if !wait_for_changes(&changed, next_expiry, options.debounce, &shutdown).await {
            break;
        }
    }
    writers.stop().await;
    Ok(())
}

/// Reads (or creates) the bootstrap Secret, retrying until it loads;
/// `None` when `shutdown` comes first.
async fn load_bootstrap(
    api: &Api<Secret>,
    options: &Options,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<BootstrapKeys> {
    let keys = loop {
        match bootstrap::ensure(api, &options.bootstrap_name, BootstrapKeys::generate()).await {
            Ok(k) => break k,
            Err(e) => {
                tracing::error!(error = %e, "cannot load the bootstrap Secret; retrying (not ready)");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    tracing::info!(kid = %keys.kid(), secret = %format!("{}/{}", options.bootstrap_namespace, options.bootstrap_name), "bootstrap keys loaded");
    Some(keys)
}

/// Waits for the next change (or the next re-check), then for a quiet
/// moment so a burst publishes once; `false` on shutdown.
async fn wait_for_changes(
    changed: &Notify,
    next_expiry: Duration,
    debounce: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = changed.notified() => {}
        _ = tokio::time::sleep(next_expiry) => {} // retired keys, held hosts, re-checks
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = changed.notified() => continue,
            _ = tokio::time::sleep(debounce) => return true,
        }
    }
}

/// The translate side of the controller: the global settings, the
/// bootstrap keys as typed secrets, and what it remembers between runs.
struct Translator {
    base: ConfigFile,
    driver: Driver,
    keys: BootstrapKeys,
    /// The keys as typed secrets, or why they do not load.
    secrets: Result<Secrets, String>,
    /// `namespace/name` of the bootstrap Secret, for log lines.
    bootstrap: String,
    memory: claims::Memory,
    generated: Generated,
    bootstrap_seen: bool,
    bootstrap_error: Option<(ObjectReference, String)>,
    /// The global settings' warnings last logged (logged again on change).
    warned: Vec<Diagnostic>,
    /// The last translation of the cluster's objects: a change reads
    /// again only the Ingresses it reaches.
    cluster: ClusterMemo,
}

impl Translator {
    fn new(base: ConfigFile, driver: Driver, keys: BootstrapKeys, options: &Options) -> Self {
        let bootstrap = format!("{}/{}", options.bootstrap_namespace, options.bootstrap_name);
        let secrets = typed_secrets(&keys, &bootstrap);
        Translator {
            base,
            driver,
            keys,
            secrets,
            bootstrap,
            memory: claims::Memory::default(),
            generated: Generated::default(),
            bootstrap_seen: false,
            bootstrap_error: None,
            warned: Vec::new(),
            cluster: ClusterMemo::default(),
        }
    }

    /// Bootstrap Secret: follow edits, keep the last good keys when it is
    /// corrupt, re-create it from memory when it is deleted.
    async fn follow_bootstrap(&mut self, watched: &Watched, api: &Api<Secret>, options: &Options) {
        match watched.boot.state().first() {
            Some(s) => {
                self.bootstrap_seen = true;
                match bootstrap::parse(s) {
                    Ok(k) => {
                        if k != self.keys {
                            tracing::info!(kid = %k.kid(), "bootstrap Secret changed; new keys");
                            self.secrets = typed_secrets(&k, &self.bootstrap);
                            self.keys = k;
                        }
                        self.bootstrap_error = None;
                    }
                    Err(e) => {
                        // Logged (every replica) and raised as an Event (the
                        // Lease holder) by the reporter, once while it lasts.
                        self.driver.record_failure();
                        self.bootstrap_error = Some((s.object_ref(&()), e.to_string()));
                    }
                }
            }
            None if self.bootstrap_seen => {
                tracing::warn!("bootstrap Secret deleted; re-creating it from the keys in memory");
                if let Err(e) =
                    bootstrap::ensure(api, &options.bootstrap_name, self.keys.clone()).await
                {
                    tracing::error!(error = %e, "cannot re-create the bootstrap Secret");
                }
                self.bootstrap_seen = false;
                self.bootstrap_error = None;
            }
            None => {}
        }
    }

    /// Translates the stores with the global settings and publishes; sends
    /// the outcome to the reporter. Returns how long until the next re-check.
    fn publish(
        &mut self,
        watched: &Watched,
        options: &Options,
        claims_tx: &tokio::sync::watch::Sender<HostClaims>,
        outcomes: &tokio::sync::watch::Sender<Option<Arc<Reported>>>,
    ) -> Duration {
        let cluster = watched.cluster(&mut self.memory);
        let mut memo = std::mem::take(&mut self.cluster);
        let update = memo.update(&cluster, &options.cluster);
        let (outcome, changed) = (update.inputs, update.changed);
        self.memory.remember(outcome.hosts.claims.clone());
        let stored = outcome.hosts.stored();
        claims_tx.send_if_modified(|c| {
            let changed = *c != stored;
            *c = stored;
            changed
        });
        let next_expiry = next_release(&outcome.hosts, cluster.now);
        let applied = self.apply(outcome, changed.as_deref());
        let reported = |diagnostics| Reported {
            cluster,
            diagnostics,
            managed: outcome.managed.clone(),
            policies: outcome.policies.clone(),
            gateway: outcome.gateway.clone(),
            bootstrap: self.bootstrap_error.clone(),
        };
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
                self.driver.record_success();
                let _ = outcomes.send(Some(Arc::new(reported(diagnostics))));
            }
            Err(e) => {
                self.driver.record_failure();
                tracing::error!(error = %e, "global settings invalid; keeping the running configuration");
                // The driver did not see this translation: the next one
                // is whole, so what it calls changed is what changed.
                memo = ClusterMemo::default();
            }
        }
        self.cluster = memo;
        next_expiry
    }

    /// The global settings with the bootstrap secrets, plus the cluster's
    /// routes, through the driver. A cluster is never all or nothing: a bad
    /// object is its own route's problem, so every snapshot is accepted.
    fn apply(
        &mut self,
        outcome: &ClusterInputs,
        changed: Option<&[usize]>,
    ) -> Result<Applied, String> {
        let mut warnings = Vec::new();
        let files = crate::source::read_referenced(&self.base);
        let mut inputs = inputs_with_secrets(
            &self.base,
            &files,
            self.secrets.clone()?,
            &mut self.generated,
            &mut warnings,
        )
        .map_err(|e| e.to_string())?;
        if warnings != self.warned {
            for w in &warnings {
                tracing::warn!(settings = "global", "{w}");
            }
            self.warned = warnings;
        }
        inputs
            .diagnostics
            .extend(outcome.diagnostics.iter().cloned());
        inputs
            .global
            .certificates
            .extend(outcome.certificates.iter().cloned());
        inputs
            .global
            .gateway_ports
            .extend(outcome.gateway.ports.iter().cloned());
        let now = crate::proxy::clock::unix_now();
        Ok(self
            .driver
            .publish_with(inputs, &outcome.routes, changed, now))
    }
}

/// The bootstrap keys as typed secrets; what loading the signing key warns
/// about is logged with the Secret it comes from.
fn typed_secrets(keys: &BootstrapKeys, secret: &str) -> Result<Secrets, String> {
    let (secrets, warnings) = keys.secrets().map_err(|e| e.to_string())?;
    for w in warnings {
        tracing::warn!(secret = %secret, "bootstrap Secret: {w}");
    }
    Ok(secrets)
}

/// Watches the one ConfigMap `name` (host claims, revocations) into a
/// reflector store; every event wakes `wake`. A failed watch is logged as
/// `what` and retried; with `wake_on_error` it wakes `wake` too.
pub(crate) fn watch_config_map(
    api: Api<ConfigMap>,
    name: &str,
    wake: Arc<Notify>,
    what: &'static str,
    wake_on_error: bool,
) -> Store<ConfigMap> {
    let (store, writer) = reflector::store::<ConfigMap>();
    let watch = reflector::reflector(
        writer,
        watcher(
            api,
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .default_backoff(),
    );
    tokio::spawn(async move {
        let mut watch = std::pin::pin!(watch);
        while let Some(ev) = watch.next().await {
            match ev {
                Ok(_) => wake.notify_one(),
                Err(e) => {
                    tracing::warn!(error = %e, "{what} watch failed; retrying");
                    if wake_on_error {
                        wake.notify_one();
                    }
                }
            }
        }
    });
    store
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

/// The tasks that write to the API server: the election and the reporter.
struct Writers {
    election: tokio::task::JoinHandle<()>,
    reporter: tokio::task::JoinHandle<()>,
    /// Ends the election (after the reporter, which may still write as holder).
    stop_election: tokio_util::sync::CancellationToken,
    /// Ends the reporter.
    stop_reporter: tokio_util::sync::CancellationToken,
}

/// Starts the election (every replica takes part) and the reporter, which
/// writes Events and status from the latest outcome sent to the returned
/// channel, and again when the data plane's unbound Gateway ports (from
/// `reader`) change. Publishing never waits for the API server's writes
/// (the first sync of 1k Ingresses writes 1k Events).
fn start_writers(
    client: &Client,
    options: &Options,
    leadership: leader::Leadership,
    reader: crate::snapshot::SnapshotReader,
) -> (tokio::sync::watch::Sender<Option<Arc<Reported>>>, Writers) {
    let stop_election = tokio_util::sync::CancellationToken::new();
    let stop_reporter = tokio_util::sync::CancellationToken::new();
    let election = tokio::spawn(leader::run(
        Api::namespaced(client.clone(), &options.bootstrap_namespace),
        options.lease_name.clone(),
        options.instance.clone(),
        options.lease,
        leadership.clone(),
        stop_election.clone(),
    ));
    let (outcomes, latest) = tokio::sync::watch::channel::<Option<Arc<Reported>>>(None);
    let reporter = tokio::spawn(report::run(
        latest,
        events::EventWriter::new(client.clone(), "jetbridge", &options.instance),
        client.clone(),
        options.clone(),
        leadership,
        reader,
        stop_reporter.clone(),
    ));
    let writers = Writers {
        election,
        reporter,
        stop_election,
        stop_reporter,
    };
    (outcomes, writers)
}

impl Writers {
    /// Stops the reporter (the holder's last writes included), then the
    /// election, which gives the Lease up so another replica takes over at once.
    async fn stop(self) {
        let grace = Duration::from_secs(10);
        self.stop_reporter.cancel();
        let _ = tokio::time::timeout(grace, self.reporter).await;
        self.stop_election.cancel();
        let _ = tokio::time::timeout(grace, self.election).await;
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

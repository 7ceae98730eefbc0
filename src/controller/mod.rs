//! `jetbridge controller`: the only user of `kube::Client`.
//!
//! Reflectors (kube-runtime watchers with backoff) keep stores of
//! IngressClasses, Ingresses, Policies, Services, EndpointSlices, TLS
//! Secrets and the bootstrap Secret. After the initial sync, and then after
//! every burst of changes (debounced), the stores are read into
//! [`crate::translate::cluster::from_cluster`], translated with the global
//! settings and the bootstrap keys, and published only if the snapshot
//! changed. Problems become Warning Events on their objects (once, not per
//! resync), each Ingress's state an annotation and `status.loadBalancer`, and
//! each Policy's a status condition, all written by the elected replica only
//! ([`leader`]; the `report` module writes them). A watch that fails keeps its
//! last store: an API server outage never turns into an empty configuration.

pub mod bootstrap;
pub mod claims;
pub mod events;
pub mod ingress_status;
pub mod leader;
mod report;
pub mod revocations;

use crate::crd::WatchedPolicy;
use crate::settings::ConfigFile;
use crate::standalone::{Generated, inputs_from_config};
use crate::translate::cluster::{Cluster, ClusterSettings, from_cluster};
use crate::translate::driver::{Applied, Driver};
use bootstrap::BootstrapKeys;
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ObjectReference, Secret, Service};
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

    // Whether this replica holds the Lease: every write to the API server
    // on the controller's behalf asks it first.
    let leadership = leader::Leadership::default();
    let leadership_for_claims = leadership.clone();
    let (outcomes, writers) = start_writers(&client, &options, leadership);
    tokio::spawn(claims::write(
        claims_api,
        options.claims_name.clone(),
        claims_rx,
        leadership_for_claims,
        shutdown.clone(),
    ));
    let mut memory = claims::Memory::default();
    let mut generated = Generated::default();
    let mut bootstrap_seen = false;
    let mut bootstrap_error: Option<(ObjectReference, String)> = None;
    'translate: loop {
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
                        // Logged (every replica) and raised as an Event (the
                        // Lease holder) by the reporter, once while it lasts.
                        driver.record_failure();
                        bootstrap_error = Some((s.object_ref(&()), e));
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
                bootstrap_error = None;
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
                    bootstrap: bootstrap_error.clone(),
                })));
            }
            Err(e) => {
                driver.record_failure();
                tracing::error!(error = %e, "global settings invalid; keeping the running configuration");
            }
        }
        crate::memory::release();

        tokio::select! {
            _ = shutdown.cancelled() => break 'translate,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(next_expiry) => {} // retired keys, held hosts, re-checks
        }
        // Debounce: wait for a quiet moment so a burst publishes once.
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break 'translate,
                _ = changed.notified() => continue,
                _ = tokio::time::sleep(options.debounce) => break,
            }
        }
    }
    writers.stop().await;
    Ok(())
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
/// channel. Publishing never waits for the API server's writes (the first
/// sync of 1k Ingresses writes 1k Events).
fn start_writers(
    client: &Client,
    options: &Options,
    leadership: leader::Leadership,
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

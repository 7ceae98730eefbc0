//! The one data-plane start, used by `standalone`, `controller`, `demo` and
//! the test harnesses: bind the listeners (HTTPS on one `SO_REUSEPORT`
//! socket per worker thread, the HTTP→HTTPS redirect, the internal
//! listener), then serve them over a snapshot reader together with the
//! configuration source until shutdown, and drain. The listeners of the
//! Gateway ports follow the snapshot: bound when it names them, closed when
//! it no longer does.

use super::Proxy;
use super::auth::state::Authenticator;
use super::server;
use crate::identity::revocation::Revocations;
use crate::model::routing::GatewayPort;
use crate::snapshot::SnapshotReader;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A listener that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub what: &'static str,
    pub source: std::io::Error,
}

/// Where to listen.
#[derive(Clone, Copy, Debug)]
pub struct Addresses {
    pub https: SocketAddr,
    pub http_redirect: Option<SocketAddr>,
    pub internal: Option<SocketAddr>,
    /// Serve the routes on `https` without TLS (`insecure_server`).
    pub insecure: bool,
    /// The HTTPS port users reach, when it is not the port `https` is
    /// bound to (`public_https_port`).
    pub public_https_port: Option<u16>,
    /// Which fronts name the client, on every proxy listener.
    pub client_addr: super::client_addr::ClientAddrSettings,
}

/// Bound listeners, not yet served.
pub struct DataPlane {
    https: Vec<std::net::TcpListener>,
    insecure: bool,
    https_addr: SocketAddr,
    http_redirect: Option<TcpListener>,
    internal: Option<TcpListener>,
    /// The HTTPS port users reach, when a front maps another one to
    /// `https_addr` (see [`DataPlane::public_https_port`]).
    public_https_port: Option<u16>,
    client_addr: super::client_addr::ClientAddrSettings,
}

/// A serving data plane.
pub struct Running {
    pub proxy: Arc<Proxy>,
    pub https: SocketAddr,
    pub http_redirect: Option<SocketAddr>,
    pub internal: Option<SocketAddr>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Waits until every listener and the configuration source have stopped
    /// and the HTTPS workers have drained their connections.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// The number of HTTPS worker threads: `JETBRIDGE_WORKERS`, else one per core.
pub fn default_workers() -> usize {
    std::env::var("JETBRIDGE_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, what, source })
}

impl DataPlane {
    /// Binds every listener; HTTPS gets `workers` sockets on one port.
    pub async fn bind(addrs: Addresses, workers: usize) -> Result<Self, BindError> {
        let (port, https) =
            server::bind_reuseport(addrs.https, workers).map_err(|source| BindError {
                addr: addrs.https,
                what: "address",
                source,
            })?;
        let http_redirect = match addrs.http_redirect {
            Some(a) => Some(bind(a, "http_redirect_address").await?),
            None => None,
        };
        let internal = match addrs.internal {
            Some(a) => Some(bind(a, "internal_address").await?),
            None => None,
        };
        Ok(DataPlane {
            https,
            insecure: addrs.insecure,
            https_addr: SocketAddr::new(addrs.https.ip(), port),
            http_redirect,
            internal,
            public_https_port: None,
            client_addr: addrs.client_addr,
        })
    }

    /// Listeners bound by the caller (a test that needs the HTTPS port
    /// before it writes the configuration).
    pub fn from_listeners(
        https: std::net::TcpListener,
        internal: Option<TcpListener>,
    ) -> std::io::Result<Self> {
        https.set_nonblocking(true)?;
        Ok(DataPlane {
            insecure: false,
            https_addr: https.local_addr()?,
            https: vec![https],
            http_redirect: None,
            internal,
            public_https_port: None,
            client_addr: Default::default(),
        })
    }

    /// Names the HTTPS port users reach (a Service or load balancer in front
    /// maps it to the bound one): the HTTP→HTTPS redirect sends browsers
    /// there. `None` keeps the bound port.
    pub fn public_https_port(mut self, port: Option<u16>) -> Self {
        self.public_https_port = port;
        self
    }

    /// The port the HTTP→HTTPS redirect names: the public one if set, else
    /// the bound one.
    fn redirect_port(&self) -> u16 {
        self.public_https_port.unwrap_or(self.https_addr.port())
    }

    /// The bound HTTPS address (redirects name its port unless
    /// [`DataPlane::public_https_port`] names another).
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The bound internal address, if any.
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves the listeners and runs `source` (the file watcher, the
    /// controller, or anything that keeps the snapshot current) until
    /// `shutdown`.
    pub fn start(
        self,
        reader: SnapshotReader,
        revoked: Arc<Revocations>,
        shutdown: CancellationToken,
        source: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<Running> {
        let https_port = self.redirect_port();
        let mut proxy = Proxy::new(reader.clone(), https_port);
        proxy.auth = Arc::new(Authenticator::new(revoked));
        proxy.client_addr = self.client_addr;
        let proxy = Arc::new(proxy);
        let mut tasks = tokio::task::JoinSet::new();
        let http_redirect = self
            .http_redirect
            .as_ref()
            .and_then(|l| l.local_addr().ok());
        if let Some(l) = self.http_redirect {
            tracing::info!(
                address = http_redirect.map(tracing::field::display),
                "plain-HTTP listener (Gateway HTTP listeners; redirects the rest to HTTPS)"
            );
            let plain = Arc::new(proxy.worker());
            tasks.spawn(server::serve_plain_http(l, plain, shutdown.clone()));
        }
        let internal = self.internal.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(l) = self.internal {
            tracing::info!(
                address = internal.map(tracing::field::display),
                "internal listener (JWKS, health, metrics)"
            );
            tasks.spawn(super::admin::serve(l, proxy.clone(), shutdown.clone()));
        }
        tasks.spawn(super::idp_health::run(proxy.clone(), shutdown.clone()));
        tasks.spawn(super::health::run(
            reader.clone(),
            proxy.upstreams.health(),
            shutdown.clone(),
        ));
        let ip = http_redirect.map_or(self.https_addr.ip(), |a| a.ip());
        tasks.spawn(serve_gateway_ports(
            reader.clone(),
            Arc::new(proxy.worker()),
            server::tls_server_config(reader.clone()),
            ip,
            shutdown.clone(),
        ));
        let tls = (!self.insecure).then(|| server::tls_server_config(reader));
        let workers = server::spawn_https_workers(self.https, &proxy, tls, shutdown.clone())?;
        tasks.spawn(source);
        let done = tokio::spawn(async move {
            while tasks.join_next().await.is_some() {}
            let _ = tokio::task::spawn_blocking(move || {
                for t in workers {
                    let _ = t.join();
                }
            })
            .await;
        });
        Ok(Running {
            proxy,
            https: self.https_addr,
            http_redirect,
            internal,
            done,
        })
    }
}

/// How often the Gateway ports are compared with the snapshot (and a port
/// that could not be bound is tried again).
const GATEWAY_PORTS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The Gateway ports the proxy serves now: proxy port → its listener.
#[derive(Default)]
struct GatewayPorts {
    /// Open listeners: TLS or not, and the token that closes each.
    open: BTreeMap<u16, (bool, CancellationToken)>,
    /// Ports that could not be bound, with why (logged once until they
    /// are; shown in their Gateway's listener status).
    failed: BTreeMap<u16, String>,
    tasks: tokio::task::JoinSet<()>,
}

/// Serves the snapshot's Gateway ports on `ip` until `shutdown`: a port a
/// new snapshot names is bound, one it no longer names (or names with the
/// other protocol) is closed and its connections drain; a port that cannot
/// be bound is logged and tried again.
async fn serve_gateway_ports(
    reader: SnapshotReader,
    proxy: Arc<Proxy>,
    tls: Arc<server::ServerTls>,
    ip: IpAddr,
    shutdown: CancellationToken,
) {
    let mut ports = GatewayPorts::default();
    let mut seen = None;
    loop {
        let generation = reader.generation();
        if seen != Some(generation) || !ports.failed.is_empty() {
            seen = Some(generation);
            let wanted: BTreeMap<u16, GatewayPort> = reader
                .load()
                .map(|s| {
                    s.gateway_tables
                        .iter()
                        .map(|(p, t)| (*p, t.port.clone()))
                        .collect()
                })
                .unwrap_or_default();
            ports.follow(&wanted, ip, &proxy, &tls, &shutdown).await;
            reader.set_unbound_gateway_ports(&ports.failed);
        }
        while ports.tasks.try_join_next().is_some() {}
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(GATEWAY_PORTS_EVERY) => {}
        }
    }
    while ports.tasks.join_next().await.is_some() {}
}

impl GatewayPorts {
    /// Closes the listeners `wanted` does not name as they are, and opens
    /// the ones it names that are not open.
    async fn follow(
        &mut self,
        wanted: &BTreeMap<u16, GatewayPort>,
        ip: IpAddr,
        proxy: &Arc<Proxy>,
        tls: &Arc<server::ServerTls>,
        shutdown: &CancellationToken,
    ) {
        self.open.retain(|port, (is_tls, token)| {
            let keep = wanted.get(port).map(|p| p.tls) == Some(*is_tls);
            if !keep {
                tracing::info!(port = *port, "closing a Gateway port's listener");
                token.cancel();
            }
            keep
        });
        self.failed.retain(|p, _| wanted.contains_key(p));
        for (&port, declared) in wanted {
            if self.open.contains_key(&port) {
                continue;
            }
            let is_tls = declared.tls;
            let addr = SocketAddr::new(ip, port);
            let listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    let error = e.to_string();
                    if self.failed.insert(port, error.clone()).as_ref() != Some(&error) {
                        tracing::warn!(
                            %addr,
                            gateway = %declared.gateway,
                            port = declared.port,
                            error = %e,
                            "cannot listen on a Gateway port; trying again"
                        );
                    }
                    continue;
                }
            };
            self.failed.remove(&port);
            tracing::info!(
                %addr,
                gateway = %declared.gateway,
                port = declared.port,
                tls = is_tls,
                "Gateway port's listener (its Gateway's routes only)"
            );
            let token = shutdown.child_token();
            let tls = is_tls.then(|| tls.clone());
            let serve =
                server::serve_gateway_port(listener, proxy.clone(), tls, port, token.clone());
            self.tasks.spawn(serve);
            self.open.insert(port, (is_tls, token));
        }
    }
}

//! Upstream clients: pooled hyper-util clients keyed by TLS settings, round
//! robin across a route's targets, and passive health (a target that refused
//! a connection is skipped for a short while).

mod h1;
mod own;
pub mod wire;

use super::body::Body;
use crate::model::filters::SharedTls;
use crate::model::{LoadBalancing, Upstream, UpstreamScheme, UpstreamTlsError};
use arc_swap::ArcSwap;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A pooled client.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// The identity provider reached through a pooled client: each call and the
/// reading of its (bounded) body are limited in time.
pub struct IdpTransport(pub HttpClient);

impl crate::identity::oidc::Transport for IdpTransport {
    fn exchange(&self, req: http::Request<Vec<u8>>) -> crate::identity::oidc::Exchange<'_> {
        use crate::identity::oidc::{IDP_TIMEOUT, MAX_IDP_BODY, TransportError};
        use http_body_util::BodyExt as _;
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let span = super::trace::IdpCall::start(&parts, &body);
            let req = http::Request::from_parts(
                parts,
                super::body::boxed(http_body_util::Full::new(bytes::Bytes::from(body))),
            );
            let sent = tokio::time::timeout(IDP_TIMEOUT, self.0.request(req))
                .await
                .map_err(|_| TransportError::TimedOut)
                .and_then(|r| r.map_err(|e| TransportError::Failed(e.to_string())));
            span.end(
                sent.as_ref()
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string()),
            );
            let resp = sent?;
            let (parts, body) = resp.into_parts();
            let bytes = tokio::time::timeout(
                IDP_TIMEOUT,
                http_body_util::Limited::new(body, MAX_IDP_BODY).collect(),
            )
            .await
            .map_err(|_| TransportError::ReadTimedOut)?
            .map_err(|e| TransportError::Failed(e.to_string()))?
            .to_bytes();
            Ok(http::Response::from_parts(parts, bytes.to_vec()))
        })
    }
}

/// How long a target that refused a connection is skipped.
const FAIL_COOLDOWN: Duration = Duration::from_secs(10);
/// TCP connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(90);

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    tls: SharedTls,
    h2_only: bool,
}

/// All upstream clients and health state of the process.
pub struct Upstreams {
    clients: ArcSwap<HashMap<ClientKey, HttpClient>>,
    failed: ArcSwap<HashMap<String, Instant>>,
    rr: AtomicUsize,
    /// Requests in flight per target (`least_request`), per worker.
    in_flight: ArcSwap<HashMap<String, Arc<AtomicUsize>>>,
    /// Seed for `random` and the consistent hash's per-process mixing.
    seed: std::collections::hash_map::RandomState,
    /// Targets failing active health checks (shared by every worker).
    health: Arc<super::health_board::HealthBoard>,
}

/// Counts a request in flight to a target until dropped.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    /// Empty caches.
    pub fn new() -> Self {
        Self::with_health(Arc::default())
    }

    /// Empty caches reading active health checks from `health`.
    pub fn with_health(health: Arc<super::health_board::HealthBoard>) -> Self {
        Upstreams {
            health,
            clients: ArcSwap::from_pointee(HashMap::new()),
            failed: ArcSwap::from_pointee(HashMap::new()),
            rr: AtomicUsize::new(0),
            in_flight: ArcSwap::from_pointee(HashMap::new()),
            seed: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The health-check board these pools read.
    pub fn health(&self) -> Arc<super::health_board::HealthBoard> {
        self.health.clone()
    }

    /// The same board, borrowed.
    pub fn board(&self) -> &super::health_board::HealthBoard {
        &self.health
    }

    /// Marks a request in flight to `up` until the guard is dropped.
    pub fn start(&self, up: &Upstream) -> InFlight {
        let counter = match self.in_flight.load().get(&up.authority) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(AtomicUsize::new(0));
                self.in_flight.rcu(|m| {
                    let mut m = HashMap::clone(m);
                    m.entry(up.authority.clone()).or_insert_with(|| c.clone());
                    m
                });
                self.in_flight
                    .load()
                    .get(&up.authority)
                    .cloned()
                    .unwrap_or(c)
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }

    fn in_flight(&self, up: &Upstream) -> usize {
        self.in_flight
            .load()
            .get(&up.authority)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Targets of `route` in the order to try under `policy`, healthy ones
    /// first (see [`Upstreams::arrange`] for `panic`, the route's
    /// `healthy_panic_threshold`). `affinity` (the session id, else the
    /// client address) keys the consistent hash.
    pub fn order_by<'a>(
        &self,
        route: &str,
        targets: &'a [Upstream],
        policy: LoadBalancing,
        affinity: &str,
        panic: u32,
    ) -> Vec<&'a Upstream> {
        let order = self.policy_order(targets, policy, affinity);
        self.arrange(route, order, panic)
    }

    /// Targets in `policy`'s order, health aside.
    fn policy_order<'a>(
        &self,
        targets: &'a [Upstream],
        policy: LoadBalancing,
        affinity: &str,
    ) -> Vec<&'a Upstream> {
        use std::hash::BuildHasher;
        let n = targets.len();
        if n <= 1 {
            return targets.iter().collect();
        }
        match policy {
            LoadBalancing::RoundRobin => {
                let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
                (0..n).map(|i| &targets[(start + i) % n]).collect()
            }
            LoadBalancing::Random => {
                let tick = self.rr.fetch_add(1, Ordering::Relaxed);
                let start = (self.seed.hash_one(tick) % n as u64) as usize;
                (0..n).map(|i| &targets[(start + i) % n]).collect()
            }
            LoadBalancing::LeastRequest => {
                // Ties broken round robin so equal loads still spread.
                let tick = self.rr.fetch_add(1, Ordering::Relaxed);
                let mut v: Vec<(usize, usize, &Upstream)> = targets
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (self.in_flight(t), (i + n - tick % n) % n, t))
                    .collect();
                v.sort_by_key(|(load, rot, _)| (*load, *rot));
                v.into_iter().map(|(_, _, t)| t).collect()
            }
            LoadBalancing::ConsistentHash => {
                // Rendezvous hashing: each target's weight is a hash of
                // (key, target); the highest wins, and removing a target
                // moves only the keys it held. Stable across processes.
                let weight = |t: &Upstream| {
                    use sha2::Digest;
                    let d = sha2::Sha256::digest(format!("{affinity}\0{}", t.authority));
                    u64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8]))
                };
                let mut v: Vec<(u64, &Upstream)> = targets.iter().map(|t| (weight(t), t)).collect();
                v.sort_by_key(|(w, _)| std::cmp::Reverse(*w));
                v.into_iter().map(|(_, t)| t).collect()
            }
        }
    }

    /// Health applied to a policy order, as Envoy's `healthy_panic_threshold`
    /// (a percentage) does: while fewer than `panic` % of the targets are
    /// healthy, health is ignored and the policy order stands; otherwise the
    /// healthy targets come first and the failing ones after them (tried
    /// only when a healthy one cannot be reached) — or, with `panic` 0, not
    /// at all. A target is failing when it refused a connection lately, fails
    /// an active health check or is ejected by outlier detection.
    pub fn arrange<'a>(
        &self,
        route: &str,
        order: Vec<&'a Upstream>,
        panic: u32,
    ) -> Vec<&'a Upstream> {
        let failed = self.failed.load();
        let nobody_failed = failed.is_empty() && self.health.is_empty();
        if nobody_failed {
            return order;
        }
        let now = Instant::now();
        let n = order.len();
        let (mut healthy, mut sick): (Vec<&Upstream>, Vec<&Upstream>) =
            order.iter().partition(|u| {
                failed.get(&u.authority).is_none_or(|t| now >= *t)
                    && !self.health.is_down(route, &u.authority)
            });
        if healthy.len() * 100 < panic as usize * n {
            return order;
        }
        if panic > 0 {
            healthy.append(&mut sick);
        }
        healthy
    }

    /// The client for an upstream's scheme and TLS settings (built once).
    pub fn client(&self, up: &Upstream, tls: &SharedTls) -> Result<HttpClient, ClientError> {
        let key = ClientKey {
            tls: tls.clone(),
            h2_only: up.scheme == UpstreamScheme::H2c,
        };
        if let Some(c) = self.clients.load().get(&key) {
            return Ok(c.clone());
        }
        let client = build_client(&key)?;
        self.clients.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(key.clone()).or_insert_with(|| client.clone());
            m
        });
        Ok(client)
    }

    /// Sends `req` (absolute URI, `Host` set) to `up`: over the worker's own
    /// HTTP/1.1 connections for a plain `http://` target (no upgrade, no
    /// `CONNECT`), else over `client`, the pooled client for the route's
    /// upstream TLS settings.
    pub async fn request(
        &self,
        up: &Upstream,
        client: &HttpClient,
        mut req: http::Request<Body>,
    ) -> Result<http::Response<UpstreamBody>, RequestError> {
        use http_body::Body as _;
        if !own_connection(up, &req) {
            let resp = client.request(req).await.map_err(RequestError::Pooled)?;
            return Ok(resp.map(UpstreamBody::Hyper));
        }
        if let Some(pq) = req.uri().path_and_query().cloned() {
            *req.uri_mut() = http::Uri::from(pq);
        }
        if own::enabled() && req.body().is_end_stream() {
            let resp = own::send(&up.authority, req.map(|_| ())).await;
            return Ok(resp.map_err(RequestError::Own)?.map(UpstreamBody::Own));
        }
        let resp = h1::send(&up.authority, req)
            .await
            .map_err(RequestError::Own)?;
        Ok(resp.map(UpstreamBody::Hyper))
    }

    /// Targets of `route` in the order to try: round robin, healthy ones
    /// first, failing ones after them.
    pub fn order<'a>(&self, route: &str, targets: &'a [Upstream]) -> Vec<&'a Upstream> {
        self.order_by(route, targets, LoadBalancing::RoundRobin, "", 50)
    }

    /// Marks a target as failing for a cooldown period.
    pub fn mark_failed(&self, up: &Upstream) {
        let until = Instant::now() + FAIL_COOLDOWN;
        self.failed.rcu(|m| {
            let now = Instant::now();
            let mut m: HashMap<String, Instant> = m
                .iter()
                .filter(|(_, t)| **t > now)
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            m.insert(up.authority.clone(), until);
            m
        });
    }

    /// Clears a target's failure mark after a success.
    pub fn mark_ok(&self, up: &Upstream) {
        if self.failed.load().contains_key(&up.authority) {
            self.failed.rcu(|m| {
                let mut m = HashMap::clone(m);
                m.remove(&up.authority);
                m
            });
        }
    }
}

/// A target's response body: read by hyper, or by the worker's own
/// HTTP/1.1 client ([`own`], requests without a body).
pub enum UpstreamBody {
    /// Read by hyper.
    Hyper(hyper::body::Incoming),
    /// Read from an own connection.
    Own(own::OwnBody),
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = super::body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        match self.get_mut() {
            UpstreamBody::Hyper(b) => std::pin::Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Own(b) => std::pin::Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Hyper(b) => b.is_end_stream(),
            UpstreamBody::Own(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UpstreamBody::Hyper(b) => b.size_hint(),
            UpstreamBody::Own(b) => b.size_hint(),
        }
    }
}

/// Whether `req` to `up` goes over the worker's own HTTP/1.1 connections.
fn own_connection<B>(up: &Upstream, req: &http::Request<B>) -> bool {
    up.scheme == UpstreamScheme::Http
        && req.version() == http::Version::HTTP_11
        && req.method() != http::Method::CONNECT
        && !req.headers().contains_key(http::header::UPGRADE)
}

/// Why a request to a target failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Over a pooled client.
    #[error(transparent)]
    Pooled(#[from] hyper_util::client::legacy::Error),
    /// Over the worker's own HTTP/1.1 connection.
    #[error(transparent)]
    Own(#[from] h1::H1Error),
}

impl RequestError {
    /// The target could not be reached (another target may be tried).
    pub fn is_connect(&self) -> bool {
        match self {
            RequestError::Pooled(e) => e.is_connect(),
            RequestError::Own(e) => e.is_connect(),
        }
    }
}

/// Why an upstream client cannot be built from a route's TLS settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A TLS setting of the route (CA, client certificate, server name).
    #[error(transparent)]
    Settings(#[from] UpstreamTlsError),
    /// rustls refused the configuration.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// The client certificate and key do not form a usable pair.
    #[error("tls_client_cert / tls_client_key: not usable")]
    ClientCert,
}

fn build_client(key: &ClientKey) -> Result<HttpClient, ClientError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verified = if key.tls.settings().skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else if let Some(roots) = key.tls.settings().custom_roots()? {
        builder.with_root_certificates(roots)
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        builder.with_root_certificates(roots)
    };
    // `tls_client_cert`: presented when the upstream asks for one.
    let tls = match key.tls.settings().client_auth()? {
        Some((chain, private_key)) => verified
            .with_client_auth_cert(chain, private_key)
            .map_err(|_| ClientError::ClientCert)?,
        None => verified.with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let mut cb = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = key.tls.settings().server_name()? {
        cb = cb.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let connector = cb.enable_all_versions().wrap_connector(http);
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_max_idle_per_host(256);
    if key.h2_only {
        b.http2_only(true);
    }
    Ok(b.build(connector))
}

/// Accepts any upstream certificate (`tls_skip_verify`), still checking
/// handshake signatures so the session keys are bound to the presented key.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(n: usize) -> Vec<Upstream> {
        (0..n)
            .map(|i| Upstream {
                scheme: UpstreamScheme::Http,
                authority: format!("10.0.0.{i}:80"),
                base_path: String::new(),
            })
            .collect()
    }

    #[test]
    fn least_request_picks_the_target_with_fewest_in_flight() {
        let u = Upstreams::new();
        let t = targets(3);
        let _busy: Vec<InFlight> = vec![u.start(&t[0]), u.start(&t[0]), u.start(&t[1])];
        for _ in 0..5 {
            assert_eq!(
                u.order_by("r", &t, LoadBalancing::LeastRequest, "", 50)[0].authority,
                t[2].authority
            );
        }
        drop(_busy);
        // Equal loads spread round robin.
        let firsts: std::collections::BTreeSet<String> = (0..6)
            .map(|_| {
                u.order_by("r", &t, LoadBalancing::LeastRequest, "", 50)[0]
                    .authority
                    .clone()
            })
            .collect();
        assert_eq!(firsts.len(), 3);
    }

    #[test]
    fn consistent_hashing_moves_only_the_keys_of_a_removed_target() {
        let u = Upstreams::new();
        let all = targets(5);
        let fewer: Vec<Upstream> = all[..4].to_vec();
        let mut moved = 0;
        for k in 0..500 {
            let key = format!("session-{k}");
            let before = u.order_by("r", &all, LoadBalancing::ConsistentHash, &key, 50)[0]
                .authority
                .clone();
            let after = u.order_by("r", &fewer, LoadBalancing::ConsistentHash, &key, 50)[0]
                .authority
                .clone();
            if before != after {
                // Only keys that were on the removed target move.
                assert_eq!(before, all[4].authority);
                moved += 1;
            }
        }
        // About a fifth of the keys lived on the removed target.
        assert!((50..150).contains(&moved), "{moved}");
        // Stable across processes (no per-process seed).
        let other = Upstreams::new();
        assert_eq!(
            u.order_by("r", &all, LoadBalancing::ConsistentHash, "s", 50)[0].authority,
            other.order_by("r", &all, LoadBalancing::ConsistentHash, "s", 50)[0].authority
        );
    }

    #[test]
    fn a_failed_target_goes_last_under_every_policy() {
        let u = Upstreams::new();
        let t = targets(3);
        u.mark_failed(&t[1]);
        for p in [
            LoadBalancing::RoundRobin,
            LoadBalancing::Random,
            LoadBalancing::LeastRequest,
            LoadBalancing::ConsistentHash,
        ] {
            for k in 0..10 {
                let order = u.order_by("r", &t, p, &format!("k{k}"), 50);
                assert_eq!(order.len(), 3);
                assert_eq!(order[2].authority, t[1].authority, "{p:?}");
            }
        }
    }
}

//! Upstream clients: pooled hyper-util clients keyed by TLS settings, round
//! robin across a route's targets, and passive health (a target that refused
//! a connection is skipped for a short while).

use super::body::Body;
use crate::model::{Upstream, UpstreamTls};
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

/// How long a target that refused a connection is skipped.
const FAIL_COOLDOWN: Duration = Duration::from_secs(10);
/// TCP connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(90);

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    tls: UpstreamTls,
    h2_only: bool,
}

/// All upstream clients and health state of the process.
pub struct Upstreams {
    clients: ArcSwap<HashMap<ClientKey, HttpClient>>,
    failed: ArcSwap<HashMap<String, Instant>>,
    rr: AtomicUsize,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    /// Empty caches.
    pub fn new() -> Self {
        Upstreams {
            clients: ArcSwap::from_pointee(HashMap::new()),
            failed: ArcSwap::from_pointee(HashMap::new()),
            rr: AtomicUsize::new(0),
        }
    }

    /// The client for an upstream's scheme and TLS settings (built once).
    pub fn client(&self, up: &Upstream, tls: &UpstreamTls) -> Result<HttpClient, String> {
        let key = ClientKey {
            tls: tls.clone(),
            h2_only: up.scheme == "h2c",
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

    /// Targets in the order to try: round robin, healthy ones first.
    pub fn order<'a>(&self, targets: &'a [Upstream]) -> Vec<&'a Upstream> {
        let n = targets.len();
        if n <= 1 {
            return targets.iter().collect();
        }
        let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
        let failed = self.failed.load();
        let now = Instant::now();
        let (mut healthy, mut sick): (Vec<&Upstream>, Vec<&Upstream>) = (0..n)
            .map(|i| &targets[(start + i) % n])
            .partition(|u| failed.get(&u.authority).is_none_or(|t| now >= *t));
        healthy.append(&mut sick);
        healthy
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

fn build_client(key: &ClientKey) -> Result<HttpClient, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let tls = if key.tls.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else if let Some(roots) = key.tls.custom_roots()? {
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let mut cb = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = key.tls.server_name()? {
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

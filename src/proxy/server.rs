//! Listeners: HTTPS (rustls, TLS 1.2 + 1.3, ALPN h2 and http/1.1, a
//! per-handshake certificate resolver over the current snapshot), the plain
//! HTTP listener (a Gateway's `HTTP` listeners' routes; every other request
//! redirected to HTTPS), the listener of each Gateway port (that Gateway's
//! routes only), and graceful shutdown.

use super::Proxy;
use super::body::{Body, Guarded, Progress, SendIdle};
use super::client_addr;
pub use super::redirect::redirect_to_https;
use super::request::{ConnInfo, Listener};
use crate::model::{ClientAuthNames, Snapshot};
use crate::snapshot::SnapshotReader;
use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Maximum time to read request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Maximum size of the request head (HTTP/1 buffer, HTTP/2 header list).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// HTTP/1 header lines per request (hyper's default, pinned): more is 431.
pub const MAX_HEADERS: usize = 100;
/// HTTP/2 streams one connection may have open at once. Each open stream
/// may hold an upstream connection and buffers (a client that never opens
/// its flow-control window holds them for as long as it keeps the
/// connection), so this bounds what one connection can pin; 100 is the
/// minimum RFC 9113 recommends. Streams beyond it are refused.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// HTTP/2 streams reset by the client before they were served, per
/// connection; more ends the connection with ENHANCE_YOUR_CALM
/// (rapid reset, CVE-2023-44487). hyper's default, pinned.
pub const MAX_PENDING_RESET_STREAMS: usize = 20;
/// HTTP/2 streams the server may reset for a client's protocol errors
/// before it ends the connection (hyper's default, pinned).
pub const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// How long an HTTP/2 keep-alive PING may go unanswered before the
/// connection is closed.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Maximum time for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may finish after shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// After shutdown starts, an HTTP/1.1 connection with no request for this
/// long is closed. Until then each response it carries says
/// `Connection: close`, so a keep-alive client learns of the shutdown from
/// the answer to a request it has already sent, instead of finding the
/// connection closed under that request.
pub const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Picks the certificate for each handshake from the current snapshot.
#[derive(Debug)]
pub struct SnapshotCertResolver {
    reader: SnapshotReader,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotReader(generation {})", self.generation())
    }
}

impl ResolvesServerCert for SnapshotCertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.reader.load()?.tls.resolve(hello.server_name())
    }
}

/// The HTTPS listener's TLS: one configuration for handshakes that ask for
/// no client certificate (every host, unless a route of the host has a
/// `tls_downstream_client_ca`), and one that asks for one, optionally,
/// rebuilt when the routes' CAs change.
pub struct ServerTls {
    plain: Arc<rustls::ServerConfig>,
    resolver: Arc<SnapshotCertResolver>,
    /// The asking configuration and the [`ClientAuthNames::fingerprint`] it
    /// was built for.
    asking: arc_swap::ArcSwapOption<(String, Arc<rustls::ServerConfig>)>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

fn server_config_builder() -> rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap_or_else(|_| {
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("default TLS versions are supported")
        })
}

/// The rustls server configuration for the HTTPS listener.
pub fn tls_server_config(reader: SnapshotReader) -> Arc<ServerTls> {
    let resolver = Arc::new(SnapshotCertResolver { reader });
    let mut cfg = server_config_builder()
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(ServerTls {
        plain: Arc::new(cfg),
        resolver,
        asking: arc_swap::ArcSwapOption::empty(),
    })
}

impl ServerTls {
    /// The configuration that asks for a client certificate, for `names`.
    fn asking(&self, names: &ClientAuthNames) -> Arc<rustls::ServerConfig> {
        if let Some(c) = self.asking.load().as_ref()
            && c.0 == names.fingerprint
        {
            return c.1.clone();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let any: Arc<dyn rustls::server::danger::ClientCertVerifier> = Arc::new(AnyClientCert {
            provider: provider.clone(),
            hints: names.subjects.clone(),
        });
        // `downstream_mtls` with `reject_connection`: the handshake itself
        // requires a certificate from one of the configured CAs (each route
        // still checks its own). Should the verifier not build, the routes'
        // own checks still refuse.
        let verifier = match &names.required {
            None => any,
            Some(roots) => {
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
                    .build()
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "downstream_mtls: cannot require client certificates at the handshake");
                        any
                    })
            }
        };
        let mut cfg = server_config_builder()
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.resolver.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        self.asking
            .store(Some(Arc::new((names.fingerprint.clone(), cfg.clone()))));
        cfg
    }

    /// The TLS handshake. Only when some route has a
    /// `tls_downstream_client_ca` is the ClientHello read first, to ask for
    /// a client certificate on those routes' names; otherwise it is today's
    /// one-step accept. Returns the stream and whether a client
    /// certificate was asked for.
    async fn accept<S: Io>(
        &self,
        stream: S,
        snapshot: Option<&Snapshot>,
    ) -> std::io::Result<(tokio_rustls::server::TlsStream<S>, bool)> {
        let names = snapshot.and_then(|s| s.tls.client_auth.as_ref());
        let Some(names) = names else {
            let s = tokio_rustls::TlsAcceptor::from(self.plain.clone())
                .accept(stream)
                .await?;
            return Ok((s, false));
        };
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                .await?;
        let ask = names.covers(start.client_hello().server_name());
        let cfg = match ask {
            true => self.asking(names),
            false => self.plain.clone(),
        };
        Ok((start.into_stream(cfg).await?, ask))
    }
}

/// Asks for a client certificate without requiring one, offers the route
/// CAs' names as hints, and accepts any certificate whose key the client
/// proves it holds (the handshake signature is checked). Each route with a
/// `tls_downstream_client_ca` then verifies the chain against its own CA, so
/// a certificate from another CA gets that route's 495, not a failed
/// handshake, and routes without one ignore it.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
    hints: Vec<rustls::DistinguishedName>,
}

impl rustls::server::danger::ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

// The limits below are what the protocol-abuse suite
// (tests/it/attack/protocol.rs) holds the binary to; docs/security.md
// lists them.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // The header read timeout also closes idle keep-alive connections
    // (slowloris on headers, and idle sockets held open).
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(Some(MAX_PENDING_RESET_STREAMS))
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    b
}

/// Serves HTTPS until `shutdown` is cancelled, then drains open connections.
pub async fn serve_https(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Arc<ServerTls>,
    shutdown: CancellationToken,
) {
    serve_proxy(listener, proxy, Some(tls), shutdown).await
}

/// Any stream a connection is served over.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Serves the proxy on `listener`: over TLS, or without it when `tls` is
/// `None` (`insecure_server`, behind a load balancer that terminates TLS).
/// A connection with no request in flight for the snapshot's
/// `connection_idle_timeout` is closed gracefully (HTTP/2 GOAWAY), however
/// many keep-alive PINGs it answers.
pub async fn serve_proxy(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<Arc<ServerTls>>,
    shutdown: CancellationToken,
) {
    let kind = match tls {
        Some(_) => Listener::Tls,
        None => Listener::Insecure,
    };
    serve_listener(listener, proxy, tls, kind, shutdown).await
}

/// Serves the plain-HTTP listener until `shutdown`: the routes of the
/// snapshot's plain-HTTP table that need no session, and the redirect to
/// HTTPS for every other request.
pub async fn serve_plain_http(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) {
    serve_listener(listener, proxy, None, Listener::Plain, shutdown).await
}

/// Serves one Gateway port's listener until `shutdown`: the routes of the
/// snapshot's table for proxy port `port` alone, over TLS when `tls` is
/// given (an `HTTPS` listener's port), else as the plain-HTTP listener
/// serves its routes.
pub async fn serve_gateway_port(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<Arc<ServerTls>>,
    port: u16,
    shutdown: CancellationToken,
) {
    let kind = Listener::Gateway {
        port,
        tls: tls.is_some(),
    };
    serve_listener(listener, proxy, tls, kind, shutdown).await
}

/// Accepts connections on `listener` and serves each as a `kind`
/// listener's, then drains them after `shutdown`.
async fn serve_listener(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<Arc<ServerTls>>,
    kind: Listener,
    shutdown: CancellationToken,
) {
    let serving = Serving {
        proxy,
        tls,
        kind,
        builder: Arc::new(http_builder()),
        shutdown,
    };
    let open = Arc::new(OpenConnections::default());
    loop {
        let (stream, remote) = tokio::select! {
            _ = serving.shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
        };
        let _ = stream.set_nodelay(true);
        let serving = serving.clone();
        let counted = open.enter();
        tokio::spawn(async move {
            let _counted = counted;
            serving.connection(stream, remote).await;
        });
    }
    open.drained(DRAIN_TIMEOUT).await;
}

/// What every connection of a listener is served with.
#[derive(Clone)]
struct Serving {
    proxy: Arc<Proxy>,
    tls: Option<Arc<ServerTls>>,
    kind: Listener,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shutdown: CancellationToken,
}

impl Serving {
    /// What a connection from `remote` to this listener is, before any
    /// handshake.
    fn conn_info(&self, remote: std::net::SocketAddr) -> ConnInfo {
        ConnInfo::new(remote, self.tls.is_some(), self.kind)
    }

    /// Serves one accepted connection: its PROXY protocol header when the
    /// listeners take one (a connection without a valid one is closed),
    /// then [`Serving::serve`].
    async fn connection(self, stream: tokio::net::TcpStream, remote: std::net::SocketAddr) {
        let mut conn_info = self.conn_info(remote);
        if !self.proxy.client_addr.proxy_protocol {
            return self.serve(stream, conn_info).await;
        }
        match client_addr::read_proxy_header(stream).await {
            Ok((stream, source)) => {
                if let Some(source) = source {
                    conn_info.client = source.ip();
                }
                self.serve(stream, conn_info).await
            }
            Err(why) => {
                self.proxy.metrics.proxy_protocol_refused(why);
                tracing::info!(%remote, reason = why.label(), "closing a connection: {why} (use_proxy_protocol is on)");
            }
        }
    }

    /// Serves a connection: the TLS handshake, then its requests until it
    /// closes, goes idle, stalls or the proxy shuts down.
    async fn serve<S: Io + 'static>(self, stream: S, mut conn_info: ConnInfo) {
        let remote = conn_info.remote;
        let snapshot = self.proxy.reader.load();
        let io: Box<dyn Io> = match &self.tls {
            Some(acceptor) => {
                match handshake(acceptor, stream, snapshot.as_deref(), &mut conn_info).await {
                    Some(s) => s,
                    None => return,
                }
            }
            None => Box::new(stream),
        };
        let idle_limit = snapshot
            .map(|s| s.connection_idle_timeout)
            .unwrap_or(crate::model::DEFAULT_CONNECTION_IDLE_TIMEOUT);
        let activity = Arc::new(Activity::new());
        let in_flight = activity.clone();
        let proxy = self.proxy.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let proxy = proxy.clone();
            let guard = in_flight.begin();
            let conn_info = conn_info.clone();
            let version = req.version();
            if version == http::Version::HTTP_2 {
                in_flight.http2.store(true, Ordering::Release);
            }
            async move {
                let mut resp = proxy.handle(req, conn_info).await;
                if guard.activity.draining.load(Ordering::Acquire)
                    && version < http::Version::HTTP_2
                {
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                let idle = resp
                    .extensions()
                    .get::<SendIdle>()
                    .map_or(crate::model::DEFAULT_IDLE_TIMEOUT, |s| s.0);
                let guard = guard.sending(idle);
                Ok::<_, Infallible>(resp.map(|b| Guarded::new(b, guard)))
            }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc);
        let mut conn = std::pin::pin!(conn);
        let (mut closing, mut draining) = (false, false);
        loop {
            let limit = if draining { DRAIN_IDLE } else { idle_limit };
            tokio::select! {
                _ = conn.as_mut() => break,
                // HTTP/2 says GOAWAY at once (no request is lost to it);
                // HTTP/1.1 answers with `Connection: close` until DRAIN_IDLE.
                _ = self.shutdown.cancelled(), if !closing && !draining => {
                    draining = true;
                    activity.draining.store(true, Ordering::Release);
                    if activity.http2.load(Ordering::Acquire) {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                quiet = activity.watch(limit, closing) => match quiet {
                    Quiet::Idle => {
                        tracing::debug!(%remote, "closing an idle connection");
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Quiet::Stalled => {
                        tracing::info!(%remote, "closing a connection whose client took none of a response for the route's idle_timeout");
                        break;
                    }
                },
            }
        }
    }
}

/// The TLS handshake of a connection, within [`HANDSHAKE_TIMEOUT`]; notes
/// in `conn_info` whether a client certificate was asked for and which was
/// presented. `None`: the handshake failed or timed out.
async fn handshake<S: Io + 'static>(
    acceptor: &ServerTls,
    stream: S,
    snapshot: Option<&Snapshot>,
    conn_info: &mut ConnInfo,
) -> Option<Box<dyn Io>> {
    let handshake = acceptor.accept(stream, snapshot);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok((s, asked))) => {
            if asked {
                conn_info.client_auth_asked = true;
                conn_info.client_cert = s
                    .get_ref()
                    .1
                    .peer_certificates()
                    .filter(|c| !c.is_empty())
                    .map(|c| Arc::new(c.to_vec()));
            }
            Some(Box::new(s))
        }
        Ok(Err(e)) => {
            tracing::debug!(remote = %conn_info.remote, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// Client connections still being served, for the drain at shutdown.
#[derive(Default)]
struct OpenConnections {
    count: std::sync::atomic::AtomicUsize,
    closed: tokio::sync::Notify,
}

/// Counts one connection while it lives.
struct Counted(Arc<OpenConnections>);

impl OpenConnections {
    fn enter(self: &Arc<Self>) -> Counted {
        self.count.fetch_add(1, Ordering::AcqRel);
        Counted(self.clone())
    }

    /// Waits until every connection has finished, or `limit` passed.
    async fn drained(&self, limit: Duration) {
        let all_closed = async {
            loop {
                let closed = self.closed.notified();
                if self.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                closed.await;
            }
        };
        if tokio::time::timeout(limit, all_closed).await.is_err() {
            tracing::info!("drain timeout; closing remaining connections");
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

/// Slots for response bodies being sent on one connection: HTTP/2's stream
/// limit, and a few for responses whose streams are ending.
const SENDING_SLOTS: usize = MAX_CONCURRENT_STREAMS as usize + 4;
/// A free slot.
const SLOT_FREE: u64 = 0;
/// Slot values from this on are a deadline: `SLOT_DEADLINE +` milliseconds
/// after `Activity::started` by which the body must hand on its next frame.
const SLOT_DEADLINE: u64 = 1;
/// Added to a body's deadline, so a silent upstream ends the body itself
/// (at the route's `idle_timeout`, resetting only its own stream) before the
/// listener would close the whole connection.
const STALL_GRACE_MS: u64 = 1_000;

/// Requests in flight on one connection, when the last one ended, and the
/// response bodies being sent.
struct Activity {
    started: std::time::Instant,
    in_flight: std::sync::atomic::AtomicUsize,
    /// Milliseconds after `started` when a request last ended (or began).
    last: std::sync::atomic::AtomicU64,
    /// One slot per response body being sent: free, or its deadline.
    sending: Box<[std::sync::atomic::AtomicU64]>,
    /// When (ms after `started`) the watch looks next; a body whose
    /// deadline comes sooner wakes it through `wake`.
    planned: std::sync::atomic::AtomicU64,
    wake: tokio::sync::Notify,
    /// The connection speaks HTTP/2 (seen on its first request).
    http2: std::sync::atomic::AtomicBool,
    /// Shutdown has begun: HTTP/1.1 responses say `Connection: close`.
    draining: std::sync::atomic::AtomicBool,
}

/// Why a connection's watch ended.
enum Quiet {
    /// No request in flight for the connection idle limit.
    Idle,
    /// A response body handed no frame to the client for the route's
    /// `idle_timeout` (and a grace) although its upstream was not silent:
    /// the client took nothing (a zero flow-control window, a socket it
    /// stopped reading). The body holds its upstream, so the connection goes.
    Stalled,
}

/// One request in flight: from its head until its response body is done
/// (or dropped), so a long download or stream is never idle.
struct InFlight {
    activity: Arc<Activity>,
    /// The response body's slot, once there is a response, and the route's
    /// `idle_timeout` in milliseconds.
    slot: Option<(usize, u64)>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: std::time::Instant::now(),
            in_flight: Default::default(),
            last: Default::default(),
            sending: (0..SENDING_SLOTS).map(|_| Default::default()).collect(),
            planned: Default::default(),
            wake: tokio::sync::Notify::new(),
            http2: Default::default(),
            draining: Default::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.last.store(self.now_ms(), Ordering::Release);
        InFlight {
            activity: self.clone(),
            slot: None,
        }
    }

    /// Resolves once no request has been in flight for `limit` (unless
    /// `closing`: the connection is already on its way out), or once a
    /// response body has gone past its deadline.
    async fn watch(&self, limit: Duration, closing: bool) -> Quiet {
        loop {
            let now = self.now_ms();
            let mut next = now + 1_000;
            if self.in_flight.load(Ordering::Acquire) == 0 {
                let since = now.saturating_sub(self.last.load(Ordering::Acquire));
                let limit = limit.as_millis() as u64;
                if since < limit {
                    next = now + (limit - since);
                } else if !closing {
                    return Quiet::Idle;
                }
            } else {
                for slot in self.sending.iter() {
                    let v = slot.load(Ordering::Acquire);
                    if v >= SLOT_DEADLINE {
                        let deadline = v - SLOT_DEADLINE;
                        if deadline <= now {
                            return Quiet::Stalled;
                        }
                        next = next.min(deadline);
                    }
                }
            }
            self.planned.store(next, Ordering::SeqCst);
            let nap = tokio::time::sleep(Duration::from_millis(next.saturating_sub(now).max(10)));
            tokio::select! {
                _ = nap => {}
                _ = self.wake.notified() => {}
            }
        }
    }
}

impl InFlight {
    /// The response is known: its body starts being sent, and must hand on
    /// each frame within `idle` (plus the grace) of the last.
    fn sending(mut self, idle: Duration) -> Self {
        let idle = idle.as_millis() as u64 + STALL_GRACE_MS;
        let deadline = SLOT_DEADLINE + self.activity.now_ms() + idle;
        self.slot = self
            .activity
            .sending
            .iter()
            .position(|s| {
                s.compare_exchange(SLOT_FREE, deadline, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            })
            .map(|i| (i, idle));
        if self.slot.is_some()
            && deadline - SLOT_DEADLINE < self.activity.planned.load(Ordering::SeqCst)
        {
            self.activity.wake.notify_one();
        }
        self
    }
}

impl Progress for InFlight {
    fn sent(&self) {
        if let Some((i, idle)) = self.slot {
            let deadline = SLOT_DEADLINE + self.activity.now_ms() + idle;
            self.activity.sending[i].store(deadline, Ordering::Release);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some((i, _)) = self.slot {
            self.activity.sending[i].store(SLOT_FREE, Ordering::Release);
        }
        let a = &self.activity;
        a.last.store(a.now_ms(), Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn drain(graceful: GracefulShutdown) {
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::info!("drain timeout; closing remaining connections"),
    }
}

/// Serves plain HTTP with `handler` until `shutdown` is cancelled.
pub async fn serve_plain<F, Fut>(listener: TcpListener, handler: F, shutdown: CancellationToken)
where
    F: Fn(Request<Incoming>, std::net::SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let builder = Arc::new(http_builder());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
        };
        let handler = handler.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let h = handler.clone();
                async move { Ok::<_, Infallible>(h(req, remote).await) }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            let _ = watcher.watch(conn.into_owned()).await;
        });
    }
    drain(graceful).await;
}

/// Binds `count` listening sockets on `addr` with `SO_REUSEPORT` (the first
/// picks the port if `addr` has port 0). The kernel spreads connections across them.
pub fn bind_reuseport(
    addr: std::net::SocketAddr,
    count: usize,
) -> std::io::Result<(u16, Vec<std::net::TcpListener>)> {
    let bind = |addr: std::net::SocketAddr| -> std::io::Result<std::net::TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        #[cfg(unix)]
        socket.set_reuseport(true)?;
        socket.set_nodelay(true)?;
        socket.bind(addr)?;
        let std_listener = socket.listen(1024)?.into_std()?;
        std_listener.set_nonblocking(true)?;
        Ok(std_listener)
    };
    let first = bind(addr)?;
    let port = first.local_addr()?.port();
    let addr = std::net::SocketAddr::new(addr.ip(), port);
    let mut listeners = vec![first];
    for _ in 1..count.max(1) {
        listeners.push(bind(addr)?);
    }
    Ok((port, listeners))
}

/// Serves HTTPS on each listener from its own thread: a single-threaded
/// runtime with its own upstream pools ([`Proxy::worker`]), so a request is
/// handled start to finish on one thread. The threads end after `shutdown`
/// once their connections have drained.
pub fn spawn_https_workers(
    listeners: Vec<std::net::TcpListener>,
    proxy: &Proxy,
    tls: Option<Arc<ServerTls>>,
    shutdown: CancellationToken,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (i, std_listener) in listeners.into_iter().enumerate() {
        let proxy = Arc::new(proxy.worker());
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        let h = std::thread::Builder::new()
            .name(format!("jetbridge-https-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a worker runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(l) => serve_proxy(l, proxy, tls, shutdown).await,
                        Err(e) => tracing::error!(error = %e, "cannot register the listener"),
                    }
                });
            })?;
        handles.push(h);
    }
    Ok(handles)
}

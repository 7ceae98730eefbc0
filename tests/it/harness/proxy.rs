//! Harness for the proxy integration tier: the whole proxy in-process on
//! loopback, built from config YAML exactly as `jetbridge standalone` builds
//! it, and real upstream servers (HTTP/1.1 echo, h2c echo, HTTPS echo with a
//! test CA, WebSocket echo, a silent server, a closed port).
//!
//! Clients: a hyper client over our own rustls stream (SNI = the route host,
//! connection always to 127.0.0.1), and raw TLS sockets for requests that
//! client libraries would normalise.

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jetbridge::identity::session::{Session, SessionCodec};
use jetbridge::model::Snapshot;
use jetbridge::proxy::Proxy;
use jetbridge::proxy::dataplane::{Addresses, DataPlane};
use jetbridge::snapshot::SnapshotReader;
use jetbridge::source::file;
use jetbridge::translate::Inputs;
use jetbridge::translate::config::{self, Generated};
use jetbridge::translate::driver::Driver;
use rustls::SignatureScheme;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single network step in these tests.
pub const STEP: Duration = Duration::from_secs(10);

/// Installs the process-wide rustls crypto provider (idempotent).
pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub use super::config::*;

/// Translates config YAML exactly as standalone does, keeping per-route
/// error diagnostics (those routes fail closed).
pub fn snapshot_with_diagnostics(
    yaml: &(impl ConfigText + ?Sized),
    generated: &mut Generated,
) -> Snapshot {
    jetbridge::translate::translate(&inputs_from_yaml(yaml, generated))
}

/// The translation inputs of config YAML, read exactly as standalone does.
pub fn inputs_from_yaml(yaml: &(impl ConfigText + ?Sized), generated: &mut Generated) -> Inputs {
    let cfg = ConfigFile::parse("test.yaml", &yaml.text()).expect("test config parses");
    let mut warnings = Vec::new();
    file::inputs_from_config(&cfg, generated, &mut warnings).expect("test config is valid")
}

/// Writes `yaml` to `path` and publishes it the way `jetbridge standalone`
/// loads and reloads its config file (a file with any error is refused:
/// the test panics, so a typo in a test config cannot pass silently).
/// Returns the new generation (`None` when nothing changed).
pub fn load(
    path: &std::path::Path,
    yaml: &(impl ConfigText + ?Sized),
    driver: &mut Driver,
    generated: &mut Generated,
) -> Option<u64> {
    std::fs::write(path, yaml.text()).unwrap();
    let path = path.to_str().unwrap();
    let now = jetbridge::proxy::clock::unix_now();
    let (generation, _warnings) = file::load_and_publish(path, driver, generated, now)
        .unwrap_or_else(|e| panic!("test config refused: {e}"));
    generation
}

/// A running proxy: HTTPS listener and internal (admin) listener.
pub struct Harness {
    pub https: SocketAddr,
    pub internal: SocketAddr,
    /// Kept for the life of the harness, as the binary keeps it.
    _proxy: Arc<Proxy>,
    pub reader: SnapshotReader,
    state: Mutex<(Driver, Generated)>,
    shutdown: CancellationToken,
    /// Holds the config file [`Harness::publish`] writes.
    dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    /// Starts a proxy serving the snapshot built from `yaml`.
    pub async fn start(yaml: &(impl ConfigText + ?Sized)) -> Harness {
        let h = Harness::serve(Driver::new(), Generated::default()).await;
        assert_eq!(h.publish(yaml), Some(1));
        h
    }

    /// Starts the listeners over a driver (which may have published nothing yet).
    pub async fn serve(driver: Driver, generated: Generated) -> Harness {
        init();
        let reader = driver.reader();
        let shutdown = CancellationToken::new();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let plane = DataPlane::bind(
            Addresses {
                https: loopback,
                http_redirect: None,
                internal: Some(loopback),
                insecure: false,
                public_https_port: None,
                client_addr: Default::default(),
            },
            1,
        )
        .await
        .unwrap();
        let stop = shutdown.clone();
        let running = plane
            .start(
                reader.clone(),
                Default::default(),
                shutdown.clone(),
                async move { stop.cancelled().await },
            )
            .unwrap();
        let (https_addr, internal_addr, proxy) = (
            running.https,
            running.internal.unwrap(),
            running.proxy.clone(),
        );
        Harness {
            https: https_addr,
            internal: internal_addr,
            _proxy: proxy,
            reader,
            state: Mutex::new((driver, generated)),
            shutdown,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Publishes a new snapshot built from `yaml`, as a reload of the config
    /// file; returns the new generation.
    pub fn publish(&self, yaml: &(impl ConfigText + ?Sized)) -> Option<u64> {
        let mut state = self.state.lock().unwrap();
        let (driver, generated) = &mut *state;
        load(
            &self.dir.path().join("config.yaml"),
            yaml,
            driver,
            generated,
        )
    }

    /// Runs `f` with the driver and the generated material.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut Driver, &mut Generated) -> R) -> R {
        let mut state = self.state.lock().unwrap();
        let (publisher, generated) = &mut *state;
        f(publisher, generated)
    }

    /// HTTP/1.1 GET over a fresh TLS connection.
    pub async fn get(&self, host: &str, path: &str) -> Resp {
        send_h1(self.https, host, request("GET", host, path, &[])).await
    }

    /// HTTP/1.1 GET with extra headers.
    pub async fn get_with(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        send_h1(self.https, host, request("GET", host, path, headers)).await
    }

    /// Raw HTTP/1.1 request bytes over TLS (SNI = `sni`).
    pub async fn raw(&self, sni: &str, request: &str) -> Resp {
        raw(self.https, sni, request).await
    }

    /// Raw GET: request line and headers written exactly as given.
    pub async fn raw_get(&self, host: &str, target: &str, headers: &[(&str, &str)]) -> Resp {
        let mut r = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n");
        for (n, v) in headers {
            r.push_str(&format!("{n}: {v}\r\n"));
        }
        r.push_str("Connection: close\r\n\r\n");
        let sni = host.split(':').next().unwrap_or(host).trim_end_matches('.');
        raw(self.https, &sni.to_ascii_lowercase(), &r).await
    }

    /// GET on the internal listener.
    pub async fn internal_get(&self, path: &str) -> Resp {
        plain_get(self.internal, "jetbridge.internal", path, &[]).await
    }
}

// ---------------------------------------------------------------------------
// Responses

/// A response as the client saw it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub version: Version,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of a header (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): status {} body {}",
                self.status,
                self.text()
            )
        })
    }
    /// The echo server's report (asserts 200).
    pub fn echo(&self) -> Echo {
        assert_eq!(
            self.status,
            200,
            "expected the upstream's answer, got: {}",
            self.text()
        );
        Echo::parse(&self.json())
    }
}

/// What reached an echo upstream.
#[derive(Debug)]
pub struct Echo {
    pub server: String,
    pub method: String,
    pub path_and_query: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    /// The request body as received.
    pub body: String,
}

impl Echo {
    fn parse(v: &serde_json::Value) -> Echo {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Echo {
            server: s("server"),
            method: s("method"),
            path_and_query: s("path_and_query"),
            version: s("version"),
            body: s("body"),
            headers: v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_string(),
                        p[1].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
        }
    }
    /// Every value of a header.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The single value of a header; panics if it appears more than once.
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "{name} reached the upstream {} times: {all:?}",
            all.len()
        );
        all.first().copied()
    }
    /// Header names that look like identity headers (any case, `-`/`_`/`.`).
    pub fn identity_lookalikes(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .filter(|(n, _)| {
                let n = n.to_ascii_lowercase().replace(['_', '.'], "-");
                n.starts_with("x-pomerium")
            })
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Clients

/// TCP to `addr`, TLS with SNI `sni`.
pub async fn tls_connect(addr: SocketAddr, sni: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tls_over(tcp, sni, alpn).await
}

/// TLS with SNI `sni` over an existing stream.
pub async fn tls_over<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    sni: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<S> {
    let connector = tokio_rustls::TlsConnector::from(super::tls::client_config(alpn));
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(STEP, connector.connect(name, io))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake")
}

/// A request with a `Host` header (HTTP/1.1 origin form).
pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

async fn collect(resp: Response<Incoming>) -> Resp {
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(STEP, body.collect())
        .await
        .expect("response body timed out")
        .expect("response body")
        .to_bytes()
        .to_vec();
    Resp {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    }
}

/// One HTTP/1.1 connection that can carry several requests.
pub struct H1Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl H1Conn {
    /// Handshakes HTTP/1.1 over any stream.
    pub async fn over<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: S) -> H1Conn {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        H1Conn { sender }
    }
    /// Sends one request and reads the whole response.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Resp {
        tokio::time::timeout(STEP, self.sender.ready())
            .await
            .expect("connection ready timed out")
            .expect("connection still open");
        let resp = tokio::time::timeout(STEP, self.sender.send_request(req))
            .await
            .expect("response timed out")
            .expect("response");
        collect(resp).await
    }
}

/// Sends one HTTP/1.1 request over a new TLS connection (ALPN http/1.1).
pub async fn send_h1(addr: SocketAddr, sni: &str, req: Request<Full<Bytes>>) -> Resp {
    let tls = tls_connect(addr, sni, &[b"http/1.1"]).await;
    H1Conn::over(tls).await.send(req).await
}

/// Sends one HTTP/2 request over a new TLS connection (ALPN h2). `uri` must be absolute.
pub async fn send_h2(addr: SocketAddr, sni: &str, req: Request<Full<Bytes>>) -> Resp {
    let tls = tls_connect(addr, sni, &[b"h2"]).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "proxy did not select h2"
    );
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("response timed out")
        .expect("response");
    collect(resp).await
}

/// Plain-HTTP GET (the internal listener).
pub async fn plain_get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let tcp = TcpStream::connect(addr).await.unwrap();
    H1Conn::over(tcp)
        .await
        .send(request("GET", host, path, headers))
        .await
}

/// Writes `request` verbatim over TLS and reads until the server closes.
pub async fn raw(addr: SocketAddr, sni: &str, request: &str) -> Resp {
    let mut s = tls_connect(addr, sni, &[b"http/1.1"]).await;
    s.write_all(request.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    parse_response(&read_to_close(&mut s, "raw response").await)
}

/// Everything `s` sends until it closes (or fails); panics after [`STEP`].
pub async fn read_to_close<S: AsyncRead + Unpin>(s: &mut S, what: &str) -> Vec<u8> {
    read_to_close_within_a_step(s)
        .await
        .unwrap_or_else(|| panic!("{what} timed out"))
}

/// Everything `s` sends until it closes (or fails); `None` after [`STEP`].
async fn read_to_close_within_a_step<S: AsyncRead + Unpin>(s: &mut S) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(STEP, read).await.ok()?;
    Some(buf)
}

/// Parses one HTTP/1.1 response (Content-Length, chunked, or until close).
pub fn parse_response(buf: &[u8]) -> Resp {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = std::str::from_utf8(&buf[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &buf[end + 4..];
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        let mut r = rest;
        while let Some(p) = r.windows(2).position(|w| w == b"\r\n") {
            let size_text = std::str::from_utf8(&r[..p]).unwrap();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            r = &r[p + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&r[..size]);
            r = &r[size + 2..];
        }
        out
    } else if let Some(n) = get("content-length") {
        rest[..n.parse::<usize>().unwrap().min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        version: Version::HTTP_11,
        headers,
        body,
    }
}

// ---------------------------------------------------------------------------
// Sessions

/// A session for `email`, valid for an hour.
pub fn session(email: &str, groups: &[&str]) -> Session {
    let now = jetbridge::proxy::clock::unix_now();
    Session {
        id: format!("sid-{email}"),
        sub: format!("sub-{email}"),
        email: email.to_string(),
        name: format!("Name of {email}"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        claims: Default::default(),
        truncated: false,
        iat: now,
        exp: now + 3600,
        refresh_token: None,
        refresh_at: 0,
        idp_tokens: None,
        idp: String::new(),
    }
}

/// `Cookie` header value carrying a session sealed for `host`.
pub fn session_cookie(host: &str, session: &Session) -> String {
    let value = SessionCodec::new(&COOKIE_SECRET).seal(host, session);
    format!("{}={value}", config::DEFAULT_COOKIE_NAME)
}

// ---------------------------------------------------------------------------
// Upstreams

/// A running upstream server.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Requests (or WebSocket sessions) served.
    pub requests: Arc<AtomicUsize>,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Upstream {
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    /// `host:port` as used in `to:` URLs.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }
}

async fn echo(
    name: Arc<str>,
    requests: Arc<AtomicUsize>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    requests.fetch_add(1, Ordering::SeqCst);
    let headers: Vec<[String; 2]> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            [
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ]
        })
        .collect();
    let response_headers: Vec<(String, String)> = req
        .headers()
        .get_all("x-echo-response-header")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let method = req.method().as_str().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let version = format!("{:?}", req.version());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let doc = serde_json::json!({
        "server": &*name,
        "method": method,
        "path_and_query": path_and_query,
        "version": version,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut resp = Response::new(Full::new(Bytes::from(doc.to_string())));
    resp.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    for (n, v) in response_headers {
        resp.headers_mut().append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            http::HeaderValue::from_str(&v).unwrap(),
        );
    }
    Ok(resp)
}

#[derive(Clone, Copy)]
enum Proto {
    Http1,
    H2c,
}

async fn spawn_echo<F, Fut, S>(name: &str, wrap: F, proto: Proto) -> Upstream
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<S>> + Send,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let name: Arc<str> = Arc::from(name);
    let wrap = Arc::new(wrap);
    serve_each_connection(move |tcp, r, _stop| {
        let (name, wrap) = (name.clone(), wrap.clone());
        async move {
            let Some(io) = wrap(tcp).await else { return };
            let svc = service_fn(move |req| echo(name.clone(), r.clone(), req));
            let io = TokioIo::new(io);
            let _ = match proto {
                Proto::Http1 => hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await
                    .map_err(|_| ()),
                Proto::H2c => hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, svc)
                    .await
                    .map_err(|_| ()),
            };
        }
    })
    .await
}

/// An upstream on a loopback port: counts each connection and hands it, with
/// the request counter and the shutdown token, to `serve` on a task of its own.
async fn serve_each_connection<F, Fut>(serve: F) -> Upstream
where
    F: Fn(TcpStream, Arc<AtomicUsize>, CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let (r, c, stop) = (requests.clone(), connections.clone(), shutdown.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => match a { Ok(x) => x, Err(_) => continue },
            };
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(tcp, r.clone(), stop.clone()));
        }
    });
    Upstream {
        addr,
        requests,
        connections,
        shutdown,
    }
}

/// An HTTP/1.1 echo server; its JSON answer names it `name`.
pub async fn echo_http1(name: &str) -> Upstream {
    spawn_echo(name, |tcp| async move { Some(tcp) }, Proto::Http1).await
}

/// An HTTP/2 cleartext (prior knowledge) echo server.
pub async fn echo_h2c(name: &str) -> Upstream {
    spawn_echo(name, |tcp| async move { Some(tcp) }, Proto::H2c).await
}

/// An HTTPS (HTTP/1.1) echo server with the given certificate.
pub async fn echo_https(name: &str, cert: &TestCert) -> Upstream {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.leaf_der.clone()],
            PrivateKeyDer::try_from(cert.leaf_key_der.clone()).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    spawn_echo(
        name,
        move |tcp| {
            let acceptor = acceptor.clone();
            async move { acceptor.accept(tcp).await.ok() }
        },
        Proto::Http1,
    )
    .await
}

/// A WebSocket server that echoes every text and binary message.
pub async fn websocket_echo() -> Upstream {
    use futures_util::{SinkExt, StreamExt};
    serve_each_connection(|tcp, r, _stop| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        r.fetch_add(1, Ordering::SeqCst);
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// A server that accepts connections and reads requests but never answers.
pub async fn silent_upstream() -> Upstream {
    serve_each_connection(|mut tcp, _r, stop| async move {
        let mut sink = [0u8; 4096];
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                n = tcp.read(&mut sink) => if matches!(n, Ok(0) | Err(_)) { return },
            }
        }
    })
    .await
}

/// A server that answers every connection with bytes that are not HTTP.
pub async fn garbage_upstream() -> Upstream {
    serve_each_connection(|mut tcp, _r, _stop| async move {
        let mut buf = [0u8; 4096];
        let _ = tcp.read(&mut buf).await;
        let _ = tcp.write_all(b"SSH-2.0-not-http\r\n\r\n").await;
        let _ = tcp.shutdown().await;
    })
    .await
}

/// A loopback address where nothing listens.
pub async fn closed_port() -> SocketAddr {
    // Bound but never listening: connections are refused, and the port stays
    // taken for the life of the test process, so no other test can be given
    // it (a port freed at once could be bound again by a parallel test).
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = s.local_addr().unwrap();
    std::mem::forget(s);
    addr
}

/// A TCP relay in front of `target` that counts accepted client connections.
pub async fn counting_relay(target: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut up) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                }
            });
        }
    });
    (addr, count)
}

// ---------------------------------------------------------------------------
// Certificates for HTTPS upstreams

/// A test CA and a leaf certificate for `127.0.0.1` and `localhost` signed by it.
pub struct TestCert {
    pub ca_pem: String,
    pub leaf_der: CertificateDer<'static>,
    pub leaf_key_der: Vec<u8>,
}

pub fn test_cert() -> TestCert {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "jetbridge test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    TestCert {
        ca_pem: ca_cert.pem(),
        leaf_der: leaf.der().clone(),
        leaf_key_der: leaf_key.serialize_der(),
    }
}

// ---------------------------------------------------------------------------
// Client certificates (mTLS)

/// A certificate authority of a test's own, issuing client certificates.
pub struct TestCa {
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A client certificate (`clientAuth`) and its key.
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl ClientCert {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::try_from(self.key_der.clone()).unwrap()
    }
    /// `tls_client_cert` / `tls_client_key` as Pomerium writes them: base64 of PEM.
    pub fn cert_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.cert_pem)
    }
    pub fn key_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.key_pem)
    }
}

impl TestCa {
    pub fn new(cn: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Base64 of the CA's PEM (Pomerium's form of a CA setting).
    pub fn pem_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.pem)
    }

    /// A server certificate for `names`, issued by this CA.
    pub fn server(&self, names: &[&str]) -> ClientCert {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        self.issue(&params)
    }

    /// A certificate for `params` with a new key, signed by this CA.
    fn issue(&self, params: &rcgen::CertificateParams) -> ClientCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    /// A client certificate with common name `cn`.
    pub fn client(&self, cn: &str) -> ClientCert {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&params)
    }
}

/// The CertificateRequests a client saw: the CA names each one offered.
#[derive(Debug, Default)]
pub struct CertRequests(Mutex<Vec<Vec<Vec<u8>>>>);

impl CertRequests {
    /// How many times the server asked for a client certificate.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    /// The DER names offered as hints by the last request.
    pub fn last_hints(&self) -> Vec<Vec<u8>> {
        self.0.lock().unwrap().last().cloned().unwrap_or_default()
    }
}

#[derive(Debug)]
struct RecordingClientCert {
    cert: Option<Arc<rustls::sign::CertifiedKey>>,
    log: Arc<CertRequests>,
}

impl rustls::client::ResolvesClientCert for RecordingClientCert {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.log
            .0
            .lock()
            .unwrap()
            .push(root_hint_subjects.iter().map(|s| s.to_vec()).collect());
        self.cert.clone()
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// A client configuration presenting `client` when asked (and recording
/// what the server asked for); one configuration keeps its TLS sessions, so
/// a second connection with it resumes.
pub fn client_config_as(
    alpn: &[&[u8]],
    client: Option<&ClientCert>,
) -> (Arc<rustls::ClientConfig>, Arc<CertRequests>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cert = client.map(|c| {
        let key = provider.key_provider.load_private_key(c.key()).unwrap();
        Arc::new(rustls::sign::CertifiedKey::new(c.chain.clone(), key))
    });
    let log = Arc::new(CertRequests::default());
    let mut cfg =
        super::tls::accept_any().with_client_cert_resolver(Arc::new(RecordingClientCert {
            cert,
            log: log.clone(),
        }));
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (Arc::new(cfg), log)
}

/// TLS to `addr` with SNI `sni` and the given client configuration.
pub async fn tls_connect_with(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(STEP, connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake")
}

/// TLS to the proxy with SNI `sni`, presenting `client` when asked; also
/// returns what the server asked for.
pub async fn tls_connect_as(
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
    client: Option<&ClientCert>,
) -> (TlsStream<TcpStream>, Arc<CertRequests>) {
    let (cfg, log) = client_config_as(alpn, client);
    (tls_connect_with(addr, sni, cfg).await, log)
}

/// GET `host``path` over a new TLS connection with SNI `sni`, over HTTP/2
/// when `h2`, presenting `client` when asked.
pub async fn get_as(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    path: &str,
    client: Option<&ClientCert>,
    h2: bool,
) -> (Resp, Arc<CertRequests>) {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let (tls, log) = tls_connect_as(addr, sni, alpn, client).await;
    if !h2 {
        let resp = H1Conn::over(tls)
            .await
            .send(request("GET", host, path, &[]))
            .await;
        return (resp, log);
    }
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("https://{host}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("response timed out")
        .expect("response");
    (collect(resp).await, log)
}

/// An HTTPS (HTTP/1.1) echo server with `cert` that requires a client
/// certificate issued by `client_ca_pem`; the subject of every client
/// certificate it accepted is recorded.
pub async fn echo_https_mtls(
    name: &str,
    cert: &TestCert,
    client_ca_pem: &str,
) -> (Upstream, Arc<Mutex<Vec<String>>>) {
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.leaf_der.clone()],
            PrivateKeyDer::try_from(cert.leaf_key_der.clone()).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let subjects = Arc::new(Mutex::new(Vec::new()));
    let seen = subjects.clone();
    let up = spawn_echo(
        name,
        move |tcp| {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            async move {
                let s = acceptor.accept(tcp).await.ok()?;
                if let Some(leaf) = s.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).ok()?;
                    seen.lock().unwrap().push(parsed.subject().to_string());
                }
                Some(s)
            }
        },
        Proto::Http1,
    )
    .await;
    (up, subjects)
}

/// One HTTP/1.1 GET of `https://host/` presenting `client` when asked: the
/// status, or `None` when the TLS connection failed (a refused handshake,
/// which with TLS 1.3 shows on the first read).
pub async fn try_get_as(addr: SocketAddr, host: &str, client: Option<&ClientCert>) -> Option<u16> {
    let (cfg, _) = client_config_as(&[b"http/1.1"], client);
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from(host.to_string()).ok()?;
    let mut tls = tokio::time::timeout(STEP, connector.connect(name, tcp))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.ok()?;
    let buf = read_to_close_within_a_step(&mut tls).await?;
    (!buf.is_empty()).then(|| parse_response(&buf).status)
}

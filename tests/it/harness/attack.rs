//! Harness for the attack suites: the real `jetbridge standalone` binary on
//! loopback, a recording upstream (HTTP/1.1 and h2c on one port), and two
//! clients that put exactly the bytes a test wrote on the wire: HTTP/1.1 over
//! a raw TLS socket, and HTTP/2 frames with hand-encoded HPACK (literal, no
//! Huffman), so no client library normalises names, values or framing.

use crate::harness::config::{ConfigFile, ConfigText as _};
use crate::harness::login::{ChildGuard, capture_lines, free_port};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bound for one request on loopback.
pub const STEP: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The binary

/// `jetbridge standalone` running on a generated config; killed on drop.
pub struct Jetbridge {
    _child: ChildGuard,
    lines: Arc<Mutex<Vec<String>>>,
    pub https: u16,
    pub internal: u16,
    pub config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Jetbridge {
    /// Writes `config` with its listeners and fresh secrets (`jetbridge
    /// gen-secrets`) to a config file, starts the binary on it and waits
    /// until it answers on both listeners and `/readyz` is 200.
    pub async fn start(config: &ConfigFile) -> Jetbridge {
        Self::start_on(free_port(), config).await
    }

    /// [`Jetbridge::start`] with the HTTPS listener on `https` (a port
    /// chosen beforehand, e.g. for an IdP's redirect URI).
    pub async fn start_on(https: u16, config: &ConfigFile) -> Jetbridge {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let internal = free_port();
        let secrets = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
            .args(["gen-secrets", "--format", "config"])
            .output()
            .unwrap();
        assert!(secrets.status.success(), "gen-secrets: {secrets:?}");
        let secrets =
            ConfigFile::parse("gen-secrets", &String::from_utf8(secrets.stdout).unwrap()).unwrap();
        let config = ConfigFile {
            address: Some(format!("127.0.0.1:{https}")),
            internal_address: Some(format!("127.0.0.1:{internal}")),
            signing_key: secrets.signing_key,
            cookie_secret: secrets.cookie_secret,
            shared_secret: secrets.shared_secret,
            ..config.clone()
        }
        .text();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
            .args(["standalone", "--config"])
            .arg(&path)
            .env_remove("JETBRIDGE_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = capture_lines(&mut child);
        let j = Jetbridge {
            _child: ChildGuard(child),
            lines,
            https,
            internal,
            config: path,
            _dir: dir,
        };
        for _ in 0..150 {
            let up = TcpStream::connect(("127.0.0.1", https)).await.is_ok();
            if up && j.internal_get("/readyz").await.0 == 200 {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("jetbridge did not become ready: {:#?}", j.log());
    }

    /// The process id of the running binary.
    pub fn pid(&self) -> u32 {
        self._child.0.id()
    }

    /// Resident memory of the binary in KiB (`VmRSS` of /proc/<pid>/status),
    /// `None` once the process is gone.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// True while the process runs (exists and is not a zombie).
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("State:").map(|v| !v.trim().starts_with('Z')))
            })
            .unwrap_or(false)
    }

    /// Everything the binary wrote to stdout and stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// `_jetbridge=<value>` for a session minted by `jetbridge mint-session`.
    pub fn mint_session(&self, host: &str, sub: &str, email: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
            .arg("mint-session")
            .arg("--config")
            .arg(&self.config)
            .args(["--host", host, "--sub", sub, "--email", email])
            .output()
            .unwrap();
        assert!(out.status.success(), "mint-session: {out:?}");
        format!(
            "_jetbridge={}",
            String::from_utf8(out.stdout).unwrap().trim()
        )
    }

    /// GET on the internal listener (plain HTTP): status and body.
    pub async fn internal_get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.internal)).await else {
            return (0, String::new());
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: internal\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(STEP, s.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = status_of(&buf).unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// The JWKS document the internal listener publishes.
    pub async fn jwks(&self) -> serde_json::Value {
        let (status, body) = self.internal_get("/.well-known/pomerium/jwks.json").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// Verifies an ES256 assertion against a JWKS (issuer and audience `host`)
/// and returns its claims, or why it does not verify.
pub fn verify_assertion(
    token: &str,
    jwks: &serde_json::Value,
    host: &str,
) -> Result<serde_json::Value, String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let header = decode_header(token).map_err(|e| format!("header: {e}"))?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .ok_or_else(|| format!("kid {kid} not in the JWKS"))?;
    let key = DecodingKey::from_ec_components(
        jwk["x"].as_str().unwrap_or(""),
        jwk["y"].as_str().unwrap_or(""),
    )
    .map_err(|e| e.to_string())?;
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[host]);
    v.set_issuer(&[host]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    decode::<serde_json::Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------
// The recording upstream

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The request-target (path and query) exactly as received.
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub trailers: Vec<(String, Vec<u8>)>,
}

impl Seen {
    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    /// All values of a header (name compared exactly, lower-case).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }
    /// Headers and trailers together.
    pub fn fields(&self) -> impl Iterator<Item = &(String, Vec<u8>)> {
        self.headers.iter().chain(self.trailers.iter())
    }
}

/// An upstream that answers 200 to everything (`/big/<n>`: a body of n
/// bytes; an upgrade request gets a plain 200) and records what it saw.
/// Speaks HTTP/1.1 and h2c (prior knowledge) on the same port.
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Targets of requests whose head arrived (recorded before the body).
    started: Arc<Mutex<Vec<String>>>,
    /// Connections from the proxy open right now.
    open: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts one upstream connection while it lives.
struct OpenConn(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Recorder {
    pub async fn start() -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let s = seen.clone();
        let st = started.clone();
        let counter = open.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    return;
                };
                let s = s.clone();
                let st = st.clone();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let counted = OpenConn(counter.clone());
                tokio::spawn(async move {
                    let _counted = counted;
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let s = s.clone();
                        let st = st.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let fields = |h: &http::HeaderMap| {
                                h.iter()
                                    .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                                    .collect::<Vec<_>>()
                            };
                            let mut seen = Seen {
                                target: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.as_str().to_string())
                                    .unwrap_or_default(),
                                headers: fields(&parts.headers),
                                trailers: Vec::new(),
                            };
                            st.lock().unwrap().push(seen.target.clone());
                            if let Ok(c) = body.collect().await
                                && let Some(t) = c.trailers()
                            {
                                seen.trailers = fields(t);
                            }
                            // `/big/<n>` answers with n bytes.
                            let big = seen
                                .path()
                                .strip_prefix("/big/")
                                .and_then(|n| n.parse::<usize>().ok());
                            s.lock().unwrap().push(seen);
                            let body = match big {
                                Some(n) => Bytes::from(vec![b'x'; n]),
                                None => Bytes::from_static(b"upstream\n"),
                            };
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(body)))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Recorder {
            addr,
            seen,
            started,
            open,
        }
    }

    /// Connections from the proxy open right now.
    pub fn open_connections(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every request whose head arrived and whose target contains `marker`,
    /// body received or not.
    pub fn started_with(&self, marker: &str) -> Vec<String> {
        self.started
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.contains(marker))
            .cloned()
            .collect()
    }

    /// Every request whose target contains `marker`.
    pub fn with(&self, marker: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target.contains(marker))
            .cloned()
            .collect()
    }

    /// Every request seen so far.
    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------
// TLS

/// TLS to the proxy on 127.0.0.1:`port` with SNI `sni` (no SNI when `sni`
/// is an IP address) offering one ALPN protocol.
pub async fn tls(port: u16, sni: &str, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let s = tokio::time::timeout(
        STEP,
        tokio_rustls::TlsConnector::from(super::tls::client_config(&[alpn])).connect(name, tcp),
    )
    .await
    .expect("TLS handshake timed out")
    .expect("TLS handshake");
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(alpn), "ALPN");
    s
}

// ---------------------------------------------------------------------------
// HTTP/1.1, raw

pub fn status_of(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Writes `request` verbatim over TLS (ALPN http/1.1), reads until the
/// server closes, and returns the status of the first response (`None`
/// when the server closed without answering). The server may answer and
/// close before an oversized request is all written (a broken pipe then),
/// so what it sent is read either way.
pub async fn h1_raw(port: u16, sni: &str, request: &[u8]) -> Option<u16> {
    let mut s = tls(port, sni, b"http/1.1").await;
    if s.write_all(request).await.is_ok() {
        let _ = s.flush().await;
    }
    let what = "HTTP/1.1 response (send Connection: close)";
    status_of(&super::proxy::read_to_close(&mut s, what).await)
}

// ---------------------------------------------------------------------------
// HTTP/2, raw frames

/// How the proxy answered one HTTP/2 stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2 {
    /// A response with this `:status`.
    Status(u16),
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code before any answer on the stream.
    GoAway(u32),
    /// The connection ended with no answer.
    Closed,
}

impl H2 {
    /// True unless the request got a 1xx/2xx/3xx response.
    pub fn refused(self) -> bool {
        !matches!(self, H2::Status(s) if s < 400)
    }
}

/// A header field list: names and values as raw bytes, sent in order.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Builds a field list from string pairs.
pub fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut v: usize) {
    let max = (1usize << prefix_bits) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// HPACK: every field as "literal without indexing, new name", no Huffman.
pub fn hpack(fields: &Fields) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, n.len());
        out.extend_from_slice(n);
        hpack_int(&mut out, 0, 7, v.len());
        out.extend_from_slice(v);
    }
    out
}

/// Takes one whole frame off the front of `buf`: its type, flags, stream id
/// and payload; `None` while the frame is not all there.
fn take_frame(buf: &mut Vec<u8>) -> Option<(u8, u8, u32, Vec<u8>)> {
    if buf.len() < 9 {
        return None;
    }
    let len = (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize;
    if buf.len() < 9 + len {
        return None;
    }
    let (kind, flags) = (buf[3], buf[4]);
    let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7FFF_FFFF;
    let payload: Vec<u8> = buf[9..9 + len].to_vec();
    buf.drain(..9 + len);
    Some((kind, flags, stream, payload))
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// Reads a `:status` from the start of a response header block: indexed
/// static entries 8–14, or a literal with a `:status` name whose value is
/// plain or Huffman-coded digits.
pub fn decode_status(block: &[u8]) -> Option<u16> {
    let mut i = 0;
    // Skip dynamic table size updates (001xxxxx).
    while i < block.len() && block[i] & 0xE0 == 0x20 {
        i += 1;
        while i < block.len() && block[i - 1] & 0x1F == 0x1F && block[i] & 0x80 != 0 {
            i += 1;
        }
    }
    let b = *block.get(i)?;
    let static_status = |idx: u8| match idx {
        8 => Some(200),
        9 => Some(204),
        10 => Some(206),
        11 => Some(304),
        12 => Some(400),
        13 => Some(404),
        14 => Some(500),
        _ => None,
    };
    if b & 0x80 != 0 {
        return static_status(b & 0x7F);
    }
    let name = if b & 0xC0 == 0x40 { b & 0x3F } else { b & 0x0F };
    static_status(name)?;
    let len_byte = *block.get(i + 1)?;
    let len = (len_byte & 0x7F) as usize;
    let value = block.get(i + 2..i + 2 + len)?;
    let text = if len_byte & 0x80 == 0 {
        String::from_utf8(value.to_vec()).ok()?
    } else {
        huffman_digits(value)?
    };
    text.parse().ok()
}

/// Decodes a Huffman-coded string of ASCII digits (RFC 7541 Appendix B).
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while out.len() < 3 {
        let five = bits.get(i..i + 5)?.iter().fold(0u8, |a, b| a << 1 | b);
        if five <= 2 {
            out.push(char::from(b'0' + five));
            i += 5;
            continue;
        }
        let six = bits.get(i..i + 6)?.iter().fold(0u8, |a, b| a << 1 | b);
        if !(0x19..=0x1F).contains(&six) {
            return None;
        }
        out.push(char::from(b'3' + (six - 0x19)));
        i += 6;
    }
    Some(out)
}

/// One request on stream 1 of a new HTTP/2 connection (ALPN h2): `head`
/// (pseudo-headers included, in the order given), then `body` as DATA if
/// any, then `trailers` as a second HEADERS frame if any.
pub async fn h2_raw(
    port: u16,
    sni: &str,
    head: &Fields,
    body: Option<&[u8]>,
    trailers: Option<&Fields>,
) -> H2 {
    let mut s = tls(port, sni, b"h2").await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let only_head = body.is_none() && trailers.is_none();
    out.extend(frame(
        HEADERS,
        END_HEADERS | if only_head { END_STREAM } else { 0 },
        1,
        &hpack(head),
    ));
    if let Some(b) = body {
        out.extend(frame(
            DATA,
            if trailers.is_none() { END_STREAM } else { 0 },
            1,
            b,
        ));
    }
    if let Some(t) = trailers {
        out.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &hpack(t)));
    }
    s.write_all(&out).await.unwrap();
    s.flush().await.unwrap();
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            while let Some((kind, flags, stream, payload)) = take_frame(&mut buf) {
                match kind {
                    SETTINGS if flags & 1 == 0 => {
                        let _ = s.write_all(&frame(SETTINGS, 1, 0, &[])).await;
                    }
                    PING if flags & 1 == 0 => {
                        let _ = s.write_all(&frame(PING, 1, 0, &payload)).await;
                    }
                    HEADERS if stream == 1 => {
                        let status = decode_status(&payload)
                            .unwrap_or_else(|| panic!("cannot read :status from {payload:02x?}"));
                        return H2::Status(status);
                    }
                    RST_STREAM if stream == 1 => {
                        return H2::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()));
                    }
                    GOAWAY => {
                        return H2::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                    }
                    _ => {}
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return H2::Closed,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(STEP, read)
        .await
        .expect("HTTP/2 answer timed out")
}

/// Runs `jobs` with at most `n` in flight; results in input order.
pub async fn bounded<T, F>(n: usize, jobs: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(n));
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let sem = sem.clone();
            tokio::spawn(async move {
                let _permit = sem.acquire().await.unwrap();
                job.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

// ---------------------------------------------------------------------------
// Resource watching, a bystander client, and raw connections that survive
// the server hanging up on them (for the protocol-abuse suite)

pub const CONTINUATION: u8 = 9;

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmRSS:")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

/// Samples a process's resident memory every 20 ms until stopped.
pub struct RssWatch {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl RssWatch {
    pub fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak.max(rss_kib(pid).unwrap_or(0))
        });
        RssWatch { stop, handle }
    }

    /// The highest resident size seen, in KiB.
    pub fn peak_kib(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// One bystander request: its status (`None`: no answer within `BYSTANDER_LIMIT`)
/// and how long it took.
pub type Probe = (Option<u16>, Duration);

/// The longest a bystander request may take, even under attack.
pub const BYSTANDER_LIMIT: Duration = Duration::from_secs(5);

/// One normal request, as a new client would make it: a fresh TLS connection
/// (ALPN http/1.1), `GET path` on `host`, read to the end.
pub async fn probe(port: u16, host: &str, path: &str) -> Probe {
    let started = std::time::Instant::now();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let once = async {
        let mut s = tls(port, host, b"http/1.1").await;
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        status_of(&buf)
    };
    let status = tokio::time::timeout(BYSTANDER_LIMIT, once)
        .await
        .ok()
        .flatten();
    (status, started.elapsed())
}

/// A client doing normal requests back to back until stopped.
pub struct Bystander {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: tokio::task::JoinHandle<Vec<Probe>>,
}

impl Bystander {
    pub fn start(port: u16, host: &'static str) -> Bystander {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = tokio::spawn(async move {
            let mut out = Vec::new();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                out.push(probe(port, host, "/bystander").await);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            out
        });
        Bystander { stop, handle }
    }

    pub async fn stop(self) -> Vec<Probe> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.await.unwrap()
    }
}

/// p50 and p99 of the latencies, in milliseconds.
pub fn percentiles(probes: &[Probe]) -> (f64, f64) {
    let mut ms: Vec<f64> = probes.iter().map(|(_, d)| d.as_secs_f64() * 1e3).collect();
    if ms.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: usize| ms[(ms.len() * q / 100).min(ms.len() - 1)];
    (at(50), at(99))
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A raw HTTP/1.1 connection over TLS whose writes may fail (the server may
/// hang up mid-request) without failing the test.
pub struct H1Conn {
    pub s: Tls,
    pub received: Vec<u8>,
}

/// How an HTTP/1.1 connection ended up.
#[derive(Clone, Debug)]
pub struct H1Outcome {
    /// Status of the first response, if any.
    pub status: Option<u16>,
    /// How many responses came back.
    pub responses: usize,
    /// True if the server closed the connection.
    pub closed: bool,
}

impl H1Conn {
    pub async fn open(port: u16, sni: &str) -> H1Conn {
        H1Conn {
            s: tls(port, sni, b"http/1.1").await,
            received: Vec::new(),
        }
    }

    /// Writes `bytes`; false if the connection is gone or the write stalls
    /// for `STEP`.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        let w = async {
            self.s.write_all(bytes).await?;
            self.s.flush().await
        };
        matches!(tokio::time::timeout(STEP, w).await, Ok(Ok(())))
    }

    /// Reads until the server closes, or nothing arrives for `quiet` after
    /// something did, or `limit` passes.
    pub async fn outcome(&mut self, quiet: Duration, limit: Duration) -> H1Outcome {
        let deadline = tokio::time::Instant::now() + limit;
        let mut chunk = vec![0u8; 16 * 1024];
        let mut closed = false;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let wait = if self.received.is_empty() {
                deadline - now
            } else {
                quiet.min(deadline - now)
            };
            match tokio::time::timeout(wait, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(n)) => self.received.extend_from_slice(&chunk[..n]),
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&self.received);
        H1Outcome {
            status: status_of(&self.received),
            responses: text.matches("HTTP/1.1 ").count(),
            closed,
        }
    }
}

/// What the client saw on a raw HTTP/2 connection.
#[derive(Clone, Debug, Default)]
pub struct H2Events {
    pub statuses: std::collections::HashMap<u32, u16>,
    pub resets: std::collections::HashMap<u32, u32>,
    pub data: std::collections::HashMap<u32, usize>,
    pub goaway: Option<u32>,
    pub closed: bool,
    pub frames: usize,
    /// The server's SETTINGS (identifier, value), in order received.
    pub settings: Vec<(u16, u32)>,
}

/// A raw HTTP/2 connection: frames go out exactly as written; a reader task
/// (once started) records what comes back and acknowledges SETTINGS and PING.
pub struct H2Conn {
    w: Arc<tokio::sync::Mutex<tokio::io::WriteHalf<Tls>>>,
    r: Option<tokio::io::ReadHalf<Tls>>,
    pub events: Arc<Mutex<H2Events>>,
}

impl H2Conn {
    /// Connects with ALPN h2 and sends the preface and a SETTINGS frame
    /// with `settings` (identifier, value). Nothing is read until
    /// [`H2Conn::read`].
    pub async fn open(port: u16, sni: &str, settings: &[(u16, u32)]) -> H2Conn {
        let s = tls(port, sni, b"h2").await;
        let (r, w) = tokio::io::split(s);
        let c = H2Conn {
            w: Arc::new(tokio::sync::Mutex::new(w)),
            r: Some(r),
            events: Arc::default(),
        };
        let mut payload = Vec::new();
        for (id, v) in settings {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&v.to_be_bytes());
        }
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(frame(SETTINGS, 0, 0, &payload));
        assert!(c.send(&out).await, "HTTP/2 preface");
        c
    }

    /// Starts the reader task.
    pub fn read(&mut self) {
        let Some(mut r) = self.r.take() else { return };
        let w = self.w.clone();
        let ev = self.events.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 32 * 1024];
            loop {
                while let Some((kind, flags, stream, payload)) = take_frame(&mut buf) {
                    let mut reply = None;
                    {
                        let mut e = ev.lock().unwrap();
                        e.frames += 1;
                        match kind {
                            SETTINGS if flags & 1 == 0 => {
                                for p in payload.chunks_exact(6) {
                                    e.settings.push((
                                        u16::from_be_bytes([p[0], p[1]]),
                                        u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                                    ));
                                }
                                reply = Some(frame(SETTINGS, 1, 0, &[]));
                            }
                            PING if flags & 1 == 0 => reply = Some(frame(PING, 1, 0, &payload)),
                            HEADERS => {
                                if let Some(st) = decode_status(&payload) {
                                    e.statuses.entry(stream).or_insert(st);
                                }
                            }
                            DATA => *e.data.entry(stream).or_default() += payload.len(),
                            RST_STREAM if payload.len() >= 4 => {
                                e.resets.insert(
                                    stream,
                                    u32::from_be_bytes(payload[..4].try_into().unwrap()),
                                );
                            }
                            GOAWAY if payload.len() >= 8 => {
                                e.goaway =
                                    Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                            }
                            _ => {}
                        }
                    }
                    if let Some(f) = reply {
                        let mut w = w.lock().await;
                        let _ = tokio::time::timeout(STEP, w.write_all(&f)).await;
                    }
                }
                match r.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        ev.lock().unwrap().closed = true;
                        return;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
    }

    /// Writes `bytes`; false if the connection is gone or the server has not
    /// taken them within 2 s (it stopped reading).
    pub async fn send(&self, bytes: &[u8]) -> bool {
        let mut w = self.w.lock().await;
        let write = async {
            w.write_all(bytes).await?;
            w.flush().await
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), write).await,
            Ok(Ok(()))
        )
    }

    /// A copy of what was seen so far.
    pub fn seen(&self) -> H2Events {
        self.events.lock().unwrap().clone()
    }

    /// Waits up to `limit` for `done` to hold over the events; returns them.
    pub async fn wait(&self, limit: Duration, done: impl Fn(&H2Events) -> bool) -> H2Events {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let e = self.seen();
            if done(&e) || tokio::time::Instant::now() >= deadline {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A HEADERS frame carrying `fields` on `stream`.
pub fn headers_frame(stream: u32, fields: &Fields, flags: u8) -> Vec<u8> {
    frame(HEADERS, flags, stream, &hpack(fields))
}

/// A GET on `host` for `path`, as HTTP/2 fields.
pub fn get_fields(host: &str, path: &str) -> Fields {
    fields(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", host),
        (":path", path),
    ])
}

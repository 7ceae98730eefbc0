//! Shared harness for the login tiers: a real OIDC provider (npm
//! `oidc-provider`), the proxy in-process on loopback, an HTTP client with a
//! cookie jar that follows the login flow by hand.

use super::config::{ConfigFile, ConfigText, RouteConfig, strings};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jetbridge::proxy::Proxy;
use jetbridge::proxy::dataplane::DataPlane;
use jetbridge::translate::config::Generated;
use jetbridge::translate::driver::Driver;
use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub fn support_dir() -> String {
    std::env::var("JETBRIDGE_SUPPORT")
        .unwrap_or_else(|_| format!("{}/tests/tools", env!("CARGO_MANIFEST_DIR")))
}

/// A child process killed on drop.
pub struct ChildGuard(pub Child);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tests/tools/idp.mjs`; returns the issuer and the guard.
pub fn start_idp(
    client_id: &str,
    secret: &str,
    redirect_uris: &[String],
    post_logout: &[String],
) -> (String, ChildGuard) {
    start_idp_with(client_id, secret, redirect_uris, post_logout, &[])
}

/// As [`start_idp`], with more `idp.mjs` arguments (e.g. `--extra-client`).
pub fn start_idp_with(
    client_id: &str,
    secret: &str,
    redirect_uris: &[String],
    post_logout: &[String],
    extra: &[&str],
) -> (String, ChildGuard) {
    let script = format!("{}/idp.mjs", support_dir());
    assert!(
        std::path::Path::new(&format!("{}/node_modules/oidc-provider", support_dir())).exists(),
        "npm oidc-provider is not installed: run ./scripts/test (it installs tests/tools/node_modules)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(&script).args([
        "--port",
        "0",
        "--client-id",
        client_id,
        "--client-secret",
        secret,
        "--skip-consent",
    ]);
    for r in redirect_uris {
        cmd.args(["--redirect-uri", r]);
    }
    for r in post_logout {
        cmd.args(["--post-logout-redirect-uri", r]);
    }
    cmd.args(extra);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node idp.mjs");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read idp line");
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("idp said {line:?}: {e}"));
    (v["issuer"].as_str().unwrap().to_string(), ChildGuard(child))
}

/// The proxy running in-process.
pub struct RunningProxy {
    pub port: u16,
    pub internal: SocketAddr,
    pub shutdown: CancellationToken,
    /// Kept for the life of the proxy, as the binary keeps it.
    _proxy: Arc<Proxy>,
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A config that signs in at `issuer` as OIDC client `client` with
/// `secret`, through the authenticate host on `port`, with the fixed test
/// cookie and shared secrets, and these routes.
pub fn sign_in_config(
    port: u16,
    issuer: &str,
    client: &str,
    secret: &str,
    routes: impl IntoIterator<Item = RouteConfig>,
) -> ConfigFile {
    ConfigFile {
        authenticate_service_url: Some(format!("https://authenticate.localhost:{port}")),
        idp_provider: Some("oidc".into()),
        idp_provider_url: Some(issuer.to_string()),
        idp_client_id: Some(client.to_string()),
        idp_client_secret: Some(secret.to_string()),
        idp_scopes: Some(strings(&["openid", "email", "profile", "groups"])),
        cookie_secret: Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
        shared_secret: Some("HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=".into()),
        routes: routes.into_iter().collect(),
        ..Default::default()
    }
}

/// Binds the HTTPS listener first so the IdP redirect URI can name its port.
pub async fn bind_https() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Starts the proxy with config YAML on an already-bound listener.
pub async fn start_proxy(https: TcpListener, yaml: &(impl ConfigText + ?Sized)) -> RunningProxy {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let mut driver = Driver::new();
    super::proxy::load(&path, yaml, &mut driver, &mut Generated::default());
    let port = https.local_addr().unwrap().port();
    let reader = driver.reader();
    let shutdown = CancellationToken::new();
    let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plane = DataPlane::from_listeners(https.into_std().unwrap(), Some(internal)).unwrap();
    let stop = shutdown.clone();
    let running = plane
        .start(reader, Default::default(), shutdown.clone(), async move {
            stop.cancelled().await;
            drop(driver);
        })
        .unwrap();
    let (internal_addr, proxy) = (running.internal.unwrap(), running.proxy.clone());
    std::mem::forget(dir);
    RunningProxy {
        port,
        internal: internal_addr,
        shutdown,
        _proxy: proxy,
    }
}

type Resolver = tower_service_fn::Resolve;

mod tower_service_fn {
    use hyper_util::client::legacy::connect::dns::Name;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Resolves every name to 127.0.0.1 (test hosts live on loopback).
    #[derive(Clone)]
    pub struct Resolve;
    impl tower_service::Service<Name> for Resolve {
        type Response = std::vec::IntoIter<SocketAddr>;
        type Error = std::io::Error;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Name) -> Self::Future {
            Box::pin(async { Ok(vec![SocketAddr::from(([127, 0, 0, 1], 0))].into_iter()) })
        }
    }
}

/// An HTTP(S) client with a per-host cookie jar that never follows redirects itself.
pub struct Browser {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector<Resolver>>, Full<Bytes>>,
    pub jar: HashMap<String, HashMap<String, String>>,
    pub accept: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn location(&self) -> Option<String> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

impl Browser {
    pub fn new() -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = super::tls::accept_any().with_no_client_auth();
        let mut http = HttpConnector::new_with_resolver(tower_service_fn::Resolve);
        http.enforce_http(false);
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Browser {
            client: Client::builder(TokioExecutor::new()).build(conn),
            jar: HashMap::new(),
            accept: "text/html,application/xhtml+xml".into(),
        }
    }

    fn cookie_header(&self, host: &str) -> Option<String> {
        let c = self.jar.get(host)?;
        (!c.is_empty()).then(|| {
            c.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    pub async fn request(&mut self, method: &str, url: &str, form: Option<&str>) -> Reply {
        self.send(method, url, form, &[]).await
    }

    /// A form POST with extra headers.
    pub async fn post_form_with(
        &mut self,
        url: &str,
        form: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.send("POST", url, Some(form), headers).await
    }

    /// A request with extra headers.
    pub async fn request_with(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.send(method, url, None, headers).await
    }

    async fn send(
        &mut self,
        method: &str,
        url: &str,
        form: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Reply {
        self.try_send(method, url, form, extra)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    /// As `send`, with a request that got no reply (refused connection,
    /// reset) as an error instead of a panic.
    async fn try_send(
        &mut self,
        method: &str,
        url: &str,
        form: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let uri: http::Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
        let host = uri.host().unwrap().to_string();
        let mut b = Request::builder().method(method).uri(uri);
        // An empty `accept` sends none (as curl or a script may).
        if !self.accept.is_empty() {
            b = b.header(header::ACCEPT, &self.accept);
        }
        for (n, v) in extra {
            b = b.header(*n, *v);
        }
        if let Some(c) = self.cookie_header(&host) {
            b = b.header(header::COOKIE, c);
        }
        let body = match form {
            Some(f) => {
                b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(f.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let resp: Response<hyper::body::Incoming> = self
            .client
            .request(b.body(body).unwrap())
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        for sc in parts.headers.get_all(header::SET_COOKIE) {
            let s = sc.to_str().unwrap_or("");
            let first = s.split(';').next().unwrap_or("");
            if let Some((k, v)) = first.split_once('=') {
                let expired = s.to_ascii_lowercase().contains("max-age=0")
                    || s.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
                let jar = self.jar.entry(host.clone()).or_default();
                if expired || v.is_empty() {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    pub async fn get(&mut self, url: &str) -> Reply {
        self.request("GET", url, None).await
    }

    /// A GET whose failure to get any reply is an error, not a panic.
    pub async fn try_get(&mut self, url: &str) -> Result<Reply, String> {
        self.try_send("GET", url, None, &[]).await
    }
}

/// Resolves a possibly relative Location against the current URL.
pub fn resolve(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

/// Follows redirects (GET) until a non-redirect or a URL starting with `stop_at`.
pub async fn follow(
    b: &mut Browser,
    mut url: String,
    stop_at: &str,
    max: usize,
) -> (String, Reply) {
    for _ in 0..max {
        let r = b.get(&url).await;
        match r.location() {
            Some(loc) if r.status.is_redirection() => {
                let next = resolve(&url, &loc);
                if next.starts_with(stop_at) {
                    return (next, r);
                }
                url = next;
            }
            _ => return (url, r),
        }
    }
    panic!("too many redirects at {url}");
}

/// Logs in at oidc-provider's dev interaction page: from the IdP authorize URL
/// to the redirect back to our callback (returned, not followed).
pub async fn idp_login(b: &mut Browser, authorize_url: &str, login: &str) -> String {
    let (url, page) = follow(b, authorize_url.to_string(), "https://", 10).await;
    if url.starts_with("https://") {
        return url; // already signed in at the IdP
    }
    assert_eq!(page.status, StatusCode::OK, "IdP login page: {}", page.body);
    let form = format!("prompt=login&login={}&password=x", urlencode(login));
    let r = b.request("POST", &url, Some(&form)).await;
    let loc = r
        .location()
        .unwrap_or_else(|| panic!("login POST gave {} {}", r.status, r.body));
    let (url, r) = follow(b, resolve(&url, &loc), "https://", 10).await;
    assert!(
        url.starts_with("https://"),
        "IdP did not redirect back: {} {}",
        r.status,
        r.body
    );
    url
}

/// Signs in at jetbridge's development identity provider (`jetbridge demo`):
/// from its "pick a demo user" page at `picker_url` (whose HTML is `page`),
/// picks `user`; returns the first URL of the redirects back that starts
/// with `stop_at`, or the page the redirects end on.
pub async fn dev_idp_pick(
    b: &mut Browser,
    picker_url: &str,
    page: &str,
    user: &str,
    stop_at: &str,
) -> (String, Reply) {
    let field = |html: &str, before: &str| -> String {
        let i = html
            .find(before)
            .unwrap_or_else(|| panic!("{before} in {html}"))
            + before.len();
        html[i..].split('"').next().unwrap().replace("&amp;", "&")
    };
    let form = format!(
        "txn={}&user={}",
        urlencode(&field(page, "name=\"txn\" value=\"")),
        urlencode(user)
    );
    let action = resolve(picker_url, &field(page, "<form method=\"post\" action=\""));
    let r = b.request("POST", &action, Some(&form)).await;
    assert!(r.status.is_redirection(), "{} {}", r.status, r.body);
    follow(b, resolve(&action, &r.location().unwrap()), stop_at, 6).await
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Runs a verifier helper; returns its JSON output and success.
pub fn run_verifier(
    kind: &str,
    jwks_url: &str,
    token: &str,
    iss: &str,
    aud: &str,
) -> (bool, serde_json::Value) {
    let support = support_dir();
    let (prog, script) = match kind {
        "jose" => ("node".to_string(), format!("{support}/verify_jose.mjs")),
        _ => (
            std::env::var("JETBRIDGE_PYTHON").unwrap_or_else(|_| {
                format!("{}/.cache/venv/bin/python", env!("CARGO_MANIFEST_DIR"))
            }),
            format!("{support}/verify_pyjwt.py"),
        ),
    };
    let out = Command::new(&prog)
        .args([
            &script,
            "--jwks-url",
            jwks_url,
            "--token",
            token,
            "--issuer",
            iss,
            "--audience",
            aud,
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("{prog} {script}: {e} (run ./scripts/test to install the verifiers)")
        });
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "{kind} printed {text:?} / {}: {e}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

/// A loopback upstream that records the headers of each request and answers 200 with them as JSON.
pub async fn echo_upstream() -> (SocketAddr, Arc<std::sync::Mutex<Vec<HeaderMap>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else {
                return;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        s.lock().unwrap().push(req.headers().clone());
                        let headers: serde_json::Map<String, serde_json::Value> = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.to_string(),
                                    serde_json::Value::String(v.to_str().unwrap_or("").to_string()),
                                )
                            })
                            .collect();
                        let body =
                            serde_json::json!({"path": req.uri().to_string(), "headers": headers})
                                .to_string();
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            body,
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// The leaf certificate (DER) the server on 127.0.0.1:`port` presents for `sni`.
pub async fn served_certificate(port: u16, sni: &str) -> Vec<u8> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cfg = super::tls::accept_any().with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// An address that refuses connections: bound but never listening, and kept
/// bound for the life of the test process, so no parallel test can be given
/// the port (one freed at once could be bound again by another test).
pub fn refused_addr() -> std::net::SocketAddr {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .unwrap();
    let addr = s.local_addr().unwrap();
    std::mem::forget(s);
    addr
}

/// A loopback port free right now, picked below the kernel's ephemeral range
/// (so no outgoing connection takes it before the process under test binds
/// it) and never the same twice in one test process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let lo: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .filter(|p| *p > 12_000)
        .unwrap_or(32_768);
    let mut given = GIVEN.lock().unwrap();
    loop {
        let mut b = [0u8; 2];
        jetbridge::identity::random_bytes(&mut b);
        let port = 10_000 + u16::from_le_bytes(b) % (lo - 10_000);
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// Collects the lines a child writes to stdout and stderr (both must be piped).
pub fn capture_lines(child: &mut std::process::Child) -> Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead as _;
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
    let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
    for r in [out, err] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
    }
    lines
}

/// Runs a command to completion with `stdin`; returns (exit status, stdout, stderr).
pub fn run_to_end(
    cmd: &mut std::process::Command,
    stdin: Option<&str>,
) -> (std::process::ExitStatus, String, String) {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command to completion with `stdin`; returns (success, stdout, stderr).
pub fn run_command(cmd: &mut std::process::Command, stdin: Option<&str>) -> (bool, String, String) {
    let (status, out, err) = run_to_end(cmd, stdin);
    (status.success(), out, err)
}

/// Writes a kubeconfig into `dir` naming an API server that refuses
/// connections: `jetbridge controller` then serves its listeners while it
/// retries the cluster, for tests of what does not need one.
pub fn unreachable_kubeconfig(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"https://{}\"}}\n\
             users:\n- name: u\n  user: {{token: x}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            refused_addr()
        ),
    )
    .unwrap();
    path
}

/// A running `jetbridge` binary, its stdout and stderr lines kept.
pub struct JetbridgeProcess {
    _child: ChildGuard,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
    /// The internal listener's port.
    pub internal: u16,
}

impl JetbridgeProcess {
    /// Spawns `cmd` (text logs, output captured) whose internal listener
    /// is on `internal`; does not wait.
    pub fn spawn(cmd: &mut Command, internal: u16) -> JetbridgeProcess {
        let mut child = cmd
            .env("JETBRIDGE_LOG_FORMAT", "text")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = capture_lines(&mut child);
        JetbridgeProcess {
            _child: ChildGuard(child),
            lines,
            internal,
        }
    }

    /// `jetbridge standalone` on a new file holding `config`, once its
    /// listeners are up.
    pub async fn start(config: &(impl ConfigText + ?Sized), internal: u16) -> JetbridgeProcess {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config.text()).unwrap();
        std::mem::forget(dir);
        JetbridgeProcess::start_file(&path, internal).await
    }

    /// `jetbridge standalone` on `path`, once its listeners are up.
    pub async fn start_file(path: &std::path::Path, internal: u16) -> JetbridgeProcess {
        let s = JetbridgeProcess::spawn(
            Command::new(env!("CARGO_BIN_EXE_jetbridge")).args([
                "standalone",
                "--config",
                path.to_str().unwrap(),
            ]),
            internal,
        );
        s.wait_for("the listeners up", 30, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", internal))
                .await
                .is_ok()
                && s.log().iter().any(|l| l.contains("HTTPS listener"))
        })
        .await;
        s
    }

    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Polls `check` every 200 ms until it holds; panics with the log after
    /// `secs` seconds.
    pub async fn wait_for<F, Fut>(&self, what: &str, secs: u64, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..secs * 5 {
            if check().await {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!("{what} never happened; log: {:#?}", self.log());
    }

    /// GET `path` on the internal listener.
    pub async fn get(&self, path: &str) -> Reply {
        Browser::new()
            .get(&format!("http://127.0.0.1:{}{path}", self.internal))
            .await
    }
}

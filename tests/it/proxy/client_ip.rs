//! The real client address, from outside: the real binary behind HAProxy
//! (`send-proxy-v2`, `send-proxy`, and HTTP mode appending to
//! `X-Forwarded-For`) and nginx's stream module (`proxy_protocol on`).
//! Clients connect from their own loopback addresses (127.0.0.2 and
//! 127.0.0.3; the fronts reach jetbridge from 127.0.0.1), so the address
//! jetbridge reports is the client's only when it took it from the front:
//! in the access log, in the `source_ip` policy's decision, and in the
//! `X-Forwarded-For` the upstream receives.

use crate::harness;
use crate::standalone::operations::Standalone;
use harness::config::{ConfigFile, ConfigText as _, RouteConfig, ppl, public_route, route};
use harness::login::{ChildGuard, echo_upstream, free_port};
use harness::proxy::{H1Conn, Resp, request, tls_over};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The client the `office.localhost` policy lets in (`source_ip`).
const ALICE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Any other client.
const MALLORY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// An address nobody connects from, named in spoofed headers.
const SPOOFED: &str = "198.51.100.66";

// ---------------------------------------------------------------------------
// jetbridge and the fronts

/// A running jetbridge: the HTTPS (or, with `insecure_server`, plain)
/// listener and the plain-HTTP listener.
struct Jet {
    s: Standalone,
    https: u16,
    plain: u16,
    _dir: tempfile::TempDir,
}

/// jetbridge with `open.localhost` (public) and `office.localhost` (only
/// [`ALICE`]'s address, by `source_ip`), both to `up`; `keys` sets the
/// client-address keys.
async fn jetbridge(up: SocketAddr, keys: impl FnOnce(ConfigFile) -> ConfigFile) -> Jet {
    let (https, plain, internal) = (free_port(), free_port(), free_port());
    let to = format!("http://{up}");
    let office = RouteConfig {
        policy: ppl(&format!("allow:\n  or:\n    - source_ip: {ALICE}/32\n")),
        ..route("office.localhost", &to)
    };
    let config = keys(ConfigFile {
        address: Some(format!("127.0.0.1:{https}")),
        http_redirect_address: Some(format!("127.0.0.1:{plain}")),
        internal_address: Some(format!("127.0.0.1:{internal}")),
        routes: vec![public_route("open.localhost", &to), office],
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config.text()).unwrap();
    let s = Standalone::start(&path, https, internal, &["--log-format", "json"]).await;
    Jet {
        s,
        https,
        plain,
        _dir: dir,
    }
}

impl Jet {
    /// The access-log line of the request answered with `resp`.
    async fn access_line(&self, resp: &Resp) -> serde_json::Value {
        let id = resp.header("x-request-id").expect("x-request-id");
        for _ in 0..50 {
            let found = self.s.log().iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["target"] == "jetbridge::access" && v["request_id"] == id).then_some(v)
            });
            if let Some(v) = found {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no access line for {id}: {:#?}", self.s.log());
    }

    /// The client address the access log gives for `resp`.
    async fn logged_client(&self, resp: &Resp) -> String {
        let line = self.access_line(resp).await;
        line["remote"].as_str().unwrap_or_default().to_string()
    }

    /// No log line names `addr`.
    fn never_logged(&self, addr: &str) {
        let log = self.s.log();
        assert!(
            !log.iter().any(|l| l.contains(addr)),
            "{addr} reached the log: {log:#?}"
        );
    }

    async fn refused(&self, reason: &str) -> f64 {
        let name = format!("jetbridge_proxy_protocol_refused_total{{reason=\"{reason}\"}}");
        self.s.metric(&name).await
    }
}

/// A front proxy process, listening on `port`.
struct Front {
    name: String,
    port: u16,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

/// The binary at `$env` (else `default`), or `None` when it is missing and
/// that is allowed.
fn real_part(env: &str, default: &str, install: &str) -> Option<String> {
    let path = std::env::var(env).unwrap_or_else(|_| default.to_string());
    if Path::new(&path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var("JETBRIDGE_REQUIRE_REAL_PARTS").as_deref() != Ok("1"),
        "JETBRIDGE_REQUIRE_REAL_PARTS=1 but {path} is missing ({install}; ./scripts/test installs it)"
    );
    eprintln!("skipped: {path} is missing ({install})");
    None
}

/// Starts `program args` (its config in `dir`) and waits until `port` accepts.
async fn front(
    name: &str,
    program: &str,
    args: &[&str],
    port: u16,
    dir: tempfile::TempDir,
) -> Front {
    let log = std::fs::File::create(dir.path().join("front.log")).unwrap();
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let child = ChildGuard(child);
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Front {
                name: name.to_string(),
                port,
                _child: child,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(dir.path().join("front.log")).unwrap_or_default();
    panic!("{name} did not listen on {port}: {log}");
}

/// HAProxy in `mode` (`tcp` or `http`) in front of `127.0.0.1:to`, with
/// `server` options (`send-proxy-v2`, `send-proxy`) and `frontend` lines.
async fn haproxy(name: &str, mode: &str, to: u16, server: &str, frontend: &str) -> Option<Front> {
    let bin = real_part(
        "JETBRIDGE_HAPROXY",
        "/usr/sbin/haproxy",
        "apt-get install haproxy",
    )?;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    let text = format!(
        "global\n    maxconn 256\n\
         defaults\n    mode {mode}\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend front\n    bind 127.0.0.1:{port}\n    {frontend}\n    default_backend jet\n\
         backend jet\n    server jet 127.0.0.1:{to} {server}\n"
    );
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    Some(front(name, &bin, &["-db", "-f", &cfg], port, dir).await)
}

/// nginx's stream module (`proxy_protocol on`) in front of `127.0.0.1:to`.
async fn nginx_stream(to: u16) -> Option<Front> {
    let bin = real_part(
        "JETBRIDGE_NGINX",
        "/usr/sbin/nginx",
        "apt-get install nginx",
    )?;
    // Debian builds the stream module as a dynamic module of its own package.
    let built_in = Command::new(&bin)
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).contains("--with-stream "))
        .unwrap_or(false);
    let load = match built_in {
        true => String::new(),
        false => {
            let module = real_part(
                "JETBRIDGE_NGINX_STREAM",
                "/usr/lib/nginx/modules/ngx_stream_module.so",
                "apt-get install libnginx-mod-stream",
            )?;
            format!("load_module {module};\n")
        }
    };
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let text = format!(
        "{load}daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
         stream {{\n  server {{\n    listen 127.0.0.1:{port};\n    proxy_pass 127.0.0.1:{to};\n    proxy_protocol on;\n  }}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), text).unwrap();
    let conf = format!("{d}/nginx.conf");
    let err = format!("{d}/error.log");
    Some(
        front(
            "nginx stream",
            &bin,
            &["-p", &d, "-e", &err, "-c", &conf],
            port,
            dir,
        )
        .await,
    )
}

// ---------------------------------------------------------------------------
// Clients

/// A TCP connection to `127.0.0.1:port` from `from`.
async fn connect_from(from: Ipv4Addr, port: u16) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((from, 0))).unwrap();
    s.connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// `GET /` for `host` from `from` through `port`, over TLS when `tls`.
async fn get_from(
    from: Ipv4Addr,
    port: u16,
    tls: bool,
    host: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let tcp = connect_from(from, port).await;
    let req = request("GET", host, "/", headers);
    match tls {
        true => {
            let tls = tls_over(tcp, host, &[b"http/1.1"]).await;
            H1Conn::over(tls).await.send(req).await
        }
        false => H1Conn::over(tcp).await.send(req).await,
    }
}

/// Writes `bytes` on a new connection from `from` to `port` and reads what
/// comes back until the server closes (at most 10 s).
async fn exchange(from: Ipv4Addr, port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect_from(from, port).await;
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    out
}

/// A PROXY protocol v2 header naming `source` (built by `ppp`).
fn v2_header(command: ppp::v2::Command, source: &str) -> Vec<u8> {
    let addrs: ppp::v2::Addresses = (
        source.parse::<SocketAddr>().unwrap(),
        "127.0.0.1:443".parse::<SocketAddr>().unwrap(),
    )
        .into();
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | command,
        ppp::v2::Protocol::Stream,
        addrs,
    )
    .build()
    .unwrap()
}

/// A PROXY protocol v1 header naming `source`.
fn v1_header(source: &str) -> Vec<u8> {
    format!("PROXY TCP4 {source} 127.0.0.1 40000 443\r\n").into_bytes()
}

const GET_OPEN: &[u8] = b"GET / HTTP/1.1\r\nHost: open.localhost\r\nConnection: close\r\n\r\n";

fn upstream_header(resp: &Resp, name: &str) -> String {
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()["headers"][name]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------
// Tests

/// With `use_proxy_protocol`, each front's header names the client: the
/// upstream's `X-Forwarded-For` and `X-Real-IP`, the access log and the
/// `source_ip` policy all see 127.0.0.2 or 127.0.0.3, never the front's
/// 127.0.0.1, and never what the client claims in `X-Forwarded-For`.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_fronts_name_the_client_to_log_policy_and_upstream() {
    let (up, _) = echo_upstream().await;
    let jet = jetbridge(up, |c| ConfigFile {
        use_proxy_protocol: Some(true),
        ..c
    })
    .await;
    let fronts = [
        haproxy(
            "haproxy send-proxy-v2",
            "tcp",
            jet.https,
            "send-proxy-v2",
            "",
        )
        .await,
        haproxy("haproxy send-proxy", "tcp", jet.https, "send-proxy", "").await,
        nginx_stream(jet.https).await,
    ];
    let fronts: Vec<Front> = fronts.into_iter().flatten().collect();
    for f in &fronts {
        let what = &f.name;
        let spoof = [("x-forwarded-for", SPOOFED), ("x-real-ip", SPOOFED)];
        let r = get_from(ALICE, f.port, true, "open.localhost", &spoof).await;
        assert_eq!(
            upstream_header(&r, "x-forwarded-for"),
            "127.0.0.2",
            "{what}"
        );
        assert_eq!(upstream_header(&r, "x-real-ip"), "127.0.0.2", "{what}");
        assert_eq!(jet.logged_client(&r).await, "127.0.0.2", "{what}");

        let r = get_from(ALICE, f.port, true, "office.localhost", &[]).await;
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        let r = get_from(MALLORY, f.port, true, "office.localhost", &[]).await;
        assert_eq!(r.status, 403, "{what}: {}", r.text());
        assert_eq!(jet.logged_client(&r).await, "127.0.0.3", "{what}");
        let claim = [("x-forwarded-for", "127.0.0.2")];
        let r = get_from(MALLORY, f.port, true, "office.localhost", &claim).await;
        assert_eq!(r.status, 403, "{what}: a claimed address let Mallory in");
    }
    // The plain-HTTP listener takes the header too (its redirect is logged
    // with the client's address).
    if let Some(f) = haproxy("haproxy to plain", "tcp", jet.plain, "send-proxy-v2", "").await {
        let r = get_from(MALLORY, f.port, false, "open.localhost", &[]).await;
        assert!(matches!(r.status, 301 | 302 | 307 | 308), "{}", r.text());
        assert_eq!(jet.logged_client(&r).await, "127.0.0.3");

        // A client behind the front that sends a PROXY header of its own
        // sends it as the first bytes of its HTTP: a bad request, and the
        // address it names is taken nowhere.
        let mut spoofed = v1_header(SPOOFED);
        spoofed.extend_from_slice(GET_OPEN);
        let out = exchange(MALLORY, f.port, &spoofed).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    }
    jet.never_logged(SPOOFED);
}

/// With `use_proxy_protocol`, a connection straight to the listeners without
/// a header is closed unanswered (HTTPS: no TLS handshake; plain HTTP: no
/// response), logged and counted; a v2 `LOCAL` header (a load balancer's
/// health check) is served with the TCP peer's address.
#[tokio::test(flavor = "multi_thread")]
async fn with_proxy_protocol_on_connections_without_a_header_are_closed() {
    let (up, _) = echo_upstream().await;
    let jet = jetbridge(up, |c| ConfigFile {
        use_proxy_protocol: Some(true),
        ..c
    })
    .await;
    let before = jet.refused("missing").await;
    let out = exchange(ALICE, jet.plain, GET_OPEN).await;
    assert!(
        out.is_empty(),
        "answered: {:?}",
        String::from_utf8_lossy(&out)
    );
    let tcp = connect_from(ALICE, jet.https).await;
    let connector = tokio_rustls::TlsConnector::from(harness::tls::client_config(&[b"http/1.1"]));
    let name = rustls::pki_types::ServerName::try_from("open.localhost").unwrap();
    let handshake =
        tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp)).await;
    assert!(
        matches!(handshake, Ok(Err(_))),
        "a TLS handshake without a PROXY header completed"
    );
    assert_eq!(jet.refused("missing").await, before + 2.0);
    assert!(
        jet.s
            .log()
            .iter()
            .any(|l| l.contains("PROXY protocol") && l.contains("127.0.0.2")),
        "no log line names the refused client: {:#?}",
        jet.s.log()
    );

    // Malformed: the connection is closed too.
    let before = jet.refused("malformed").await;
    let mut bad = b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n".to_vec();
    bad.extend_from_slice(GET_OPEN);
    assert!(exchange(ALICE, jet.plain, &bad).await.is_empty());
    assert_eq!(jet.refused("malformed").await, before + 1.0);

    // LOCAL: the header's addresses are ignored, the TCP peer is the client.
    let mut local = v2_header(ppp::v2::Command::Local, &format!("{SPOOFED}:4000"));
    local.extend_from_slice(GET_OPEN);
    let out = exchange(MALLORY, jet.plain, &local).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 30"), "{text}");
    jet.never_logged(SPOOFED);
}

/// With `use_proxy_protocol` off (the default), a PROXY header — v1 or v2,
/// straight from a client — is not HTTP: a 400 on plain HTTP, a failed
/// handshake on HTTPS; the address it names reaches neither the log nor a
/// decision.
#[tokio::test(flavor = "multi_thread")]
async fn with_proxy_protocol_off_a_header_is_refused_and_never_trusted() {
    let (up, _) = echo_upstream().await;
    let jet = jetbridge(up, |c| c).await;
    let headers = [
        ("v1", v1_header(SPOOFED)),
        (
            "v2",
            v2_header(ppp::v2::Command::Proxy, &format!("{SPOOFED}:4000")),
        ),
    ];
    for (what, header) in &headers {
        let mut bytes = header.clone();
        bytes.extend_from_slice(GET_OPEN);
        let out = exchange(ALICE, jet.plain, &bytes).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400"), "{what}: {text}");

        let mut tcp = connect_from(ALICE, jet.https).await;
        tcp.write_all(header).await.unwrap();
        let connector =
            tokio_rustls::TlsConnector::from(harness::tls::client_config(&[b"http/1.1"]));
        let name = rustls::pki_types::ServerName::try_from("open.localhost").unwrap();
        let handshake =
            tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp)).await;
        assert!(
            matches!(handshake, Ok(Err(_))),
            "{what}: TLS after a PROXY header"
        );
    }
    // Connections without one are served, with the TCP peer as the client.
    let r = get_from(MALLORY, jet.https, true, "office.localhost", &[]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(jet.logged_client(&r).await, "127.0.0.3");
    let r = get_from(ALICE, jet.https, true, "office.localhost", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    jet.never_logged(SPOOFED);
}

/// `xff_num_trusted_hops: 1` behind HAProxy in HTTP mode (`option
/// forwardfor` adds the address it saw): the client is that entry, whatever
/// the client wrote before it; the upstream gets the chain with the hop
/// appended (or as received with `skip_xff_append`).
#[tokio::test(flavor = "multi_thread")]
async fn trusted_hops_take_the_client_from_the_fronts_x_forwarded_for() {
    let (up, _) = echo_upstream().await;
    for skip in [false, true] {
        let jet = jetbridge(up, |c| ConfigFile {
            insecure_server: Some(true),
            xff_num_trusted_hops: Some(1),
            skip_xff_append: Some(skip),
            ..c
        })
        .await;
        let Some(f) = haproxy("haproxy http", "http", jet.https, "", "option forwardfor").await
        else {
            return;
        };
        let spoof = [("x-forwarded-for", SPOOFED)];
        let r = get_from(ALICE, f.port, false, "open.localhost", &spoof).await;
        let chain = upstream_header(&r, "x-forwarded-for");
        let want = match skip {
            false => format!("{SPOOFED}, 127.0.0.2, 127.0.0.1"),
            true => format!("{SPOOFED}, 127.0.0.2"),
        };
        assert_eq!(chain, want, "skip_xff_append {skip}");
        assert_eq!(upstream_header(&r, "x-real-ip"), "127.0.0.2");
        assert_eq!(jet.logged_client(&r).await, "127.0.0.2");

        let r = get_from(ALICE, f.port, false, "office.localhost", &spoof).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let claim = [("x-forwarded-for", "127.0.0.2")];
        let r = get_from(MALLORY, f.port, false, "office.localhost", &claim).await;
        assert_eq!(
            r.status,
            403,
            "a claimed address let Mallory in: {}",
            r.text()
        );
        assert_eq!(jet.logged_client(&r).await, "127.0.0.3");
    }
}

/// `xff_num_trusted_hops: 0` (the default): a client's `X-Forwarded-For`
/// changes nothing, even straight to the proxy.
#[tokio::test(flavor = "multi_thread")]
async fn without_trusted_hops_a_spoofed_x_forwarded_for_changes_nothing() {
    let (up, _) = echo_upstream().await;
    let jet = jetbridge(up, |c| c).await;
    let claim = [("x-forwarded-for", "127.0.0.2"), ("x-real-ip", "127.0.0.2")];
    let r = get_from(MALLORY, jet.https, true, "office.localhost", &claim).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(jet.logged_client(&r).await, "127.0.0.3");
    let r = get_from(MALLORY, jet.https, true, "open.localhost", &claim).await;
    assert_eq!(upstream_header(&r, "x-forwarded-for"), "127.0.0.3");
    assert_eq!(upstream_header(&r, "x-real-ip"), "127.0.0.3");
}

//! The real binary: `jetbridge standalone` with the seed tutorial's
//! config.yaml (plus IdP keys and listener addresses) starts, proxies a public
//! route, serves the JWKS on route hosts and the internal listener, strips
//! spoofed identity headers, and shuts down gracefully on SIGTERM.

use crate::harness;
use harness::config::*;
use harness::login::*;
use http::StatusCode;
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn seed_config_starts_standalone_and_serves() {
    let (up, seen) = echo_upstream().await;
    let (https, internal, redirect) = (free_port(), free_port(), free_port());
    let seed = std::fs::read_to_string(format!(
        "{}/tests/fixtures/config/seed.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let config = ConfigFile {
        address: Some(format!("127.0.0.1:{https}")),
        internal_address: Some(format!("127.0.0.1:{internal}")),
        http_redirect_address: Some(format!("127.0.0.1:{redirect}")),
        policy: vec![public_route("public.localhost", &format!("http://{up}"))],
        ..ConfigFile::parse("seed.yaml", &seed).unwrap()
    }
    .text();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args(["standalone", "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);

    let mut b = Browser::new();
    let ready = format!("http://127.0.0.1:{internal}/readyz");
    let mut ok = false;
    for _ in 0..100 {
        let listening = tokio::net::TcpStream::connect(("127.0.0.1", internal))
            .await
            .is_ok()
            && tokio::net::TcpStream::connect(("127.0.0.1", https))
                .await
                .is_ok();
        if listening && b.get(&ready).await.status == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "standalone did not become ready");

    b.accept = "application/json".into();
    let r = b
        .request_with(
            "GET",
            &format!("https://public.localhost:{https}/x?y=1"),
            &[
                ("x-pomerium-jwt-assertion", "forged"),
                ("X_Pomerium_Claim_Email", "evil@example.com"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    {
        let seen = seen.lock().unwrap();
        let h = seen.last().unwrap();
        assert!(
            h.keys().all(|k| !k
                .as_str()
                .to_ascii_lowercase()
                .replace(['_', '.'], "-")
                .starts_with("x-pomerium")),
            "{h:?}"
        );
    }
    // The seed's verify route needs sign-in: an API client gets 401.
    let r = b
        .get(&format!("https://verify.localhost.pomerium.io:{https}/"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // JWKS on both route hosts and on the internal listener, all the same document.
    let a = b
        .get(&format!(
            "https://public.localhost:{https}/.well-known/pomerium/jwks.json"
        ))
        .await;
    let c = b
        .get(&format!(
            "https://verify.localhost.pomerium.io:{https}/.well-known/pomerium/jwks.json"
        ))
        .await;
    let i = b
        .get(&format!(
            "http://127.0.0.1:{internal}/.well-known/pomerium/jwks.json"
        ))
        .await;
    assert_eq!(
        (a.status, c.status, i.status),
        (StatusCode::OK, StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(a.body, i.body);
    assert_eq!(c.body, i.body);
    let jwks: serde_json::Value = serde_json::from_str(&i.body).unwrap();
    let seed_key = jetbridge::identity::KeySet::parse(
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/keys/seed-quickstart.b64",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], seed_key.signer().kid());

    // HTTP redirects to HTTPS.
    let r = b
        .get(&format!("http://public.localhost:{redirect}/p?q=1"))
        .await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        r.location().unwrap(),
        format!("https://public.localhost:{https}/p?q=1")
    );

    // Graceful shutdown on SIGTERM: exits 0.
    let pid = guard.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let mut status = None;
    for _ in 0..150 {
        if let Some(s) = guard.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("exited after SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// `jetbridge standalone` with `insecure_server: true` (plain HTTP on the
/// returned port) and one public route, `plain.localhost`, to `up`; ready.
async fn plain_standalone(up: std::net::SocketAddr) -> (ChildGuard, u16, tempfile::TempDir) {
    let (port, internal) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let config = ConfigFile {
        insecure_server: Some(true),
        address: Some(format!("127.0.0.1:{port}")),
        internal_address: Some(format!("127.0.0.1:{internal}")),
        cookie_secret: Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
        shared_secret: Some("HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=".into()),
        routes: vec![public_route("plain.localhost", &format!("http://{up}"))],
        ..Default::default()
    };
    std::fs::write(&path, config.text()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args(["standalone", "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = ChildGuard(child);
    let mut b = Browser::new();
    let ready = format!("http://127.0.0.1:{internal}/readyz");
    for _ in 0..100 {
        let listening = tokio::net::TcpStream::connect(("127.0.0.1", internal))
            .await
            .is_ok();
        if listening && b.get(&ready).await.status == StatusCode::OK {
            return (guard, port, dir);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("standalone did not become ready");
}

/// `insecure_server: true`: the routes are served on `address` over plain
/// HTTP (behind a load balancer that terminates TLS), and TLS is not spoken.
#[tokio::test(flavor = "multi_thread")]
async fn insecure_server_serves_routes_over_plain_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, seen) = echo_upstream().await;
    let (_guard, port, _dir) = plain_standalone(up).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: plain.localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let h = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(h["x-forwarded-proto"], "http");
    // No TLS on that port: a TLS ClientHello gets an HTTP error, not a
    // ServerHello (a TLS record starts with 0x16).
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    let mut first = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut first)).await;
    assert_ne!(
        first.first(),
        Some(&0x16),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
}

/// curl's `--write-out '%{http_code}'` for `https://host:port/` resolved to
/// loopback, over `version` (`--http1.1` / `--http2`), with `cert` (files of
/// the certificate and key) when given.
fn curl(
    host: &str,
    port: u16,
    version: &str,
    cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> String {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
    ])
    .args(["--resolve", &format!("{host}:{port}:127.0.0.1"), version])
    .arg(format!("https://{host}:{port}/"));
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = cmd.output().expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The binary with client-certificate files: a route that requires curl's
/// certificate (HTTP/1.1 and HTTP/2), a route beside it that asks for none,
/// and a route whose upstream requires the proxy's own certificate.
#[tokio::test(flavor = "multi_thread")]
async fn client_certificate_files_work_both_ways_with_curl() {
    harness::proxy::init();
    let (up, _) = echo_upstream().await;
    let server = harness::proxy::test_cert();
    let upstream_clients = harness::proxy::TestCa::new("upstream clients");
    let (secure, subjects) =
        harness::proxy::echo_https_mtls("mtls", &server, &upstream_clients.pem).await;
    let browsers = harness::proxy::TestCa::new("browsers");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let pair = |name: &str, c: &harness::proxy::ClientCert| {
        (
            write(&format!("{name}.crt"), &c.cert_pem),
            write(&format!("{name}.key"), &c.key_pem),
        )
    };
    let alice = pair("alice", &browsers.client("alice"));
    let mallory = pair(
        "mallory",
        &harness::proxy::TestCa::new("rogue").client("alice"),
    );
    let proxy = pair("proxy", &upstream_clients.client("jetbridge-proxy"));
    let ca = write("browsers.pem", &browsers.pem);
    let upstream_ca = write("upstream-ca.pem", &server.ca_pem);
    let (https, internal) = (free_port(), free_port());
    let to = format!("http://{up}");
    let path_of = |p: &std::path::Path| Some(p.display().to_string());
    let config = ConfigFile {
        address: Some(format!("127.0.0.1:{https}")),
        internal_address: Some(format!("127.0.0.1:{internal}")),
        ..config([
            RouteConfig {
                tls_downstream_client_ca_file: path_of(&ca),
                ..public_route("mtls.localhost", &to)
            },
            public_route("open.localhost", &to),
            RouteConfig {
                tls_custom_ca_file: path_of(&upstream_ca),
                tls_client_cert_file: path_of(&proxy.0),
                tls_client_key_file: path_of(&proxy.1),
                ..public_route("up.localhost", &format!("https://{}", secure.authority()))
            },
        ])
    };
    let path = write("config.yaml", &config.text());
    let child = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args(["standalone", "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = ChildGuard(child);
    let mut b = Browser::new();
    let ready = format!("http://127.0.0.1:{internal}/readyz");
    let mut ok = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", internal))
            .await
            .is_ok()
            && b.get(&ready).await.status == StatusCode::OK
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "standalone did not become ready");

    for (version, shown) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let code = |host: &str, cert| curl(host, https, version, cert);
        assert_eq!(code("mtls.localhost", Some(&alice)), format!("200 {shown}"));
        assert_eq!(code("mtls.localhost", None), format!("495 {shown}"));
        assert_eq!(
            code("mtls.localhost", Some(&mallory)),
            format!("495 {shown}")
        );
        assert_eq!(code("open.localhost", None), format!("200 {shown}"));
    }
    assert_eq!(curl("up.localhost", https, "--http1.1", None), "200 1.1");
    assert_eq!(
        subjects.lock().unwrap().first().map(String::as_str),
        Some("CN=jetbridge-proxy")
    );
}

/// The commands of the first ```sh block of `examples/standalone/README.md`,
/// each split into its arguments (after `jetbridge`).
fn example_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(format!(
        "{}/examples/standalone/README.md",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```sh block");
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("jetbridge "))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// `examples/standalone`: its config file and the commands its README
/// gives, run exactly as written (fixed ports, the built-in development
/// identity provider alone, the Verify app as the upstream), lead to a
/// signed-in user whose assertion the Verify app verified.
#[tokio::test(flavor = "multi_thread")]
async fn the_standalone_example_runs_as_written() {
    let commands = example_commands();
    assert_eq!(commands.len(), 3, "{commands:?}");
    let mut running = Vec::new();
    let mut outputs = Vec::new();
    for args in &commands {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        outputs.push(capture_lines(&mut child));
        running.push(ChildGuard(child));
    }
    let mut b = Browser::new();
    let mut ready = false;
    for _ in 0..150 {
        let up = [28443, 28080, 28000]
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
        if up && b.get("http://127.0.0.1:28090/readyz").await.status == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let said = |i: usize| outputs[i].lock().unwrap().join("\n");
    assert!(
        ready,
        "the example did not start:\n{}\n{}\n{}",
        said(0),
        said(1),
        said(2)
    );
    assert!(
        said(0).contains("DEVELOPMENT IDENTITY PROVIDER"),
        "the development IdP says what it is: {}",
        said(0)
    );

    let start = "https://verify.localhost:28443/";
    let r = b.get(start).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let (picker, page) = follow(&mut b, r.location().unwrap(), "never", 5).await;
    assert!(picker.starts_with("http://127.0.0.1:28080/"), "{picker}");
    let (url, page) = dev_idp_pick(&mut b, &picker, &page.body, "alice", "never").await;
    assert_eq!(url, start);
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Identity verified"), "{}", page.body);

    b.accept = "application/json".into();
    let r = b.get("https://verify.localhost:28443/json").await;
    let v: serde_json::Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["claims"]["email"], "alice@example.com", "{v}");
    assert_eq!(v["claims"]["iss"], "verify.localhost", "{v}");
    drop(running);
}

/// One HTTP/1.1 response read off a keep-alive connection: its head (lower
/// case) and body, by its Content-Length.
async fn read_response(s: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < end + len {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "body cut short");
        buf.extend_from_slice(&chunk[..n]);
    }
    (head, buf[end..end + len].to_vec())
}

/// On SIGTERM a keep-alive HTTP/1.1 client is not cut off: the request it
/// sends on its open connection right after is answered, with
/// `Connection: close`, and only then is the connection closed; the process
/// exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_keep_alive_client_is_answered_and_told_to_close_after_sigterm() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, _) = echo_upstream().await;
    let (mut guard, port, _dir) = plain_standalone(up).await;
    let request = b"GET /x HTTP/1.1\r\nHost: plain.localhost\r\n\r\n";
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    let (head, _) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    let pid = guard.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(request).await.unwrap();
    let (head, _) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("closed after the response")
        .unwrap();
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&rest));
    let mut status = None;
    for _ in 0..150 {
        if let Some(st) = guard.0.try_wait().unwrap() {
            status = Some(st);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(status.expect("exited after SIGTERM").success());
}

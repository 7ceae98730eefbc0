//! Every absolute URL jetbridge builds names the address users reach, not
//! the port the process is bound to. The real binary runs on a random port
//! behind a simulated front (a Service or load balancer that maps the
//! public port to it): requests arrive on the bound port carrying the
//! public `Host`, as through a Kubernetes Service. The HTTP→HTTPS redirect,
//! the sign-in redirect, the OAuth `redirect_uri`, the hand-off, the
//! `depends_on` chain, the discovery document, programmatic login and
//! sign-out are all checked to carry the public port and never the bound one.

use crate::harness;
use harness::config::{ConfigFile, RouteConfig, signed_in_route};
use harness::login::*;
use http::StatusCode;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The simulated front: sends a request for a public `https://` URL to the
/// proxy's bound port with the URL's authority as `Host`, and checks that
/// no URL in the answer names the bound port.
struct Front {
    bound: u16,
}

impl Front {
    async fn get(&self, b: &mut Browser, public: &str) -> Reply {
        let url = url::Url::parse(public).unwrap();
        assert_eq!(url.scheme(), "https", "{public}");
        let host = url.host_str().unwrap();
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let mut direct = url.clone();
        direct.set_port(Some(self.bound)).unwrap();
        let r = b
            .request_with("GET", direct.as_str(), &[("host", &authority)])
            .await;
        self.check(&r, public);
        r
    }

    /// No header or body of `r` names the bound port.
    fn check(&self, r: &Reply, what: &str) {
        let bound = format!(":{}", self.bound);
        let encoded = format!("%3A{}", self.bound);
        for (name, v) in &r.headers {
            let v = v.to_str().unwrap_or("");
            assert!(
                !v.contains(&bound) && !v.contains(&encoded),
                "{what}: {name}: {v} names the bound port {}",
                self.bound
            );
        }
        assert!(
            !r.body.contains(&bound) && !r.body.contains(&encoded),
            "{what}: body names the bound port {}: {}",
            self.bound,
            r.body
        );
    }

    /// Follows redirects through the front while they stay on `https`
    /// (public) URLs; returns the last URL and reply.
    async fn follow(&self, b: &mut Browser, mut url: String) -> (String, Reply) {
        for _ in 0..10 {
            let r = self.get(b, &url).await;
            match r.location() {
                Some(loc) if r.status.is_redirection() && loc.starts_with("https://") => url = loc,
                _ => return (url, r),
            }
        }
        panic!("too many redirects at {url}");
    }
}

fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A test config: the listeners on `(https, redirect, internal)` with
/// `public_https_port: public`, fresh secrets, OIDC client `app` at
/// `issuer` signing in at `authenticate`, and `routes`.
fn config(
    (https, redirect, internal): (u16, u16, u16),
    public: u16,
    authenticate: &str,
    issuer: &str,
    routes: impl IntoIterator<Item = RouteConfig>,
) -> ConfigFile {
    let secrets = jetbridge::identity::secrets::Bootstrap::generate().to_config_yaml();
    ConfigFile {
        address: Some(format!("127.0.0.1:{https}")),
        http_redirect_address: Some(format!("127.0.0.1:{redirect}")),
        internal_address: Some(format!("127.0.0.1:{internal}")),
        public_https_port: Some(public),
        authenticate_service_url: Some(authenticate.into()),
        idp_provider_url: Some(issuer.into()),
        idp_client_id: Some("app".into()),
        idp_client_secret: Some("secret".into()),
        routes: routes.into_iter().collect(),
        ..ConfigFile::parse("secrets", &secrets).unwrap()
    }
}

/// Behind a front on 443: a whole sign-in through the real IdP, with a
/// `depends_on` chain, then discovery, programmatic login and sign-out.
/// No URL names the bound port; each names the public origin exactly.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_front_on_443_no_url_names_the_bound_port() {
    let (up, _) = echo_upstream().await;
    let (https, redirect, internal) = (free_port(), free_port(), free_port());
    let callback = "https://authenticate.localhost/oauth2/callback".to_string();
    let signed_out = "https://authenticate.localhost/.pomerium/signed_out".to_string();
    let (issuer, _idp) = start_idp(
        "app",
        "secret",
        std::slice::from_ref(&callback),
        std::slice::from_ref(&signed_out),
    );
    let to = format!("http://{up}");
    let config = config(
        (https, redirect, internal),
        443,
        "https://authenticate.localhost",
        &issuer,
        [
            RouteConfig {
                depends_on: vec!["other.localhost".into()],
                ..signed_in_route("app.localhost", &to)
            },
            signed_in_route("other.localhost", &to),
        ],
    );
    let _s = JetbridgeProcess::start(&config, internal).await;
    let front = Front { bound: https };
    let mut b = Browser::new();

    // HTTP → HTTPS: the public port (443, so none in the URL).
    let r = b
        .get(&format!("http://app.localhost:{redirect}/p?q=1"))
        .await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.location().unwrap(), "https://app.localhost/p?q=1");

    // Sign-in: route host → authenticate host → IdP, all public URLs.
    let r = front.get(&mut b, "https://app.localhost/private?x=1").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let sign_in = r.location().unwrap();
    assert!(
        sign_in.starts_with("https://authenticate.localhost/.pomerium/sign_in?"),
        "{sign_in}"
    );
    assert_eq!(
        query(&sign_in, "pomerium_redirect_uri").as_deref(),
        Some("https://app.localhost/private?x=1")
    );
    let r = front.get(&mut b, &sign_in).await;
    let authorize = r.location().unwrap();
    assert!(authorize.starts_with(&issuer), "{authorize}");
    assert_eq!(query(&authorize, "redirect_uri"), Some(callback.clone()));

    // The IdP sends the browser back to the public callback; the hand-off
    // goes to the route host's public origin, then the depends_on stop.
    let back = idp_login(&mut b, &authorize, "alice@example.com").await;
    assert!(back.starts_with(&callback), "{back}");
    let r = front.get(&mut b, &back).await;
    let handoff = r.location().unwrap();
    assert!(
        handoff.starts_with("https://app.localhost/.pomerium/callback?"),
        "{handoff}"
    );
    let r = front.get(&mut b, &handoff).await;
    let stop = r.location().unwrap();
    assert!(
        stop.starts_with("https://other.localhost/.pomerium/depends_on?"),
        "{stop}"
    );
    // The stop signs in on other.localhost (the IdP remembers alice) and
    // comes back to where the browser was going.
    let r = front.get(&mut b, &stop).await;
    let sign_in = r.location().unwrap();
    assert!(
        query(&sign_in, "pomerium_redirect_uri")
            .unwrap()
            .starts_with("https://other.localhost/.pomerium/depends_on?"),
        "{sign_in}"
    );
    let r = front.get(&mut b, &sign_in).await;
    let back = idp_login(&mut b, &r.location().unwrap(), "alice@example.com").await;
    let (last, r) = front.follow(&mut b, back).await;
    assert_eq!(last, "https://app.localhost/private?x=1");
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Discovery names the public origin.
    b.accept = "application/json".into();
    let r = front
        .get(&mut b, "https://app.localhost/.well-known/pomerium")
        .await;
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["issuer"], "https://app.localhost/");
    assert_eq!(
        doc["jwks_uri"],
        "https://app.localhost/.well-known/pomerium/jwks.json"
    );
    assert_eq!(doc["authentication_callback_endpoint"], callback);
    assert_eq!(
        doc["frontchannel_logout_uri"],
        "https://app.localhost/.pomerium/sign_out"
    );

    // Programmatic login answers a public URL.
    let r = front
        .get(
            &mut b,
            "https://app.localhost/.pomerium/api/v1/login?pomerium_redirect_uri=http://127.0.0.1:9/cb",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body
            .starts_with("https://app.localhost/.pomerium/api/v1/finish?"),
        "{}",
        r.body
    );

    // Sign-out ends at the IdP, which returns to the public signed-out page.
    let r = front
        .get(&mut b, "https://app.localhost/.pomerium/sign_out")
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let logout = r.location().unwrap();
    assert_eq!(
        query(&logout, "post_logout_redirect_uri"),
        Some(signed_out),
        "{logout}"
    );
}

/// A front that maps another public port: that port appears exactly, in the
/// redirect and in the URLs built on the HTTPS listener.
#[tokio::test(flavor = "multi_thread")]
async fn a_configured_public_port_appears_exactly() {
    let (up, _) = echo_upstream().await;
    let (https, redirect, internal) = (free_port(), free_port(), free_port());
    let public = 4443;
    let config = config(
        (https, redirect, internal),
        public,
        &format!("https://authenticate.localhost:{public}"),
        &format!("http://{}", refused_addr()),
        [signed_in_route("app.localhost", &format!("http://{up}"))],
    );
    let _s = JetbridgeProcess::start(&config, internal).await;
    let front = Front { bound: https };
    let mut b = Browser::new();
    let r = b
        .get(&format!("http://app.localhost:{redirect}/p?q=1"))
        .await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        r.location().unwrap(),
        format!("https://app.localhost:{public}/p?q=1")
    );

    let r = front
        .get(&mut b, &format!("https://app.localhost:{public}/private"))
        .await;
    let sign_in = r.location().unwrap();
    assert!(
        sign_in.starts_with(&format!(
            "https://authenticate.localhost:{public}/.pomerium/sign_in?"
        )),
        "{sign_in}"
    );
    assert_eq!(
        query(&sign_in, "pomerium_redirect_uri"),
        Some(format!("https://app.localhost:{public}/private"))
    );
    b.accept = "application/json".into();
    let r = front
        .get(
            &mut b,
            &format!("https://app.localhost:{public}/.well-known/pomerium"),
        )
        .await;
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["issuer"], format!("https://app.localhost:{public}/"));
    assert_eq!(
        doc["authentication_callback_endpoint"],
        format!("https://authenticate.localhost:{public}/oauth2/callback")
    );
}

/// `public_https_port: 0` names no reachable port: refused at start with
/// the key's name.
#[test]
fn a_public_port_of_zero_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "address: 127.0.0.1:0\npublic_https_port: 0\nroutes: []\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args(["standalone", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("public_https_port 0"), "{err}");
}

/// Starts `jetbridge controller` against an API server that does not
/// answer (the listeners serve while it retries) and returns the HTTP→HTTPS
/// redirect's `Location` for `http://app.localhost/x`.
async fn controller_redirect(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = unreachable_kubeconfig(dir.path());
    let (https, redirect, internal) = (free_port(), free_port(), free_port());
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let child = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args(["controller", "--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["--address", &addr(https)])
        .args(["--http-redirect-address", &addr(redirect)])
        .args(["--internal-address", &addr(internal)])
        .args(extra)
        .env_remove("JETBRIDGE_PUBLIC_HTTPS_PORT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = ChildGuard(child);
    for _ in 0..150 {
        if tokio::net::TcpStream::connect(("127.0.0.1", redirect))
            .await
            .is_ok()
        {
            let r = Browser::new()
                .get(&format!("http://app.localhost:{redirect}/x"))
                .await;
            assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
            let location = r.location().unwrap();
            assert!(!location.contains(&format!(":{https}")), "{location}");
            return location;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the controller's redirect listener never answered");
}

/// The controller runs behind the chart's Service: its redirect names 443
/// by default (no port in the URL), and `--public-https-port` exactly.
#[tokio::test(flavor = "multi_thread")]
async fn the_controller_redirects_to_443_unless_told_another_public_port() {
    assert_eq!(controller_redirect(&[]).await, "https://app.localhost/x");
    assert_eq!(
        controller_redirect(&["--public-https-port", "30443"]).await,
        "https://app.localhost:30443/x"
    );
}

//! cert-manager's HTTP-01 challenge through the controller: a solver pod
//! running cert-manager's own acmesolver (image
//! `quay.io/jetstack/cert-manager-acmesolver`, built from the Go module
//! proxy and started by the cluster's pod runner), its Service and its
//! Ingress written as cert-manager writes them. The challenge URL answers
//! over plain HTTP without sign-in; nothing else of the host does (other
//! paths still go to HTTPS, where the host's policy applies); a solver
//! Ingress asking for more is refused with an Event; a solver of another
//! namespace never answers on a host it does not own.

use super::controller::wait_for_events;
use crate::harness;
use harness::cluster::*;
use harness::login::Reply;
use http::StatusCode;

const ACMESOLVER_IMAGE: &str = "quay.io/jetstack/cert-manager-acmesolver:v1.21.2";
const SOLVER_LABEL: &str = "acme.cert-manager.io/http01-solver";

/// One challenge as cert-manager's ACME issuer hands it to a solver.
struct Challenge<'a> {
    /// The solver objects' name (cert-manager generates `cm-acme-http-solver-…`).
    name: &'a str,
    domain: &'a str,
    token: &'a str,
    key: &'a str,
    path_type: &'a str,
}

impl Challenge<'_> {
    fn path(&self) -> String {
        format!("/.well-known/acme-challenge/{}", self.token)
    }

    /// The solver labels cert-manager puts on the pod, Service and Ingress
    /// (the domain and token labels are hashes; any distinct values do).
    fn labels(&self) -> String {
        format!(
            "{{{SOLVER_LABEL}: \"true\", acme.cert-manager.io/http-domain: \"{}\", acme.cert-manager.io/http-token: \"{}\"}}",
            self.domain.len(),
            self.name
        )
    }

    /// The solver pod, its Service and its Ingress in `c`'s namespace, as
    /// cert-manager's HTTP-01 solver writes them (`pkg/issuer/acme/http`:
    /// pod.go, service.go with `serviceType: ClusterIP`, ingress.go).
    fn apply(&self, c: &Corner) {
        let (ns, class, name, labels) = (&c.ns, &c.class, self.name, self.labels());
        let (domain, token, key) = (self.domain, self.token, self.key);
        c.kube.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\nspec:\n  restartPolicy: OnFailure\n  containers:\n    - name: acmesolver\n      image: {ACMESOLVER_IMAGE}\n      args: [\"--listen-port=8089\", \"--domain={domain}\", \"--token={token}\", \"--key={key}\"]\n      ports: [{{name: http, containerPort: 8089}}]\n"
        ));
        c.kube.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\nspec:\n  type: ClusterIP\n  selector: {labels}\n  ports: [{{name: http, port: 8089, targetPort: 8089, protocol: TCP}}]\n"
        ));
        c.kube.apply(&self.ingress(ns, class, &self.path()));
    }

    /// The solver Ingress for `path` (cert-manager's is for [`Self::path`]).
    fn ingress(&self, ns: &str, class: &str, path: &str) -> String {
        let (name, labels, domain, path_type) =
            (self.name, self.labels(), self.domain, self.path_type);
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {labels}\n  annotations: {{nginx.ingress.kubernetes.io/whitelist-source-range: \"0.0.0.0/0,::/0\"}}\nspec:\n  ingressClassName: {class}\n  rules:\n    - host: {domain}\n      http:\n        paths:\n          - {{path: {path}, pathType: {path_type}, backend: {{service: {{name: {name}, port: {{number: 8089}}}}}}}}\n"
        )
    }
}

/// Skips (or fails under `JETBRIDGE_REQUIRE_REAL_PARTS=1`) without the
/// acmesolver build.
fn acmesolver_built() -> bool {
    let home = std::env::var("HOME").unwrap_or_default();
    let path = std::env::var("JETBRIDGE_ACMESOLVER")
        .unwrap_or_else(|_| format!("{home}/.cache/jetbridge/cert-manager-v1.21.2/acmesolver"));
    if std::path::Path::new(&path).exists() {
        return true;
    }
    let why =
        format!("no acmesolver at {path} (tests/tools/acme-build.sh; scripts/test installs it)");
    assert!(
        std::env::var("JETBRIDGE_REQUIRE_REAL_PARTS").is_err(),
        "{why}"
    );
    eprintln!("skipped: {why}");
    false
}

/// Waits for `url` to answer `status` over plain HTTP, returning the reply.
async fn plain(ctl: &Controller, host: &str, path: &str, status: StatusCode) -> Reply {
    let mut b = api_client();
    let url = ctl.plain_url(host, path);
    eventually(
        &mut b,
        &url,
        &format!("answer {status}"),
        |r| r.status == status,
        ctl,
    )
    .await
}

/// The plain-HTTP listener sends `host` + `path` to HTTPS, the same URL.
async fn redirected(ctl: &Controller, host: &str, path: &str) {
    let r = plain(ctl, host, path, StatusCode::PERMANENT_REDIRECT).await;
    let location = r.location().unwrap_or_default();
    assert!(
        location.starts_with(&format!("https://{host}")) && location.ends_with(path),
        "{host}{path}: {location}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_acmesolver_answers_its_challenge_over_plain_http_and_nothing_else_of_the_host() {
    if !acmesolver_built() {
        return;
    }
    let c = Corner::with_upstream("web", "app").await;
    // The application: every path of app.test needs alice's sign-in.
    c.ingress(
        "app",
        "app.test",
        "web",
        &[("jetbridge.dev/allowed_users", "alice@example.com")],
    );
    let solvers = [
        Challenge {
            name: "cm-acme-http-solver-exact",
            domain: "app.test",
            token: "tok_A-1",
            key: "tok_A-1.thumbprint-one",
            path_type: "Exact",
        },
        Challenge {
            name: "cm-acme-http-solver-impl",
            domain: "app.test",
            token: "tok_B-2",
            key: "tok_B-2.thumbprint-two",
            path_type: "ImplementationSpecific",
        },
    ];
    for s in &solvers {
        s.apply(&c);
        c.wait_ready_endpoints(s.name, 1, 90).await;
    }
    let ctl = Controller::start(&c, &[]).await;
    for s in &solvers {
        // What the ACME server fetches: the key, from cert-manager's solver.
        let r = plain(&ctl, s.domain, &s.path(), StatusCode::OK).await;
        assert_eq!(r.body, s.key, "{}", s.name);
    }
    // Nothing else of the host is served over plain HTTP: another token,
    // a longer path, the prefix and the application go to HTTPS.
    for path in [
        "/",
        "/.well-known/acme-challenge/other",
        "/.well-known/acme-challenge/tok_A-1/x",
        "/.well-known/acme-challenge/",
    ] {
        redirected(&ctl, "app.test", path).await;
    }
    // Over HTTPS the host keeps its policy, the challenge path included.
    let mut b = api_client();
    for s in &solvers {
        let r = b.get(&ctl.url(s.domain, &s.path())).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}: {}", s.name, r.body);
        assert!(!r.body.contains(s.key));
    }
    // The challenge answers the host it was issued for, no other.
    plain(
        &ctl,
        "other.test",
        &solvers[0].path(),
        StatusCode::PERMANENT_REDIRECT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_solver_ingress_claiming_more_than_its_challenge_is_refused_with_an_event() {
    if !acmesolver_built() {
        return;
    }
    let c = Corner::with_upstream("web", "app").await;
    c.ingress(
        "app",
        "app.test",
        "web",
        &[("jetbridge.dev/allowed_users", "alice@example.com")],
    );
    let s = Challenge {
        name: "cm-acme-http-solver-wide",
        domain: "app.test",
        token: "tok_C-3",
        key: "tok_C-3.thumbprint",
        path_type: "Prefix",
    };
    s.apply(&c);
    c.wait_ready_endpoints(s.name, 1, 90).await;
    let ctl = Controller::start(&c, &[]).await;
    // A hand-made Ingress with the solver label: a prefix of the challenge
    // path, then the whole host, then an Exact path outside the challenges.
    for (path_type, path) in [
        ("Prefix", s.path()),
        ("Prefix", "/".to_string()),
        ("Exact", "/admin".to_string()),
    ] {
        let wide = Challenge { path_type, ..s };
        c.kube.apply(&wide.ingress(&c.ns, &c.class, &path));
        let events = wait_for_events(&c, "Ingress", s.name, |e| {
            e.contains(&format!("pathType {path_type}")) || e.contains(&format!("{path:?}"))
        })
        .await;
        assert!(
            events.contains("Warning NotServed") && events.contains(SOLVER_LABEL),
            "{path_type} {path}: {events}"
        );
        for p in [s.path(), "/admin".to_string(), "/".to_string()] {
            redirected(&ctl, "app.test", &p).await;
        }
    }
    // Written as cert-manager writes it, the same Ingress is served.
    let exact = Challenge {
        path_type: "Exact",
        ..s
    };
    c.kube.apply(&exact.ingress(&c.ns, &c.class, &exact.path()));
    let r = plain(&ctl, "app.test", &exact.path(), StatusCode::OK).await;
    assert_eq!(r.body, exact.key);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_solver_of_another_namespace_never_answers_on_a_host_it_does_not_own() {
    if !acmesolver_built() {
        return;
    }
    let owner = Corner::with_upstream("web", "app").await;
    owner.ingress(
        "app",
        "app.test",
        "web",
        &[("jetbridge.dev/allowed_users", "alice@example.com")],
    );
    let other = owner.beside();
    let theirs = Challenge {
        name: "cm-acme-http-solver-theirs",
        domain: "app.test",
        token: "tok_D-4",
        key: "tok_D-4.thumbprint",
        path_type: "Exact",
    };
    theirs.apply(&other);
    // The same namespace's solver on a host nobody owns is answered.
    let fresh = Challenge {
        name: "cm-acme-http-solver-fresh",
        domain: "fresh.test",
        token: "tok_E-5",
        key: "tok_E-5.thumbprint",
        path_type: "Exact",
    };
    fresh.apply(&other);
    for s in [&theirs, &fresh] {
        other.wait_ready_endpoints(s.name, 1, 90).await;
    }
    let ctl = Controller::start(&owner, &["--namespaces", other.ns.as_str()]).await;
    let r = plain(&ctl, "fresh.test", &fresh.path(), StatusCode::OK).await;
    assert_eq!(r.body, fresh.key);
    let events = wait_for_events(&other, "Ingress", theirs.name, |e| {
        e.contains("HostConflict")
    })
    .await;
    assert!(
        events.contains(&format!("belongs to namespace {}", owner.ns)),
        "{events}"
    );
    redirected(&ctl, "app.test", &theirs.path()).await;
    // The host stays the owner's: its own route still answers over HTTPS.
    let r = api_client().get(&ctl.url("app.test", "/")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

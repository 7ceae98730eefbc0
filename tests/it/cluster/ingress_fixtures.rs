//! Golden fixtures for the cluster seam: each `tests/fixtures/ingress/*.yaml`
//! holds Kubernetes objects as `kubectl get -o yaml` would show them; the
//! routes, decisions and diagnostics they translate to are in the `.expected`
//! file next to it. `JETBRIDGE_BLESS=1 cargo test --test ingress_fixtures`
//! rewrites the expected files after a deliberate change (review the diff).

use crate::harness::golden::cluster_objects as objects;
use jetbridge::model::{Access, Snapshot};
use jetbridge::policy::{Facts, RequestFacts, User};
use jetbridge::translate::cluster::{Cluster, ClusterSettings, from_cluster};
use jetbridge::translate::{GlobalInputs, Inputs, translate};
use std::fmt::Write as _;

fn user(email: &str, groups: &[&str]) -> User {
    User {
        id: email.into(),
        email: email.into(),
        name: String::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        claims: Default::default(),
    }
}

/// A readable account of what the objects become.
fn describe(c: &Cluster) -> String {
    let ci = from_cluster(c, &ClusterSettings::default());
    let mut inputs = Inputs {
        global: GlobalInputs::for_test(),
        routes: ci.routes.clone(),
        diagnostics: ci.diagnostics.clone(),
    };
    inputs.global.certificates = ci.certificates.clone();
    let snap: Snapshot = translate(&inputs);
    let mut out = String::new();
    let _ = writeln!(out, "managed: {}", ci.managed.join(", "));
    let users = [
        ("anonymous", None),
        (
            "alice@example.com [engineering]",
            Some(user("alice@example.com", &["engineering"])),
        ),
        (
            "bob@contractor.example.com [engineering]",
            Some(user("bob@contractor.example.com", &["engineering"])),
        ),
        ("ceo@example.com", Some(user("ceo@example.com", &[]))),
        ("eve@elsewhere.net", Some(user("eve@elsewhere.net", &[]))),
    ];
    let mut routes: Vec<_> = snap.routes.iter().collect();
    routes.sort_by(|a, b| a.id.cmp(&b.id));
    for r in routes {
        let up: Vec<String> = r.upstreams.iter().map(|u| u.url()).collect();
        let _ = writeln!(
            out,
            "route {} {:?} {:?} -> [{}] identity_headers={} timeout={:?}",
            r.id,
            r.host,
            r.path,
            up.join(", "),
            r.pass_identity_headers,
            r.timeout
        );
        match &r.access {
            Access::Public => {
                let _ = writeln!(out, "  public");
            }
            Access::Invalid(m) => {
                let _ = writeln!(out, "  denies every request: {m}");
            }
            Access::Policy(p) => {
                let host = match &r.host {
                    jetbridge::model::routing::HostMatch::Exact(h) => h.clone(),
                    other => format!("{other:?}"),
                };
                let req = RequestFacts {
                    method: "GET",
                    host: &host,
                    path: "/",
                    source_ip: None,
                    headers: Default::default(),
                };
                for (label, u) in &users {
                    let d = p.eval(&Facts {
                        user: u.as_ref(),
                        request: &req,
                        now: time::OffsetDateTime::UNIX_EPOCH,
                    });
                    let _ = writeln!(out, "  {label}: {}", if d.allow { "allow" } else { "deny" });
                }
            }
        }
    }
    crate::harness::golden::describe_diagnostics(&snap.diagnostics, &mut out);
    for p in &ci.policies {
        let _ = writeln!(
            out,
            "policy {}/{} generation {:?}: {}",
            p.namespace,
            p.name,
            p.generation,
            p.error.as_deref().unwrap_or("accepted")
        );
    }
    out
}

#[test]
fn ingress_fixtures_translate_to_their_expected_routes_and_diagnostics() {
    let dir = format!("{}/tests/fixtures/ingress", env!("CARGO_MANIFEST_DIR"));
    crate::harness::golden::check_folder(&dir, 3, |yaml| describe(&objects(yaml)));
}

#[test]
fn translation_does_not_depend_on_the_order_objects_arrive_in() {
    let dir = format!("{}/tests/fixtures/ingress", env!("CARGO_MANIFEST_DIR"));
    for name in ["basic", "faults", "policies"] {
        crate::harness::golden::order_independent(&format!("{dir}/{name}.yaml"), |yaml| {
            describe(&objects(yaml))
        });
    }
}

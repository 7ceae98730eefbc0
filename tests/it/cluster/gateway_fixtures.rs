//! Golden fixtures for the Gateway API seam: each
//! `tests/fixtures/gateway/*.yaml` holds GatewayClasses, Gateways,
//! HTTPRoutes, GRPCRoutes, ReferenceGrants, Services, EndpointSlices and
//! Policies; the routes, their access, the route each sample request (`# request:` lines)
//! reaches, the status outcomes and the diagnostics are in the `.expected`
//! file next to it. `JETBRIDGE_BLESS=1` rewrites the expected files after a
//! deliberate change (review the diff).

use crate::harness::golden::cluster_objects as objects;
use jetbridge::model::conditions::RequestView;
use jetbridge::model::routing::Scheme;
use jetbridge::model::{Access, Snapshot};
use jetbridge::translate::cluster::{Cluster, ClusterInputs, ClusterSettings, from_cluster};
use jetbridge::translate::{GlobalInputs, Inputs, translate};
use std::fmt::Write as _;

/// `# request: METHOD host/path?query header=value ...` lines.
fn requests(
    text: &str,
) -> Vec<(
    http::Method,
    String,
    String,
    Option<String>,
    http::HeaderMap,
)> {
    let mut out = Vec::new();
    let mut lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# request: "))
        .collect();
    lines.sort();
    for line in lines {
        let mut words = line.split_whitespace();
        let method: http::Method = words.next().unwrap().parse().unwrap();
        let target = words.next().unwrap();
        let (host, rest) = target.split_once('/').unwrap();
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (format!("/{p}"), Some(q.to_string())),
            None => (format!("/{rest}"), None),
        };
        let mut headers = http::HeaderMap::new();
        for h in words {
            let (n, v) = h.split_once('=').unwrap();
            headers.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        out.push((method, host.to_string(), path, query, headers));
    }
    out
}

fn describe_routes(snap: &Snapshot, out: &mut String) {
    let mut routes: Vec<_> = snap.routes.iter().collect();
    routes.sort_by(|a, b| a.id.cmp(&b.id));
    for r in routes {
        let up: Vec<String> = r.upstreams.iter().map(|u| u.url()).collect();
        let set: Vec<String> = r
            .set_request_headers
            .iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap_or("?")))
            .collect();
        let _ = writeln!(
            out,
            "route {} {:?} {:?} -> [{}] set=[{}] remove={:?}",
            r.id,
            r.host,
            r.path,
            up.join(", "),
            set.join(", "),
            r.remove_request_headers
        );
        describe_actions(r, out);
        let access = match &r.access {
            Access::Public => "public".to_string(),
            Access::Invalid(m) => format!("denies every request: {m}"),
            Access::Policy(_) => "policy".to_string(),
        };
        let _ = writeln!(out, "  {access}");
    }
}

/// What a route does besides forwarding as it came, when it does any of
/// it: appended headers, response headers (other than the defaults),
/// WebSocket upgrades, mirror targets, a
/// timeout that is not the
/// default, and a redirect (its status and the `Location` for
/// `http://<host>:8080/<matched path>/x?q=1`).
fn describe_actions(r: &jetbridge::model::Route, out: &mut String) {
    let pairs = |h: &[(http::HeaderName, http::HeaderValue)]| -> String {
        h.iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !r.add_request_headers.is_empty() {
        let _ = writeln!(out, "  add=[{}]", pairs(&r.add_request_headers));
    }
    let response: Vec<_> = r
        .set_response_headers
        .iter()
        .filter(|(n, v)| {
            !jetbridge::translate::DEFAULT_RESPONSE_HEADERS
                .iter()
                .any(|(dn, dv)| n.as_str().eq_ignore_ascii_case(dn) && v == dv)
        })
        .cloned()
        .collect();
    if !response.is_empty() || !r.add_response_headers.is_empty() {
        let _ = writeln!(
            out,
            "  response set=[{}] add=[{}]",
            pairs(&response),
            pairs(&r.add_response_headers)
        );
    }
    if r.allow_websockets {
        let _ = writeln!(out, "  websockets allowed");
    }
    if !r.mirror_to.is_empty() {
        let m: Vec<String> = r.mirror_to.iter().map(|u| u.url()).collect();
        let _ = writeln!(out, "  mirror to [{}]", m.join(", "));
    }
    if r.timeout != jetbridge::model::DEFAULT_TIMEOUT {
        let _ = writeln!(out, "  timeout {:?}", r.timeout);
    }
    if let Some(redirect) = &r.redirect {
        use jetbridge::model::redirect::{RequestUrl, Scheme};
        let host = match &r.host {
            jetbridge::model::routing::HostMatch::Exact(h) => h.as_str(),
            _ => "any.example.com",
        };
        let path = format!("{}/x", r.path.as_str().trim_end_matches('/'));
        let url = RequestUrl {
            scheme: Scheme::Http,
            host,
            port: Some(8080),
            path: &path,
            query: Some("q=1"),
        };
        let _ = writeln!(
            out,
            "  redirect {} {}",
            redirect.status.as_u16(),
            redirect.location(&url)
        );
    }
}

fn describe_outcomes(ci: &ClusterInputs, out: &mut String) {
    let g = &ci.gateway;
    let _ = writeln!(out, "classes: {}", g.classes.join(", "));
    let shown = |c: &Result<(), (String, String)>| match c {
        Ok(()) => "True".to_string(),
        Err((reason, message)) => format!("False {reason}: {message}"),
    };
    for l in &g.listeners {
        let _ = writeln!(
            out,
            "listener {}/{}/{}: attached {} accepted {}",
            l.namespace,
            l.gateway,
            l.listener,
            l.attached_routes,
            shown(&l.accepted)
        );
    }
    for p in &g.parents {
        let _ = writeln!(
            out,
            "parent {}{}/{} -> {}/{} {:?}: accepted {}; resolvedRefs {}",
            match p.kind.as_str() {
                "HTTPRoute" => String::new(),
                other => format!("{other} "),
            },
            p.namespace,
            p.name,
            p.parent.namespace.as_deref().unwrap_or(""),
            p.parent.name,
            p.parent.section_name,
            shown(&p.accepted),
            shown(&p.resolved_refs)
        );
    }
    for f in &g.policy_filters {
        let valid = f
            .error
            .as_deref()
            .map_or("True".into(), |e| format!("False {e}"));
        let _ = writeln!(
            out,
            "policyfilter {}/{}: valid {valid}",
            f.namespace, f.name
        );
    }
    for t in &g.policy_targets {
        let _ = writeln!(
            out,
            "policy {}/{}: attached {:?} missing {:?}",
            t.namespace, t.name, t.attached, t.missing
        );
    }
}

/// The cluster's objects translated, and the snapshot they make.
pub(super) fn snapshot(c: &Cluster) -> (ClusterInputs, Snapshot) {
    let ci = from_cluster(c, &ClusterSettings::default());
    let mut inputs = Inputs {
        global: GlobalInputs::for_test(),
        routes: ci.routes.clone(),
        diagnostics: ci.diagnostics.clone(),
    };
    inputs.global.certificates = ci.certificates.clone();
    inputs.global.gateway_ports = ci.gateway.ports.clone();
    let snap = translate(&inputs);
    (ci, snap)
}

/// The route a request takes on the plain-HTTP listener (the fixtures'
/// HTTP listeners), else on the TLS one.
pub(super) fn route_on_either<'s>(
    snap: &'s jetbridge::model::Snapshot,
    host: &str,
    path: &str,
    view: &RequestView<'_>,
) -> Option<&'s jetbridge::model::Route> {
    snap.route_on(Scheme::Plain, host, path, view)
        .or_else(|| snap.route_on(Scheme::Tls, host, path, view))
}

fn describe(text: &str) -> String {
    let (ci, snap) = snapshot(&objects(text));
    let mut out = String::new();
    describe_routes(&snap, &mut out);
    for (method, host, path, query, headers) in requests(text) {
        let view = RequestView {
            method: &method,
            headers: &headers,
            query: query.as_deref(),
        };
        let hit = route_on_either(&snap, &host, &path, &view).map(|r| r.id.as_str());
        let _ = writeln!(
            out,
            "request {method} {host}{path}?{} {headers:?} -> {}",
            query.as_deref().unwrap_or(""),
            hit.unwrap_or("no route")
        );
    }
    describe_outcomes(&ci, &mut out);
    crate::harness::golden::describe_diagnostics(&snap.diagnostics, &mut out);
    out
}

#[test]
fn gateway_fixtures_translate_to_their_expected_routes_and_statuses() {
    let dir = format!("{}/tests/fixtures/gateway", env!("CARGO_MANIFEST_DIR"));
    crate::harness::golden::check_folder(&dir, 1, describe);
}

#[test]
fn gateway_translation_does_not_depend_on_the_order_objects_arrive_in() {
    let dir = format!("{}/tests/fixtures/gateway", env!("CARGO_MANIFEST_DIR"));
    for name in ["basic", "identity", "hosts", "grpc-basic"] {
        crate::harness::golden::order_independent(&format!("{dir}/{name}.yaml"), describe);
    }
}

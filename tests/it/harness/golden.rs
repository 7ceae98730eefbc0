//! Golden fixtures: every `*.yaml` of a folder described by a test's own
//! function and compared with its `*.expected` (`JETBRIDGE_BLESS=1` rewrites
//! them), and a description that must not depend on the order of the YAML
//! documents.

use jetbridge::crd::WatchedPolicy;
use jetbridge::policy::{Facts, RequestFacts, User};
use jetbridge::translate::cluster::Cluster;
use std::sync::Arc;

/// Compares `describe(yaml)` of each `*.yaml` in `dir` (at least `min` of
/// them) with the `.expected` file beside it; reports every difference at
/// once.
pub fn check_folder(dir: &str, min: usize, describe: impl Fn(&str) -> String) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= min, "{dir}: {} fixtures", names.len());
    let bless = std::env::var("JETBRIDGE_BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for path in names {
        let got = describe(&std::fs::read_to_string(&path).unwrap());
        let expected_path = path.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "{}:\n--- expected\n{want}\n--- got\n{got}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `describe` gives the same for the documents of `path` in file order and
/// in reverse.
pub fn order_independent(path: &str, describe: impl Fn(&str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut docs: Vec<&str> = text.split("\n---\n").collect();
    let forward = describe(&docs.join("\n---\n"));
    docs.reverse();
    assert_eq!(forward, describe(&docs.join("\n---\n")), "{path}");
}

/// Appends one `diagnostic: SEVERITY REASON message` line per distinct
/// diagnostic, sorted, so a description does not depend on their order.
pub fn describe_diagnostics(diagnostics: &[jetbridge::model::Diagnostic], out: &mut String) {
    use std::fmt::Write as _;
    let mut lines: Vec<String> = diagnostics
        .iter()
        .map(|d| format!("{:?} {} {d}", d.severity, d.reason.as_str()))
        .collect();
    lines.sort();
    lines.dedup();
    for d in lines {
        let _ = writeln!(out, "diagnostic: {d}");
    }
}

/// The Kubernetes objects of a fixture (YAML documents separated by `---`),
/// as the controller's stores would hold them.
pub fn cluster_objects(text: &str) -> Cluster {
    let mut c = Cluster::default();
    for doc in text.split("\n---\n") {
        let v: serde_json::Value = serde_saphyr::from_str(doc).unwrap();
        let g = &mut c.gateway;
        match v["kind"].as_str().unwrap() {
            "Service" => c
                .services
                .push(Arc::new(serde_json::from_value(v).unwrap())),
            "EndpointSlice" => c.slices.push(Arc::new(serde_json::from_value(v).unwrap())),
            "Secret" => c.secrets.push(Arc::new(serde_json::from_value(v).unwrap())),
            "Ingress" => c
                .ingresses
                .push(Arc::new(serde_json::from_value(v).unwrap())),
            "IngressClass" => c.classes.push(Arc::new(serde_json::from_value(v).unwrap())),
            "Policy" => c.policies.push(Arc::new(
                serde_json::from_value::<WatchedPolicy>(v).unwrap(),
            )),
            "Namespace" => g
                .namespaces
                .push(Arc::new(serde_json::from_value(v).unwrap())),
            "GatewayClass" => g.classes.push(Arc::new(serde_json::from_value(v).unwrap())),
            "Gateway" => g
                .gateways
                .push(Arc::new(serde_json::from_value(v).unwrap())),
            "HTTPRoute" => g
                .http_routes
                .push(Arc::new(serde_json::from_value(v).unwrap())),
            "GRPCRoute" => g
                .grpc_routes
                .push(Arc::new(serde_json::from_value(v).unwrap())),
            "ReferenceGrant" => g.grants.push(Arc::new(serde_json::from_value(v).unwrap())),
            "PolicyFilter" => g
                .policy_filters
                .push(Arc::new(serde_json::from_value(v).unwrap())),
            other => panic!("unexpected kind {other}"),
        }
    }
    c
}

/// Whether `program` lets a user signed in as `email` `GET /` on `host`.
pub fn lets_in(program: &jetbridge::policy::Program, host: &str, email: &str) -> bool {
    let user = User {
        id: email.into(),
        email: email.into(),
        ..User::default()
    };
    let request = RequestFacts {
        method: "GET",
        host,
        path: "/",
        ..RequestFacts::default()
    };
    program
        .eval(&Facts {
            user: Some(&user),
            request: &request,
            now: time::OffsetDateTime::UNIX_EPOCH,
        })
        .allow
}

//! The incremental translation against a translation from nothing: random
//! sequences of object changes (Ingresses, Services, EndpointSlices,
//! Policies, Secrets; hosts two Ingresses claim, references to objects
//! that are missing), and after each change the snapshot the driver's
//! memo gives equals the one `translate` gives for the same objects.

use super::cluster::{Cluster, ClusterSettings, from_cluster};
use super::incremental::Memo;
use super::incremental_cluster::ClusterMemo;
use super::{GlobalInputs, Inputs, translate};
use crate::model::Snapshot;
use proptest::prelude::*;
use std::sync::Arc;

const NAMESPACES: [&str; 2] = ["a", "b"];
const NAMES: [&str; 3] = ["x", "y", "z"];
const HOSTS: [&str; 3] = ["one.example.com", "two.example.com", "*.example.com"];

/// One change to the cluster's objects (indices into the name lists).
#[derive(Clone, Debug)]
enum Change {
    PutIngress {
        ns: usize,
        name: usize,
        host: usize,
        exact: bool,
        service: usize,
        policy: Option<usize>,
        secret: Option<usize>,
        created: i64,
    },
    DeleteIngress(usize, usize),
    PutService(usize, usize, u16),
    DeleteService(usize, usize),
    PutSlice {
        ns: usize,
        service: usize,
        ip: u8,
        ready: bool,
    },
    DeleteSlice(usize, usize),
    PutPolicy(usize, usize, bool),
    DeletePolicy(usize, usize),
    PutSecret(usize, usize, u8),
    DeleteSecret(usize, usize),
}

fn change() -> impl Strategy<Value = Change> {
    let ix = || 0..NAMES.len();
    let ns = || 0..NAMESPACES.len();
    prop_oneof![
        4 => (ns(), ix(), 0..HOSTS.len(), any::<bool>(), ix(), proptest::option::of(ix()),
            proptest::option::of(ix()), 0..3i64)
            .prop_map(|(ns, name, host, exact, service, policy, secret, created)| {
                Change::PutIngress { ns, name, host, exact, service, policy, secret, created }
            }),
        1 => (ns(), ix()).prop_map(|(a, b)| Change::DeleteIngress(a, b)),
        2 => (ns(), ix(), prop_oneof![Just(80u16), Just(81u16)])
            .prop_map(|(a, b, p)| Change::PutService(a, b, p)),
        1 => (ns(), ix()).prop_map(|(a, b)| Change::DeleteService(a, b)),
        2 => (ns(), ix(), 1..4u8, any::<bool>())
            .prop_map(|(ns, service, ip, ready)| Change::PutSlice { ns, service, ip, ready }),
        1 => (ns(), ix()).prop_map(|(a, b)| Change::DeleteSlice(a, b)),
        2 => (ns(), ix(), any::<bool>()).prop_map(|(a, b, v)| Change::PutPolicy(a, b, v)),
        1 => (ns(), ix()).prop_map(|(a, b)| Change::DeletePolicy(a, b)),
        2 => (ns(), ix(), 0..3u8).prop_map(|(a, b, v)| Change::PutSecret(a, b, v)),
        1 => (ns(), ix()).prop_map(|(a, b)| Change::DeleteSecret(a, b)),
    ]
}

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).expect("a valid object"))
}

type Meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The objects a change names, by their metadata.
trait Named {
    fn meta(&self) -> &Meta;
}

macro_rules! named {
    ($($t:ty),*) => {$(impl Named for $t { fn meta(&self) -> &Meta { &self.metadata } })*};
}
named!(
    k8s_openapi::api::networking::v1::Ingress,
    k8s_openapi::api::core::v1::Service,
    k8s_openapi::api::core::v1::Secret,
    k8s_openapi::api::discovery::v1::EndpointSlice,
    crate::crd::WatchedPolicy
);

/// Replaces the object named `ns/name` in `list` where it is, as a store
/// does (or adds it at the end); `None` deletes it.
fn put<T: Named>(list: &mut Vec<Arc<T>>, name: (&str, &str), new: Option<Arc<T>>) {
    let at = list.iter().position(|o| {
        (o.meta().namespace.as_deref(), o.meta().name.as_deref()) == (Some(name.0), Some(name.1))
    });
    match (at, new) {
        (Some(at), Some(new)) => list[at] = new,
        (Some(at), None) => {
            list.remove(at);
        }
        (None, new) => list.extend(new),
    }
}

fn ingress(ns: &str, name: &str, c: &Change) -> serde_json::Value {
    let Change::PutIngress {
        host,
        exact,
        service,
        policy,
        secret,
        created,
        ..
    } = c
    else {
        unreachable!()
    };
    let mut annotations = serde_json::Map::new();
    if let Some(p) = policy {
        annotations.insert("jetbridge.dev/policy_ref".into(), NAMES[*p].into());
    } else {
        annotations.insert(
            "jetbridge.dev/allow_public_unauthenticated_access".into(),
            "true".into(),
        );
    }
    if let Some(s) = secret {
        annotations.insert(
            "jetbridge.dev/set_request_headers_secret".into(),
            NAMES[*s].into(),
        );
    }
    let path_type = if *exact { "Exact" } else { "Prefix" };
    serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {
            "name": name, "namespace": ns, "annotations": annotations,
            "creationTimestamp": format!("2026-01-01T00:00:0{created}Z"),
        },
        "spec": {"ingressClassName": "jetbridge", "rules": [{"host": HOSTS[*host], "http": {"paths": [
            {"path": "/", "pathType": path_type,
             "backend": {"service": {"name": NAMES[*service], "port": {"number": 80}}}}
        ]}}]}
    })
}

fn apply(c: &mut Cluster, change: &Change) {
    use Change::*;
    let n = |ns: &usize, name: &usize| (NAMESPACES[*ns], NAMES[*name]);
    match change {
        PutIngress { ns, name, .. } => {
            let (ns, name) = n(ns, name);
            put(
                &mut c.ingresses,
                (ns, name),
                Some(obj(ingress(ns, name, change))),
            );
        }
        DeleteIngress(ns, name) => put(&mut c.ingresses, n(ns, name), None),
        PutService(ns, name, port) => {
            let (ns, name) = n(ns, name);
            let svc = serde_json::json!({
                "metadata": {"name": name, "namespace": ns},
                "spec": {"ports": [{"name": "http", "port": port, "targetPort": 8080}]}
            });
            put(&mut c.services, (ns, name), Some(obj(svc)));
        }
        DeleteService(ns, name) => put(&mut c.services, n(ns, name), None),
        PutSlice {
            ns,
            service,
            ip,
            ready,
        } => {
            let (ns, svc) = n(ns, service);
            let slice = serde_json::json!({
                "metadata": {"name": svc, "namespace": ns,
                             "labels": {"kubernetes.io/service-name": svc}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": [format!("10.0.0.{ip}")], "conditions": {"ready": ready}}]
            });
            put(&mut c.slices, (ns, svc), Some(obj(slice)));
        }
        DeleteSlice(ns, name) => put(&mut c.slices, n(ns, name), None),
        PutPolicy(ns, name, valid) => {
            let (ns, name) = n(ns, name);
            let rule = if *valid {
                serde_json::json!({"allow": {"or": [{"domain": {"is": format!("{ns}.example.com")}}]}})
            } else {
                serde_json::json!({"allow": {"or": [{"no_such_criterion": {"is": "x"}}]}})
            };
            let p = serde_json::json!({
                "apiVersion": "jetbridge.dev/v1", "kind": "Policy",
                "metadata": {"name": name, "namespace": ns}, "spec": rule
            });
            put(&mut c.policies, (ns, name), Some(obj(p)));
        }
        DeletePolicy(ns, name) => put(&mut c.policies, n(ns, name), None),
        PutSecret(ns, name, v) => {
            let (ns, name) = n(ns, name);
            let data = match v {
                0 => serde_json::json!({"X-Team": "dGVhbQ=="}),
                1 => serde_json::json!({"X-Team": "b3RoZXI="}),
                _ => serde_json::json!({"bad header": "eA=="}),
            };
            let s = serde_json::json!({
                "metadata": {"name": name, "namespace": ns}, "type": "Opaque", "data": data
            });
            put(&mut c.secrets, (ns, name), Some(obj(s)));
        }
        DeleteSecret(ns, name) => put(&mut c.secrets, n(ns, name), None),
    }
}

fn start() -> Cluster {
    Cluster {
        classes: vec![obj(serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "jetbridge"},
            "spec": {"controller": "jetbridge.dev/ingress-controller"}
        }))],
        now: 1_800_000_000,
        ..Cluster::default()
    }
}

fn inputs(c: &Cluster, global: &GlobalInputs) -> Inputs {
    let out = from_cluster(c, &ClusterSettings::default());
    let mut global = global.clone();
    global.certificates.extend(out.certificates);
    Inputs {
        global,
        routes: out.routes,
        diagnostics: out.diagnostics,
    }
}

/// Everything a snapshot publishes, compared between the two ways.
fn assert_same(incremental: &Snapshot, full: &Snapshot) {
    assert_eq!(incremental.routes, full.routes);
    assert_eq!(incremental.route_digests, full.route_digests);
    assert_eq!(incremental.diagnostics, full.diagnostics);
    assert_eq!(incremental.fingerprint(), full.fingerprint());
    // The route table, by what it answers.
    for host in HOSTS.iter().chain(&["three.example.com", "none.test"]) {
        for path in ["/", "/a"] {
            assert_eq!(
                incremental.route(host, path).map(|r| &r.id),
                full.route(host, path).map(|r| &r.id)
            );
        }
    }
}

/// The global inputs with the cluster's certificates, diagnostics and
/// no routes of their own (the cluster's follow).
fn base(out: &super::cluster::ClusterInputs, global: &GlobalInputs) -> Inputs {
    let mut global = global.clone();
    global.certificates.extend(out.certificates.iter().cloned());
    Inputs {
        global,
        routes: Vec::new(),
        diagnostics: out.diagnostics.clone(),
    }
}

/// One change through the cluster memo and the route memo, checked
/// against a translation from nothing: the positions done in place
/// (`None`: translated whole) and the snapshot.
fn step(
    cluster: &Cluster,
    global: &GlobalInputs,
    memos: &mut (ClusterMemo, Memo),
) -> (Option<Vec<usize>>, Snapshot) {
    let settings = ClusterSettings::default();
    let update = memos.0.update(cluster, &settings);
    let full = from_cluster(cluster, &settings);
    // The kept translation of the objects is the one made from nothing.
    assert_eq!(format!("{:?}", update.inputs), format!("{full:?}"));
    let snapshot = memos.1.translate_with(
        &base(update.inputs, global),
        &update.inputs.routes,
        update.changed.as_deref(),
    );
    assert_same(&snapshot, &translate(&inputs(cluster, global)));
    (update.changed, snapshot)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn after_every_change_the_incremental_snapshot_is_the_full_one(
        changes in proptest::collection::vec(change(), 1..24)
    ) {
        let global = GlobalInputs::for_test();
        let mut cluster = start();
        let mut memo = Memo::default();
        let mut memos = (ClusterMemo::default(), Memo::default());
        for change in &changes {
            apply(&mut cluster, change);
            let inputs = inputs(&cluster, &global);
            assert_same(&memo.translate(&inputs), &translate(&inputs));
            step(&cluster, &global, &mut memos);
        }
    }
}

/// A Policy `a/x` allowing `domain`.
fn policy(domain: &str) -> Arc<crate::crd::WatchedPolicy> {
    obj(serde_json::json!({
        "apiVersion": "jetbridge.dev/v1", "kind": "Policy",
        "metadata": {"name": "x", "namespace": "a"},
        "spec": {"allow": {"or": [{"domain": {"is": domain}}]}}
    }))
}

/// Many Ingresses naming one Service, Policy and Secret: a change of one
/// of those is done in place, rebuilds exactly the routes of the
/// Ingresses naming it, and equals a translation from nothing; the route
/// of an Ingress naming none of them stays the same `Arc`.
#[test]
fn a_shared_object_change_rebuilds_its_dependents_only() {
    let global = GlobalInputs::for_test();
    let mut cluster = start();
    let shared = Change::PutIngress {
        ns: 0,
        name: 0,
        host: 0,
        exact: false,
        service: 0,
        policy: Some(0),
        secret: Some(0),
        created: 0,
    };
    let lone = Change::PutIngress {
        ns: 0,
        name: 1,
        host: 1,
        exact: true,
        service: 1,
        policy: None,
        secret: None,
        created: 1,
    };
    for c in [
        Change::PutService(0, 0, 80),
        Change::PutService(0, 1, 80),
        Change::PutSecret(0, 0, 0),
        Change::PutSlice {
            ns: 0,
            service: 0,
            ip: 6,
            ready: true,
        },
        lone,
    ] {
        apply(&mut cluster, &c);
    }
    cluster.policies.push(policy("a.example.com"));
    for i in 0..12 {
        let mut v = ingress("a", &format!("shared-{i}"), &shared);
        v["spec"]["rules"][0]["host"] = format!("h{i}.example.com").into();
        cluster.ingresses.push(obj(v));
    }
    let mut memos = (ClusterMemo::default(), Memo::default());
    let (whole, mut last) = step(&cluster, &global, &mut memos);
    assert!(whole.is_none(), "the first translation is whole");
    let lone_route = |s: &Snapshot| {
        s.routes
            .iter()
            .find(|r| r.id == "a/y/1")
            .cloned()
            .expect("the lone Ingress is served")
    };
    let changes: Vec<fn(&mut Cluster)> = vec![
        (|c: &mut Cluster| {
            let s = Change::PutSlice {
                ns: 0,
                service: 0,
                ip: 7,
                ready: true,
            };
            apply(c, &s)
        }),
        (|c: &mut Cluster| {
            let s = Change::PutSlice {
                ns: 0,
                service: 0,
                ip: 8,
                ready: true,
            };
            apply(c, &s)
        }),
        (|c: &mut Cluster| put(&mut c.policies, ("a", "x"), Some(policy("b.example.com")))),
        (|c: &mut Cluster| apply(c, &Change::PutSecret(0, 0, 1))),
        (|c: &mut Cluster| apply(c, &Change::PutSecret(0, 0, 0))),
        (|c: &mut Cluster| apply(c, &Change::PutService(0, 0, 81))),
    ];
    for (n, change) in changes.iter().enumerate() {
        change(&mut cluster);
        let (changed, snapshot) = step(&cluster, &global, &mut memos);
        let changed = changed.unwrap_or_else(|| panic!("change {n} is done in place"));
        assert_eq!(changed.len(), 12, "change {n}: the routes naming it");
        assert!(Arc::ptr_eq(&lone_route(&last), &lone_route(&snapshot)));
        last = snapshot;
    }
    // An object nothing names changes nothing.
    apply(&mut cluster, &Change::PutSecret(1, 2, 1));
    let (changed, _) = step(&cluster, &global, &mut memos);
    assert_eq!(changed, None, "a Secret added: whole");
    apply(&mut cluster, &Change::PutSecret(1, 2, 0));
    let (changed, _) = step(&cluster, &global, &mut memos);
    assert_eq!(changed, Some(Vec::new()));
}

/// A route whose input is unchanged is the same `Arc` in the next
/// snapshot; the changed one is new.
#[test]
fn an_unchanged_route_is_shared_and_a_changed_one_rebuilt() {
    let global = GlobalInputs::for_test();
    let mut cluster = start();
    for (name, host) in [(0, 0), (1, 1)] {
        apply(
            &mut cluster,
            &Change::PutIngress {
                ns: 0,
                name,
                host,
                exact: false,
                service: name,
                policy: None,
                secret: None,
                created: 0,
            },
        );
    }
    let mut memo = Memo::default();
    let before = memo.translate(&inputs(&cluster, &global));
    apply(&mut cluster, &Change::PutService(0, 1, 81));
    let after = memo.translate(&inputs(&cluster, &global));
    assert_eq!(before.routes.len(), 2);
    assert!(Arc::ptr_eq(&before.routes[0], &after.routes[0]));
    assert!(!Arc::ptr_eq(&before.routes[1], &after.routes[1]));
    assert_ne!(before.fingerprint(), after.fingerprint());

    // A global setting routes read rebuilds every route.
    let mut other = global.clone();
    other.pass_identity_headers = !other.pass_identity_headers;
    let again = memo.translate(&inputs(&cluster, &other));
    assert!(!Arc::ptr_eq(&after.routes[0], &again.routes[0]));
    assert_ne!(
        after.routes[0].pass_identity_headers,
        again.routes[0].pass_identity_headers
    );
}

/// A change to the Service a cert-manager solver Ingress names reaches
/// its challenge route (translated whole), beside an application Ingress
/// naming the same Service (translated in place otherwise).
#[test]
fn a_solver_ingress_follows_its_service() {
    let global = GlobalInputs::for_test();
    let mut cluster = start();
    let backend = serde_json::json!({"service": {"name": "x", "port": {"number": 80}}});
    cluster.ingresses.push(obj(serde_json::json!({
        "metadata": {"name": "solver", "namespace": "a",
                     "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {"acme.cert-manager.io/http01-solver": "true"}},
        "spec": {"ingressClassName": "jetbridge", "rules": [{"host": "one.example.com",
            "http": {"paths": [{"path": "/.well-known/acme-challenge/abc", "pathType": "Exact",
                                "backend": backend}]}}]}
    })));
    for c in [
        Change::PutIngress {
            ns: 0,
            name: 1,
            host: 0,
            exact: false,
            service: 0,
            policy: None,
            secret: None,
            created: 0,
        },
        Change::PutService(0, 0, 80),
        Change::PutSlice {
            ns: 0,
            service: 0,
            ip: 1,
            ready: true,
        },
    ] {
        apply(&mut cluster, &c);
    }
    let mut memos = (ClusterMemo::default(), Memo::default());
    let (_, before) = step(&cluster, &global, &mut memos);
    assert!(
        before
            .acme_challenge("one.example.com", "/.well-known/acme-challenge/abc")
            .is_some()
    );
    let change = Change::PutSlice {
        ns: 0,
        service: 0,
        ip: 2,
        ready: true,
    };
    apply(&mut cluster, &change);
    let (changed, after) = step(&cluster, &global, &mut memos);
    assert_eq!(changed, None);
    let challenge = after.acme_challenge("one.example.com", "/.well-known/acme-challenge/abc");
    let target = challenge
        .and_then(|r| r.upstreams.first())
        .map(|u| u.authority.clone());
    assert_eq!(target.as_deref(), Some("10.0.0.2:8080"));
}

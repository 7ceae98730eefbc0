//! Translation cost of cluster objects at 1k / 10k / 50k Ingresses:
//! `from_cluster` (Ingress, Service, EndpointSlice, Policy → route inputs)
//! plus `translate` (inputs → snapshot: policies compiled, route table
//! built), which is what the controller runs once per burst of changes.
//!
//! Each Ingress has one host, two paths, a Service with a ready
//! EndpointSlice, and one of 100 Policies referenced by `policy_ref`.
//! Before measuring, the resident memory a snapshot adds is printed per
//! route (RSS before and after building and keeping one).
//!
//! B4, one change: the controller's path (`ClusterMemo::update` +
//! `Driver::publish_with`) has published the cluster's snapshot, then one
//! EndpointSlice changes (its address, alternating between two): the
//! memo finds the changed object by `Arc` identity, reads again only the
//! Ingress naming its Service, and the driver rebuilds only that route;
//! the new snapshot is published.
//!
//! `first_translation`: the same path from nothing (start-up): the
//! translation plus the layout and indexes a change needs.
//!
//! Runs with mimalloc, the binary's allocator.
//!
//! Run: `cargo bench --bench translate`.

use std::hint::black_box;

/// The binary's allocator (`src/main.rs`), so the translation is measured
/// as the controller runs it: glibc's spends most of a large translation
/// consolidating and unlinking free chunks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jetbridge::translate::cluster::{Cluster, ClusterSettings, from_cluster};
use jetbridge::translate::driver::Driver;
use jetbridge::translate::incremental_cluster::ClusterMemo;
use jetbridge::translate::{GlobalInputs, Inputs, translate};

const SIZES: &[usize] = &[1_000, 10_000, 50_000];

fn objects(n: usize) -> Cluster {
    let mut docs: Vec<serde_json::Value> = vec![serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "jetbridge"}, "spec": {"controller": "jetbridge.dev/ingress-controller"}
    })];
    for p in 0..100 {
        docs.push(serde_json::json!({
            "apiVersion": "jetbridge.dev/v1", "kind": "Policy",
            "metadata": {"name": format!("policy-{p}"), "namespace": format!("team-{}", p % 50)},
            "spec": {"allow": {"or": [{"domain": {"is": "example.com"}}, {"groups": {"has": format!("team-{p}")}}]}}
        }));
    }
    let mut c = Cluster::default();
    for d in docs {
        match d["kind"].as_str() {
            Some("IngressClass") => c.classes.push(Arc::new(serde_json::from_value(d).unwrap())),
            _ => c
                .policies
                .push(Arc::new(serde_json::from_value(d).unwrap())),
        }
    }
    for i in 0..n {
        let ns = format!("team-{}", i % 50);
        let name = format!("app-{i}");
        c.services.push(Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": ns},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
            }))
            .unwrap(),
        ));
        c.slices.push(Arc::new(serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{name}-x"), "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)], "conditions": {"ready": true}}]
        })).unwrap()));
        c.ingresses.push(Arc::new(serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name, "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {
                    "jetbridge.dev/policy_ref": format!("policy-{}", (i % 50) + 50 * ((i / 50) % 2)),
                    "jetbridge.dev/pass_identity_headers": "true"
                }
            },
            "spec": {"ingressClassName": "jetbridge", "rules": [{"host": format!("{name}.{ns}.example.com"), "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": name, "port": {"number": 80}}}},
                {"path": "/healthz", "pathType": "Exact", "backend": {"service": {"name": name, "port": {"name": "http"}}}}
            ]}}]}
        })).unwrap()));
    }
    c
}

fn inputs(c: &Cluster, global: &GlobalInputs) -> Inputs {
    let out = from_cluster(c, &ClusterSettings::default());
    Inputs {
        global: global.clone(),
        routes: out.routes,
        diagnostics: out.diagnostics,
    }
}

fn run(c: &Cluster, global: &GlobalInputs) -> jetbridge::model::Snapshot {
    translate(&inputs(c, global))
}

/// The EndpointSlice of the middle Ingress with the address `10.255.0.<last>`.
fn changed_slice(c: &Cluster, last: u8) -> Arc<k8s_openapi::api::discovery::v1::EndpointSlice> {
    let mut s = (*c.slices[c.slices.len() / 2]).clone();
    s.endpoints[0].addresses = vec![format!("10.255.0.{last}")];
    Arc::new(s)
}

/// The controller's path: the cluster memo, then the driver with the
/// positions it says changed.
fn publish(
    memo: &mut ClusterMemo,
    driver: &mut Driver,
    c: &Cluster,
    global: &GlobalInputs,
) -> jetbridge::translate::driver::Applied {
    let update = memo.update(c, &ClusterSettings::default());
    let base = Inputs {
        global: global.clone(),
        routes: Vec::new(),
        diagnostics: update.inputs.diagnostics.clone(),
    };
    driver.publish_with(base, &update.inputs.routes, update.changed.as_deref(), 0)
}

fn one_change(c: &mut Criterion, global: &GlobalInputs) {
    let mut group = c.benchmark_group("one_change");
    group.sample_size(10);
    for &n in SIZES {
        let mut cluster = objects(n);
        let mut driver = Driver::new();
        let mut memo = ClusterMemo::default();
        publish(&mut memo, &mut driver, &cluster, global);
        let variants = [changed_slice(&cluster, 1), changed_slice(&cluster, 2)];
        let at = cluster.slices.len() / 2;
        let mut turn = 0usize;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                turn += 1;
                cluster.slices[at] = variants[turn % 2].clone();
                let applied = publish(&mut memo, &mut driver, &cluster, global);
                assert!(applied.generation.is_some());
                black_box(applied)
            })
        });
    }
    group.finish();
}

fn first_translation(c: &mut Criterion, global: &GlobalInputs) {
    let mut group = c.benchmark_group("first_translation");
    group.sample_size(10);
    for &n in SIZES {
        let cluster = objects(n);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let (mut memo, mut driver) = (ClusterMemo::default(), Driver::new());
                black_box(publish(&mut memo, &mut driver, &cluster, global))
            })
        });
    }
    group.finish();
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let global = GlobalInputs::for_test();
    let mut group = c.benchmark_group("translate_ingresses");
    group.sample_size(10);
    for &n in SIZES {
        let cluster = objects(n);
        let before = rss_bytes();
        let snap = run(&cluster, &global);
        let after = rss_bytes();
        assert_eq!(snap.routes.len(), 2 * n);
        eprintln!(
            "translate {n} Ingresses: {} routes, snapshot adds ~{} bytes per route (RSS)",
            snap.routes.len(),
            after.saturating_sub(before) / snap.routes.len()
        );
        drop(snap);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &cluster, |b, cl| {
            b.iter(|| black_box(run(cl, &global)))
        });
    }
    group.finish();
    one_change(c, &global);
    first_translation(c, &global);
}

criterion_group!(benches, bench);
criterion_main!(benches);

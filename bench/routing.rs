//! Route lookup cost against the number of hosts (10 … 50k).
//!
//! Each table has `n` precise hosts with three rules each (`/` prefix,
//! `/api` prefix, `/healthz` exact) plus `n / 10` wildcard hosts. Each
//! iteration looks up one of 1024 request (host, path) pairs spread over the
//! whole table, so the numbers include the cache misses a large table costs.
//! The result should be about flat across sizes: two hash probes at most, then a
//! scan of one host's few rules.
//!
//! Run: `cargo bench --bench routing`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jetbridge::model::routing::{HostMatch, PathMatch, RouteKey, RouteTable, normalize_host};

const SIZES: &[usize] = &[10, 1_000, 10_000, 50_000];
const PROBES: usize = 1024;

fn keys_for(n: usize) -> Vec<RouteKey> {
    let mut keys = Vec::with_capacity(n * 3 + n / 10);
    let mut push = |host: String, path: PathMatch, i: usize| {
        keys.push(RouteKey {
            host: HostMatch::parse(&host).expect("valid host"),
            path,
            created: i as i64,
            name: format!("ns/route-{i}"),
            conditions: None,
            grpc: None,
            hostname: None,
        });
    };
    for i in 0..n {
        let host = format!("app-{i}.team-{}.example.com", i % 97);
        push(host.clone(), PathMatch::prefix("/").unwrap(), i);
        push(host.clone(), PathMatch::prefix("/api").unwrap(), i);
        push(host, PathMatch::exact("/healthz").unwrap(), i);
    }
    for i in 0..(n / 10).max(1) {
        push(
            format!("*.wild-{i}.example.org"),
            PathMatch::prefix("/").unwrap(),
            i,
        );
    }
    keys
}

/// Request pairs spread evenly over the table: precise hosts on each of their
/// rules, wildcard hosts, and unknown hosts.
fn probes_for(n: usize) -> Vec<(String, &'static str)> {
    let wild = (n / 10).max(1);
    (0..PROBES)
        .map(|k| {
            // A multiplicative step spreads probes over the whole key space.
            let i = (k.wrapping_mul(2_654_435_761)) % n;
            let (authority, path) = match k % 5 {
                0 => (
                    format!("app-{i}.team-{}.example.com", i % 97),
                    "/api/v1/items",
                ),
                1 => (format!("APP-{i}.team-{}.example.com:443", i % 97), "/"),
                2 => (format!("app-{i}.team-{}.example.com", i % 97), "/healthz"),
                3 => (format!("x.wild-{}.example.org", i % wild), "/anything"),
                _ => (format!("unknown-{i}.example.net"), "/"),
            };
            (normalize_host(&authority).expect("valid authority"), path)
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    group.throughput(Throughput::Elements(1));
    for &n in SIZES {
        let keys = keys_for(n);
        let table = RouteTable::build(&keys);
        let probes = probes_for(n);
        group.bench_with_input(BenchmarkId::new("hosts", n), &n, |b, _| {
            let mut k = 0usize;
            b.iter(|| {
                let (host, path) = &probes[k % PROBES];
                k = k.wrapping_add(1);
                black_box(table.lookup(black_box(host), black_box(path)))
            });
        });
    }
    group.finish();
}

fn host_normalisation(c: &mut Criterion) {
    c.bench_function("normalize_host", |b| {
        b.iter(|| normalize_host(black_box("App-123.Team-7.Example.com:8443")))
    });
}

criterion_group!(benches, lookup, host_normalisation);
criterion_main!(benches);

//! Policy evaluation cost for a typical five-criterion policy, plus the
//! one-off compile cost for comparison.
//!
//! Run with `cargo bench --bench policy`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jetbridge::policy::{Facts, RequestFacts, User, compile};
use time::macros::datetime;

const POLICY: &str = r#"
- allow:
    and:
      - domain: example.com
      - groups: {has: engineering}
      - http_method: {in: [GET, HEAD, POST]}
      - source_ip: [10.0.0.0/8, 192.168.0.0/16]
      - time_of_day: {timezone: UTC, after: '6:00', before: '22:00'}
- deny:
    or:
      - email: {in: [mallory@example.com, eve@example.com]}
"#;

fn user() -> User {
    User {
        id: "00u1a2b3c4".into(),
        email: "alice@example.com".into(),
        name: "Alice".into(),
        groups: vec!["everyone".into(), "engineering".into(), "oncall".into()],
        claims: serde_json::Map::new(),
    }
}

fn request() -> RequestFacts<'static> {
    RequestFacts {
        method: "GET",
        host: "app.example.com",
        path: "/dashboard",
        source_ip: Some("10.20.30.40".parse().expect("valid IP")),
        headers: &[("accept", "text/html")],
    }
}

fn bench_policy(c: &mut Criterion) {
    let program = compile(POLICY).expect("benchmark policy compiles");
    let user = user();
    let request = request();
    let now = datetime!(2024-01-01 10:30 UTC);

    c.bench_function("policy/eval_allowed_user", |b| {
        b.iter(|| {
            let facts = Facts {
                user: Some(&user),
                request: &request,
                now,
            };
            black_box(program.eval(black_box(&facts)))
        })
    });

    c.bench_function("policy/eval_anonymous_needs_login", |b| {
        b.iter(|| {
            let facts = Facts {
                user: None,
                request: &request,
                now,
            };
            black_box(program.eval(black_box(&facts)))
        })
    });

    c.bench_function("policy/compile", |b| {
        b.iter(|| black_box(compile(black_box(POLICY))))
    });
}

criterion_group!(benches, bench_policy);
criterion_main!(benches);

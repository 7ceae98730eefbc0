//! Identity benches: ES256 sign and verify of an assertion, JWKS document
//! build, session cookie open, and the per-worker assertion cache (B8: a hit,
//! and the hit rate over 10 000 live sessions).
use criterion::{Criterion, criterion_group, criterion_main};
use jetbridge::identity::jwks::jwks_for;
use jetbridge::identity::jwt::{self, AssertionClaims};
use jetbridge::identity::session::{Session, SessionCodec};
use jetbridge::identity::{Identity, IssuerFormat, KeySet};
use std::hint::black_box;

fn identity() -> Identity {
    Identity {
        sub: "user-123".into(),
        email: "alice@example.com".into(),
        name: "Alice".into(),
        groups: vec!["admins".into(), "users".into()],
        sid: "sess-1".into(),
    }
}

fn bench(c: &mut Criterion) {
    let keys = KeySet::generate();
    let id = identity();
    c.bench_function("es256_mint_assertion", |b| {
        b.iter(|| {
            jwt::mint(
                &keys,
                black_box(&id),
                "app.example.com",
                IssuerFormat::Host,
                1_700_000_000,
            )
            .unwrap()
        })
    });
    let (token, _) = jwt::mint(
        &keys,
        &id,
        "app.example.com",
        IssuerFormat::Host,
        jsonwebtoken::get_current_timestamp() as i64,
    )
    .unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["app.example.com"]);
    c.bench_function("es256_verify_assertion", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<AssertionClaims>(
                black_box(&token),
                keys.signer().decoding_key(),
                &v,
            )
            .unwrap()
        })
    });
    c.bench_function("jwks_document", |b| b.iter(|| jwks_for(black_box(&keys))));
    let codec = SessionCodec::new(&[7; 32]);
    let session = Session {
        id: "sid".into(),
        sub: "user-123".into(),
        email: "alice@example.com".into(),
        name: "Alice".into(),
        groups: vec!["admins".into(), "users".into()],
        claims: Default::default(),
        truncated: false,
        iat: 1,
        exp: i64::MAX / 2,
        refresh_token: None,
        refresh_at: 0,
        idp_tokens: None,
        idp: String::new(),
    };
    let cookie = codec.seal("app.example.com", &session);
    c.bench_function("session_cookie_open", |b| {
        b.iter(|| {
            codec
                .open("app.example.com", black_box(&cookie), 2)
                .unwrap()
        })
    });
}

/// B8: the assertion cache. A hit is a hash and a compare; the hit rate is
/// measured over 10 000 sessions each making 100 requests within the reuse
/// window, interleaved.
fn cache(c: &mut Criterion) {
    use jetbridge::proxy::assertions::{Key, get_or_mint, stats};
    let keys = KeySet::generate();
    let id = identity();
    let now = 1_700_000_000;
    let mint = |sid: &str| {
        let (t, claims) = jwt::mint(
            &keys,
            &Identity {
                sid: sid.into(),
                ..id.clone()
            },
            "app.example.com",
            IssuerFormat::Host,
            now,
        )?;
        Ok::<_, jwt::JwtError>((
            http::HeaderValue::from_str(&t).unwrap_or(http::HeaderValue::from_static("x")),
            claims,
        ))
    };
    let key = |sid| Key {
        session_id: sid,
        session_refreshed: 0,
        route: "routes[0]",
        host: "app.example.com",
        generation: 1,
    };
    get_or_mint(key("hot"), now, || mint("hot")).unwrap();
    c.bench_function("assertion_cache_hit", |b| {
        b.iter(|| get_or_mint(black_box(key("hot")), now, || mint("hot")).unwrap())
    });
    let sids: Vec<String> = (0..10_000).map(|i| format!("session-{i}")).collect();
    let before = stats();
    for round in 0..100 {
        for sid in &sids {
            get_or_mint(key(sid), now + round / 10, || mint(sid)).unwrap();
        }
    }
    let (hits, misses) = stats();
    let (hits, misses) = (hits - before.0, misses - before.1);
    println!(
        "assertion cache, 10 000 sessions x 100 requests: {hits} hits, {misses} mints, hit rate {:.2} %",
        100.0 * hits as f64 / (hits + misses) as f64
    );
}

criterion_group!(benches, bench, cache);
criterion_main!(benches);

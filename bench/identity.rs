//! Identity benches: ES256 sign and verify of an assertion, JWKS document build.
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

criterion_group!(benches, bench);
criterion_main!(benches);

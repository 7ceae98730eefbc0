//! Session cookies: opening arbitrary bytes never panics and never yields a
//! session (they were not sealed with the key). A session whose fields come
//! from the input seals and opens again on its host only.
#![no_main]

use jetbridge::identity::session::{Session, SessionCodec};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

const HOST: &str = "app.example.com";
const NOW: i64 = 1_767_225_600;

static CODEC: LazyLock<SessionCodec> = LazyLock::new(|| SessionCodec::new(&[7; 32]));

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    assert!(
        CODEC.open(HOST, &text, NOW).is_none(),
        "random input opened as a session: {text:?}"
    );

    // Fields separated by newlines: sub, email, name, then groups.
    let mut fields = text.split('\n');
    let mut next = || fields.next().unwrap_or("").to_string();
    let session = Session {
        id: "sid-fuzz".into(),
        sub: next(),
        email: next(),
        name: next(),
        groups: fields.map(str::to_string).collect(),
        claims: Default::default(),
        truncated: false,
        iat: NOW,
        exp: NOW + 3600,
        refresh_token: None,
        refresh_at: 0,
        idp_tokens: None,
        idp: String::new(),
    };
    let sealed = CODEC.seal(HOST, &session);
    assert!(CODEC.open("other.example.com", &sealed, NOW).is_none());
    if let Some(opened) = CODEC.open(HOST, &sealed, NOW) {
        assert_eq!(opened.sub, session.sub);
        assert_eq!(opened.id, session.id);
    }
});

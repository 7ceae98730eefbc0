//! PPL: the text parser, the compiler and evaluation never panic, whatever
//! the policy text. Compiling the same document from YAML text and from its
//! decoded JSON value agree on success.
#![no_main]

use jetbridge::policy::{Facts, RequestFacts, User, compile_value, compile_with_warnings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((program, _warnings)) = compile_with_warnings(text) else {
        return;
    };
    // A policy that compiles from text also compiles from its JSON form.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        assert!(compile_value(&value).is_ok(), "JSON compiles as text only");
    }
    let request = RequestFacts {
        method: "GET",
        host: "app.example.com",
        path: "/admin/x",
        source_ip: "10.1.2.3".parse().ok(),
        headers: &[("origin", "https://a.example.com")],
    };
    let user = User {
        id: "u1".into(),
        email: "alice@example.com".into(),
        name: "Alice".into(),
        groups: vec!["admins".into(), "dev".into()],
        claims: serde_json::json!({"department": "eng", "level": 3, "tags": ["a", "b"]})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let now = time::OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap();
    for user in [None, Some(&user)] {
        let _ = program.eval(&Facts {
            user,
            request: &request,
            now,
        });
    }
});

//! Redirect-target validation never panics, and a target it accepts is an
//! `https://` URL without credentials on a configured host: a route host, a
//! single label under a wildcard route, or the authenticate host.
#![no_main]

use jetbridge::model::Snapshot;
use jetbridge::proxy::auth::endpoints::validate_return_to;
use jetbridge::settings::ConfigFile;
use jetbridge::source::file::inputs_from_config;
use jetbridge::translate::config::Generated;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

const CONFIG: &str = "\
authenticate_service_url: https://auth.example.com
routes:
  - from: https://app.example.com
    to: http://127.0.0.1:8000
    allow_public_unauthenticated_access: true
  - from: https://*.apps.example.com
    to: http://127.0.0.1:8001
    allow_public_unauthenticated_access: true
  - from: https://app.example.com:8443
    prefix: /admin
    to: http://127.0.0.1:8002
    allow_public_unauthenticated_access: true
";

static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(|| {
    let cfg = ConfigFile::parse("fuzz.yaml", CONFIG).expect("fuzz config parses");
    let inputs = inputs_from_config(&cfg, &mut Generated::default(), &mut Vec::new())
        .expect("fuzz config translates");
    jetbridge::translate::translate(&inputs)
});

fn configured(host: &str) -> bool {
    if host == "app.example.com" || host == "auth.example.com" {
        return true;
    }
    host.strip_suffix(".apps.example.com")
        .is_some_and(|label| !label.is_empty() && !label.contains('.'))
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Some(target) = validate_return_to(raw, &SNAPSHOT) else {
        return;
    };
    assert!(target.starts_with("https://"), "{raw:?} -> {target:?}");
    assert!(
        !target.chars().any(|c| c.is_control() || c == '\\'),
        "{raw:?} -> {target:?}"
    );
    let url = url::Url::parse(&target).unwrap_or_else(|e| panic!("{raw:?} -> {target:?}: {e}"));
    assert_eq!(url.scheme(), "https");
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "{raw:?} -> {target:?}"
    );
    match url.host() {
        Some(url::Host::Domain(host)) => {
            assert!(
                configured(host),
                "{raw:?} -> {target:?}: host {host:?} not configured"
            )
        }
        other => panic!("{raw:?} -> {target:?}: host {other:?}"),
    }
});

//! Path normalisation never panics; what it accepts is canonical: it starts
//! with `/`, has no empty, `.` or `..` segment, and normalising it again
//! returns it unchanged.
#![no_main]

use jetbridge::model::pathnorm::normalize_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normal) = normalize_path(raw) else {
        return;
    };
    let path = normal.as_str();
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    assert!(!path.contains("//"), "{raw:?} -> {path:?}");
    for seg in path.split('/').skip(1) {
        assert!(seg != "." && seg != "..", "{raw:?} -> {path:?}");
    }
    assert!(
        !path.ends_with("/.") && !path.ends_with("/.."),
        "{raw:?} -> {path:?}"
    );
    let again = normalize_path(path).unwrap_or_else(|e| panic!("{raw:?} -> {path:?} -> {e}"));
    assert_eq!(again.as_str(), path, "not idempotent for {raw:?}");
});

//! Test fixtures: snapshots built the way the config file builds them.

use super::config::{Files, Generated, inputs_from_parts};
use crate::model::Snapshot;
use crate::settings::ConfigFile;

/// A snapshot with one route, `https://app.example.com` → `http://127.0.0.1:1`,
/// with these options (YAML lines indented under the route).
pub(crate) fn one_route(options: &str) -> Snapshot {
    let s = translate_one(options);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    s
}

/// [`one_route`]'s snapshot, whatever its diagnostics.
pub(crate) fn translate_one(options: &str) -> Snapshot {
    let yaml = format!(
        "routes:\n  - from: https://app.example.com\n    to: http://127.0.0.1:1\n{options}"
    );
    let cfg = ConfigFile::parse("test.yaml", &yaml).unwrap();
    let inputs = inputs_from_parts(
        &cfg,
        &Files::new(),
        &mut Generated::default(),
        &mut Vec::new(),
    )
    .unwrap();
    crate::translate::translate(&inputs)
}

//! The policy engine stays pure: its only dependencies are data crates
//! (no async runtime, no HTTP, no Kubernetes), so it embeds anywhere.

/// The names in the `[dependencies]` table of this crate's Cargo.toml.
fn dependencies() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let manifest = std::fs::read_to_string(path).unwrap();
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[dependencies]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim().to_string()))
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect()
}

#[test]
fn policy_engine_depends_only_on_data_crates() {
    let allowed = [
        "ipnet",
        "serde",
        "serde-saphyr",
        "serde_json",
        "thiserror",
        "time",
        "url",
    ];
    let deps = dependencies();
    assert!(deps.iter().any(|d| d == "serde"), "table read: {deps:?}");
    let others: Vec<&String> = deps
        .iter()
        .filter(|d| !allowed.contains(&d.as_str()))
        .collect();
    assert!(
        others.is_empty(),
        "dependencies beyond data crates: {others:?}"
    );
}

//! The verifier is embedded in upstream apps: its dependency tree carries no
//! Kubernetes client and no HTTP server.

use std::process::Command;

/// `name features` for every package in the crate's normal dependency tree,
/// with features resolved for this crate alone.
fn dependency_tree() -> Vec<(String, Vec<String>)> {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--package",
            "jetbridge-verify",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}|{f}",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (package, features) = line.split_once('|')?;
            let name = package.split_whitespace().next()?.to_string();
            let features = features
                .split(',')
                .filter(|f| !f.is_empty())
                .map(|f| f.trim().to_string())
                .collect();
            Some((name, features))
        })
        .collect()
}

#[test]
fn verifier_tree_has_no_kubernetes_crates() {
    let tree = dependency_tree();
    assert!(
        tree.iter().any(|(name, _)| name == "jetbridge-verify"),
        "the tree names the crate itself: {tree:?}"
    );
    let kube: Vec<&String> = tree
        .iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("kube") || name.starts_with("k8s-openapi"))
        .collect();
    assert!(kube.is_empty(), "Kubernetes crates in the tree: {kube:?}");
}

#[test]
fn verifier_tree_has_no_http_server() {
    let tree = dependency_tree();
    assert!(
        tree.iter().any(|(name, _)| name == "hyper"),
        "the JWKS client is hyper's: {tree:?}"
    );
    let servers: Vec<String> = tree
        .iter()
        .filter(|(name, _)| name.starts_with("hyper") || name == "axum" || name == "tower-http")
        .flat_map(|(name, features)| {
            features
                .iter()
                .filter(|f| f.starts_with("server") || *f == "full")
                .map(move |f| format!("{name}/{f}"))
                .chain((name == "axum" || name == "tower-http").then(|| name.clone()))
        })
        .collect();
    assert!(
        servers.is_empty(),
        "HTTP server parts in the tree: {servers:?}"
    );
}

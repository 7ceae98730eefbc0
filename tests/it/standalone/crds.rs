//! Generated artefacts stay in sync with the Rust types they come from.

#[test]
fn crds_directory_matches_the_rust_types() {
    let path = format!(
        "{}/crds/policies.jetbridge.dev.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = jetbridge::crd::crd_yaml();
    assert!(
        committed == generated,
        "{path} is out of date: run `cargo run -- crds > crds/policies.jetbridge.dev.yaml`"
    );
}

#[test]
fn crds_subcommand_prints_the_same_yaml() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        jetbridge::crd::crd_yaml()
    );
}

#[test]
fn the_charts_crd_copy_matches_the_rust_types() {
    let path = format!(
        "{}/charts/jetbridge/crds/policies.jetbridge.dev.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == jetbridge::crd::crd_yaml(),
        "{path} is out of date: cp crds/policies.jetbridge.dev.yaml charts/jetbridge/crds/"
    );
}

//! Every integration tier in one test binary, a module per tier, over one
//! harness (`harness/`). One binary links once and shares one build of the
//! harness; a failure names its tier, its file and its test.
//!
//! Tiers that need a real part (npm `oidc-provider`, Chromium, PyJWT, a
//! kube-apiserver) find it through the `JETBRIDGE_*` variables `scripts/test`
//! exports; `cluster::controller` uses `JETBRIDGE_CLUSTER_DIR` when set.
//!
//! `soak` saturates every core for a minute: the runner gives it the machine
//! to itself (`.config/nextest.toml`; `scripts/test` runs it alone under
//! `cargo test`).

mod harness;

mod attack;
mod cluster;
mod docs;
mod forward_auth;
mod login;
mod proxy;
mod soak;
mod standalone;
mod verify;

//! Verifying the identity stamp (`X-Pomerium-Jwt-Assertion`) upstream.
//!
//! The verifier itself is the `jetbridge-verify` crate (no Kubernetes or
//! HTTP-server dependencies, for apps to embed), re-exported here whole; the
//! [`app`] module is the small upstream built on it that shows what the proxy
//! sent and whether it verifies (`jetbridge verify`).

pub mod app;

pub use jetbridge_verify::*;

//! jetbridge: a Kubernetes ingress controller with an embedded identity-aware proxy.
//!
//! The data path runs one way: Kubernetes objects or a config file become
//! [`translate::Inputs`], a pure [`translate::translate`] turns them into an
//! immutable [`model::Snapshot`], and the proxy reads the current snapshot once
//! per request.
#![forbid(unsafe_code)]

pub mod crd;
pub mod demo;
pub mod identity;
pub mod memory;
pub mod model;
pub mod names;
pub use jetbridge_policy as policy;
pub mod proxy;
pub mod settings;
pub mod snapshot;
pub mod source;
pub mod telemetry;
pub mod traces;
pub mod translate;
pub mod verify;

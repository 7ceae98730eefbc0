//! The one harness of the integration tiers.
//!
//! - [`config`]: config files built from the typed settings, written by serde.
//! - [`proxy`]: the whole proxy in-process on loopback, real upstream servers
//!   (HTTP/1.1, h2c, HTTPS, WebSocket, silent, garbage), TLS clients and test
//!   certificate authorities.
//! - [`login`]: the real IdP (npm `oidc-provider`), an HTTP client with a
//!   cookie jar, the real `jetbridge` binary as a child process.
//! - [`attack`]: the real binary with a recording upstream, and clients that
//!   write exact bytes (raw HTTP/1.1, hand-encoded HTTP/2 frames).
//! - [`cluster`]: a real kube-apiserver (`scripts/cluster`) and the
//!   `jetbridge controller` binary against it.
//! - [`verify`]: signing keys, token minting, a counting JWKS server.
//! - [`tls`]: the one client-side verifier that accepts any certificate.
//! - [`golden`]: golden fixture folders (`*.yaml` → `*.expected`).

pub mod attack;
pub mod cluster;
pub mod config;
pub mod golden;
pub mod login;
pub mod proxy;
pub mod tls;
pub mod verify;

//! Verify tier: the upstream-side verifier and the Verify app.

mod app;
mod verifier;

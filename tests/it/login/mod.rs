//! Login tier: real sign-ins at npm `oidc-provider`, in a scripted client and in Chromium.

pub(crate) mod browser;
mod email_domain;
mod faults;
mod identity_verifiers;
mod idp_discovery;
mod oidc;
mod programmatic;

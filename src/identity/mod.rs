//! Identity: signing keys, the signed identity assertion, the JWKS document,
//! secrets, and (with authentication) sessions and OIDC.

pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod oidc;
pub mod programmatic;
pub mod revocation;
pub mod seal;
pub mod secrets;
pub mod session;

pub use jwt::{AssertionClaims, Identity, IssuerFormat};
pub use keys::{KeyError, KeySet, KeyWarning, SigningKey};

/// Fills `buf` from the operating system's CSPRNG (via aws-lc).
pub fn random_bytes(buf: &mut [u8]) {
    // aws-lc's RNG only fails if the OS RNG is unavailable; there is no safe
    // way to continue without randomness.
    aws_lc_rs::rand::fill(buf).expect("operating system random number generator unavailable");
}

#[cfg(test)]
mod tests;

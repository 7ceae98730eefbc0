//! `jetbridge demo`: the whole system on loopback, with a built-in development identity provider.

pub mod idp;

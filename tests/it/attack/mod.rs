//! Attack tier: hostile requests, tokens, sessions and cluster objects, mostly against the real binary.

mod cluster;
mod identity;
mod paths;
mod protocol;
mod sessions;
mod tokens;

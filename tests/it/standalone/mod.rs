//! Standalone tier: the `jetbridge` binary's subcommands run as a user would.

mod binary;
mod cli;
mod crds;
mod decision_log;
mod demo;
mod demo_idp;
pub(crate) mod operations;
mod traces;

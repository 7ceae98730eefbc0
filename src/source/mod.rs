//! Sources of configuration, I/O only: each reads its inputs its own way,
//! turns them into [`crate::translate::Inputs`] and hands them to the one
//! [`crate::translate::driver::Driver`]. A source never imports another.
//!
//! - [`file`](mod@file): the config file (read, watch, reload).
//! - [`cluster`]: the Kubernetes API (reflectors, bootstrap Secret, Lease,
//!   Events, status, revocations, host claims).

pub mod cluster;
pub mod file;

use crate::settings::ConfigFile;
use crate::translate::config::{Files, Unreadable, referenced_files};

/// Reads every file a config refers to (key files, certificates, CA
/// bundles): the file source reads them with each reading, the cluster
/// source with each translation of its global settings.
pub fn read_referenced(cfg: &ConfigFile) -> Files {
    referenced_files(cfg)
        .into_iter()
        .map(|p| {
            let r = read_one(&p);
            (p, r)
        })
        .collect()
}

/// One referenced file's text, or why it cannot be read.
pub(crate) fn read_one(path: &str) -> Result<String, Unreadable> {
    std::fs::read_to_string(path).map_err(|e| Unreadable(e.to_string()))
}

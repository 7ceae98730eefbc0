//! Snapshot publisher.

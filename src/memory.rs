//! Giving memory back after a configuration is applied.
//!
//! Translating 10 000 routes allocates tens of megabytes for a moment (the
//! parsed file or cluster objects, the inputs, the new snapshot), and a
//! caching allocator keeps those pages resident after they are freed. The
//! binary registers how to return them ([`set_release`]); the configuration
//! sources call [`release`] once an application is over.

use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Registers the function that returns freed memory to the system (once;
/// later calls are ignored).
pub fn set_release(f: fn()) {
    let _ = RELEASE.set(f);
}

/// Returns freed memory to the system, if the binary said how.
pub fn release() {
    if let Some(f) = RELEASE.get() {
        f();
    }
}

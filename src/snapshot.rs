//! Publishing snapshots: one writer, many lock-free readers over `ArcSwap`.
//! A snapshot is published only when its content changed; each publish
//! gets the next generation number.

use crate::identity::jwt::ASSERTION_TTL_SECS;
use crate::identity::{KeySet, SigningKey};
use crate::model::Snapshot;
use arc_swap::ArcSwapOption;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared handle to the current snapshot.
#[derive(Clone, Default)]
pub struct SnapshotReader {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    current: ArcSwapOption<Snapshot>,
    generation: AtomicU64,
    reload_failures: AtomicU64,
    /// True when the latest reload attempt was rejected.
    last_reload_failed: std::sync::atomic::AtomicBool,
    /// The Gateway ports (by proxy port) the data plane could not listen
    /// on, with the error, and a wake-up for the one reader of them.
    unbound: std::sync::Mutex<std::collections::BTreeMap<u16, String>>,
    unbound_changed: tokio::sync::Notify,
}

impl SnapshotReader {
    /// The current snapshot, if one was published.
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.inner.current.load_full()
    }
    /// True once the first snapshot is published.
    pub fn ready(&self) -> bool {
        self.inner.current.load().is_some()
    }
    /// The generation of the current snapshot (0 if none).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
    }
    /// Number of rejected reloads so far.
    pub fn reload_failures(&self) -> u64 {
        self.inner.reload_failures.load(Ordering::Relaxed)
    }
    /// False when the latest reload attempt was rejected (the running
    /// configuration is then older than its source).
    pub fn last_reload_ok(&self) -> bool {
        !self.inner.last_reload_failed.load(Ordering::Relaxed)
    }
    /// Records the Gateway ports (by proxy port) the data plane could not
    /// listen on, with why; wakes [`SnapshotReader::unbound_changed`] when
    /// that differs from before.
    pub fn set_unbound_gateway_ports(&self, failed: &std::collections::BTreeMap<u16, String>) {
        let mut unbound = self.inner.unbound.lock().unwrap_or_else(|e| e.into_inner());
        if *unbound != *failed {
            unbound.clone_from(failed);
            self.inner.unbound_changed.notify_one();
        }
    }
    /// The Gateway ports the data plane could not listen on, with why.
    pub fn unbound_gateway_ports(&self) -> std::collections::BTreeMap<u16, String> {
        self.inner
            .unbound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Resolves when [`SnapshotReader::unbound_gateway_ports`] changed
    /// (for one waiter: the status writer).
    pub async fn unbound_changed(&self) {
        self.inner.unbound_changed.notified().await;
    }
}

/// The single writer.
pub struct Publisher {
    reader: SnapshotReader,
    fingerprint: [u8; 32],
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    /// A publisher with no snapshot yet.
    pub fn new() -> Self {
        Publisher {
            reader: SnapshotReader::default(),
            fingerprint: [0; 32],
        }
    }
    /// A reader handle.
    pub fn reader(&self) -> SnapshotReader {
        self.reader.clone()
    }
    /// Publishes if the content differs from the current snapshot. Returns the
    /// new generation, or `None` when nothing changed.
    pub fn publish(&mut self, mut snapshot: Snapshot) -> Option<u64> {
        let fp = snapshot.fingerprint();
        if self.reader.ready() && fp == self.fingerprint {
            return None;
        }
        let generation = self.reader.inner.generation.load(Ordering::Relaxed) + 1;
        snapshot.generation = generation;
        self.fingerprint = fp;
        self.reader.inner.current.store(Some(Arc::new(snapshot)));
        self.reader
            .inner
            .generation
            .store(generation, Ordering::Relaxed);
        Some(generation)
    }
    /// Counts a rejected reload (the current snapshot stays).
    pub fn record_failure(&self) {
        self.reader
            .inner
            .reload_failures
            .fetch_add(1, Ordering::Relaxed);
        self.reader
            .inner
            .last_reload_failed
            .store(true, Ordering::Relaxed);
    }
    /// Records that the source was read and applied (or was unchanged).
    pub fn record_success(&self) {
        self.reader
            .inner
            .last_reload_failed
            .store(false, Ordering::Relaxed);
    }
}

/// Remembers keys that were removed from the configuration so they stay in
/// the JWKS while assertions they signed can still be valid.
#[derive(Clone, Default)]
pub struct KeyHistory {
    /// (key, unix time it stopped being configured)
    retired: Vec<(SigningKey, i64)>,
    last: Option<Arc<KeySet>>,
}

/// How long a removed key stays published: assertion lifetime plus a minute
/// of verifier clock leeway plus a minute of JWKS caching.
pub const RETIRED_KEY_GRACE_SECS: i64 = ASSERTION_TTL_SECS + 120;

impl KeyHistory {
    /// Updates the history with the now-configured keys and returns the
    /// retired keys still to publish.
    pub fn update(&mut self, current: &Arc<KeySet>, now: i64) -> Vec<SigningKey> {
        if let Some(last) = &self.last {
            for k in last.keys() {
                if current.get(k.kid()).is_none()
                    && !self.retired.iter().any(|(r, _)| r.kid() == k.kid())
                {
                    self.retired.push((k.clone(), now));
                }
            }
        }
        self.retired
            .retain(|(k, at)| current.get(k.kid()).is_none() && now - at < RETIRED_KEY_GRACE_SECS);
        self.last = Some(current.clone());
        self.retired.iter().map(|(k, _)| k.clone()).collect()
    }

    /// Seconds until the next retired key expires, if any (to schedule a re-publish).
    pub fn next_expiry(&self, now: i64) -> Option<i64> {
        self.retired
            .iter()
            .map(|(_, at)| (at + RETIRED_KEY_GRACE_SECS - now).max(0))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_key_stays_published_until_its_assertions_expire() {
        let a = Arc::new(KeySet::generate());
        let b = Arc::new(KeySet::generate());
        let mut h = KeyHistory::default();
        assert!(h.update(&a, 1000).is_empty());
        let retired = h.update(&b, 1010);
        assert_eq!(retired.len(), 1);
        assert_eq!(retired[0].kid(), a.signer().kid());
        assert_eq!(h.update(&b, 1010 + RETIRED_KEY_GRACE_SECS - 1).len(), 1);
        assert!(h.update(&b, 1010 + RETIRED_KEY_GRACE_SECS).is_empty());
        const { assert!(RETIRED_KEY_GRACE_SECS > ASSERTION_TTL_SECS + 60) };
    }

    #[test]
    fn a_key_that_returns_is_not_listed_as_retired() {
        let a = Arc::new(KeySet::generate());
        let b = Arc::new(KeySet::generate());
        let mut h = KeyHistory::default();
        h.update(&a, 0);
        h.update(&b, 1);
        assert!(h.update(&a, 2).iter().all(|k| k.kid() != a.signer().kid()));
    }
}

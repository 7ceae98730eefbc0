//! Revoked sessions: the ids of sessions that signed out, each kept until
//! the session itself would have expired, then forgotten.
//!
//! Sessions are stateless sealed cookies, so a copy of a cookie taken before
//! sign-out stays well-formed; this list is what makes it worthless. The
//! request path only reads it (one atomic load, no lock). Sign-outs are
//! rare and copy the set.
//!
//! The list is shaped to be shared between replicas: [`Revocations::entries`]
//! exports it and [`Revocations::merge`] takes in what other replicas
//! revoked, so a controller can keep the union in an object of the cluster
//! that every replica watches. In `standalone` it lives in the process.

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;

/// A set of revoked session ids with their expiry (unix seconds).
#[derive(Default)]
pub struct Revocations {
    set: ArcSwap<HashMap<String, i64>>,
    /// Bumped on every local revocation, so a syncing task can wait for news.
    changed: tokio::sync::Notify,
}

impl Revocations {
    /// True if `sid` was revoked (and its session has not expired yet).
    pub fn is_revoked(&self, sid: &str) -> bool {
        self.set.load().contains_key(sid)
    }

    /// Revokes `sid` until `exp`; prunes entries expired by `now`.
    pub fn revoke(&self, sid: &str, exp: i64, now: i64) {
        self.set.rcu(|current| {
            let mut next: HashMap<String, i64> = current
                .iter()
                .filter(|(_, e)| **e > now)
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let e = next.entry(sid.to_string()).or_insert(exp);
            *e = (*e).max(exp);
            next
        });
        self.changed.notify_one();
    }

    /// Adds entries revoked elsewhere (another replica); returns how many
    /// were new. Expired entries are dropped.
    pub fn merge(&self, entries: impl IntoIterator<Item = (String, i64)>, now: i64) -> usize {
        let incoming: Vec<(String, i64)> =
            entries.into_iter().filter(|(_, exp)| *exp > now).collect();
        let mut added = 0;
        self.set.rcu(|current| {
            added = 0;
            let mut next: HashMap<String, i64> = current
                .iter()
                .filter(|(_, e)| **e > now)
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            for (sid, exp) in &incoming {
                if next.insert(sid.clone(), *exp).is_none() {
                    added += 1;
                }
            }
            next
        });
        added
    }

    /// The current entries, sorted by id, without those expired by `now`.
    pub fn entries(&self, now: i64) -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = self
            .set
            .load()
            .iter()
            .filter(|(_, e)| **e > now)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        v.sort();
        v
    }

    /// Number of entries held (expired ones included until the next change).
    pub fn len(&self) -> usize {
        self.set.load().len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until this process revokes a session.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// A shared handle.
pub type SharedRevocations = Arc<Revocations>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_session_stays_revoked_until_it_expires_then_is_pruned() {
        let r = Revocations::default();
        r.revoke("a", 100, 0);
        assert!(r.is_revoked("a"));
        assert!(!r.is_revoked("b"));
        r.revoke("b", 200, 50);
        assert_eq!(r.len(), 2);
        // At 150 "a" has expired: the next change prunes it.
        r.revoke("c", 300, 150);
        assert!(!r.is_revoked("a"));
        assert!(r.is_revoked("b") && r.is_revoked("c"));
        assert_eq!(r.entries(250), vec![("c".to_string(), 300)]);
    }

    #[test]
    fn merging_another_replicas_list_adds_only_live_new_entries() {
        let r = Revocations::default();
        r.revoke("a", 100, 0);
        let added = r.merge(
            vec![("a".into(), 100), ("b".into(), 100), ("old".into(), 5)],
            10,
        );
        assert_eq!(added, 1);
        assert!(r.is_revoked("b"));
        assert!(!r.is_revoked("old"));
    }
}

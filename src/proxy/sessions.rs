//! Opened session cookies kept per worker thread, so a signed-in browser's
//! requests do not each decode, decrypt and parse the same cookie again.
//!
//! An entry is found by the cookie's host, length and last characters (the
//! end of its authentication tag) and used only when the whole value and the
//! host are equal to the ones it was opened from, for the same snapshot
//! generation (a reload opens each cookie once more), and only until the
//! session expires. Revocation is checked by the caller on every request, as
//! for a cookie opened anew. Each worker thread has its own cache, read and
//! written without locks; it holds at most [`CAPACITY`] entries and drops
//! expired ones (or, if none, all) when full.

use crate::identity::session::Session;
use crate::model::Snapshot;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// Entries per worker thread (a 3.8 KB cookie and its session are about
/// 8 KB, so at most some 32 MB per worker).
pub const CAPACITY: usize = 4_096;

/// How many trailing characters of the cookie pick its slot.
const TAIL: usize = 32;

struct Entry {
    host: Box<str>,
    value: Box<str>,
    generation: u64,
    session: Session,
}

#[derive(Default)]
struct Cache {
    hasher: std::collections::hash_map::RandomState,
    entries: HashMap<u64, Entry>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The session sealed in `value` for `host`, if it opens and has not
/// expired: from this thread's cache when this exact cookie was opened
/// before under the same snapshot generation, else opened now (and cached).
pub fn open(snapshot: &Snapshot, host: &str, value: &str, now: i64) -> Option<Session> {
    let tail = &value.as_bytes()[value.len().saturating_sub(TAIL)..];
    let (hash, hit) = CACHE.with_borrow_mut(|c| {
        let hash = c.hasher.hash_one((host, value.len(), tail));
        let hit = c.entries.get(&hash).filter(|e| {
            e.generation == snapshot.generation
                && *e.value == *value
                && *e.host == *host
                && e.session.exp > now
                && e.session.iat <= now + 60
        });
        (hash, hit.map(|e| e.session.clone()))
    });
    if hit.is_some() {
        return hit;
    }
    let session = snapshot.sessions.open(host, value, now)?;
    CACHE.with_borrow_mut(|c| {
        if c.entries.len() >= CAPACITY && !c.entries.contains_key(&hash) {
            c.entries
                .retain(|_, e| e.session.exp > now && e.generation == snapshot.generation);
            if c.entries.len() >= CAPACITY {
                c.entries.clear();
            }
        }
        c.entries.insert(
            hash,
            Entry {
                host: host.into(),
                value: value.into(),
                generation: snapshot.generation,
                session: session.clone(),
            },
        );
    });
    Some(session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{GlobalInputs, Inputs, translate};

    fn snapshot(generation: u64) -> Snapshot {
        let mut s = translate(&Inputs {
            global: GlobalInputs::for_test(),
            routes: Vec::new(),
            diagnostics: Vec::new(),
        });
        s.generation = generation;
        s
    }

    fn session(now: i64) -> Session {
        Session {
            id: "sid-1".into(),
            sub: "alice".into(),
            email: "alice@example.com".into(),
            groups: vec!["ops".into()],
            iat: now,
            exp: now + 3600,
            ..Default::default()
        }
    }

    #[test]
    fn a_cookie_opens_once_and_only_that_exact_cookie_hits() {
        let now = 1_000_000;
        let snap = snapshot(1);
        let value = snap.sessions.seal("a.test", &session(now));
        assert_eq!(open(&snap, "a.test", &value, now), Some(session(now)));
        // Cached: the same answer for the same cookie and host…
        assert_eq!(open(&snap, "a.test", &value, now + 1), Some(session(now)));
        // …never for another host, and a value that shares the cached one's
        // length and tail but not its middle is opened (and refused) anew.
        assert_eq!(open(&snap, "b.test", &value, now), None);
        let mut forged = value.clone().into_bytes();
        forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(open(&snap, "a.test", &forged, now), None);
        // Past its expiry a cached session is not returned.
        assert_eq!(open(&snap, "a.test", &value, now + 3600), None);
    }

    #[test]
    fn another_snapshot_opens_the_cookie_again() {
        let now = 1_000_000;
        let one = snapshot(1);
        let value = one.sessions.seal("a.test", &session(now));
        assert!(open(&one, "a.test", &value, now).is_some());
        // A new snapshot with another cookie secret: the cached session is
        // not reused, and the cookie does not open under the new secret.
        let two = snapshot(2);
        assert_eq!(open(&two, "a.test", &value, now), None);
    }
}

//! Minted assertions kept per worker thread, so a signed-in user's requests
//! to a route are not each signed anew.
//!
//! An assertion is reused for [`REUSE_SECS`] after it was minted (its `exp`
//! is [`ASSERTION_TTL_SECS`] after its `iat`, so a reused one always has
//! at least four minutes left), and only for the same session (id and last
//! refresh), route, request host and snapshot generation: a config change,
//! a key rotation or a session refresh mints a new one. `iat` and `exp` are
//! those of the minting; `jti` names one minting, shared by the requests
//! that reuse it. Each worker thread has its own cache, read and written
//! without locks; it holds at most [`CAPACITY`] entries and drops expired
//! ones (or, if none, all) when full.

use crate::identity::jwt::{ASSERTION_TTL_SECS, AssertionClaims};
use http::HeaderValue;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

/// How long a minted assertion is reused.
pub const REUSE_SECS: i64 = 60;
/// Entries per worker thread.
pub const CAPACITY: usize = 16_384;

/// One minted assertion.
#[derive(Debug)]
pub struct Minted {
    /// The compact JWS, as a header value.
    pub token: HeaderValue,
    pub claims: AssertionClaims,
}

/// What an assertion was minted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key<'a> {
    pub session_id: &'a str,
    /// The session's `refresh_at`, which changes when it is refreshed.
    pub session_refreshed: i64,
    pub route: &'a str,
    pub host: &'a str,
    pub generation: u64,
}

struct Entry {
    session_id: Box<str>,
    session_refreshed: i64,
    route: Box<str>,
    host: Box<str>,
    generation: u64,
    minted_at: i64,
    value: Arc<Minted>,
}

impl Entry {
    fn is_for(&self, k: &Key<'_>) -> bool {
        *self.session_id == *k.session_id
            && self.session_refreshed == k.session_refreshed
            && *self.route == *k.route
            && *self.host == *k.host
            && self.generation == k.generation
    }
}

#[derive(Default)]
struct Cache {
    hasher: std::collections::hash_map::RandomState,
    entries: HashMap<u64, Entry>,
    hits: u64,
    misses: u64,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The assertion for `key`: the cached one while it is fresh, else the one
/// `mint` makes (which is then cached).
pub fn get_or_mint<E>(
    key: Key<'_>,
    now: i64,
    mint: impl FnOnce() -> Result<(HeaderValue, AssertionClaims), E>,
) -> Result<Arc<Minted>, E> {
    let hash = CACHE.with_borrow_mut(|c| {
        let hash = c.hasher.hash_one(key);
        let fresh = c
            .entries
            .get(&hash)
            .filter(|e| e.is_for(&key) && now >= e.minted_at && now - e.minted_at < REUSE_SECS);
        match fresh {
            Some(e) => {
                let v = e.value.clone();
                c.hits += 1;
                Err(v)
            }
            None => {
                c.misses += 1;
                Ok(hash)
            }
        }
    });
    let hash = match hash {
        Ok(h) => h,
        Err(hit) => return Ok(hit),
    };
    let (token, claims) = mint()?;
    let value = Arc::new(Minted { token, claims });
    CACHE.with_borrow_mut(|c| {
        if c.entries.len() >= CAPACITY && !c.entries.contains_key(&hash) {
            c.entries
                .retain(|_, e| now - e.minted_at < ASSERTION_TTL_SECS.min(REUSE_SECS));
            if c.entries.len() >= CAPACITY {
                c.entries.clear();
            }
        }
        c.entries.insert(
            hash,
            Entry {
                session_id: key.session_id.into(),
                session_refreshed: key.session_refreshed,
                route: key.route.into(),
                host: key.host.into(),
                generation: key.generation,
                minted_at: now,
                value: value.clone(),
            },
        );
    });
    Ok(value)
}

/// This thread's (hits, misses) so far.
pub fn stats() -> (u64, u64) {
    CACHE.with_borrow(|c| (c.hits, c.misses))
}

/// Entries held by this thread.
pub fn len() -> usize {
    CACHE.with_borrow(|c| c.entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IssuerFormat;
    use crate::identity::jwt::Identity;

    fn claims(now: i64) -> AssertionClaims {
        AssertionClaims::new(
            &Identity::default(),
            "a.example.com",
            IssuerFormat::default(),
            now,
            format!("jti-{now}"),
        )
    }

    fn key<'a>(sid: &'a str, route: &'a str) -> Key<'a> {
        Key {
            session_id: sid,
            session_refreshed: 0,
            route,
            host: "a.example.com",
            generation: 1,
        }
    }

    fn mint_at(now: i64) -> Result<(HeaderValue, AssertionClaims), ()> {
        Ok((HeaderValue::from_static("token"), claims(now)))
    }

    #[test]
    fn reused_for_the_same_key_until_stale_and_never_across_keys() {
        let a = get_or_mint(key("s1", "r1"), 1000, || mint_at(1000)).unwrap();
        let again = get_or_mint(key("s1", "r1"), 1000 + REUSE_SECS - 1, || mint_at(0)).unwrap();
        assert_eq!(again.claims.jti, a.claims.jti, "reused while fresh");
        let stale = get_or_mint(key("s1", "r1"), 1000 + REUSE_SECS, || mint_at(1060)).unwrap();
        assert_eq!(stale.claims.iat, 1060, "re-minted when stale");
        for other in [
            key("s2", "r1"),
            key("s1", "r2"),
            Key {
                host: "b.example.com",
                ..key("s1", "r1")
            },
            Key {
                generation: 2,
                ..key("s1", "r1")
            },
            Key {
                session_refreshed: 5,
                ..key("s1", "r1")
            },
        ] {
            let m = get_or_mint(other, 1061, || mint_at(1061)).unwrap();
            assert_eq!(m.claims.iat, 1061, "{other:?} is minted anew");
        }
        // A clock that went back never reuses.
        let back = get_or_mint(key("s1", "r1"), 900, || mint_at(900)).unwrap();
        assert_eq!(back.claims.iat, 900);
        // A failing mint is passed on and caches nothing.
        assert!(
            get_or_mint(key("s9", "r1"), 1000, || Err::<(HeaderValue, _), _>(
                "no key"
            ))
            .is_err()
        );
    }

    #[test]
    fn bounded_per_thread() {
        std::thread::spawn(|| {
            for i in 0..(CAPACITY + 10) {
                let sid = format!("s{i}");
                get_or_mint(key(&sid, "r"), 0, || mint_at(0)).unwrap();
            }
            assert!(len() <= CAPACITY, "{}", len());
            let sid = format!("s{}", CAPACITY + 9);
            let before = stats();
            get_or_mint(key(&sid, "r"), 1, || mint_at(1)).unwrap();
            assert_eq!(stats().0, before.0 + 1, "the newest entry is still there");
        })
        .join()
        .unwrap();
    }
}

//! Revoked sessions and users, kept in a bounded store.
//!
//! Sessions are stateless sealed cookies, so a copy of a cookie taken before
//! sign-out stays well-formed; this table is what makes it worthless. It
//! holds two kinds of entries:
//!
//! - a **session entry** (`<sid>: "<exp> <user> <iat>"`): one signed-out
//!   session, kept until the session itself would have expired. `<user>` is
//!   [`user_key`] of its subject; entries written before users were recorded
//!   (`<sid>: "<exp>"`) are still read;
//! - a **user entry** (`u.<user>: "<not-before> <until>"`): every session of
//!   that user (by subject or email) issued before `not-before` is refused,
//!   until `until`, when all of them have expired.
//!
//! The store is bounded: [`Table::size`] is what the entries weigh in a
//! ConfigMap (keys plus values, as the API server counts its 1 MiB). When a
//! write would go over the limit, [`Table::compact`] replaces the session
//! entries of the users with the most of them by one user entry each, until
//! the table is at half the limit. That keeps every sign-out (it fails
//! closed: the user's other sessions issued before the compaction are
//! refused too, and they sign in again) and needs no second object to keep
//! consistent.
//!
//! The request path only reads the table (one atomic load). A replica writes
//! only what it revoked itself ([`Revocations::take_pending`]) and deletes
//! only what is expired or covered, so replicas that watch one object
//! converge without writing back what another deleted.

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of a user entry's key.
const USER_PREFIX: &str = "u.";

/// Default limit of the store's data, in bytes: below the ConfigMap's 1 MiB,
/// with room for the object's metadata (its field manager lists every key).
pub const DEFAULT_MAX_BYTES: usize = 640 * 1024;

/// The share of the limit at which the store is "near the limit" (percent).
pub const NEAR_LIMIT_PERCENT: usize = 80;

/// The key of a user in the store: the first 16 hex digits of the SHA-256 of
/// the subject or email (fixed size, a valid ConfigMap key, no address kept
/// in plain text).
pub fn user_key(user: &str) -> String {
    hex::encode(&Sha256::digest(user.as_bytes())[..8])
}

/// One signed-out session.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SessionEntry {
    exp: i64,
    /// [`user_key`] of the session's subject (none in the old format).
    user: Option<String>,
    /// When the session was issued (0 when unknown).
    iat: i64,
}

/// Every session of one user issued before `not_before`, until `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserEntry {
    pub not_before: i64,
    pub until: i64,
}

/// A revocation table: what a store holds, decoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    sessions: HashMap<String, SessionEntry>,
    users: HashMap<String, UserEntry>,
}

/// What a compaction did: the users whose session entries became a user
/// entry, and how many entries it removed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Compaction {
    pub users: usize,
    pub removed: usize,
}

impl Table {
    /// Reads a store's data; entries it cannot read are skipped. A user
    /// entry without `until` lasts `lifetime` seconds past its not-before.
    pub fn decode(data: &BTreeMap<String, String>, lifetime: i64) -> Table {
        let mut t = Table::default();
        for (k, v) in data {
            match parse_entry(k, v, lifetime) {
                Some(Parsed::User(user, e)) => t.add_user(user, e),
                Some(Parsed::Session(e)) => t.add_session(k, e),
                None => {}
            }
        }
        t
    }

    /// The store's data for this table.
    pub fn encode(&self) -> BTreeMap<String, String> {
        let sessions = self
            .sessions
            .iter()
            .map(|(k, e)| (k.clone(), session_value(e)));
        let users = self.users.iter().map(|(k, u)| {
            (
                format!("{USER_PREFIX}{k}"),
                format!("{} {}", u.not_before, u.until),
            )
        });
        sessions.chain(users).collect()
    }

    /// Bytes of the encoded data (keys plus values, as the API server
    /// counts a ConfigMap's size).
    pub fn size(&self) -> usize {
        let s: usize = self
            .sessions
            .iter()
            .map(|(k, e)| k.len() + session_value(e).len())
            .sum();
        let u: usize = self
            .users
            .iter()
            .map(|(k, u)| k.len() + user_entry_size(u))
            .sum();
        s + u
    }

    /// Session entries held.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// User entries held.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.users.is_empty()
    }

    /// The user entry of `user` (a subject or an email), if any.
    pub fn user(&self, user: &str) -> Option<UserEntry> {
        self.users.get(&user_key(user)).copied()
    }

    /// True if a session `sid` of `sub`/`email` issued at `iat` is refused.
    pub fn refuses(&self, sid: &str, sub: &str, email: &str, iat: i64) -> bool {
        if self.sessions.contains_key(sid) {
            return true;
        }
        if self.users.is_empty() {
            return false;
        }
        let before = |u: &str| {
            self.users
                .get(&user_key(u))
                .is_some_and(|e| iat < e.not_before)
        };
        before(sub) || (!email.is_empty() && before(email))
    }

    fn add_session(&mut self, sid: &str, e: SessionEntry) {
        match self.sessions.get_mut(sid) {
            Some(have) => {
                have.exp = have.exp.max(e.exp);
                have.iat = have.iat.max(e.iat);
                if have.user.is_none() {
                    have.user = e.user;
                }
            }
            None => {
                self.sessions.insert(sid.to_string(), e);
            }
        }
    }

    fn add_user(&mut self, key: &str, e: UserEntry) {
        let have = self.users.entry(key.to_string()).or_insert(e);
        have.not_before = have.not_before.max(e.not_before);
        have.until = have.until.max(e.until);
    }

    /// Takes in `other` (the later not-before and expiry of each entry win);
    /// returns how many entries were new.
    pub fn absorb(&mut self, other: &Table) -> usize {
        let new = other
            .sessions
            .keys()
            .filter(|k| !self.sessions.contains_key(*k))
            .count()
            + other
                .users
                .iter()
                .filter(|(k, u)| self.users.get(*k) != Some(u))
                .count();
        for (k, e) in &other.sessions {
            self.add_session(k, e.clone());
        }
        for (k, u) in &other.users {
            self.add_user(k, *u);
        }
        new
    }

    /// Drops what expired by `now` and the session entries a user entry covers.
    pub fn normalize(&mut self, now: i64) {
        self.users.retain(|_, u| u.until > now);
        let users = &self.users;
        self.sessions.retain(|_, e| {
            e.exp > now
                && !e
                    .user
                    .as_ref()
                    .and_then(|u| users.get(u))
                    .is_some_and(|u| e.iat < u.not_before && e.exp <= u.until)
        });
    }

    /// While the table weighs more than `target` bytes, replaces the session
    /// entries of the user with the most of them by a user entry refusing
    /// every session of that user issued up to `now`.
    pub fn compact(&mut self, target: usize, now: i64) -> Compaction {
        let mut size = self.size();
        let mut done = Compaction::default();
        if size <= target {
            return done;
        }
        let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
        for (sid, e) in &self.sessions {
            if let Some(u) = &e.user {
                by_user.entry(u.clone()).or_default().push(sid.clone());
            }
        }
        let mut users: Vec<(String, Vec<String>)> = by_user.into_iter().collect();
        users.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        for (user, sids) in users {
            if size <= target {
                break;
            }
            let mut until = now;
            for sid in &sids {
                if let Some(e) = self.sessions.remove(sid) {
                    size -= sid.len() + session_value(&e).len();
                    until = until.max(e.exp);
                }
            }
            let had = self
                .users
                .get(&user)
                .map(|u| user_entry_size(u) + user.len());
            size -= had.unwrap_or(0);
            self.add_user(
                &user,
                UserEntry {
                    not_before: now + 1,
                    until,
                },
            );
            size += user.len() + self.users.get(&user).map(user_entry_size).unwrap_or(0);
            done.users += 1;
            done.removed += sids.len();
        }
        done
    }

    /// The changes that turn `from` into `to`: new or changed values, and
    /// `None` for keys to delete.
    pub fn diff(
        from: &BTreeMap<String, String>,
        to: &BTreeMap<String, String>,
    ) -> BTreeMap<String, Option<String>> {
        let set = to
            .iter()
            .filter(|(k, v)| from.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), Some(v.clone())));
        let delete = from
            .keys()
            .filter(|k| !to.contains_key(*k))
            .map(|k| (k.clone(), None));
        set.chain(delete).collect()
    }
}

/// One entry of a store's data, read.
enum Parsed<'a> {
    User(&'a str, UserEntry),
    Session(SessionEntry),
}

/// Reads the entry `k: v`; `None` when it is not one this version knows.
fn parse_entry<'a>(k: &'a str, v: &str, lifetime: i64) -> Option<Parsed<'a>> {
    let mut words = v.split_whitespace();
    let first = words.next()?.parse::<i64>().ok()?;
    if let Some(user) = k.strip_prefix(USER_PREFIX) {
        let until = words.next().and_then(|w| w.parse().ok());
        return Some(Parsed::User(
            user,
            UserEntry {
                not_before: first,
                until: until.unwrap_or(first + lifetime),
            },
        ));
    }
    let user = words.next().filter(|u| *u != "-").map(str::to_string);
    let iat = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    Some(Parsed::Session(SessionEntry {
        exp: first,
        user,
        iat,
    }))
}

fn session_value(e: &SessionEntry) -> String {
    match &e.user {
        Some(u) => format!("{} {u} {}", e.exp, e.iat),
        None => e.exp.to_string(),
    }
}

/// Bytes of a user entry without its key's user part.
fn user_entry_size(u: &UserEntry) -> usize {
    USER_PREFIX.len() + format!("{} {}", u.not_before, u.until).len()
}

/// What a store should become: the remote data with this replica's pending
/// revocations added, expired and covered entries dropped, compacted when
/// over `max` bytes.
#[derive(Debug, Default)]
pub struct Plan {
    /// The changes to write (empty: nothing to write).
    pub changes: BTreeMap<String, Option<String>>,
    /// The store's size once written.
    pub size: usize,
    pub compaction: Compaction,
}

/// Plans the next write of a store holding `remote`.
pub fn plan(
    remote: &BTreeMap<String, String>,
    pending: &Table,
    now: i64,
    lifetime: i64,
    max: usize,
) -> Plan {
    let mut desired = Table::decode(remote, lifetime);
    desired.absorb(pending);
    desired.normalize(now);
    let compaction = if desired.size() > max {
        desired.compact(max / 2, now)
    } else {
        Compaction::default()
    };
    let data = desired.encode();
    // Entries of the store this version cannot read are left alone.
    let readable: BTreeMap<String, String> = remote
        .iter()
        .filter(|(k, v)| parse_entry(k, v, 0).is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Plan {
        changes: Table::diff(&readable, &data),
        size: desired.size(),
        compaction,
    }
}

/// Bytes of a store's data (keys plus values, as the API server counts a
/// ConfigMap's size).
pub fn data_size(data: &BTreeMap<String, String>) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// The changes that add `entry` (keys and values as [`user_entry`] and
/// [`session_entry`] make them) to a store holding `current`, keeping the
/// later cutoff and expiry where the key is already there.
pub fn entry_changes(
    current: &BTreeMap<String, String>,
    entry: &BTreeMap<String, String>,
) -> BTreeMap<String, Option<String>> {
    let mine: BTreeMap<String, String> = current
        .iter()
        .filter(|(k, _)| entry.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut table = Table::decode(&mine, 0);
    table.absorb(&Table::decode(entry, 0));
    Table::diff(&mine, &table.encode())
}

/// Counters of a store, for `/metrics`.
#[derive(Default)]
pub struct StoreStats {
    /// Bytes of the store's data after the last read or write.
    pub bytes: AtomicU64,
    /// The limit.
    pub max_bytes: AtomicU64,
    /// Writes made to the store, and those refused.
    pub writes: AtomicU64,
    pub write_failures: AtomicU64,
    /// Compactions made.
    pub compactions: AtomicU64,
}

/// The revocations a process enforces, and what it revoked that the shared
/// store does not hold yet.
#[derive(Default)]
pub struct Revocations {
    table: ArcSwap<Table>,
    pending: Mutex<Table>,
    /// Bumped on every local revocation, so a syncing task can wait for news.
    changed: tokio::sync::Notify,
    pub stats: StoreStats,
}

impl Revocations {
    /// True if `session` is refused: its id was revoked, or its user's
    /// sessions issued before it were.
    pub fn refuses(&self, session: &crate::identity::session::Session) -> bool {
        self.table
            .load()
            .refuses(&session.id, &session.sub, &session.email, session.iat)
    }

    /// True if the session id `sid` was revoked.
    pub fn is_revoked(&self, sid: &str) -> bool {
        self.table.load().sessions.contains_key(sid)
    }

    /// Revokes a signed-out `session` until it expires.
    pub fn revoke(&self, session: &crate::identity::session::Session, now: i64) {
        let entry = SessionEntry {
            exp: session.exp,
            user: Some(user_key(&session.sub)),
            iat: session.iat,
        };
        self.add(now, |t| t.add_session(&session.id, entry.clone()));
    }

    /// Refuses every session of `user` (subject or email) issued up to
    /// `now`, for `lifetime` seconds (the longest a session lives).
    pub fn revoke_user(&self, user: &str, now: i64, lifetime: i64) -> UserEntry {
        let entry = user_revocation(now, lifetime);
        self.add(now, |t| t.add_user(&user_key(user), entry));
        entry
    }

    fn add(&self, now: i64, f: impl Fn(&mut Table)) {
        if let Ok(mut p) = self.pending.lock() {
            f(&mut p);
        }
        self.table.rcu(|current| {
            let mut next = Table::clone(current);
            next.normalize(now);
            f(&mut next);
            next
        });
        self.changed.notify_one();
    }

    /// Takes in a store's entries (another replica's, or an operator's);
    /// returns how many were new.
    pub fn merge(&self, remote: &Table, now: i64) -> usize {
        let mut added = 0;
        self.table.rcu(|current| {
            let mut next = Table::clone(current);
            added = next.absorb(remote);
            next.normalize(now);
            next
        });
        added
    }

    /// What this process revoked since the last successful write.
    pub fn take_pending(&self) -> Table {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    /// Puts back what a failed write did not store.
    pub fn restore_pending(&self, t: &Table) {
        if let Ok(mut p) = self.pending.lock() {
            p.absorb(t);
        }
    }

    /// The table enforced now.
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Number of session entries held.
    pub fn len(&self) -> usize {
        self.table.load().sessions.len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.table.load().is_empty()
    }

    /// Waits until this process revokes a session.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Bumps a counter of [`StoreStats`].
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The user entry refusing sessions issued up to `now` (a session issued in
/// the same second included), kept `lifetime` seconds.
pub fn user_revocation(now: i64, lifetime: i64) -> UserEntry {
    UserEntry {
        not_before: now + 1,
        until: now + 1 + lifetime.max(0),
    }
}

/// The store entry `(key, value)` of a user revocation.
pub fn user_entry(user: &str, e: UserEntry) -> (String, String) {
    (
        format!("{USER_PREFIX}{}", user_key(user)),
        format!("{} {}", e.not_before, e.until),
    )
}

/// The store entry `(key, value)` revoking the session `sid` of `user`
/// until `exp` (its issue time unknown).
pub fn session_entry(sid: &str, user: &str, exp: i64) -> (String, String) {
    let e = SessionEntry {
        exp,
        user: Some(user_key(user)),
        iat: 0,
    };
    (sid.to_string(), session_value(&e))
}

/// What an operator revokes (`jetbridge revoke`).
#[derive(Clone, Debug)]
pub struct Revoke {
    /// The user: a subject or an email.
    pub user: String,
    /// One session of the user only, by its id.
    pub session: Option<String>,
    /// Why (written into the Event and the log line).
    pub reason: Option<String>,
}

impl Revoke {
    /// The store entry: the user's not-before (or the session's entry),
    /// kept `lifetime` seconds past `now`.
    pub fn entry(&self, now: i64, lifetime: i64) -> BTreeMap<String, String> {
        let (k, v) = match &self.session {
            Some(sid) => session_entry(sid, &self.user, now + lifetime),
            None => user_entry(&self.user, user_revocation(now, lifetime)),
        };
        BTreeMap::from([(k, v)])
    }

    /// The audit line: what was revoked, by `who`, and why.
    pub fn note(&self, who: &str) -> String {
        let scope = match &self.session {
            Some(sid) => format!("session {sid} of user {}", self.user),
            None => format!("every session of user {} issued until now", self.user),
        };
        match &self.reason {
            Some(r) => format!("{scope} revoked by {who}: {r}"),
            None => format!("{scope} revoked by {who}"),
        }
    }
}

/// A shared handle.
pub type SharedRevocations = Arc<Revocations>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::session::test_session;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_signed_out_session_is_refused_until_it_expires_and_other_sessions_are_not() {
        let r = Revocations::default();
        let s = test_session(1000);
        r.revoke(&s, 1000);
        assert!(r.refuses(&s) && r.is_revoked("sid-1"));
        let other = crate::identity::session::Session {
            id: "sid-2".into(),
            ..s.clone()
        };
        assert!(!r.refuses(&other), "the user's other session still works");
        let mut t = Table::clone(&r.table());
        t.normalize(s.exp);
        assert!(t.is_empty(), "expired with the session");
    }

    #[test]
    fn a_user_revocation_refuses_every_earlier_session_by_subject_or_email_only() {
        let r = Revocations::default();
        let mut s = test_session(1000);
        r.revoke_user("u1@example.com", 1000, 3600);
        assert!(r.refuses(&s), "by email");
        s.email = "other@example.com".into();
        assert!(!r.refuses(&s), "the email names the user");
        let r = Revocations::default();
        r.revoke_user("u1", 1000, 3600);
        assert!(r.refuses(&s), "by subject, issued in the same second");
        s.iat = 1001;
        assert!(!r.refuses(&s), "a session issued after it works");
        s.iat = 0;
        s.sub = "u2".into();
        assert!(!r.refuses(&s), "another user's works");
    }

    #[test]
    fn the_old_format_is_read_and_written_back_unchanged() {
        let remote = data(&[("oldsid", "5000"), ("junk", "x")]);
        let t = Table::decode(&remote, 3600);
        assert!(t.refuses("oldsid", "anyone", "", 0));
        assert_eq!(t.sessions(), 1);
        let p = plan(&remote, &Table::default(), 1000, 3600, DEFAULT_MAX_BYTES);
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        let p = plan(&remote, &Table::default(), 5000, 3600, DEFAULT_MAX_BYTES);
        assert_eq!(
            p.changes,
            BTreeMap::from([("oldsid".into(), None)]),
            "expired"
        );
    }

    #[test]
    fn a_plan_writes_pending_entries_once_and_deletes_only_expired_or_covered_ones() {
        let r = Revocations::default();
        let s = test_session(1000);
        r.revoke(&s, 1000);
        let pending = r.take_pending();
        let p = plan(&BTreeMap::new(), &pending, 1000, 3600, DEFAULT_MAX_BYTES);
        assert_eq!(p.changes.len(), 1);
        let written: BTreeMap<String, String> = p
            .changes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap()))
            .collect();
        // Written: the next plan of any replica changes nothing.
        assert!(
            plan(&written, &Table::default(), 1001, 3600, 1 << 20)
                .changes
                .is_empty()
        );
        // A user entry covers it: the session entry goes.
        let (k, v) = user_entry("u1", user_revocation(1500, 3600));
        let mut remote = written.clone();
        remote.insert(k.clone(), v);
        let p = plan(&remote, &Table::default(), 1501, 3600, 1 << 20);
        assert_eq!(p.changes, BTreeMap::from([("sid-1".into(), None)]));
    }

    #[test]
    fn over_the_limit_the_users_with_most_entries_become_one_entry_and_no_sign_out_is_lost() {
        let now = 10_000;
        let mut pending = Table::default();
        let mut signed_out = Vec::new();
        for u in 0..20 {
            for i in 0..(if u < 5 { 50 } else { 2 }) {
                let sid = format!("s{u}x{i:03}-{}", "x".repeat(14));
                pending.add_session(
                    &sid,
                    SessionEntry {
                        exp: now + 3600,
                        user: Some(user_key(&format!("user{u}"))),
                        iat: now - 10,
                    },
                );
                signed_out.push((sid, format!("user{u}")));
            }
        }
        let max = pending.size() / 2;
        let p = plan(&BTreeMap::new(), &pending, now, 3600, max);
        assert!(p.size <= max / 2, "{} > {}", p.size, max / 2);
        assert!(
            p.compaction.users >= 1 && p.compaction.users <= 5,
            "{:?}",
            p.compaction
        );
        let stored: BTreeMap<String, String> = p
            .changes
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        let t = Table::decode(&stored, 3600);
        for (sid, user) in &signed_out {
            assert!(t.refuses(sid, user, "", now - 10), "{sid} of {user} lost");
        }
        // The next plan at the same size writes nothing: no write loop.
        assert!(
            plan(&stored, &Table::default(), now + 1, 3600, max)
                .changes
                .is_empty()
        );
    }

    #[test]
    fn merging_is_idempotent_and_keeps_the_later_cutoff() {
        let r = Revocations::default();
        let a = Table::decode(&data(&[("u.abc", "100 200"), ("s1", "300 abc 50")]), 0);
        let b = Table::decode(&data(&[("u.abc", "150 250")]), 0);
        assert_eq!(r.merge(&a, 10), 2);
        assert_eq!(r.merge(&a, 10), 0);
        assert_eq!(r.merge(&b, 10), 1);
        assert_eq!(
            r.table().users.get("abc"),
            Some(&UserEntry {
                not_before: 150,
                until: 250
            })
        );
    }
}

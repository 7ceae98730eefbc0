//! Upstream health as the request path reads it, shared by every worker:
//! targets failing their active checks, targets ejected by outlier
//! detection (`outlier_detection`: targets that fail requests in a row) and
//! circuit breakers (`circuit_breaker_thresholds`: requests in flight per
//! route). Read without a lock; the checker (`health`) and the send stage
//! write it. It imports no other proxy module but the body's progress trait.

use crate::model::{OutlierDetection, Route};
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// A route's target: (route id, target address).
pub(crate) type Target = (String, String);

/// Upstream health shared by every worker.
#[derive(Default)]
pub struct HealthBoard {
    /// Targets failing their route's active health checks.
    down: ArcSwap<HashSet<Target>>,
    /// Targets ejected by outlier detection: until when, and how many times
    /// in a row they were ejected.
    ejected: ArcSwap<HashMap<Target, (std::time::Instant, u32)>>,
    /// Failures in a row per target (routes with outlier detection only).
    streaks: ArcSwap<HashMap<Target, Arc<Streak>>>,
    /// Requests in flight per route (routes with a circuit breaker only).
    active: ArcSwap<HashMap<String, Arc<AtomicUsize>>>,
}

/// Failures in a row of one target.
#[derive(Default)]
struct Streak {
    any_5xx: AtomicU32,
    gateway: AtomicU32,
}

/// One request admitted by a route's circuit breaker, counted until dropped.
pub struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl super::body::Progress for Admitted {
    fn sent(&self) {}
}

impl HealthBoard {
    /// Whether `authority` fails one of `route`'s health checks or is ejected.
    pub fn is_down(&self, route: &str, authority: &str) -> bool {
        let down = self.down.load();
        let ejected = self.ejected.load();
        if down.is_empty() && ejected.is_empty() {
            return false;
        }
        let key = (route.to_string(), authority.to_string());
        down.contains(&key)
            || ejected
                .get(&key)
                .is_some_and(|(until, _)| std::time::Instant::now() < *until)
    }

    /// True when no target fails a check or is ejected.
    pub fn is_empty(&self) -> bool {
        self.down.load().is_empty() && self.ejected.load().is_empty()
    }

    /// How many targets fail their checks now.
    pub fn down_count(&self) -> usize {
        self.down.load().len()
    }

    /// A request to `route` (whose breaker allows `max` in flight), or
    /// `None` when the breaker is open.
    pub fn admit(&self, route: &str, max: u32) -> Option<Admitted> {
        let counter = match self.active.load().get(route) {
            Some(c) => c.clone(),
            None => {
                self.active.rcu(|m| {
                    let mut m = HashMap::clone(m);
                    m.entry(route.to_string()).or_default();
                    m
                });
                self.active.load().get(route).cloned()?
            }
        };
        if counter.fetch_add(1, Ordering::AcqRel) >= max as usize {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Admitted(counter))
    }

    /// Records how a request to `authority` on `route` ended (`None`: no
    /// answer, i.e. a failed connection or a timeout) for the route's
    /// outlier detection; ejects the target when its failures in a row
    /// reach a threshold.
    pub fn outcome(&self, route: &Route, authority: &str, status: Option<u16>) {
        let Some(o) = &route.outlier_detection else {
            return;
        };
        let key = (route.id.clone(), authority.to_string());
        let streak = match self.streaks.load().get(&key) {
            Some(s) => s.clone(),
            None => {
                self.streaks.rcu(|m| {
                    let mut m = HashMap::clone(m);
                    m.entry(key.clone()).or_default();
                    m
                });
                let Some(s) = self.streaks.load().get(&key).cloned() else {
                    return;
                };
                s
            }
        };
        let failed = status.is_none_or(|s| s >= 500);
        let gateway = status.is_none_or(|s| matches!(s, 502..=504));
        if !failed {
            if streak.any_5xx.load(Ordering::Relaxed) != 0 {
                streak.any_5xx.store(0, Ordering::Relaxed);
                streak.gateway.store(0, Ordering::Relaxed);
            }
            return;
        }
        let any = streak.any_5xx.fetch_add(1, Ordering::AcqRel) + 1;
        let gw = match gateway {
            true => streak.gateway.fetch_add(1, Ordering::AcqRel) + 1,
            false => {
                streak.gateway.store(0, Ordering::Relaxed);
                0
            }
        };
        if o.consecutive_5xx.is_some_and(|t| any >= t)
            || o.consecutive_gateway_failure.is_some_and(|t| gw >= t)
        {
            streak.any_5xx.store(0, Ordering::Relaxed);
            streak.gateway.store(0, Ordering::Relaxed);
            self.eject(route, key, o, any);
        }
    }

    fn eject(&self, route: &Route, key: Target, o: &OutlierDetection, failures: u32) {
        let now = std::time::Instant::now();
        let current = self.ejected.load();
        let ejected_now = current
            .iter()
            .filter(|((r, a), (until, _))| *r == route.id && *a != key.1 && now < *until)
            .count();
        let allowed = (route.upstreams.len() * o.max_ejection_percent as usize / 100).max(1);
        if ejected_now >= allowed {
            return;
        }
        // Ejected again soon after the last one ended: for longer.
        let times = match current.get(&key) {
            Some((until, times)) if now < *until + o.max_ejection_time => times + 1,
            _ => 1,
        };
        let time = (o.base_ejection_time * times).min(o.max_ejection_time);
        tracing::warn!(route = %route.id, upstream = %key.1, failures, ejected_for = ?time, "upstream ejected after failing requests in a row; tried last meanwhile");
        self.ejected.rcu(|m| {
            let mut m: HashMap<Target, (std::time::Instant, u32)> = m
                .iter()
                .filter(|(_, (until, _))| now < *until + o.max_ejection_time)
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            m.insert(key.clone(), (now + time, times));
            m
        });
    }

    /// Replaces the set of targets failing their active checks (when it
    /// changed).
    pub(crate) fn set_down(&self, down: HashSet<Target>) {
        if **self.down.load() != down {
            self.down.store(Arc::new(down));
        }
    }
}

//! Upstream health, shared by every worker: active health checks (Pomerium's
//! `health_checks`: one task probes every target of every route that has
//! checks, on each check's interval), passive ejection (`outlier_detection`:
//! targets that fail requests in a row) and circuit breakers
//! (`circuit_breaker_thresholds`: requests in flight per route). The request
//! path reads the board without a lock and tries failing or ejected targets
//! last (so a route whose targets all fail still tries them, as Envoy's
//! panic mode does).

use super::body::empty;
use super::upstream::Upstreams;
use crate::model::{HealthCheck, OutlierDetection, Probe, Route, Upstream};
use crate::snapshot::SnapshotReader;
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A route's target: (route id, target address).
type Target = (String, String);

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
}

/// How often the checker looks at the configuration for checks that are due.
const TICK: Duration = Duration::from_millis(200);
/// The most bytes a TCP probe reads looking for its patterns.
const MAX_TCP_READ: usize = 64 * 1024;

/// One check of one target of one route.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    route: String,
    authority: String,
    check: HealthCheck,
}

#[derive(Default)]
struct State {
    next: Option<Instant>,
    passed: u32,
    failed: u32,
    down: bool,
    running: bool,
}

/// Probes the targets of every route with `health_checks` until `shutdown`,
/// keeping `board` current.
pub async fn run(reader: SnapshotReader, board: Arc<HealthBoard>, shutdown: CancellationToken) {
    let clients = Upstreams::new();
    let mut states: HashMap<Key, State> = HashMap::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Key, Result<(), String>)>();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some((key, outcome)) = rx.recv() => {
                let Some(st) = states.get_mut(&key) else { continue };
                st.running = false;
                st.next = Some(Instant::now() + key.check.interval);
                record(&key, st, outcome);
                publish(&board, &states);
                continue;
            }
            _ = tick.tick() => {}
        }
        let Some(snapshot) = reader.load() else {
            continue;
        };
        let mut live = HashSet::new();
        for route in snapshot
            .routes
            .iter()
            .filter(|r| !r.health_checks.is_empty())
        {
            for check in &route.health_checks {
                for up in &route.upstreams {
                    let key = Key {
                        route: route.id.clone(),
                        authority: up.authority.clone(),
                        check: check.clone(),
                    };
                    live.insert(key.clone());
                    let st = states.entry(key.clone()).or_default();
                    let now = Instant::now();
                    if st.running || st.next.is_some_and(|t| now < t) {
                        continue;
                    }
                    st.running = true;
                    let client = clients.client(up, &route.upstream_tls).ok();
                    let (tx, up) = (tx.clone(), up.clone());
                    tokio::spawn(async move {
                        let outcome = probe(client, &up, &key.check).await;
                        let _ = tx.send((key, outcome));
                    });
                }
            }
        }
        let before = states.len();
        states.retain(|k, _| live.contains(k));
        if states.len() != before {
            publish(&board, &states);
        }
    }
}

fn record(key: &Key, st: &mut State, outcome: Result<(), String>) {
    match outcome {
        Ok(()) => {
            st.passed += 1;
            st.failed = 0;
            if st.down && st.passed >= key.check.healthy_threshold {
                st.down = false;
                tracing::info!(route = %key.route, upstream = %key.authority, "upstream passes its health check again");
            }
        }
        Err(why) => {
            st.failed += 1;
            st.passed = 0;
            if !st.down && st.failed >= key.check.unhealthy_threshold {
                st.down = true;
                tracing::warn!(route = %key.route, upstream = %key.authority, reason = %why, "upstream fails its health check; tried last until it passes");
            }
        }
    }
}

fn publish(board: &HealthBoard, states: &HashMap<Key, State>) {
    let down: HashSet<Target> = states
        .iter()
        .filter(|(_, s)| s.down)
        .map(|(k, _)| (k.route.clone(), k.authority.clone()))
        .collect();
    if **board.down.load() != down {
        board.down.store(Arc::new(down));
    }
}

/// One probe of `up`; `Err` says why it failed.
async fn probe(
    client: Option<super::upstream::HttpClient>,
    up: &Upstream,
    check: &HealthCheck,
) -> Result<(), String> {
    let run = async {
        match &check.probe {
            Probe::Http {
                path,
                host,
                expected,
            } => {
                let client = client.ok_or("no client for this upstream's TLS settings")?;
                let scheme = if up.scheme == "https" {
                    "https"
                } else {
                    "http"
                };
                let req = http::Request::get(format!("{scheme}://{}{path}", up.authority))
                    .header(http::header::HOST, host.as_deref().unwrap_or(&up.authority))
                    .header(http::header::USER_AGENT, "jetbridge-health-check")
                    .body(empty())
                    .map_err(|e| e.to_string())?;
                let status = client
                    .request(req)
                    .await
                    .map_err(|e| format!("request failed: {e}"))?
                    .status()
                    .as_u16();
                match expected.iter().any(|(s, e)| (*s..*e).contains(&status)) {
                    true => Ok(()),
                    false => Err(format!("HTTP {status}")),
                }
            }
            Probe::Tcp { send, receive } => {
                let mut s = tokio::net::TcpStream::connect(&up.authority)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                if !send.is_empty() {
                    s.write_all(send).await.map_err(|e| format!("send: {e}"))?;
                }
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !found_in_order(&got, receive) {
                    let n = s
                        .read(&mut buf)
                        .await
                        .map_err(|e| format!("receive: {e}"))?;
                    if n == 0 || got.len() > MAX_TCP_READ {
                        return Err("the expected bytes did not arrive".into());
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                Ok(())
            }
        }
    };
    match tokio::time::timeout(check.timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", check.timeout)),
    }
}

/// Whether every pattern occurs in `got`, each after the previous one.
fn found_in_order(got: &[u8], patterns: &[Vec<u8>]) -> bool {
    let mut rest = got;
    for p in patterns {
        match rest.windows(p.len().max(1)).position(|w| w == p.as_slice()) {
            Some(i) if !p.is_empty() => rest = &rest[i + p.len()..],
            Some(_) => {}
            None if p.is_empty() => {}
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_must_arrive_in_order() {
        let p = |s: &[&str]| s.iter().map(|x| x.as_bytes().to_vec()).collect::<Vec<_>>();
        assert!(found_in_order(b"+PONG\r\nok", &p(&["PONG", "ok"])));
        assert!(!found_in_order(b"ok +PONG", &p(&["PONG", "ok"])));
        assert!(found_in_order(b"", &p(&[])));
        assert!(!found_in_order(b"PON", &p(&["PONG"])));
    }
}

//! Active health checks (Pomerium's `health_checks`): one task probes every
//! target of every route that has checks, on each check's interval, and
//! publishes the failing ones on the [`HealthBoard`]. The request path
//! tries failing or ejected targets last (so a route whose targets all fail
//! still tries them, as Envoy's panic mode does).

use super::body::empty;
use super::health_board::HealthBoard;
use super::health_board::Target;
use super::upstream::Upstreams;
use crate::model::{HealthCheck, Probe, Upstream};
use crate::snapshot::SnapshotReader;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
                    let client = clients.client(up, &route.compiled.upstream_tls).ok();
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
    board.set_down(down);
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
                let scheme = up.scheme.wire();
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

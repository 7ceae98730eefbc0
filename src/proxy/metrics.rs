//! Prometheus metrics in the text exposition format: requests by route and
//! status, a latency histogram, upstream errors, config generation, reload
//! failures, certificate expiry.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket upper bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    inf: AtomicU64,
    sum_micros: AtomicU64,
}

/// Process-wide counters. Writes take a read lock plus an atomic add; the
/// write lock is taken only the first time a (route, status) pair appears.
#[derive(Default)]
pub struct Metrics {
    requests: RwLock<HashMap<String, HashMap<u16, AtomicU64>>>,
    upstream_errors: RwLock<HashMap<String, AtomicU64>>,
    latency: Histogram,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, route: &str, status: u16, elapsed: Duration) {
        let bumped = self
            .requests
            .read()
            .ok()
            .and_then(|m| {
                m.get(route)
                    .and_then(|by_status| by_status.get(&status))
                    .map(|c| c.fetch_add(1, Ordering::Relaxed))
            })
            .is_some();
        if !bumped && let Ok(mut m) = self.requests.write() {
            m.entry(route.to_string())
                .or_default()
                .entry(status)
                .or_default()
                .fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        match BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.latency.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.latency.inf.fetch_add(1, Ordering::Relaxed),
        };
        self.latency
            .sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Records an upstream failure on a route.
    pub fn upstream_error(&self, route: &str) {
        let bumped = self
            .upstream_errors
            .read()
            .ok()
            .and_then(|m| m.get(route).map(|c| c.fetch_add(1, Ordering::Relaxed)))
            .is_some();
        if !bumped && let Ok(mut m) = self.upstream_errors.write() {
            m.entry(route.to_string())
                .or_default()
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets the series of routes that are no longer configured (called
    /// with the serving snapshot's route ids when metrics are rendered).
    pub fn retain_routes(&self, keep: &std::collections::HashSet<&str>) {
        let special = |r: &str| matches!(r, "-" | "well-known" | "authenticate" | "pomerium");
        if let Ok(mut m) = self.requests.write() {
            m.retain(|route, _| special(route) || keep.contains(route.as_str()));
        }
        if let Ok(mut m) = self.upstream_errors.write() {
            m.retain(|route, _| keep.contains(route.as_str()));
        }
    }

    /// Renders all metrics.
    pub fn render(&self, g: &Gauges<'_>) -> String {
        let Gauges {
            generation,
            reload_failures,
            last_reload_ok,
            cert_expiry,
            routes,
            revoked_sessions,
        } = *g;
        let mut out = String::new();
        out.push_str("# HELP jetbridge_requests_total Requests handled, by route and status.\n# TYPE jetbridge_requests_total counter\n");
        if let Ok(m) = self.requests.read() {
            let mut rows: Vec<(&String, u16, u64)> = m
                .iter()
                .flat_map(|(route, by_status)| {
                    by_status
                        .iter()
                        .map(move |(status, c)| (route, *status, c.load(Ordering::Relaxed)))
                })
                .collect();
            rows.sort();
            for (route, status, count) in rows {
                let _ = writeln!(
                    out,
                    "jetbridge_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                    label(route)
                );
            }
        }
        out.push_str("# HELP jetbridge_request_duration_seconds Time from request to response headers.\n# TYPE jetbridge_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.latency.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "jetbridge_request_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += self.latency.inf.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "jetbridge_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "jetbridge_request_duration_seconds_sum {}",
            self.latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "jetbridge_request_duration_seconds_count {cumulative}");
        out.push_str("# HELP jetbridge_upstream_errors_total Upstream connection failures and timeouts, by route.\n# TYPE jetbridge_upstream_errors_total counter\n");
        if let Ok(m) = self.upstream_errors.read() {
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort_by(|a, b| a.0.cmp(b.0));
            for (route, c) in rows {
                let _ = writeln!(
                    out,
                    "jetbridge_upstream_errors_total{{route=\"{}\"}} {}",
                    label(route),
                    c.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP jetbridge_config_generation Generation of the serving snapshot.\n# TYPE jetbridge_config_generation gauge\njetbridge_config_generation {generation}"
        );
        let _ = writeln!(
            out,
            "# HELP jetbridge_config_reload_failures_total Rejected configuration reloads.\n# TYPE jetbridge_config_reload_failures_total counter\njetbridge_config_reload_failures_total {reload_failures}"
        );
        let _ = writeln!(
            out,
            "# HELP jetbridge_config_last_reload_successful 1 unless the latest reload was rejected (the running configuration is then older than its source).\n# TYPE jetbridge_config_last_reload_successful gauge\njetbridge_config_last_reload_successful {}",
            u8::from(last_reload_ok)
        );
        let _ = writeln!(
            out,
            "# HELP jetbridge_routes Routes in the serving snapshot.\n# TYPE jetbridge_routes gauge\njetbridge_routes {routes}"
        );
        let _ = writeln!(
            out,
            "# HELP jetbridge_revoked_sessions Signed-out sessions refused until they expire.\n# TYPE jetbridge_revoked_sessions gauge\njetbridge_revoked_sessions {revoked_sessions}"
        );
        out.push_str("# HELP jetbridge_certificate_expiry_timestamp_seconds Certificate notAfter, by first DNS name.\n# TYPE jetbridge_certificate_expiry_timestamp_seconds gauge\n");
        for (name, t) in cert_expiry {
            let _ = writeln!(
                out,
                "jetbridge_certificate_expiry_timestamp_seconds{{name=\"{}\"}} {t}",
                label(name)
            );
        }
        out
    }
}

/// The state-of-the-process values rendered next to the counters.
#[derive(Clone, Copy)]
pub struct Gauges<'a> {
    pub generation: u64,
    pub reload_failures: u64,
    pub last_reload_ok: bool,
    pub cert_expiry: &'a [(String, i64)],
    pub routes: usize,
    pub revoked_sessions: usize,
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

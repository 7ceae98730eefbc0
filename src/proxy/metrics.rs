//! Prometheus metrics in the text exposition format: requests by route and
//! status, a latency histogram, upstream errors, config generation, reload
//! failures, certificate expiry, identity-provider discovery, and
//! authorization decisions by route and the Policy that decided.

use super::client_addr::Refused;
use super::idp_board::IdpState;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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

/// Status codes counted separately per route; a route seeing more distinct
/// codes than this counts the rest under `status="other"`.
const STATUS_SLOTS: usize = 16;

/// One route's counters: lock-free slots of (status, count), and its
/// authorization decisions by the Policy that decided.
#[derive(Default)]
struct RouteCounters {
    statuses: [AtomicU32; STATUS_SLOTS],
    counts: [AtomicU64; STATUS_SLOTS],
    other: AtomicU64,
    upstream_errors: AtomicU64,
    decisions: ArcSwap<Decisions>,
}

impl RouteCounters {
    fn bump(&self, status: u16) {
        let status = u32::from(status);
        for (slot, count) in self.statuses.iter().zip(&self.counts) {
            match slot.compare_exchange(0, status, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {}
                Err(seen) if seen == status => {}
                Err(_) => continue,
            }
            count.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.other.fetch_add(1, Ordering::Relaxed);
    }

    fn rows(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        self.statuses
            .iter()
            .zip(&self.counts)
            .filter_map(|(s, c)| {
                let s = s.load(Ordering::Relaxed);
                let c = c.load(Ordering::Relaxed);
                (s != 0 && c != 0).then(|| (s.to_string(), c))
            })
            .chain(
                Some(self.other.load(Ordering::Relaxed))
                    .filter(|c| *c > 0)
                    .map(|c| ("other".to_string(), c)),
            )
    }
}

type Registry = HashMap<Box<str>, Arc<RouteCounters>>;

/// Allowed and denied decisions of one (route, Policy) pair.
type DecisionCounters = [AtomicU64; 2];
/// A route's decision counters by the Policy (`namespace/name`, or `-` for
/// rules the route sets itself and for no rule matching): bounded by the
/// configuration, never by users.
type Decisions = HashMap<Box<str>, Arc<DecisionCounters>>;

/// The entry `key` of a copy-on-write map, created on first use: read
/// without a lock, the map copied only when the key is new.
fn entry<V: Default>(map: &ArcSwap<HashMap<Box<str>, Arc<V>>>, key: &str) -> Arc<V> {
    if let Some(c) = map.load().get(key) {
        return c.clone();
    }
    let mut found = None;
    map.rcu(|m| {
        let mut m = HashMap::clone(m);
        let c = m.entry(key.into()).or_default().clone();
        found = Some(c);
        m
    });
    found.unwrap_or_default()
}

/// Process-wide counters. Recording a request takes no lock: the map of
/// routes is read through an `ArcSwap` and counted with atomic adds; it is
/// copied only when a route is seen for the first time, and pruned when
/// routes leave the configuration.
#[derive(Default)]
pub struct Metrics {
    routes: ArcSwap<Registry>,
    latency: Histogram,
    /// Connections closed for their PROXY header, by [`Refused::ALL`] index.
    proxy_protocol_refused: [AtomicU64; Refused::ALL.len()],
}

impl Metrics {
    /// The counters of `route`, created on first use.
    fn route(&self, route: &str) -> Arc<RouteCounters> {
        entry(&self.routes, route)
    }

    /// Records one finished request.
    pub fn observe(&self, route: &str, status: u16, elapsed: Duration) {
        match self.routes.load().get(route) {
            Some(c) => c.bump(status),
            None => self.route(route).bump(status),
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

    /// Records one authorization decision on `route` made by a rule of
    /// `policy` (`namespace/name`, or `-`).
    pub fn decision(&self, route: &str, policy: &str, allow: bool) {
        let slot = usize::from(!allow);
        entry(&self.route(route).decisions, policy)[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Records a connection closed for its PROXY protocol header.
    pub fn proxy_protocol_refused(&self, why: Refused) {
        if let Some(i) = Refused::ALL.iter().position(|r| *r == why) {
            self.proxy_protocol_refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `jetbridge_proxy_protocol_refused_total`, by reason.
    fn render_proxy_protocol(&self, out: &mut String) {
        out.push_str("# HELP jetbridge_proxy_protocol_refused_total Connections closed because they did not start with a valid PROXY protocol header (use_proxy_protocol), by reason.\n# TYPE jetbridge_proxy_protocol_refused_total counter\n");
        for (why, count) in Refused::ALL.iter().zip(&self.proxy_protocol_refused) {
            let _ = writeln!(
                out,
                "jetbridge_proxy_protocol_refused_total{{reason=\"{}\"}} {}",
                why.label(),
                count.load(Ordering::Relaxed)
            );
        }
    }

    /// Records an upstream failure on a route.
    pub fn upstream_error(&self, route: &str) {
        self.route(route)
            .upstream_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets the series of routes that are no longer configured (called
    /// with the serving snapshot's route ids when metrics are rendered).
    pub fn retain_routes(&self, keep: &std::collections::HashSet<&str>) {
        let special = |r: &str| matches!(r, "-" | "well-known" | "authenticate" | "pomerium");
        let stale = |m: &Registry| m.keys().any(|r| !special(r) && !keep.contains(&**r));
        if stale(&self.routes.load()) {
            self.routes.rcu(|m| {
                let mut m = Registry::clone(m);
                m.retain(|r, _| special(r) || keep.contains(&**r));
                m
            });
        }
    }

    /// Renders all metrics.
    pub fn render(&self, g: &Gauges<'_>) -> String {
        let mut out = String::new();
        let series = self.routes.load();
        let mut names: Vec<&str> = series.keys().map(|k| &**k).collect();
        names.sort();
        render_requests(&mut out, &series, &names);
        self.render_latency(&mut out);
        render_upstream_errors(&mut out, &series, &names);
        render_decisions(&mut out, &series, &names);
        self.render_proxy_protocol(&mut out);
        render_gauges(&mut out, g);
        render_idps(&mut out, g.idps);
        render_cert_expiry(&mut out, g.cert_expiry);
        render_trace_exports(&mut out);
        out
    }

    /// `jetbridge_request_duration_seconds`: the latency histogram.
    fn render_latency(&self, out: &mut String) {
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
    }
}

/// `jetbridge_requests_total`, by route and status.
fn render_requests(out: &mut String, series: &Registry, names: &[&str]) {
    out.push_str("# HELP jetbridge_requests_total Requests handled, by route and status.\n# TYPE jetbridge_requests_total counter\n");
    for route in names {
        let mut rows: Vec<(String, u64)> = series[*route].rows().collect();
        rows.sort();
        for (status, count) in rows {
            let _ = writeln!(
                out,
                "jetbridge_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                label(route)
            );
        }
    }
}

/// `jetbridge_policy_decisions_total`, by route, Policy and decision.
fn render_decisions(out: &mut String, series: &Registry, names: &[&str]) {
    out.push_str("# HELP jetbridge_policy_decisions_total Authorization decisions, by route, the Policy whose rule decided (- for the route's own rules or none) and decision.\n# TYPE jetbridge_policy_decisions_total counter\n");
    for route in names {
        let decisions = series[*route].decisions.load();
        let mut policies: Vec<(&str, &DecisionCounters)> =
            decisions.iter().map(|(p, c)| (&**p, &**c)).collect();
        policies.sort_by_key(|(p, _)| *p);
        for (policy, counters) in policies {
            for (slot, decision) in ["allow", "deny"].iter().enumerate() {
                let n = counters[slot].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "jetbridge_policy_decisions_total{{route=\"{}\",policy=\"{}\",decision=\"{decision}\"}} {n}",
                        label(route),
                        label(policy)
                    );
                }
            }
        }
    }
}

/// `jetbridge_upstream_errors_total`, by route (routes with any).
fn render_upstream_errors(out: &mut String, series: &Registry, names: &[&str]) {
    out.push_str("# HELP jetbridge_upstream_errors_total Upstream connection failures and timeouts, by route.\n# TYPE jetbridge_upstream_errors_total counter\n");
    for route in names {
        let c = series[*route].upstream_errors.load(Ordering::Relaxed);
        if c > 0 {
            let _ = writeln!(
                out,
                "jetbridge_upstream_errors_total{{route=\"{}\"}} {c}",
                label(route)
            );
        }
    }
}

/// The configuration and session gauges.
fn render_gauges(out: &mut String, g: &Gauges<'_>) {
    let Gauges {
        generation,
        reload_failures,
        last_reload_ok,
        routes,
        ..
    } = *g;
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
    render_revocations(out, &g.revocations);
}

/// The revocation table and its shared store.
fn render_revocations(out: &mut String, r: &RevocationGauges) {
    let rows: [(&str, &str, &str, u64); 7] = [
        (
            "revoked_sessions",
            "gauge",
            "Signed-out sessions refused until they expire.",
            r.sessions,
        ),
        (
            "revoked_users",
            "gauge",
            "Users whose sessions issued before a cutoff are refused.",
            r.users,
        ),
        (
            "revocation_store_bytes",
            "gauge",
            "Bytes of data in the shared revocation store.",
            r.bytes,
        ),
        (
            "revocation_store_limit_bytes",
            "gauge",
            "The revocation store's limit; past it the store is compacted.",
            r.max_bytes,
        ),
        (
            "revocation_store_writes_total",
            "counter",
            "Writes to the shared revocation store.",
            r.writes,
        ),
        (
            "revocation_store_write_failures_total",
            "counter",
            "Writes to the shared revocation store that failed (retried).",
            r.write_failures,
        ),
        (
            "revocation_store_compactions_total",
            "counter",
            "Compactions of the revocation store (session entries replaced by per-user cutoffs).",
            r.compactions,
        ),
    ];
    for (name, kind, help, v) in rows {
        let _ = writeln!(
            out,
            "# HELP jetbridge_{name} {help}\n# TYPE jetbridge_{name} {kind}\njetbridge_{name} {v}"
        );
    }
}

/// `jetbridge_certificate_expiry_timestamp_seconds`, by first DNS name.
fn render_cert_expiry(out: &mut String, cert_expiry: &[(String, i64)]) {
    out.push_str("# HELP jetbridge_certificate_expiry_timestamp_seconds Certificate notAfter, by first DNS name.\n# TYPE jetbridge_certificate_expiry_timestamp_seconds gauge\n");
    for (name, t) in cert_expiry {
        let _ = writeln!(
            out,
            "jetbridge_certificate_expiry_timestamp_seconds{{name=\"{}\"}} {t}",
            label(name)
        );
    }
}

/// `jetbridge_idp_discovery_ok`: 1 per provider client whose discovery
/// document was fetched by the latest attempt, 0 while it fails or before
/// the first attempt ended.
fn render_idps(out: &mut String, idps: &[IdpState]) {
    if idps.is_empty() {
        return;
    }
    out.push_str("# HELP jetbridge_idp_discovery_ok 1 when the identity provider's discovery document was fetched by the latest attempt (0: sign-in fails until it is).\n# TYPE jetbridge_idp_discovery_ok gauge\n");
    for s in idps {
        let _ = writeln!(
            out,
            "jetbridge_idp_discovery_ok{{idp=\"{}\",issuer=\"{}\"}} {}",
            label(&s.idp),
            label(&s.issuer),
            u8::from(s.ok == Some(true))
        );
    }
}

/// What the revocation table holds and what its store did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RevocationGauges {
    pub sessions: u64,
    pub users: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub writes: u64,
    pub write_failures: u64,
    pub compactions: u64,
}

impl RevocationGauges {
    /// The values of `r` now.
    pub fn of(r: &crate::identity::revocation::Revocations) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let t = r.table();
        let s = &r.stats;
        RevocationGauges {
            sessions: t.sessions() as u64,
            users: t.users() as u64,
            bytes: s.bytes.load(Relaxed),
            max_bytes: s.max_bytes.load(Relaxed),
            writes: s.writes.load(Relaxed),
            write_failures: s.write_failures.load(Relaxed),
            compactions: s.compactions.load(Relaxed),
        }
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
    pub revocations: RevocationGauges,
    /// Discovery state of each identity-provider client.
    pub idps: &'a [IdpState],
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `jetbridge_trace_export_failures_total`: span exports the OTLP receiver
/// did not take (see `crate::traces`).
fn render_trace_exports(out: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "# HELP jetbridge_trace_export_failures_total Span exports to the OTLP receiver that failed (the spans were dropped).\n# TYPE jetbridge_trace_export_failures_total counter\njetbridge_trace_export_failures_total {}",
        crate::traces::export_failures()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges<'static> {
        Gauges {
            generation: 1,
            reload_failures: 0,
            last_reload_ok: true,
            cert_expiry: &[],
            routes: 1,
            revocations: RevocationGauges::default(),
            idps: &[],
        }
    }

    #[test]
    fn counts_survive_concurrent_writers_and_leave_with_their_route() {
        let m = Arc::new(Metrics::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        let route = if i % 2 == 0 { "a" } else { "b\"x" };
                        m.observe(route, 200 + (t % 2) as u16, Duration::from_micros(300));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        m.upstream_error("a");
        let out = m.render(&gauges());
        assert!(
            out.contains("jetbridge_requests_total{route=\"a\",status=\"200\"} 1000"),
            "{out}"
        );
        assert!(
            out.contains("jetbridge_requests_total{route=\"a\",status=\"201\"} 1000"),
            "{out}"
        );
        assert!(
            out.contains("route=\"b\\\"x\",status=\"200\"} 1000"),
            "{out}"
        );
        assert!(
            out.contains("jetbridge_upstream_errors_total{route=\"a\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("jetbridge_request_duration_seconds_count 4000"),
            "{out}"
        );

        // More distinct statuses than slots: the rest count as "other".
        for s in 300..320 {
            m.observe("c", s, Duration::ZERO);
        }
        let out = m.render(&gauges());
        assert!(out.contains("route=\"c\",status=\"other\"} 4"), "{out}");

        m.retain_routes(&["a"].into_iter().collect());
        let out = m.render(&gauges());
        assert!(out.contains("route=\"a\""), "{out}");
        assert!(
            !out.contains("route=\"b") && !out.contains("route=\"c\""),
            "{out}"
        );
    }
}

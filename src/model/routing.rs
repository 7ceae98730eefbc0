//! Host and path matching, and the deterministic route order.
//!
//! Semantics follow the Kubernetes Ingress API (`IngressRule.host`,
//! `HTTPIngressPath.pathType`) and the ingress-controller conformance
//! features (`host_rules.feature`, `path_rules.feature`):
//!
//! * **Hosts.** A rule host is precise (`foo.bar.com`), a wildcard
//!   (`*.foo.com`, matching exactly one extra DNS label: `bar.foo.com`, but not
//!   `foo.com` nor `baz.bar.foo.com`), or empty (any host). Comparison is
//!   case-insensitive; ports and a trailing dot are removed from the request
//!   host by [`normalize_host`] before lookup.
//! * **Host selection first.** A request is matched against exactly one group
//!   of rules: the precise host's rules if any route names that host,
//!   otherwise the wildcard's rules if a wildcard covers it, otherwise the
//!   rules with an empty host. A path that matches nothing in the selected
//!   group is a miss; it does *not* fall through to a less specific host.
//!   The Ingress API says requests "are first evaluated for a host match,
//!   then routed to the backend associated with the matching
//!   IngressRuleValue"; Envoy (and so Pomerium) picks one virtual host the
//!   same way, and ingress-nginx one server block. Falling through would also
//!   send requests (and cookies) meant for one team's precise host to
//!   whichever namespace owns the wildcard.
//! * **Paths.** `Exact` compares the whole path, case-sensitively, trailing
//!   slash included. `Prefix` compares `/`-separated elements: `/foo` matches
//!   `/foo`, `/foo/` and `/foo/bar`, never `/foobar`; a trailing slash on the
//!   rule is ignored; `/` matches every path. Rule paths go through the same
//!   [`normalize_path`](super::pathnorm::normalize_path) as request paths, so
//!   `/a%7e` in a rule matches a request for `/a~`.
//! * **Order within a host.** Exact before Prefix; longer prefix (in bytes of
//!   the canonical path) first; then older `created`; then `name` ascending;
//!   then input position, so the result never depends on hash or input order
//!   unless two keys are identical in every field.
//!
//! Lookup does two hash probes at most, whatever the number of hosts, then a
//! linear scan of the selected host's rules, which are sorted so the first
//! match wins.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv6Addr;

use super::conditions::{Conditions, RequestView};
use super::pathnorm::{PathError, normalize_path};

/// Why a route's host or path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// The host carried a URL scheme, path or userinfo.
    #[error("host must be a bare DNS name, not a URL: {0:?}")]
    HostNotBare(String),
    /// The host carried a port.
    #[error("host must not have a port: {0:?}")]
    HostHasPort(String),
    /// `*` used anywhere but as the whole first label, or alone.
    #[error(
        "wildcard must be the whole first label followed by a domain, as in \"*.example.com\": {0:?}"
    )]
    BadWildcard(String),
    /// A label was empty, too long, or had characters outside `a-z 0-9 -`.
    #[error("invalid DNS label in host {0:?}")]
    BadLabel(String),
    /// The whole host was longer than 253 characters.
    #[error("host is longer than 253 characters")]
    HostTooLong,
    /// The path did not start with `/`.
    #[error("path must start with '/': {0:?}")]
    PathNotAbsolute(String),
    /// The path could not be normalised.
    #[error("invalid path {path:?}: {source}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        source: PathError,
    },
}

/// Which request hosts a route serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// One host: lower-case, no port, no trailing dot.
    Exact(String),
    /// `*.example.com`, stored as the suffix `example.com`; matches exactly
    /// one extra label.
    Wildcard(String),
    /// `*.example.com` as the Gateway API reads it, stored as the suffix
    /// `example.com`: one or more extra labels (`a.example.com`,
    /// `a.b.example.com`). A one-label [`HostMatch::Wildcard`] for the same
    /// suffix comes first.
    WildcardAny(String),
    /// Every host (an Ingress rule with an empty host).
    Any,
}

impl HostMatch {
    /// Parses a rule host: empty means [`HostMatch::Any`], `*.suffix` a
    /// wildcard, anything else a precise DNS name. Case is folded and one
    /// trailing dot removed; ports, schemes, paths and misplaced `*` are errors.
    pub fn parse(s: &str) -> Result<HostMatch, RoutingError> {
        if s.is_empty() {
            return Ok(HostMatch::Any);
        }
        if s.contains(['/', '@', '?', '#']) {
            return Err(RoutingError::HostNotBare(s.to_owned()));
        }
        if s.contains(':') {
            return Err(RoutingError::HostHasPort(s.to_owned()));
        }
        let lower = s.to_ascii_lowercase();
        let host = lower.strip_suffix('.').unwrap_or(&lower);
        if host.len() > 253 {
            return Err(RoutingError::HostTooLong);
        }
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        if name.contains('*') || name.is_empty() {
            return Err(RoutingError::BadWildcard(s.to_owned()));
        }
        if !name.split('.').all(is_dns1123_label) {
            return Err(RoutingError::BadLabel(s.to_owned()));
        }
        Ok(if wildcard {
            HostMatch::Wildcard(name.to_owned())
        } else {
            HostMatch::Exact(name.to_owned())
        })
    }

    /// [`HostMatch::parse`] as the Gateway API reads a hostname: a wildcard
    /// covers one or more labels ([`HostMatch::WildcardAny`]).
    pub fn parse_gateway(s: &str) -> Result<HostMatch, RoutingError> {
        Ok(match HostMatch::parse(s)? {
            HostMatch::Wildcard(suffix) => HostMatch::WildcardAny(suffix),
            h => h,
        })
    }

    /// Whether this rule host serves `host` (already [`normalize_host`]d).
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Wildcard(suffix) => wildcard_suffix(host) == Some(suffix.as_str()),
            HostMatch::WildcardAny(suffix) => wildcard_suffixes(host).any(|s| s == suffix),
            HostMatch::Any => true,
        }
    }
}

/// Which request paths a route serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// The whole canonical path, case-sensitive.
    Exact(String),
    /// An element-wise prefix, stored without a trailing slash (except `/`).
    Prefix(String),
    /// An RE2 pattern the whole normalised path must match.
    Regex(super::rewrite::Pattern),
}

impl PathMatch {
    /// An `Exact` rule path. It is normalised like a request path.
    pub fn exact(p: &str) -> Result<PathMatch, RoutingError> {
        Ok(PathMatch::Exact(rule_path(p)?))
    }

    /// A `Prefix` rule path. It is normalised like a request path, and a
    /// trailing slash is dropped (`/foo/` ≡ `/foo`).
    pub fn prefix(p: &str) -> Result<PathMatch, RoutingError> {
        let mut path = rule_path(p)?;
        if path.len() > 1 && path.ends_with('/') {
            path.pop();
        }
        Ok(PathMatch::Prefix(path))
    }

    /// A `Regex` rule: `pattern` must match the whole path.
    pub fn regex(pattern: &str) -> Result<PathMatch, super::rewrite::PatternError> {
        super::rewrite::Pattern::whole(pattern).map(PathMatch::Regex)
    }

    /// The canonical rule path (a regex rule's pattern).
    pub fn as_str(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
            PathMatch::Regex(p) => p.0.as_str(),
        }
    }

    /// Whether this rule path serves `path` (already normalised).
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => {
                p == "/"
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            PathMatch::Regex(p) => p.0.is_match(path),
        }
    }
}

fn rule_path(p: &str) -> Result<String, RoutingError> {
    if !p.starts_with('/') {
        return Err(RoutingError::PathNotAbsolute(p.to_owned()));
    }
    normalize_path(p)
        .map(|n| n.path)
        .map_err(|source| RoutingError::BadPath {
            path: p.to_owned(),
            source,
        })
}

/// The proxy listeners a route is reachable on: the TLS listener (every
/// config-file and Ingress route, and a Gateway's `HTTPS` listeners), the
/// plain-HTTP one (a Gateway's `HTTP` listeners), and the ports of its own
/// the proxy binds for each port a Gateway's listeners name. Each listener
/// has a route table of its own, so one host may have different rules on
/// each, and two Gateways never serve each other's routes on their ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Listeners {
    /// Served on the TLS listener (or `insecure_server`'s, which serves the
    /// same routes without TLS).
    pub tls: bool,
    /// Served on the plain-HTTP listener.
    pub plain: bool,
    /// Served on these Gateway ports.
    pub gateway_ports: BTreeSet<GatewayPort>,
    /// An ACME HTTP-01 challenge answer (a cert-manager solver Ingress's
    /// one exact path): served on the plain-HTTP listener before its own
    /// routes and the redirect to HTTPS, and on no other listener.
    pub acme_challenge: bool,
}

impl Listeners {
    /// The TLS listener only: every route that is not a Gateway's.
    pub const TLS: Listeners = Listeners {
        tls: true,
        plain: false,
        gateway_ports: BTreeSet::new(),
        acme_challenge: false,
    };
    /// The plain-HTTP listener only.
    pub const PLAIN: Listeners = Listeners {
        tls: false,
        plain: true,
        gateway_ports: BTreeSet::new(),
        acme_challenge: false,
    };
    /// An ACME HTTP-01 challenge answer on the plain-HTTP listener only.
    pub const ACME_CHALLENGE: Listeners = Listeners {
        tls: false,
        plain: false,
        gateway_ports: BTreeSet::new(),
        acme_challenge: true,
    };

    /// Reachable on every listener of `self` and of `other`.
    pub fn union(mut self, other: Listeners) -> Listeners {
        self.tls |= other.tls;
        self.plain |= other.plain;
        self.acme_challenge |= other.acme_challenge;
        self.gateway_ports.extend(other.gateway_ports);
        self
    }

    /// Whether the route is reachable on a listener of `scheme`.
    pub fn serves(&self, scheme: Scheme) -> bool {
        match scheme {
            Scheme::Tls => self.tls,
            Scheme::Plain => self.plain,
        }
    }
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners::TLS
    }
}

/// One port a Gateway's listeners name, as the proxy serves it: on a port
/// of its own (`proxy_port`), which the Gateway's Service maps `port` to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GatewayPort {
    /// The port the proxy binds for it.
    pub proxy_port: u16,
    /// The Gateway's `namespace/name`.
    pub gateway: String,
    /// The port its listeners name.
    pub port: u16,
    /// TLS is terminated there (`HTTPS` listeners), else plain HTTP.
    pub tls: bool,
}

/// A Gateway port as its Gateway declares it, routes or not: the proxy
/// serves it (what no route matches is 404), and each hostname of its
/// listeners keeps the requests it is the most specific match for to the
/// routes of that listener (listener isolation; the routes of a less
/// specific listener are left out of those names when translated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPortListeners {
    pub port: GatewayPort,
    /// The hostnames its listeners name (Gateway API wildcards).
    pub hostnames: Vec<HostMatch>,
}

/// The ports the proxy binds for Gateway ports: 20000 to 29999, below the
/// usual ephemeral range (32768 and up) and the NodePort range.
pub const GATEWAY_PROXY_PORTS: std::ops::Range<u16> = 20000..30000;

/// Gives each Gateway port (`namespace/name` of the Gateway, the port its
/// listeners name) a proxy port in [`GATEWAY_PROXY_PORTS`]: the one its
/// key hashes to (FNV-1a, stable across builds and replicas), else the next
/// free one. `keys` come in priority order (older Gateways first), so a new
/// Gateway never moves the port of an older one; every replica computes the
/// same ports from the same objects. Duplicate keys get the same port.
pub fn allocate_proxy_ports(keys: &[(String, u16)]) -> Vec<u16> {
    let base = GATEWAY_PROXY_PORTS.start;
    let size = GATEWAY_PROXY_PORTS.end - base;
    let mut taken: HashSet<u16> = HashSet::new();
    let mut given: HashMap<&(String, u16), u16> = HashMap::new();
    keys.iter()
        .map(|key| {
            if let Some(p) = given.get(key) {
                return *p;
            }
            let text = format!("{}:{}", key.0, key.1);
            let start = (fnv1a(text.as_bytes()) % u64::from(size)) as u16;
            // At most `size` keys can be placed; past that, ports repeat
            // (a key whose port is taken is not served on a port of its own).
            let port = (0..size)
                .map(|i| base + (start + i) % size)
                .find(|p| !taken.contains(p))
                .unwrap_or(base + start);
            taken.insert(port);
            given.insert(key, port);
            port
        })
        .collect()
}

/// The 64-bit FNV-1a hash of `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Which route table a request is looked up in: the TLS or plain-HTTP
/// listener's, or a Gateway port's (by its proxy port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableRef {
    /// A shared listener's table.
    Shared(Scheme),
    /// The table of the Gateway port served on this proxy port.
    GatewayPort(u16),
}

impl From<Scheme> for TableRef {
    fn from(s: Scheme) -> TableRef {
        TableRef::Shared(s)
    }
}

/// Which route table a request is looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// The TLS listener's table (also served without TLS by
    /// `insecure_server`).
    Tls,
    /// The plain-HTTP listener's table.
    Plain,
}

/// Everything the router needs to know about one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteKey {
    /// Which hosts the route serves.
    pub host: HostMatch,
    /// Which paths the route serves.
    pub path: PathMatch,
    /// Creation time in seconds; config-file routes use their position.
    pub created: i64,
    /// `namespace/name` or the config position; the last tie-break.
    pub name: String,
    /// Method, header and query conditions (Gateway API matches); `None`
    /// for routes matched by host and path alone.
    pub conditions: Option<std::sync::Arc<Conditions>>,
    /// A GRPCRoute's method match: between two GRPCRoute routes it orders
    /// before the path does.
    pub grpc: Option<GrpcPrecedence>,
    /// How specific the Gateway API route's own hostname is: between two
    /// routes that have one it orders first.
    pub hostname: Option<HostnamePrecedence>,
}

/// How specific the hostname is that a Gateway API route names for a host
/// it serves (the spec's "largest number of characters in a matching
/// non-wildcard hostname", then "in a matching hostname"): an exact name
/// first, then wildcards by length, longest first, then a route that names
/// no hostname. Two routes whose hostnames meet a listener's in the same
/// host are ordered by it before their matches are
/// (`GatewayRouteHostnameIntersectionPrecedence`): `abc.example.com`
/// before `*.example.com` before `*.com`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostnamePrecedence {
    /// `false` for an exact name (orders first).
    wildcard: bool,
    /// Characters of the name, more first.
    length: std::cmp::Reverse<usize>,
}

impl HostnamePrecedence {
    /// The rank of the route hostname `name` (`*.example.com`,
    /// `abc.example.com`); `None`: the route names no hostname.
    pub fn of(name: Option<&str>) -> Self {
        HostnamePrecedence {
            wildcard: name.is_none_or(|n| n.starts_with('*')),
            length: std::cmp::Reverse(name.map_or(0, str::len)),
        }
    }
}

/// How specific a GRPCRoute method match is, as the GRPCRoute
/// specification ranks matches: more characters in the matching service
/// first, then more in the matching method (then more header matches, the
/// older route, `namespace/name`, rule order). Only names given `Exact`
/// count; a `RegularExpression` part or an absent one counts none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrpcPrecedence {
    /// Characters of the service named exactly.
    pub service: usize,
    /// Characters of the method named exactly.
    pub method: usize,
}

/// One sorted candidate in a host group.
#[derive(Debug, Clone)]
struct Entry {
    path: PathMatch,
    conditions: Option<std::sync::Arc<Conditions>>,
    index: usize,
    /// A [`HostMatch::WildcardAny`]: also serves hosts more than one label
    /// under its suffix.
    deep: bool,
}

impl Entry {
    fn matches(&self, path: &str, request: Option<&RequestView<'_>>) -> bool {
        self.path.matches(path)
            && match (&self.conditions, request) {
                (None, _) => true,
                (Some(c), Some(r)) => c.matches(r),
                // Without the request, a conditional route never matches.
                (Some(c), None) => c.is_empty(),
            }
    }
}

/// An immutable index from (host, path) to the winning route. Cloning it
/// shares it (a translation whose routes kept their keys reuses the last
/// one's table).
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    groups: std::sync::Arc<Groups>,
}

/// The host groups of a [`RouteTable`].
#[derive(Debug, Clone, Default)]
struct Groups {
    exact: HashMap<String, Vec<Entry>>,
    wildcard: HashMap<String, Vec<Entry>>,
    any: Vec<Entry>,
    /// Wildcard suffixes claimed by [`RouteTable::claim`] for names more
    /// than one label under them, routes or not.
    deep_claims: HashSet<String>,
}

impl RouteTable {
    /// Indexes `keys`; [`RouteTable::lookup`] returns positions in `keys`.
    pub fn build(keys: &[RouteKey]) -> RouteTable {
        RouteTable::build_only(keys, |_| true)
    }

    /// Indexes the keys whose position satisfies `keep` (e.g. the routes
    /// of one listener); lookups still return positions in `keys`.
    pub fn build_only(keys: &[RouteKey], keep: impl Fn(usize) -> bool) -> RouteTable {
        let mut table = Groups::default();
        for (index, key) in keys.iter().enumerate().filter(|(i, _)| keep(*i)) {
            let entry = Entry {
                path: key.path.clone(),
                conditions: key.conditions.clone(),
                index,
                deep: matches!(key.host, HostMatch::WildcardAny(_)),
            };
            match &key.host {
                HostMatch::Exact(h) => table.exact.entry(h.clone()).or_default().push(entry),
                HostMatch::Wildcard(s) | HostMatch::WildcardAny(s) => {
                    table.wildcard.entry(s.clone()).or_default().push(entry)
                }
                HostMatch::Any => table.any.push(entry),
            }
        }
        let order = |a: &Entry, b: &Entry| route_order(a, &keys[a.index], b, &keys[b.index]);
        for group in table.exact.values_mut() {
            group.sort_by(order);
        }
        for group in table.wildcard.values_mut() {
            group.sort_by(order);
        }
        table.any.sort_by(order);
        RouteTable {
            groups: std::sync::Arc::new(table),
        }
    }

    /// Makes `host` a group of its own, routes or not: a request it is the
    /// most specific match for is looked up in its rules alone (none: a
    /// miss), never in a less specific host's. A Gateway listener's
    /// hostname, so that its requests never reach the routes of a listener
    /// with a wider one.
    pub fn claim(&mut self, host: &HostMatch) {
        let groups = std::sync::Arc::make_mut(&mut self.groups);
        match host {
            HostMatch::Exact(h) => {
                groups.exact.entry(h.clone()).or_default();
            }
            HostMatch::Wildcard(s) => {
                groups.wildcard.entry(s.clone()).or_default();
            }
            HostMatch::WildcardAny(s) => {
                groups.wildcard.entry(s.clone()).or_default();
                groups.deep_claims.insert(s.clone());
            }
            HostMatch::Any => {}
        }
    }

    /// The index of the route serving `host` and `path`, both already
    /// normalised ([`normalize_host`], [`normalize_path`]). The host selects
    /// one group of rules (precise, else wildcard, else empty host); within
    /// it the first rule in route order whose path matches wins.
    pub fn lookup(&self, host: &str, path: &str) -> Option<usize> {
        self.lookup_request(host, path, None)
    }

    /// [`RouteTable::lookup`], also checking routes' method, header and
    /// query conditions against `request` (without it, a route with
    /// conditions never matches).
    pub fn lookup_request(
        &self,
        host: &str,
        path: &str,
        request: Option<&RequestView<'_>>,
    ) -> Option<usize> {
        let (group, deep_only) = self.group(host);
        group
            .iter()
            .filter(|e| !deep_only || e.deep)
            .find(|e| e.matches(path, request))
            .map(|e| e.index)
    }

    /// Whether some route names `host`, precisely or by wildcard. Routes with
    /// an empty host do not count: a miss for a known host is "no such
    /// path", for an unknown one "no such host".
    pub fn host_known(&self, host: &str) -> bool {
        self.groups.exact.contains_key(host) || self.wildcard_group(host).is_some()
    }

    /// Whether a route without a host serves every host no route names.
    pub fn serves_any_host(&self) -> bool {
        !self.groups.any.is_empty()
    }

    /// Whether the table has no route at all.
    pub fn is_empty(&self) -> bool {
        self.groups.exact.values().all(Vec::is_empty)
            && self.groups.wildcard.values().all(Vec::is_empty)
            && self.groups.any.is_empty()
    }

    /// The rules that may serve `host`: its precise host's, else the most
    /// precise wildcard's that covers it, else those of an empty host; and
    /// whether only its [`HostMatch::WildcardAny`] rules do (`host` is more
    /// than one label under the wildcard).
    fn group(&self, host: &str) -> (&[Entry], bool) {
        if let Some(g) = self.groups.exact.get(host) {
            return (g, false);
        }
        if let Some((g, depth)) = self.wildcard_group(host) {
            return (g, depth > 1);
        }
        (&self.groups.any, false)
    }

    /// The wildcard group covering `host` with the longest suffix, and how
    /// many labels `host` has before it: one label for any wildcard, more
    /// for a [`HostMatch::WildcardAny`] only.
    fn wildcard_group(&self, host: &str) -> Option<(&[Entry], usize)> {
        wildcard_suffixes(host)
            .enumerate()
            .filter_map(|(i, s)| Some((s, self.groups.wildcard.get(s)?.as_slice(), i + 1)))
            .find(|(s, g, depth)| {
                *depth == 1 || g.iter().any(|e| e.deep) || self.groups.deep_claims.contains(*s)
            })
            .map(|(_, g, depth)| (g, depth))
    }
}

/// Exact, then Regex (older first), then Prefix (longer first); for equal
/// paths, the more specific conditions (method, then more headers, then
/// more query parameters: the Gateway API's precedence); then older first,
/// name, input position.
pub fn route_order_of(a: &RouteKey, b: &RouteKey) -> Ordering {
    let entry = |k: &RouteKey, index| Entry {
        path: k.path.clone(),
        conditions: k.conditions.clone(),
        index,
        deep: matches!(k.host, HostMatch::WildcardAny(_)),
    };
    route_order(&entry(a, 0), a, &entry(b, 0), b)
}

fn route_order(a: &Entry, ka: &RouteKey, b: &Entry, kb: &RouteKey) -> Ordering {
    fn rank(p: &PathMatch) -> (u8, std::cmp::Reverse<usize>) {
        match p {
            PathMatch::Exact(s) => (0, std::cmp::Reverse(s.len())),
            PathMatch::Regex(_) => (1, std::cmp::Reverse(0)),
            PathMatch::Prefix(s) => (2, std::cmp::Reverse(s.len())),
        }
    }
    // Older first, then by name, then input position.
    let age = || {
        ka.created
            .cmp(&kb.created)
            .then_with(|| ka.name.cmp(&kb.name))
            .then(a.index.cmp(&b.index))
    };
    let specificity = |e: &Entry| {
        std::cmp::Reverse(
            e.conditions
                .as_deref()
                .filter(|c| !c.is_empty())
                .map(Conditions::specificity),
        )
    };
    if let (Some(ha), Some(hb)) = (ka.hostname, kb.hostname)
        && ha != hb
    {
        return ha.cmp(&hb);
    }
    if let (Some(ga), Some(gb)) = (ka.grpc, kb.grpc) {
        // The GRPCRoute order: longer service, longer method, more
        // headers; then the path kind (an exact method before a pattern).
        return gb
            .cmp(&ga)
            .then_with(|| specificity(a).cmp(&specificity(b)))
            .then_with(|| rank(&a.path).cmp(&rank(&b.path)))
            .then_with(age);
    }
    let regexes = matches!(a.path, PathMatch::Regex(_)) && matches!(b.path, PathMatch::Regex(_));
    if regexes {
        // Regex rules keep their configured order (age), not their text.
        return age();
    }
    rank(&a.path)
        .cmp(&rank(&b.path))
        .then_with(|| specificity(a).cmp(&specificity(b)))
        // Same kind and length: order by the text so different paths of equal
        // length never tie (they cannot both match, but keep it total).
        .then_with(|| a.path.as_str().cmp(b.path.as_str()))
        .then_with(age)
}

/// The suffixes of `host` after one, two, … labels, longest first
/// (`a.b.c.com` → `b.c.com`, `c.com`, `com`).
fn wildcard_suffixes(host: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(wildcard_suffix(host), |s| wildcard_suffix(s))
}

/// The part of `host` after its first label, if that label is non-empty.
fn wildcard_suffix(host: &str) -> Option<&str> {
    match host.split_once('.') {
        Some((first, rest)) if !first.is_empty() && !rest.is_empty() => Some(rest),
        _ => None,
    }
}

use crate::names::is_label as is_dns1123_label;

/// Canonical request host from a `Host` header, `:authority` or SNI name.
///
/// Lower-cases, removes a port (`example.com:8443`, `[::1]:8443`) and one
/// trailing dot. IPv6 literals come back bracketed in their canonical text
/// form (`[::1]`). Returns `None` for an empty host, userinfo (`@`), a bad
/// port, an empty label, or characters outside `a-z 0-9 - _ .`.
pub fn normalize_host(authority: &str) -> Option<String> {
    if authority.contains('@') {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !after.is_empty() && !is_port(after.strip_prefix(':')?) {
            return None;
        }
        let ip: Ipv6Addr = addr.parse().ok()?;
        return Some(format!("[{ip}]"));
    }
    let host = match authority.split_once(':') {
        Some((h, port)) if is_port(port) => h,
        Some(_) => return None,
        None => authority,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    let valid = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    });
    valid.then(|| host.to_ascii_lowercase())
}

/// An RFC 3986 port: digits only, possibly empty, at most 65535.
fn is_port(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 5
            && s.bytes().all(|c| c.is_ascii_digit())
            && s.parse::<u32>().is_ok_and(|p| p <= 65535))
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;

//! `translate`: gathered inputs in, one snapshot out. Pure: no I/O, no async,
//! no clock. Config files and Kubernetes objects both become [`Inputs`].
//!
//! A bad route never breaks the others: it becomes [`crate::model::Access::Invalid`] (every
//! request to it is refused) plus a [`Diagnostic`] naming the object.

use crate::identity::jwks::jwks_document;
use crate::identity::{IssuerFormat, KeySet, SigningKey};
use crate::model::rewrite::{HostRewrite, PathRewrite, Pattern, substitution};
use crate::model::routing::{
    GatewayPort, GatewayPortListeners, HostMatch, Listeners, PathMatch, RouteKey, RouteTable,
};
use crate::model::{
    ASSERTION, AuthConfig, BearerTokenFormat, ClientAuthNames, ClientCa, DEFAULT_IDLE_TIMEOUT,
    Diagnostic, GatewayTable, IDP_ACCESS_TOKEN, IDP_ID_TOKEN, IdentityConfig, ObjectRef, Reason,
    Route, Severity, Snapshot, TlsConfig, Upstream, UpstreamScheme, UpstreamTls,
};
use crate::policy::{self, Legacy, Program};
use crate::settings::RouteOptions;
use http::{HeaderName, HeaderValue};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub mod acme;
pub mod cluster;
pub mod config;
pub mod driver;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod gateway;
mod gateway_backend_tls;
mod gateway_filters;
mod gateway_hosts;
mod gateway_policy;
pub mod grpc_route;
mod health;
pub mod hosts;
pub mod incremental;
pub mod incremental_cluster;
#[cfg(test)]
mod incremental_tests;
mod route;
#[cfg(test)]
mod tests;

/// Everything translation needs, already fetched and decoded.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub global: GlobalInputs,
    pub routes: Vec<RouteInput>,
    /// Problems the sources found while gathering (e.g. an Ingress rule
    /// without a host); passed through to the snapshot's diagnostics.
    pub diagnostics: Vec<Diagnostic>,
}

/// Settings that apply to every route.
#[derive(Clone, Debug)]
pub struct GlobalInputs {
    pub keys: Arc<KeySet>,
    /// Keys no longer configured whose assertions may still be valid: still published.
    pub retired_keys: Vec<SigningKey>,
    pub issuer_format: IssuerFormat,
    pub pass_identity_headers: bool,
    pub jwt_claims_headers: Vec<(String, String)>,
    /// Global `set_response_headers` (unset: Pomerium's defaults).
    pub set_response_headers: Option<std::collections::BTreeMap<String, String>>,
    /// Global `jwt_groups_filter`.
    pub jwt_groups_filter: Option<Vec<String>>,
    /// Global `bearer_token_format`.
    pub bearer_token_format: BearerTokenFormat,
    /// Global `idp_access_token_allowed_audiences` (empty: none).
    pub access_token_audiences: Vec<String>,
    /// `default_upstream_timeout`: a route's `timeout` when it sets none.
    pub default_upstream_timeout: Option<std::time::Duration>,
    /// `timeout_idle`: client connections with no request in flight for
    /// this long are closed (default 5 minutes).
    pub timeout_idle: Option<std::time::Duration>,
    pub auth: AuthConfig,
    pub certificates: Vec<CertInput>,
    /// `downstream_mtls`: the CA every route without its own
    /// `tls_downstream_client_ca` requires client certificates from.
    pub downstream_mtls: Option<DownstreamMtls>,
    /// The Gateway ports the Gateways declare, each served routes or not,
    /// with its listeners' hostnames (listener isolation).
    pub gateway_ports: Vec<crate::model::routing::GatewayPortListeners>,
}

/// `downstream_mtls`, checked by the caller.
#[derive(Clone, Debug)]
pub struct DownstreamMtls {
    pub ca: ClientCa,
    /// `enforcement: reject_connection`: a handshake without a certificate
    /// from a configured CA fails (instead of the route's 495).
    pub reject_connection: bool,
}

impl GlobalInputs {
    /// Settings for tests and fixtures: a fresh signing key, random secrets,
    /// no identity provider and no certificates.
    pub fn for_test() -> Self {
        GlobalInputs {
            keys: Arc::new(KeySet::generate()),
            retired_keys: Vec::new(),
            issuer_format: IssuerFormat::Host,
            pass_identity_headers: false,
            jwt_claims_headers: Vec::new(),
            set_response_headers: None,
            jwt_groups_filter: None,
            bearer_token_format: BearerTokenFormat::Default,
            access_token_audiences: Vec::new(),
            default_upstream_timeout: None,
            timeout_idle: None,
            auth: AuthConfig {
                cookie_name: "_jetbridge".into(),
                cookie_expire: std::time::Duration::from_secs(14 * 3600),
                cookie_secret: crate::identity::secrets::Secret32::generate().0,
                shared_secret: crate::identity::secrets::Secret32::generate().0,
                ..AuthConfig::default()
            },
            certificates: Vec::new(),
            downstream_mtls: None,
            gateway_ports: Vec::new(),
        }
    }
}

/// A PEM certificate chain and key.
#[derive(Clone, Debug)]
pub struct CertInput {
    /// Where it came from (`certificates[0]`, the Ingress that named the Secret).
    pub source: ObjectRef,
    pub chain_pem: String,
    pub key_pem: String,
    /// The hosts it was given for (an Ingress's `spec.tls[].hosts`): it is
    /// served for those of them it covers, and only those. Empty: every DNS
    /// name it holds (config-file certificates, which may also be the
    /// default for unknown names).
    pub hosts: Vec<String>,
    /// A self-signed certificate made because none was configured.
    pub generated: bool,
}

/// Where a route matches on its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSpec {
    /// The path and everything below it, element by element.
    Prefix(String),
    /// Only this path.
    Exact(String),
    /// Paths the whole of which this RE2 pattern matches.
    Regex(String),
}

/// One route candidate, from a config file or a cluster alike.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteInput {
    /// Stable id, e.g. `routes[0]` or `default/web/1`.
    pub id: String,
    /// Where to report problems.
    pub source: ObjectRef,
    /// Tie-break for equal matches: older first.
    pub created: i64,
    /// Host name, or `*.suffix` for a single-label wildcard.
    pub host: String,
    pub path: PathSpec,
    pub backends: Vec<Upstream>,
    pub options: RouteOptions,
    /// Contents of `tls_custom_ca_file`, read by the caller.
    pub custom_ca_pem: Option<String>,
    /// Contents of `tls_client_cert_file`, read by the caller.
    pub client_cert_pem: Option<String>,
    /// Contents of `tls_client_key_file`, read by the caller.
    pub client_key_pem: Option<String>,
    /// Contents of `tls_downstream_client_ca_file`, read by the caller.
    pub downstream_ca_pem: Option<String>,
    /// Problems the source already found (e.g. a bad annotation or `to`
    /// URL): the route exists but denies every request, and each problem
    /// is reported.
    pub problems: Vec<Diagnostic>,
    /// Method, header and query conditions (Gateway API matches).
    pub conditions: Option<Arc<crate::model::conditions::Conditions>>,
    /// The proxy listeners the route is reachable on (the TLS one, unless
    /// a Gateway `HTTP` listener says otherwise).
    pub listeners: Listeners,
    /// Whose rules the route follows (its wildcard host's depth, how it
    /// answers when its configuration is invalid).
    pub contract: crate::model::Contract,
    /// A GRPCRoute's method match rank (the GRPCRoute order).
    pub grpc: Option<crate::model::routing::GrpcPrecedence>,
    /// A Gateway API route's own hostname rank (orders before the path).
    pub hostname: Option<crate::model::routing::HostnamePrecedence>,
    /// Where the rule objects of `options.policy` come from, in order,
    /// when some come from `Policy` objects (numbered from 1 within that
    /// list); empty: all of them are the route's own.
    pub policy_origins: Vec<crate::model::rule_origin::RuleOrigin>,
}

impl RouteInput {
    /// A route at `host` and `path` from `source`, with nothing else set:
    /// no backends, default options, no files, no conditions, the TLS
    /// listener, Ingress rules, no problems.
    pub fn new(id: String, source: ObjectRef, host: String, path: PathSpec) -> Self {
        RouteInput {
            id,
            source,
            created: 0,
            host,
            path,
            backends: Vec::new(),
            options: RouteOptions::default(),
            custom_ca_pem: None,
            client_cert_pem: None,
            client_key_pem: None,
            downstream_ca_pem: None,
            problems: Vec::new(),
            conditions: None,
            listeners: Listeners::default(),
            contract: crate::model::Contract::default(),
            grpc: None,
            hostname: None,
            policy_origins: Vec::new(),
        }
    }
}

/// Host and path of a config-file route from its `from` URL and its
/// `prefix` / `path` keys.
pub fn route_location(
    from: &str,
    prefix: Option<&str>,
    path: Option<&str>,
    regex: Option<&str>,
) -> Result<(String, PathSpec), LocationError> {
    let from = from.trim();
    let rest = from
        .strip_prefix("https://")
        .or_else(|| from.strip_prefix("http://"))
        .ok_or_else(|| LocationError::NotHttps(from.to_string()))?;
    let authority = rest.split('/').next().unwrap_or("");
    if rest.len() > authority.len() + 1 {
        return Err(LocationError::HasPath(from.to_string()));
    }
    let host = strip_port(authority).to_string();
    let path = match (path, prefix, regex) {
        (Some(p), None, None) => PathSpec::Exact(p.to_string()),
        (None, Some(p), None) => PathSpec::Prefix(p.to_string()),
        (None, None, Some(r)) => PathSpec::Regex(r.to_string()),
        (None, None, None) => PathSpec::Prefix("/".into()),
        _ => return Err(LocationError::PathKeys),
    };
    Ok((host, path))
}

/// Why a config-file route's `from`, `prefix`, `path` and `regex` name no
/// place to serve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// `from` is not an `https://` (or `http://`) URL.
    #[error("from {0:?}: must be an https:// URL")]
    NotHttps(String),
    /// `from` has a path.
    #[error("from {0:?}: must not contain a path (use prefix or path)")]
    HasPath(String),
    /// More than one of `path`, `prefix` and `regex`.
    #[error("path, prefix and regex are mutually exclusive")]
    PathKeys,
}

/// Builds a snapshot from nothing. `generation` is stamped by the
/// publisher; [`incremental::Memo`] builds the same snapshot taking the
/// routes whose inputs did not change from the last one.
pub fn translate(inputs: &Inputs) -> Snapshot {
    incremental::Memo::default().translate(inputs)
}

/// Builds routes one input at a time, compiling each distinct policy and
/// parsing each client CA once.
struct RouteBuilder<'g> {
    global: &'g GlobalInputs,
    // Routes that share a policy (e.g. the same policy_ref) compile it once.
    programs: HashMap<String, Result<CompiledPolicy, PolicyError>>,
    // Routes that share a client CA (e.g. one Secret) parse it once.
    client_cas: HashMap<String, Result<ClientCa, crate::model::OptionError>>,
}

impl<'g> RouteBuilder<'g> {
    fn new(global: &'g GlobalInputs) -> Self {
        RouteBuilder {
            global,
            programs: HashMap::new(),
            client_cas: HashMap::new(),
        }
    }

    /// The route of one input, or the diagnostic saying it names no place
    /// to serve.
    fn build(&mut self, input: &RouteInput) -> incremental::Built {
        let mut diagnostics = Vec::new();
        let route = match route_frame(input) {
            Ok((host, path)) => {
                let route = build_route(
                    input,
                    self.global,
                    host.clone(),
                    path.clone(),
                    &mut self.programs,
                    &mut self.client_cas,
                    &mut diagnostics,
                );
                Some((Arc::new(route), route_key(input, host, path)))
            }
            Err(message) => {
                diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    object: input.source.clone(),
                    reason: Reason::NotServed,
                    message,
                });
                None
            }
        };
        let digest = crate::model::digest_of(&route.as_ref().map(|(r, _)| r));
        incremental::Built {
            route,
            diagnostics,
            digest,
        }
    }
}

/// The snapshot of the route inputs `inputs` whose routes are `built` (one
/// per input, in order), under `g`, with the sources' `diagnostics`.
/// `tables`: the route tables when the routes' keys and listeners are
/// those of the translation they were built for (else built here).
fn assemble<'a>(
    g: &GlobalInputs,
    diagnostics: &[Diagnostic],
    inputs: impl Iterator<Item = &'a RouteInput>,
    built: &[Arc<incremental::Built>],
    tables: Option<incremental::Tables>,
    routes_digest: [u8; 32],
) -> Snapshot {
    let mut diagnostics = diagnostics.to_vec();
    let mut routes = Vec::with_capacity(built.len());
    let mut route_digests = Vec::with_capacity(built.len());
    for b in built {
        diagnostics.extend(b.diagnostics.iter().cloned());
        if let Some((route, _)) = &b.route {
            routes.push(route.clone());
            route_digests.push(b.digest);
        }
    }
    let tables = tables.unwrap_or_else(|| incremental::Tables::build(&routes, built, g));

    let published: Vec<&SigningKey> = g.keys.keys().iter().chain(g.retired_keys.iter()).collect();
    let jwks = jwks_document(published);
    let mut tls = build_tls(&g.certificates, &mut diagnostics);
    tls.not_by_wildcard = not_by_wildcard(inputs, &g.certificates, &tls);
    tls.client_auth = client_auth_names(&routes, g.downstream_mtls.as_ref());
    let mut auth = g.auth.clone();
    auth.route_idps = routes
        .iter()
        .filter_map(|r| r.idp.as_ref())
        .map(|i| (i.id.clone(), i.config.clone()))
        .collect();
    let keep_idp_tokens = routes.iter().any(|r| {
        r.templated_request_headers
            .iter()
            .any(|(_, t)| t.contains(IDP_ID_TOKEN) || t.contains(IDP_ACCESS_TOKEN))
    });
    Snapshot {
        generation: 0,
        routes,
        route_digests,
        routes_digest,
        table: tables.table,
        plain_table: tables.plain,
        acme_challenges: tables.acme,
        gateway_tables: tables.gateway,
        tls,
        identity: IdentityConfig {
            keys: g.keys.clone(),
            jwks,
            issuer_format: g.issuer_format,
        },
        auth,
        connection_idle_timeout: g
            .timeout_idle
            .unwrap_or(crate::model::DEFAULT_CONNECTION_IDLE_TIMEOUT),
        sessions: Arc::new(crate::identity::session::SessionCodec::new(
            &g.auth.cookie_secret,
        )),
        keep_idp_tokens,
        diagnostics,
    }
}

/// What the route table knows of a route input at `host` and `path`.
fn route_key(input: &RouteInput, host: HostMatch, path: PathMatch) -> RouteKey {
    RouteKey {
        host,
        path,
        created: input.created,
        name: input.id.clone(),
        conditions: input.conditions.clone(),
        grpc: input.grpc,
        hostname: input.hostname,
    }
}

/// The route tables of the TLS listener, the plain-HTTP listener and the
/// Gateway ports.
pub(super) fn route_tables(
    routes: &[Arc<Route>],
    keys: &[RouteKey],
    declared: &[GatewayPortListeners],
) -> (RouteTable, RouteTable, BTreeMap<u16, GatewayTable>) {
    (
        RouteTable::build_only(keys, |i| routes[i].listeners.tls),
        RouteTable::build_only(keys, |i| routes[i].listeners.plain),
        gateway_tables(routes, keys, declared),
    )
}

/// One route table per Gateway port the Gateways declare or the routes
/// name, by proxy port (a proxy port two Gateway ports share is the first
/// one's); each declared listener hostname is claimed in its port's table.
fn gateway_tables(
    routes: &[Arc<Route>],
    keys: &[RouteKey],
    declared: &[GatewayPortListeners],
) -> BTreeMap<u16, GatewayTable> {
    let mut ports: BTreeMap<u16, (GatewayPort, Vec<HostMatch>)> = BTreeMap::new();
    for d in declared {
        ports
            .entry(d.port.proxy_port)
            .or_insert_with(|| (d.port.clone(), d.hostnames.clone()));
    }
    for p in routes.iter().flat_map(|r| &r.listeners.gateway_ports) {
        ports
            .entry(p.proxy_port)
            .or_insert_with(|| (p.clone(), Vec::new()));
    }
    ports
        .into_values()
        .map(|(port, hostnames)| {
            let mut table =
                RouteTable::build_only(keys, |i| routes[i].listeners.gateway_ports.contains(&port));
            for h in &hostnames {
                table.claim(h);
            }
            let t = GatewayTable {
                port,
                table,
                hostnames,
            };
            (t.port.proxy_port, t)
        })
        .collect()
}

/// Host and path of a route; an error here drops the route entirely
/// (there is nothing to match it by).
fn route_frame(input: &RouteInput) -> Result<(HostMatch, PathMatch), String> {
    let host = match input.contract {
        crate::model::Contract::GatewayApi => HostMatch::parse_gateway(&input.host),
        _ => HostMatch::parse(&input.host),
    }
    .map_err(|e| format!("host {:?}: {e}", input.host))?;
    let path = match &input.path {
        PathSpec::Exact(p) => PathMatch::exact(p).map_err(|e| format!("path {p:?}: {e}"))?,
        PathSpec::Prefix(p) => PathMatch::prefix(p).map_err(|e| format!("prefix {p:?}: {e}"))?,
        PathSpec::Regex(r) => PathMatch::regex(r).map_err(|e| format!("regex: {e}"))?,
    };
    Ok((host, path))
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority;
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    }
}

fn build_route(
    input: &RouteInput,
    g: &GlobalInputs,
    host: HostMatch,
    path: PathMatch,
    programs: &mut HashMap<String, Result<CompiledPolicy, PolicyError>>,
    client_cas: &mut HashMap<String, Result<ClientCa, crate::model::OptionError>>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Route {
    let spec = &input.options;
    let mut p = route::Problems(input.problems.iter().map(|d| d.message.clone()).collect());
    let upstreams = route::upstreams(input, &mut p);
    let (access, rule_origins) = route::access(input, programs, &mut p);
    let (set_request_headers, templated_request_headers) = route::request_headers(spec, &mut p);
    let path_rewrite = p.or(path_rewrite(spec, &path, &upstreams), PathRewrite::Keep);
    let host_rewrite = p.or(host_rewrite(spec), HostRewrite::Upstream);
    let set_response_headers =
        header_list("set_response_headers", &response_headers(g, spec), &mut p.0);
    let load_balancing = route::load_balancing(spec, &mut p);
    let kubernetes_token = route::kubernetes_token(spec, &mut p);
    let issuer_format = route::issuer_format(g, spec, &mut p);
    let idp = route::idp(g, spec, &mut p);
    let depends_on = route::depends_on(spec, &mut p);
    let health = route::health(spec, &mut p);
    let bearer_token_format = route::bearer_token_format(g, spec, &mut p);
    let rewrite_response_headers = route::response_rewrites(spec, &mut p);
    let remove_request_headers = route::removed_request_headers(spec, &mut p);
    let jwt_claims_headers = route::claims_headers(g, spec, &mut p);
    let (add_request_headers, add_response_headers) = route::appended_headers(spec, &mut p);
    let redirect = route::redirect(spec, &path, &mut p);
    let mirror_to = route::mirror_to(spec, &mut p);
    let (upstream_tls, downstream_ca_pem) = route::upstream_tls(input, &mut p);
    let client_ca = route::client_ca(g, downstream_ca_pem, client_cas, &mut p);
    let access = p.deny(access, &input.source, diagnostics);
    Route {
        id: input.id.clone(),
        host,
        path,
        listeners: input.listeners.clone(),
        contract: input.contract,
        upstreams,
        upstream_tls,
        client_ca,
        load_balancing,
        rule_origins: route::policy_only(&access, rule_origins),
        access,
        pass_identity_headers: route::pass_identity_headers(g, spec),
        allow_websockets: spec.allow_websockets,
        allow_upgrades: allow_upgrades(spec),
        cors_allow_preflight: spec.cors_allow_preflight,
        kubernetes_token,
        jwt_groups_filter: route::groups_filter(g, spec),
        issuer_format,
        bearer_token_format,
        idp,
        access_token_audiences: route::access_token_audiences(g, spec),
        info: route::info(spec),
        depends_on,
        health_checks: health.checks,
        healthy_panic_threshold: health.healthy_panic_threshold,
        outlier_detection: health.outlier_detection,
        circuit_breaker: health.circuit_breaker,
        path_rewrite,
        host_rewrite,
        set_request_headers,
        templated_request_headers,
        set_response_headers,
        rewrite_response_headers,
        remove_request_headers,
        add_request_headers,
        add_response_headers,
        mirror_to,
        redirect,
        jwt_claims_headers,
        timeout: route::timeout(g, spec),
        idle_timeout: spec.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
        compiled: Default::default(),
    }
    .compiled()
}

/// The protocols a route may upgrade to (`allow_upgrades`, and SPDY with
/// `allow_spdy`), lower-cased.
fn allow_upgrades(spec: &RouteOptions) -> Vec<String> {
    spec.allow_upgrades
        .iter()
        .map(|u| u.trim().to_ascii_lowercase())
        .chain(spec.allow_spdy.then(|| "spdy/3.1".to_string()))
        .filter(|u| !u.is_empty())
        .collect()
}

/// One `depends_on` entry as a host: `app.example.com`, with `https://`,
/// a port or a trailing `/` allowed (and dropped); anything else is an error.
fn depends_on_host(entry: &str) -> Result<String, ValueError> {
    let bad = |why: &str| ValueError::DependsOn {
        entry: entry.to_string(),
        why: why.to_string(),
    };
    let text = entry.trim();
    let rest = text.strip_prefix("https://").unwrap_or(text);
    if rest.contains("://") {
        return Err(bad("must be a host or an https:// URL"));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let host = strip_port(authority);
    match HostMatch::parse(host) {
        Ok(HostMatch::Exact(h)) => Ok(h),
        Ok(_) => Err(bad("must name one host (no wildcard)")),
        Err(e) => Err(bad(&e.to_string())),
    }
}

/// A `${pomerium.*}` substitution jetbridge does not fill, if any.
fn unsupported_substitution(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(i) = rest.find("${pomerium.") {
        let tail = &rest[i..];
        let end = tail.find('}').map(|e| e + 1).unwrap_or(tail.len());
        let name = &tail[..end];
        if ![ASSERTION, IDP_ID_TOKEN, IDP_ACCESS_TOKEN].contains(&name) {
            return Some(name.to_string());
        }
        rest = &tail[end..];
    }
    None
}

/// `prefix_rewrite`, else `regex_rewrite_*`, else the path of the first `to`
/// URL replacing the matched prefix (what Pomerium does with a `to` path).
fn path_rewrite(
    spec: &RouteOptions,
    path: &PathMatch,
    upstreams: &[Upstream],
) -> Result<PathRewrite, String> {
    let matched = match path {
        PathMatch::Regex(_) if spec.prefix_rewrite.is_some() => {
            return Err("prefix_rewrite needs a prefix or path route, not regex \
                        (use regex_rewrite_pattern)"
                .into());
        }
        // A `to` path is prepended to what a regex route matched.
        PathMatch::Regex(_) => "/".to_string(),
        other => other.as_str().to_string(),
    };
    if spec.prefix_rewrite.is_some() && spec.regex_rewrite_pattern.is_some() {
        return Err("prefix_rewrite and regex_rewrite_pattern are mutually exclusive".into());
    }
    if let Some(replacement) = &spec.prefix_rewrite {
        if !route::is_path(replacement) {
            return Err(format!(
                "prefix_rewrite {:?}: must be a path (starting with /, no query)",
                replacement.chars().take(64).collect::<String>()
            ));
        }
        return Ok(PathRewrite::Prefix {
            matched,
            replacement: replacement.clone(),
        });
    }
    if let Some(pattern) = &spec.regex_rewrite_pattern {
        return Ok(PathRewrite::Regex {
            pattern: Pattern::new(pattern).map_err(|e| format!("regex_rewrite_pattern: {e}"))?,
            substitution: substitution(spec.regex_rewrite_substitution.as_deref().unwrap_or("")),
        });
    }
    if spec.regex_rewrite_substitution.is_some() {
        return Err("regex_rewrite_substitution needs regex_rewrite_pattern".into());
    }
    match upstreams.first().map(|u| u.base_path.as_str()) {
        Some(base) if !base.is_empty() => Ok(PathRewrite::Prefix {
            matched,
            replacement: base.to_string(),
        }),
        _ => Ok(PathRewrite::Keep),
    }
}

/// `host_rewrite`, `host_rewrite_header`, `host_path_regex_rewrite_*`,
/// `preserve_host_header`, in that order (Pomerium's).
fn host_rewrite(spec: &RouteOptions) -> Result<HostRewrite, String> {
    if let Some(h) = &spec.host_rewrite {
        let v =
            HeaderValue::from_str(h).map_err(|_| format!("host_rewrite: invalid host {h:?}"))?;
        return Ok(HostRewrite::Literal(v));
    }
    if let Some(h) = &spec.host_rewrite_header {
        let n = HeaderName::from_bytes(h.as_bytes())
            .map_err(|_| format!("host_rewrite_header: invalid header {h:?}"))?;
        return Ok(HostRewrite::FromHeader(n));
    }
    if let Some(p) = &spec.host_path_regex_rewrite_pattern {
        return Ok(HostRewrite::PathRegex {
            pattern: Pattern::new(p)
                .map_err(|e| format!("host_path_regex_rewrite_pattern: {e}"))?,
            substitution: substitution(
                spec.host_path_regex_rewrite_substitution
                    .as_deref()
                    .unwrap_or(""),
            ),
        });
    }
    if spec.host_path_regex_rewrite_substitution.is_some() {
        return Err(
            "host_path_regex_rewrite_substitution needs host_path_regex_rewrite_pattern".into(),
        );
    }
    Ok(match spec.preserve_host_header {
        true => HostRewrite::Preserve,
        false => HostRewrite::Upstream,
    })
}

/// Pomerium's defaults when no global map is set (HSTS only with a real
/// certificate).
pub const DEFAULT_RESPONSE_HEADERS: [(&str, &str); 3] = [
    ("X-Frame-Options", "SAMEORIGIN"),
    ("X-XSS-Protection", "1; mode=block"),
    (
        "Strict-Transport-Security",
        "max-age=31536000; includeSubDomains; preload",
    ),
];

/// The global response headers (or the defaults) with the route's on top; a
/// `disable` key in either drops every one, as in Pomerium.
fn response_headers(g: &GlobalInputs, spec: &RouteOptions) -> Vec<(String, String)> {
    let mut map: std::collections::BTreeMap<String, String> = match &g.set_response_headers {
        Some(m) => m.clone(),
        None => DEFAULT_RESPONSE_HEADERS
            .iter()
            .filter(|(k, _)| {
                *k != "Strict-Transport-Security" || g.certificates.iter().any(|c| !c.generated)
            })
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    if map.contains_key("disable") {
        map.clear();
    }
    if let Some(route) = &spec.set_response_headers {
        map.extend(route.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if map.contains_key("disable") {
        map.clear();
    }
    map.into_iter().collect()
}

fn header_list(
    key: &str,
    pairs: &[(String, String)],
    problems: &mut Vec<String>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), _) if framing_header(&n) => problems.push(format!(
                "{key}: {name} frames the message and is set by the proxy only"
            )),
            (Ok(n), Ok(v)) => out.push((n, v)),
            _ => problems.push(format!("{key}: invalid header {name:?}")),
        }
    }
    out
}

/// Headers that decide how a message is framed or routed hop by hop: a
/// route setting them could desynchronise the proxy and its peer.
fn framing_header(n: &HeaderName) -> bool {
    matches!(
        n.as_str(),
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
    )
}

/// Why a route may not set this request header, if it may not: framing
/// headers, `Host` (see `host_rewrite`), and the headers the proxy owns
/// (identity and forwarding ones). `request` is false for claim header
/// names, which may be `X-Pomerium-Claim-*` and are never `Host`.
fn reserved_header(n: &HeaderName, request: bool) -> Option<&'static str> {
    let name = n.as_str().replace(['_', '.'], "-");
    if name.starts_with("x-pomerium-") && !name.starts_with("x-pomerium-claim-") {
        return Some("is the proxy's identity header");
    }
    if request && name.starts_with("x-pomerium-claim-") {
        return Some("is an identity claim header; use jwt_claims_headers");
    }
    if matches!(name.as_str(), "forwarded" | "x-real-ip") || name.starts_with("x-forwarded-") {
        return Some("is set by the proxy from the connection");
    }
    if request && n.as_str() == "host" {
        return Some("is set with host_rewrite or preserve_host_header");
    }
    if framing_header(n) {
        return Some("frames the message and is set by the proxy only");
    }
    None
}

/// A route's compiled program, and its parts in order: the setting each
/// came from (`policy`, `allowed_users`, `allow_any_authenticated_user`)
/// and the rule numbers it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledPolicy {
    pub program: Program,
    pub parts: Vec<(&'static str, usize)>,
}

/// The route's program: its PPL, legacy shorthands and
/// `allow_any_authenticated_user`, combined as alternatives. No policy at all
/// means deny (after sign-in).
pub fn compile_policy(spec: &RouteOptions) -> Result<CompiledPolicy, PolicyError> {
    let mut parts = Vec::new();
    if let Some(v) = &spec.policy {
        parts.push((
            "policy",
            policy::compile_value(v).map_err(PolicyError::Policy)?,
        ));
    }
    let legacy = Legacy {
        allowed_users: spec.allowed_users.clone(),
        allowed_domains: spec.allowed_domains.clone(),
        allowed_idp_claims: spec.allowed_idp_claims.clone(),
    };
    if !legacy.allowed_users.is_empty()
        || !legacy.allowed_domains.is_empty()
        || !legacy.allowed_idp_claims.is_empty()
    {
        parts.push(("allowed_users", Program::from_legacy(&legacy)));
    }
    if spec.allow_any_authenticated_user {
        parts.push((
            "allow_any_authenticated_user",
            policy::compile_value(
                &serde_json::json!({"allow": {"and": [{"authenticated_user": true}]}}),
            )
            .map_err(PolicyError::AnyAuthenticatedUser)?,
        ));
    }
    if parts.is_empty() {
        return Ok(CompiledPolicy {
            program: Program::deny_all(),
            parts: Vec::new(),
        });
    }
    let sizes = parts.iter().map(|(s, p)| (*s, p.last_rule())).collect();
    Ok(CompiledPolicy {
        program: Program::merge(parts.into_iter().map(|(_, p)| p).collect()),
        parts: sizes,
    })
}

/// Why a route's policy settings do not compile (the route then denies).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The route's `policy`.
    #[error("policy: {0}")]
    Policy(policy::PolicyError),
    /// `allow_any_authenticated_user`.
    #[error("allow_any_authenticated_user: {0}")]
    AnyAuthenticatedUser(policy::PolicyError),
}

/// Why a `to` URL cannot be an upstream; each message names the URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Not a URL.
    #[error("to {to:?}: {error}")]
    Url { to: String, error: url::ParseError },
    /// A scheme other than `http`, `https` or `h2c`.
    #[error("to {0:?}: scheme must be http, https or h2c")]
    Scheme(String),
    /// No host.
    #[error("to {0:?}: missing host")]
    MissingHost(String),
    /// A user name or password in the URL.
    #[error("to {0:?}: credentials in upstream URLs are not allowed")]
    Credentials(String),
    /// A query or fragment in the URL.
    #[error("to {0:?}: query and fragment are not allowed")]
    QueryOrFragment(String),
}

/// Parses a `to` URL: `http`, `https` or `h2c`, host and optional port and path.
pub fn parse_upstream(to: &str) -> Result<Upstream, UpstreamError> {
    let url = url::Url::parse(to.trim()).map_err(|error| UpstreamError::Url {
        to: to.to_string(),
        error,
    })?;
    let scheme = UpstreamScheme::from_url_scheme(url.scheme())
        .ok_or_else(|| UpstreamError::Scheme(to.to_string()))?;
    let default_port = scheme.default_port();
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| UpstreamError::MissingHost(to.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UpstreamError::Credentials(to.to_string()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UpstreamError::QueryOrFragment(to.to_string()));
    }
    let port = url.port().unwrap_or(default_port);
    Ok(Upstream {
        scheme,
        authority: format!("{host}:{port}"),
        base_path: url.path().trim_end_matches('/').to_string(),
    })
}

fn build_tls(certs: &[CertInput], diagnostics: &mut Vec<Diagnostic>) -> TlsConfig {
    let mut tls = TlsConfig::default();
    let mut fingerprint = String::new();
    for c in certs {
        match load_certified_key(c) {
            Ok((key, names, not_after)) => {
                fingerprint.push_str(&format!("{}:{};", c.source, names.join(",")));
                use sha2::Digest;
                fingerprint.push_str(&hex::encode(
                    &sha2::Sha256::digest(c.chain_pem.as_bytes())[..8],
                ));
                let key = Arc::new(key);
                if c.hosts.is_empty() {
                    for n in &names {
                        let n = n.to_ascii_lowercase();
                        if let Some(suffix) = n.strip_prefix("*.") {
                            tls.by_wildcard
                                .entry(suffix.to_string())
                                .or_insert_with(|| key.clone());
                        } else {
                            tls.by_name.entry(n).or_insert_with(|| key.clone());
                        }
                    }
                    if tls.default.is_none() {
                        tls.default = Some(key.clone());
                    }
                } else {
                    for host in &c.hosts {
                        let host = host.to_ascii_lowercase();
                        if !names.iter().any(|n| name_covers(n, &host)) {
                            diagnostics.push(Diagnostic {
                                severity: Severity::Warning,
                                object: c.source.clone(),
                                reason: Reason::InvalidCertificate,
                                message: format!(
                                    "TLS: the certificate does not cover {host} (it holds {})",
                                    names.join(", ")
                                ),
                            });
                            continue;
                        }
                        if let Some(suffix) = host.strip_prefix("*.") {
                            tls.by_wildcard
                                .entry(suffix.to_string())
                                .or_insert_with(|| key.clone());
                        } else {
                            tls.by_name.entry(host).or_insert_with(|| key.clone());
                        }
                    }
                }
                tls.expiry.push((
                    names
                        .first()
                        .cloned()
                        .unwrap_or_else(|| c.source.to_string()),
                    not_after,
                ));
            }
            Err(message) => diagnostics.push(Diagnostic {
                severity: Severity::Error,
                object: c.source.clone(),
                reason: Reason::InvalidCertificate,
                message,
            }),
        }
    }
    tls.fingerprint = fingerprint;
    tls
}

/// Exact hosts of cluster routes that have no certificate of their own and
/// are covered by a wildcard certificate from another namespace: a
/// namespace's certificate is never served for a host it does not own.
fn not_by_wildcard<'a>(
    routes: impl Iterator<Item = &'a RouteInput>,
    certs: &[CertInput],
    tls: &TlsConfig,
) -> std::collections::HashSet<String> {
    let mut wildcard_namespace: HashMap<String, &str> = HashMap::new();
    for c in certs.iter().filter(|c| !c.source.kind.is_empty()) {
        for suffix in c.hosts.iter().filter_map(|h| h.strip_prefix("*.")) {
            wildcard_namespace
                .entry(suffix.to_ascii_lowercase())
                .or_insert(c.source.namespace.as_str());
        }
    }
    if wildcard_namespace.is_empty() {
        return std::collections::HashSet::new();
    }
    routes
        .filter(|r| !r.source.kind.is_empty() && !r.host.is_empty() && !r.host.starts_with("*."))
        .map(|r| (r.host.to_ascii_lowercase(), r.source.namespace.as_str()))
        .filter(|(host, owner)| {
            !tls.by_name.contains_key(host)
                && host
                    .split_once('.')
                    .and_then(|(_, parent)| wildcard_namespace.get(parent))
                    .is_some_and(|ns| ns != owner)
        })
        .map(|(host, _)| host)
        .collect()
}

/// The hosts whose handshakes ask for a client certificate: those of
/// routes with a `tls_downstream_client_ca` (an invalid one makes its route
/// deny, so it asks nothing).
fn client_auth_names(
    routes: &[Arc<Route>],
    global: Option<&DownstreamMtls>,
) -> Option<ClientAuthNames> {
    let mut names = ClientAuthNames::default();
    let mut fingerprint: Vec<String> = Vec::new();
    if let Some(g) = global {
        // Every handshake asks; with reject_connection, requires.
        names.any = true;
        names.subjects = g.ca.subjects().to_vec();
        fingerprint.push(format!(
            "downstream_mtls:{}:{}",
            g.reject_connection,
            g.ca.digest()
        ));
    }
    let mut required = global
        .filter(|g| g.reject_connection)
        .map(|g| g.ca.roots().clone());
    for r in routes {
        let Some(ca) = &r.client_ca else { continue };
        match &r.host {
            HostMatch::Exact(h) => {
                names.by_name.insert(h.clone());
            }
            HostMatch::Wildcard(suffix) => {
                names.by_wildcard.insert(suffix.clone());
            }
            HostMatch::WildcardAny(_) | HostMatch::Any => names.any = true,
        }
        for s in ca.subjects() {
            if !names.subjects.iter().any(|n| n.as_ref() == s.as_ref()) {
                names.subjects.push(s.clone());
            }
        }
        if let Some(all) = &mut required {
            for anchor in &ca.roots().roots {
                if !all.roots.contains(anchor) {
                    all.roots.push(anchor.clone());
                }
            }
        }
        fingerprint.push(format!("{:?}:{}", r.host, ca.digest()));
    }
    if fingerprint.is_empty() {
        return None;
    }
    fingerprint.sort();
    fingerprint.dedup();
    // Short: the listener compares it on every handshake that asks.
    names.fingerprint = {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(fingerprint.join(";").as_bytes())[..16])
    };
    names.required = required.map(Arc::new);
    Some(names)
}

/// A PEM setting (`tls_custom_ca`, `tls_client_cert`, …): PEM, or base64 of
/// PEM (Pomerium's form). The error names the setting, never its value.
fn pem_text(key: &str, text: &str) -> Result<String, ValueError> {
    use base64::Engine as _;
    let t = text.trim();
    if t.contains("-----BEGIN") {
        return Ok(t.to_string());
    }
    let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ValueError::NotPem(key.to_string()))
}

/// A route setting's value that cannot be used; each message names the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A `depends_on` entry that names no single host.
    #[error("depends_on {entry:?}: {why}")]
    DependsOn { entry: String, why: String },
    /// A certificate or key setting that is neither PEM nor base64 of PEM.
    #[error("{0}: neither PEM nor base64 of PEM")]
    NotPem(String),
}

/// Checks upstream TLS settings when the configuration is loaded, so a bad
/// CA bundle or server name is the route's diagnostic, not a 502 on the
/// first request.
fn check_upstream_tls(tls: &UpstreamTls) -> Result<(), crate::model::UpstreamTlsError> {
    tls.custom_roots()?;
    tls.server_name()?;
    tls.client_auth()?;
    Ok(())
}

/// True if the certificate name `name` (possibly `*.suffix`) covers `host`.
fn name_covers(name: &str, host: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if name == host {
        return true;
    }
    match (name.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, rest))) => !label.is_empty() && label != "*" && rest == suffix,
        _ => false,
    }
}

/// Parses a PEM chain and key into a rustls key, its DNS names and expiry.
fn load_certified_key(
    c: &CertInput,
) -> Result<(rustls::sign::CertifiedKey, Vec<String>, i64), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(c.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("certificate: {e}"))?;
    let leaf = chain
        .first()
        .ok_or("certificate: no CERTIFICATE block found")?;
    let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes())
        .map_err(|e| format!("certificate key: {e}"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("certificate key: {e}"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("certificate: cannot parse: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    if names.is_empty()
        && let Some(cn) = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
    {
        names.push(cn.to_string());
    }
    let not_after = parsed.validity().not_after.timestamp();
    let ck = rustls::sign::CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    Ok((ck, names, not_after))
}

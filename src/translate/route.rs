//! The steps of building one route from its input (as Pomerium's
//! `ingress_to_route` sets a route's from, path and service URLs): each
//! reads one group of options and records what is wrong with them in the
//! route's [`Problems`], which deny the route when there are any.

use super::{
    CompiledPolicy, GlobalInputs, RouteInput, check_upstream_tls, compile_policy, depends_on_host,
    health, parse_upstream, pem_text, reserved_header, unsupported_substitution,
};
use crate::identity::IssuerFormat;
use crate::model::redirect::{Redirect, STATUSES, Scheme};
use crate::model::rewrite::{PathRewrite, Pattern, ResponseHeaderRewrite, substitution};
use crate::model::routing::{HostMatch, PathMatch};
use crate::model::rule_origin::RuleOrigin;
use crate::model::{
    Access, BearerTokenFormat, ClientCa, Diagnostic, LoadBalancing, ObjectRef, Reason, RouteIdp,
    RouteInfo, Severity, Upstream, UpstreamScheme, UpstreamTls,
};
use crate::settings::{RouteOptions, RouteRedirect};
use http::{HeaderName, HeaderValue, StatusCode};
use std::collections::HashMap;

/// What is wrong with one route, in the order found.
pub(super) struct Problems(pub Vec<String>);

impl Problems {
    /// `result`'s value, or `fallback` with its error recorded.
    pub fn or<T, E: std::fmt::Display>(&mut self, result: Result<T, E>, fallback: T) -> T {
        result.unwrap_or_else(|e| {
            self.0.push(e.to_string());
            fallback
        })
    }

    /// Records one problem.
    pub fn push(&mut self, problem: impl std::fmt::Display) {
        self.0.push(problem.to_string());
    }

    /// `access`, or when there is any problem a denial naming them all,
    /// with an error diagnostic on the route's object.
    pub fn deny(
        &self,
        access: Access,
        object: &ObjectRef,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Access {
        if self.0.is_empty() {
            return access;
        }
        let message = self.0.join("; ");
        diagnostics.push(Diagnostic {
            severity: Severity::Error,
            object: object.clone(),
            reason: Reason::InvalidRoute,
            message: message.clone(),
        });
        Access::Invalid(message)
    }
}

/// The route's upstreams (`to`), over h2c when `h2c_upstream` is set;
/// a route that redirects needs none.
pub(super) fn upstreams(input: &RouteInput, problems: &mut Problems) -> Vec<Upstream> {
    let mut upstreams = input.backends.clone();
    if input.options.h2c_upstream {
        for u in upstreams
            .iter_mut()
            .filter(|u| u.scheme == UpstreamScheme::Http)
        {
            u.scheme = UpstreamScheme::H2c;
        }
    }
    if upstreams.is_empty() && problems.0.is_empty() && input.options.redirect.is_none() {
        problems.push("to: at least one upstream URL is required");
    }
    upstreams
}

/// Who may use the route: public, or its compiled policy (compiled once per
/// distinct policy across routes), with where the policy's rules came from.
pub(super) fn access(
    input: &RouteInput,
    programs: &mut HashMap<String, Result<CompiledPolicy, super::PolicyError>>,
    problems: &mut Problems,
) -> (Access, Vec<RuleOrigin>) {
    let spec = &input.options;
    if spec.allow_public_unauthenticated_access {
        return (Access::Public, Vec::new());
    }
    let key = serde_json::to_string(&(
        &spec.policy,
        &spec.allowed_users,
        &spec.allowed_domains,
        &spec.allowed_idp_claims,
        spec.allow_any_authenticated_user,
    ))
    .unwrap_or_default();
    let compiled = programs
        .entry(key)
        .or_insert_with(|| compile_policy(spec))
        .clone();
    let origins = compiled
        .as_ref()
        .map(|c| rule_origins(&input.policy_origins, &c.parts))
        .unwrap_or_default();
    let access = problems.or(
        compiled.map(|c| Access::Policy(c.program)),
        Access::Invalid(String::new()),
    );
    (access, origins)
}

/// `origins` for a route that evaluates a policy; none for a public or
/// invalid one.
pub(super) fn policy_only(access: &Access, origins: Vec<RuleOrigin>) -> Vec<RuleOrigin> {
    match access {
        Access::Policy(_) => origins,
        _ => Vec::new(),
    }
}

/// The runs of a merged program's rule numbers and where each was written:
/// the parts in order, the `policy` part split by `policy_origins` when the
/// source said where its rule objects came from.
fn rule_origins(policy_origins: &[RuleOrigin], parts: &[(&'static str, usize)]) -> Vec<RuleOrigin> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (setting, last) in parts {
        if *setting == "policy" && !policy_origins.is_empty() {
            out.extend(policy_origins.iter().map(|o| RuleOrigin {
                first: o.first + offset,
                ..o.clone()
            }));
        } else {
            out.push(RuleOrigin {
                first: offset + 1,
                rules: *last,
                policy: None,
                setting,
            });
        }
        offset += last;
    }
    out
}

/// Fixed request headers to set.
pub(super) type SetHeaders = Vec<(HeaderName, HeaderValue)>;
/// Request headers whose value is a `${pomerium.…}` template.
pub(super) type TemplatedHeaders = Vec<(HeaderName, String)>;

/// `set_request_headers`: fixed values, and templates filled per request.
pub(super) fn request_headers(
    spec: &RouteOptions,
    problems: &mut Problems,
) -> (SetHeaders, TemplatedHeaders) {
    let mut set = Vec::new();
    let mut templated = Vec::new();
    for (name, value) in &spec.set_request_headers {
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            problems.push(format!("set_request_headers: invalid header {name:?}"));
            continue;
        };
        if let Some(why) = reserved_header(&n, true) {
            problems.push(format!("set_request_headers: {name} {why}"));
            continue;
        }
        if value.contains("${pomerium.") {
            match unsupported_substitution(value) {
                Some(v) => problems.push(format!(
                    "set_request_headers {name}: {v} is not supported by jetbridge; \
                     ${{pomerium.jwt}}, ${{pomerium.id_token}} and ${{pomerium.access_token}} are"
                )),
                None => templated.push((n, value.clone())),
            }
            continue;
        }
        match HeaderValue::from_str(value) {
            Ok(v) => set.push((n, v)),
            Err(_) => problems.push(format!("set_request_headers: invalid value for {name:?}")),
        }
    }
    (set, templated)
}

/// `kubernetes_service_account_token` as a sensitive bearer header value.
pub(super) fn kubernetes_token(
    spec: &RouteOptions,
    problems: &mut Problems,
) -> Option<HeaderValue> {
    let t = spec.kubernetes_service_account_token.as_ref()?;
    match HeaderValue::from_str(&format!("Bearer {}", t.trim())) {
        Ok(mut v) => {
            v.set_sensitive(true);
            Some(v)
        }
        Err(_) => {
            problems.push("kubernetes_service_account_token: not a valid token");
            None
        }
    }
}

/// Pomerium's groups filter: the union of the global and the route's lists.
pub(super) fn groups_filter(g: &GlobalInputs, spec: &RouteOptions) -> Option<Vec<String>> {
    match (&g.jwt_groups_filter, &spec.jwt_groups_filter) {
        (None, None) => None,
        (a, b) => {
            let mut all: Vec<String> = a.iter().chain(b.iter()).flatten().cloned().collect();
            all.sort();
            all.dedup();
            Some(all)
        }
    }
}

/// The route's `jwt_issuer_format`, else the global one.
pub(super) fn issuer_format(
    g: &GlobalInputs,
    spec: &RouteOptions,
    problems: &mut Problems,
) -> IssuerFormat {
    match &spec.jwt_issuer_format {
        None => g.issuer_format,
        Some(text) => problems.or(IssuerFormat::parse(text), g.issuer_format),
    }
}

/// The route's `bearer_token_format`, else the global one.
pub(super) fn bearer_token_format(
    g: &GlobalInputs,
    spec: &RouteOptions,
    problems: &mut Problems,
) -> BearerTokenFormat {
    match &spec.bearer_token_format {
        None => g.bearer_token_format,
        Some(text) => problems.or(BearerTokenFormat::parse(text), g.bearer_token_format),
    }
}

/// The route's own client at the global identity provider, if it has one.
pub(super) fn idp(
    g: &GlobalInputs,
    spec: &RouteOptions,
    problems: &mut Problems,
) -> Option<RouteIdp> {
    match (&spec.idp_client_id, &spec.idp_client_secret, &g.auth.idp) {
        (None, None, _) => None,
        (Some(id), Some(secret), Some(global)) if !id.trim().is_empty() => {
            Some(RouteIdp::new(global, id.trim(), secret.trim()))
        }
        (Some(_), Some(_), None) => {
            problems.push(
                "idp_client_id: a route's own client needs the global identity provider \
                 (idp_provider_url)",
            );
            None
        }
        _ => {
            problems.push("idp_client_id and idp_client_secret go together");
            None
        }
    }
}

/// `depends_on`: the hosts signed in to along with this one.
pub(super) fn depends_on(spec: &RouteOptions, problems: &mut Problems) -> Vec<String> {
    spec.depends_on
        .iter()
        .filter_map(|h| depends_on_host(h).map_err(|e| problems.push(e)).ok())
        .collect()
}

/// Health checks, outlier detection, circuit breaker and panic threshold.
pub(super) struct Health {
    pub checks: Vec<crate::model::HealthCheck>,
    pub outlier_detection: Option<crate::model::OutlierDetection>,
    pub circuit_breaker: Option<crate::model::CircuitBreaker>,
    pub healthy_panic_threshold: u32,
}

/// The route's health settings.
pub(super) fn health(spec: &RouteOptions, problems: &mut Problems) -> Health {
    let checks = match &spec.health_checks {
        None => Vec::new(),
        Some(v) => problems.or(health::parse(v), Vec::new()),
    };
    let outlier_detection = spec.outlier_detection.as_ref().and_then(|v| {
        health::outlier_detection(v)
            .map_err(|e| problems.push(e))
            .ok()
    });
    let circuit_breaker = match &spec.circuit_breaker_thresholds {
        None => None,
        Some(v) => problems.or(health::circuit_breaker(v), None),
    };
    let healthy_panic_threshold = match spec.healthy_panic_threshold {
        None => 50,
        Some(p @ 0..=100) => p,
        Some(p) => {
            problems.push(format!("healthy_panic_threshold {p}: expected 0 to 100"));
            50
        }
    };
    Health {
        checks,
        outlier_detection,
        circuit_breaker,
        healthy_panic_threshold,
    }
}

/// `rewrite_response_headers`.
pub(super) fn response_rewrites(
    spec: &RouteOptions,
    problems: &mut Problems,
) -> Vec<ResponseHeaderRewrite> {
    let mut out = Vec::new();
    for r in &spec.rewrite_response_headers {
        match HeaderName::from_bytes(r.header.as_bytes()) {
            Ok(header) => out.push(ResponseHeaderRewrite {
                header,
                prefix: r.prefix.clone(),
                value: r.value.clone(),
            }),
            Err(_) => problems.push(format!(
                "rewrite_response_headers: invalid header {:?}",
                r.header
            )),
        }
    }
    out
}

/// `remove_request_headers`.
pub(super) fn removed_request_headers(
    spec: &RouteOptions,
    problems: &mut Problems,
) -> Vec<HeaderName> {
    let mut out = Vec::new();
    for name in &spec.remove_request_headers {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) => out.push(n),
            Err(_) => problems.push(format!("remove_request_headers: invalid header {name:?}")),
        }
    }
    out
}

/// `jwt_claims_headers`. Pomerium has one global map (per-route maps are
/// its open issue #3443); a route's map here adds to the global one, and a
/// header the route names again takes the route's claim.
pub(super) fn claims_headers(
    g: &GlobalInputs,
    spec: &RouteOptions,
    problems: &mut Problems,
) -> Vec<(HeaderName, String)> {
    let route_claims = spec.jwt_claims_headers.as_ref().map(|c| c.0.as_slice());
    let mut out: Vec<(HeaderName, String)> = Vec::new();
    for (header, claim) in g
        .jwt_claims_headers
        .iter()
        .chain(route_claims.unwrap_or(&[]))
    {
        match HeaderName::from_bytes(header.as_bytes()) {
            Ok(n) if reserved_header(&n, false).is_some() => problems.push(format!(
                "jwt_claims_headers: {header} {}",
                reserved_header(&n, false).unwrap_or_default()
            )),
            Ok(n) => {
                out.retain(|(h, _)| *h != n);
                out.push((n, claim.clone()));
            }
            Err(_) => problems.push(format!("jwt_claims_headers: invalid header {header:?}")),
        }
    }
    out
}

/// A PEM setting given inline (PEM or base64 of PEM) or as a file the
/// source read; not both.
fn pem_setting(
    key: &str,
    inline: &Option<String>,
    file_key: &Option<String>,
    contents: &Option<String>,
    problems: &mut Problems,
) -> Option<String> {
    match (inline, file_key, contents) {
        (Some(_), Some(_), _) => {
            problems.push(format!("{key} and {key}_file: set only one"));
            None
        }
        (Some(text), None, _) => pem_text(key, text).map_err(|e| problems.push(e)).ok(),
        (None, _, Some(pem)) => Some(pem.clone()),
        (None, _, None) => None,
    }
}

/// How the proxy talks TLS to the upstreams, and the PEM of the CA that
/// the route's own clients must present certificates from, if any.
pub(super) fn upstream_tls(
    input: &RouteInput,
    problems: &mut Problems,
) -> (UpstreamTls, Option<String>) {
    let spec = &input.options;
    let custom_ca_pem = match (&input.custom_ca_pem, &spec.tls_custom_ca) {
        (Some(pem), _) => Some(pem.clone()),
        (None, Some(text)) => pem_text("tls_custom_ca", text)
            .map_err(|e| problems.push(e))
            .ok(),
        (None, None) => None,
    };
    let client_cert_pem = pem_setting(
        "tls_client_cert",
        &spec.tls_client_cert,
        &spec.tls_client_cert_file,
        &input.client_cert_pem,
        problems,
    );
    let client_key_pem = pem_setting(
        "tls_client_key",
        &spec.tls_client_key,
        &spec.tls_client_key_file,
        &input.client_key_pem,
        problems,
    );
    let downstream_ca_pem = pem_setting(
        "tls_downstream_client_ca",
        &spec.tls_downstream_client_ca,
        &spec.tls_downstream_client_ca_file,
        &input.downstream_ca_pem,
        problems,
    );
    let tls = UpstreamTls {
        skip_verify: spec.tls_skip_verify,
        custom_ca_pem,
        server_name: spec.tls_server_name.clone(),
        client_cert_pem,
        client_key_pem,
        http1_only: input.contract == crate::model::Contract::GatewayApi && !spec.h2c_upstream,
    };
    if let Err(e) = check_upstream_tls(&tls) {
        problems.push(e);
    }
    (tls, downstream_ca_pem)
}

/// The CA client certificates must come from: the route's own (parsed once
/// per distinct PEM), else the global `downstream_mtls` one.
pub(super) fn client_ca(
    g: &GlobalInputs,
    downstream_ca_pem: Option<String>,
    client_cas: &mut HashMap<String, Result<ClientCa, crate::model::OptionError>>,
    problems: &mut Problems,
) -> Option<ClientCa> {
    let Some(pem) = downstream_ca_pem else {
        return g.downstream_mtls.as_ref().map(|d| d.ca.clone());
    };
    let parsed = client_cas
        .entry(pem)
        .or_insert_with_key(|pem| ClientCa::parse(pem))
        .clone();
    parsed.map_err(|e| problems.push(e)).ok()
}

/// The route's name, description and logo for the routes page.
/// The audiences the route accepts in IdP access tokens: its own list, or
/// the global one.
pub(super) fn access_token_audiences(g: &GlobalInputs, spec: &RouteOptions) -> Vec<String> {
    spec.idp_access_token_allowed_audiences
        .clone()
        .unwrap_or_else(|| g.access_token_audiences.clone())
}

/// `pass_identity_headers`: the route's, else the global setting.
pub(super) fn pass_identity_headers(g: &GlobalInputs, spec: &RouteOptions) -> bool {
    spec.pass_identity_headers
        .unwrap_or(g.pass_identity_headers)
}

/// `load_balancing_policy` (round robin when unset).
pub(super) fn load_balancing(spec: &RouteOptions, problems: &mut Problems) -> LoadBalancing {
    match spec.load_balancing_policy.as_deref() {
        None => LoadBalancing::RoundRobin,
        Some(text) => problems.or(LoadBalancing::parse(text), LoadBalancing::RoundRobin),
    }
}

/// The route's upstream timeout: its own, the global default, or the
/// built-in one; `0s` means none (as in Envoy and Pomerium).
pub(super) fn timeout(g: &GlobalInputs, spec: &RouteOptions) -> std::time::Duration {
    match spec
        .timeout
        .or(g.default_upstream_timeout)
        .unwrap_or(crate::model::DEFAULT_TIMEOUT)
    {
        std::time::Duration::ZERO => std::time::Duration::MAX,
        t => t,
    }
}

pub(super) fn info(spec: &RouteOptions) -> RouteInfo {
    RouteInfo {
        name: spec.name.clone().unwrap_or_default(),
        description: spec.description.clone().unwrap_or_default(),
        logo_url: spec.logo_url.clone().unwrap_or_default(),
    }
}

/// Appended headers.
pub(super) type AddHeaders = Vec<(HeaderName, HeaderValue)>;

/// `add_request_headers` and `add_response_headers`: appended after any
/// the client (or the upstream) sent; the headers the proxy owns are
/// refused as for `set_request_headers`.
pub(super) fn appended_headers(
    spec: &RouteOptions,
    problems: &mut Problems,
) -> (AddHeaders, AddHeaders) {
    (
        appended(
            "add_request_headers",
            &spec.add_request_headers,
            true,
            problems,
        ),
        appended(
            "add_response_headers",
            &spec.add_response_headers,
            false,
            problems,
        ),
    )
}

fn appended(
    key: &str,
    headers: &std::collections::BTreeMap<String, String>,
    request: bool,
    problems: &mut Problems,
) -> AddHeaders {
    let mut out = Vec::new();
    for (name, value) in headers {
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            problems.push(format!("{key}: invalid header {name:?}"));
            continue;
        };
        if let Some(why) = reserved_header(&n, request) {
            problems.push(format!("{key}: {name} {why}"));
            continue;
        }
        match HeaderValue::from_str(value) {
            Ok(v) => out.push((n, v)),
            Err(_) => problems.push(format!("{key}: invalid value for {name:?}")),
        }
    }
    out
}

/// Whether `p` is a path a route may write: empty, or starting with `/`,
/// without query or fragment, and valid in a request target.
pub(super) fn is_path(p: &str) -> bool {
    p.is_empty()
        || (p.starts_with('/')
            && !p.contains(['?', '#'])
            && p.parse::<http::uri::PathAndQuery>().is_ok())
}

/// `redirect`: every part checked here, so the proxy writes `Location`
/// from valid parts only.
pub(super) fn redirect(
    spec: &RouteOptions,
    path: &PathMatch,
    problems: &mut Problems,
) -> Option<Redirect> {
    let r = spec.redirect.as_ref()?;
    let checked = redirect_scheme(r).and_then(|scheme| {
        Ok(Redirect {
            scheme,
            host: redirect_host(r)?,
            port: redirect_port(r)?,
            path: redirect_path(r, path)?,
            status: redirect_status(r)?,
            strip_query: r.strip_query.unwrap_or(false),
        })
    });
    match checked {
        Ok(r) => Some(r),
        Err(e) => {
            problems.push(format!("redirect: {e}"));
            None
        }
    }
}

fn redirect_scheme(r: &RouteRedirect) -> Result<Option<Scheme>, String> {
    let named = match r.scheme_redirect.as_deref().map(str::to_ascii_lowercase) {
        None => None,
        Some(s) if s == "http" => Some(Scheme::Http),
        Some(s) if s == "https" => Some(Scheme::Https),
        Some(s) => return Err(format!("scheme_redirect {s:?}: must be http or https")),
    };
    match (r.https_redirect, named) {
        (Some(true), Some(Scheme::Http)) => {
            Err("https_redirect and scheme_redirect: http contradict each other".into())
        }
        (Some(true), _) => Ok(Some(Scheme::Https)),
        (_, named) => Ok(named),
    }
}

fn redirect_host(r: &RouteRedirect) -> Result<Option<String>, String> {
    let Some(h) = &r.host_redirect else {
        return Ok(None);
    };
    match HostMatch::parse(h) {
        Ok(HostMatch::Exact(h)) => Ok(Some(h)),
        _ => Err(format!("host_redirect {h:?}: must be one host name")),
    }
}

fn redirect_port(r: &RouteRedirect) -> Result<Option<u16>, String> {
    match r.port_redirect {
        None => Ok(None),
        Some(p) => match u16::try_from(p) {
            Ok(p) if p > 0 => Ok(Some(p)),
            _ => Err(format!("port_redirect {p}: must be 1-65535")),
        },
    }
}

fn redirect_path(r: &RouteRedirect, path: &PathMatch) -> Result<PathRewrite, String> {
    let bad =
        |key: &str, v: &str| format!("{key} {v:?}: must be a path (starting with /, no query)");
    match (&r.path_redirect, &r.prefix_rewrite, path) {
        (Some(_), Some(_), _) => {
            Err("path_redirect and prefix_rewrite are mutually exclusive".into())
        }
        (Some(p), None, _) if p.is_empty() || !is_path(p) => Err(bad("path_redirect", p)),
        (Some(p), None, _) => Ok(PathRewrite::Regex {
            pattern: Pattern::new("^.*$").map_err(|e| e.to_string())?,
            substitution: substitution(p),
        }),
        (None, Some(_), PathMatch::Regex(_)) => {
            Err("prefix_rewrite needs a prefix or path route, not regex".into())
        }
        (None, Some(p), _) if !is_path(p) => Err(bad("prefix_rewrite", p)),
        (None, Some(p), m) => Ok(PathRewrite::Prefix {
            matched: m.as_str().to_string(),
            replacement: p.clone(),
        }),
        (None, None, _) => Ok(PathRewrite::Keep),
    }
}

/// The status: an HTTP redirect status, or Envoy's enum number for one.
fn redirect_status(r: &RouteRedirect) -> Result<StatusCode, String> {
    let code = match r.response_code {
        None => 301,
        Some(n @ 0..=4) => STATUSES[n as usize],
        Some(n) => u16::try_from(n).unwrap_or(0),
    };
    match STATUSES.contains(&code) {
        true => StatusCode::from_u16(code).map_err(|e| e.to_string()),
        false => Err(format!(
            "response_code {}: must be 301, 302, 303, 307 or 308",
            r.response_code.unwrap_or_default()
        )),
    }
}

/// `mirror_to`: URLs like `to`'s.
pub(super) fn mirror_to(spec: &RouteOptions, problems: &mut Problems) -> Vec<Upstream> {
    let mut out = Vec::new();
    for to in &spec.mirror_to {
        match parse_upstream(to) {
            Ok(u) => out.push(u),
            Err(e) => problems.push(format!("mirror_to: {e}")),
        }
    }
    out
}

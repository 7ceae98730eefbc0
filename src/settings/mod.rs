//! Settings: the Pomerium-style config file (`jetbridge standalone --config`)
//! as plain serde types, plus small value parsers (durations, string-or-list).
//!
//! Keys keep Pomerium's names so an existing `config.yaml` loads unchanged.
//! Unknown keys are errors that name the key and its line.

pub mod pomerium;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::time::Duration;

/// Errors reading the config file.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

/// The config file.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where each route and its `policy` are in the file (not a key; filled
    /// by [`ConfigFile::parse`]), in [`ConfigFile::all_routes`] order.
    #[serde(skip)]
    pub spans: Vec<RouteSpan>,
    /// HTTPS listen address (default `:8443` here; Pomerium's `:443`).
    #[serde(skip_serializing_if = "is_default")]
    pub address: Option<String>,
    /// Plain-HTTP listener that redirects to HTTPS.
    #[serde(skip_serializing_if = "is_default")]
    pub http_redirect_address: Option<String>,
    /// The HTTPS port users reach (e.g. 443 on a load balancer or Service
    /// in front of `address`): the port the HTTP→HTTPS redirect names.
    /// Unset: the port `address` is bound to. URLs built on the HTTPS
    /// listener name the host and port the client addressed.
    #[serde(skip_serializing_if = "is_default")]
    pub public_https_port: Option<u16>,
    /// Serve the routes on `address` over plain HTTP (behind a load balancer
    /// that terminates TLS). Sessions stay `Secure` cookies: browsers must
    /// still see https.
    #[serde(skip_serializing_if = "is_default")]
    pub insecure_server: Option<bool>,
    /// Every connection to the proxy's listeners starts with a PROXY
    /// protocol (v1 or v2) header, whose source address is the client's;
    /// a connection without one is closed. Only for listeners that a load
    /// balancer alone can reach.
    #[serde(skip_serializing_if = "is_default")]
    pub use_proxy_protocol: Option<bool>,
    /// How many proxies in front append to `X-Forwarded-For`: the client
    /// address is the entry this many from the right. 0 (the default): the
    /// header is the client's own claim, never read.
    #[serde(skip_serializing_if = "is_default")]
    pub xff_num_trusted_hops: Option<u32>,
    /// With trusted hops, forward the trusted `X-Forwarded-For` as received
    /// instead of appending the address the request came from.
    #[serde(skip_serializing_if = "is_default")]
    pub skip_xff_append: Option<bool>,
    /// Internal plain-HTTP listener: JWKS, health, metrics.
    #[serde(skip_serializing_if = "is_default")]
    pub internal_address: Option<String>,
    /// Alias of `internal_address`.
    #[serde(skip_serializing_if = "is_default")]
    pub metrics_address: Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub certificate_file: Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub certificate_key_file: Option<String>,
    /// Base64 PEM certificate (Pomerium's `certificate`).
    #[serde(skip_serializing_if = "is_default")]
    pub certificate: Option<String>,
    /// Base64 PEM key (Pomerium's `certificate_key`).
    #[serde(skip_serializing_if = "is_default")]
    pub certificate_key: Option<String>,
    #[serde(default)]
    #[serde(skip_serializing_if = "is_default")]
    pub certificates: Vec<CertificateEntry>,
    #[serde(skip_serializing_if = "is_default")]
    pub authenticate_service_url: Option<String>,
    /// Forward-auth mode (Pomerium's key until v0.20): the URL another
    /// proxy (nginx `auth_request`, Caddy `forward_auth`, Traefik
    /// `ForwardAuth`) asks `/verify?uri=` and `/?uri=` on.
    #[serde(skip_serializing_if = "is_default")]
    pub forward_auth_url: Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub idp_provider: Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub idp_provider_url: Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub idp_client_id: Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub idp_client_secret: Option<String>,
    /// File holding the client secret (e.g. a mounted Kubernetes Secret key).
    #[serde(skip_serializing_if = "is_default")]
    pub idp_client_secret_file: Option<String>,
    #[serde(default, deserialize_with = "string_or_list_opt")]
    #[serde(skip_serializing_if = "is_default")]
    pub idp_scopes: Option<Vec<String>>,
    /// Name of the ID-token/userinfo claim that holds group names (default `groups`).
    #[serde(skip_serializing_if = "is_default")]
    pub idp_groups_claim: Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub cookie_secret: Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub cookie_name: Option<String>,
    #[serde(default, with = "duration_opt")]
    #[serde(skip_serializing_if = "is_default")]
    pub cookie_expire: Option<Duration>,
    #[serde(skip_serializing_if = "is_default")]
    pub shared_secret: Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub signing_key: Option<String>,
    /// File holding the signing key (PEM or base64 PEM).
    #[serde(skip_serializing_if = "is_default")]
    pub signing_key_file: Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub jwt_claims_headers: Option<ClaimsHeaders>,
    #[serde(skip_serializing_if = "is_default")]
    pub jwt_issuer_format: Option<String>,
    /// What `Authorization: Bearer <token>` means: `default` (passed to the
    /// upstream), `idp_access_token` or `idp_identity_token` (a credential
    /// issued by the identity provider).
    #[serde(skip_serializing_if = "is_default")]
    pub bearer_token_format: Option<String>,
    /// Audiences an IdP access token (a JWT, as Microsoft Entra issues)
    /// must name to be accepted as a credential; unset: userinfo decides.
    #[serde(default, deserialize_with = "string_or_list_opt")]
    #[serde(skip_serializing_if = "is_default")]
    pub idp_access_token_allowed_audiences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "is_default")]
    pub pass_identity_headers: Option<bool>,
    /// Response headers for every route. Unset: Pomerium's defaults
    /// (`X-Frame-Options`, `X-XSS-Protection`, and HSTS when a certificate is
    /// configured); a `disable` key turns them all off.
    #[serde(skip_serializing_if = "is_default")]
    pub set_response_headers: Option<BTreeMap<String, String>>,
    /// Pomerium's runtime flags. `pomerium_jwt_endpoint` serves
    /// `/.pomerium/jwt`; the other known flags are accepted and have no
    /// effect here; an unknown flag is a warning.
    #[serde(skip_serializing_if = "is_default")]
    pub runtime_flags: Option<BTreeMap<String, bool>>,
    /// Groups to keep in the assertion's `groups` (with each route's own list).
    #[serde(default, deserialize_with = "string_or_list_opt")]
    #[serde(skip_serializing_if = "is_default")]
    pub jwt_groups_filter: Option<Vec<String>>,
    /// Route `timeout` when a route sets none (default 30s).
    #[serde(default, with = "duration_opt")]
    #[serde(skip_serializing_if = "is_default")]
    pub default_upstream_timeout: Option<Duration>,
    /// Client connections with no request in flight for this long are
    /// closed (default 5m; Pomerium's `timeout_idle`).
    #[serde(default, with = "duration_opt")]
    #[serde(skip_serializing_if = "is_default")]
    pub timeout_idle: Option<Duration>,
    /// Log level (`error`, `warn`, `info`, `debug`); applied on reload.
    #[serde(skip_serializing_if = "is_default")]
    pub log_level: Option<String>,
    /// `json` or `text` (default: text on a terminal, JSON otherwise).
    #[serde(skip_serializing_if = "is_default")]
    pub log_format: Option<String>,
    /// One log line per request (default true); applied on reload.
    #[serde(skip_serializing_if = "is_default")]
    pub access_log: Option<bool>,
    /// One decision-log line per authorization decision (default true);
    /// applied on reload.
    #[serde(skip_serializing_if = "is_default")]
    pub authorize_log: Option<bool>,
    /// The decision log's identity and request fields, by Pomerium's
    /// names (a list, or comma-separated); applied on reload.
    #[serde(skip_serializing_if = "is_default")]
    pub authorize_log_fields: Option<crate::telemetry::AuthorizeLogFields>,
    /// Client certificates for every route (Pomerium's `downstream_mtls`).
    #[serde(skip_serializing_if = "is_default")]
    pub downstream_mtls: Option<DownstreamMtls>,
    /// Traces: `otlp` exports OpenTelemetry spans, `none` (the default)
    /// makes none (Pomerium's `tracing_provider`; `otel_traces_exporter`
    /// is read too). Read at start.
    #[serde(alias = "otel_traces_exporter")]
    #[serde(skip_serializing_if = "is_default")]
    pub tracing_provider: Option<String>,
    /// The ratio of new traces sampled, 0 to 1 (default 1); a client's
    /// `traceparent` decides for the traces it continues.
    #[serde(alias = "otel_traces_sampler_arg")]
    #[serde(skip_serializing_if = "is_default")]
    pub tracing_sample_rate: Option<f64>,
    /// The OTLP receiver's base URL (`http://collector:4318`; `/v1/traces`
    /// is added).
    #[serde(alias = "otel_exporter_otlp_endpoint")]
    #[serde(skip_serializing_if = "is_default")]
    pub tracing_otlp_endpoint: Option<String>,
    /// `http/protobuf` (the default and the only one).
    #[serde(alias = "otel_exporter_otlp_protocol")]
    #[serde(skip_serializing_if = "is_default")]
    pub tracing_otlp_protocol: Option<String>,
    #[serde(default)]
    #[serde(skip_serializing_if = "is_default")]
    pub routes: Vec<RouteConfig>,
    /// Pomerium's older name for `routes`.
    #[serde(default)]
    #[serde(skip_serializing_if = "is_default")]
    pub policy: Vec<RouteConfig>,
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_redacted("ConfigFile", self, f)?;
        write!(f, " spans {:?}", self.spans)
    }
}

/// `downstream_mtls`: every route requires a client certificate issued by
/// `ca` (a route's own `tls_downstream_client_ca` takes its place there).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DownstreamMtls {
    /// Base64 of a PEM CA bundle (PEM as it is is accepted too).
    #[serde(skip_serializing_if = "is_default")]
    pub ca: Option<String>,
    /// A PEM CA bundle file.
    #[serde(skip_serializing_if = "is_default")]
    pub ca_file: Option<String>,
    /// `policy_with_default_deny` (default: a route answers 495 without a
    /// valid certificate) or `reject_connection` (the handshake fails).
    /// Pomerium's `policy` needs the `client_certificate` PPL criteria,
    /// which jetbridge does not have: it is refused.
    #[serde(skip_serializing_if = "is_default")]
    pub enforcement: Option<String>,
    /// Refused (not supported by jetbridge yet).
    #[serde(skip_serializing_if = "is_default")]
    pub crl: Option<serde_json::Value>,
    /// Refused (not supported by jetbridge yet).
    #[serde(skip_serializing_if = "is_default")]
    pub crl_file: Option<serde_json::Value>,
    /// Refused (not supported by jetbridge yet).
    #[serde(skip_serializing_if = "is_default")]
    pub match_subject_alt_names: Option<serde_json::Value>,
    /// Only 0 (no limit) is accepted: chains are not limited in depth.
    #[serde(skip_serializing_if = "is_default")]
    pub max_verify_depth: Option<u32>,
}

/// One entry of `certificates`.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificateEntry {
    /// Base64 PEM (or PEM) certificate chain.
    #[serde(skip_serializing_if = "is_default")]
    pub cert: Option<String>,
    /// Base64 PEM (or PEM) private key.
    #[serde(skip_serializing_if = "is_default")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub cert_file: Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub key_file: Option<String>,
}

impl std::fmt::Debug for CertificateEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_redacted("CertificateEntry", self, f)
    }
}

/// `jwt_claims_headers`: a map header → claim, or a list / comma string of claims.
/// Written as the map.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimsHeaders(pub Vec<(String, String)>);

impl Serialize for ClaimsHeaders {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(header, claim)| (header, claim)))
    }
}

impl<'de> Deserialize<'de> for ClaimsHeaders {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Map(BTreeMap<String, String>),
            List(Vec<String>),
            Text(String),
        }
        Ok(ClaimsHeaders(match Raw::deserialize(d)? {
            Raw::Map(m) => m.into_iter().collect(),
            Raw::List(l) => l
                .into_iter()
                .map(|c| (format!("x-pomerium-claim-{c}"), c))
                .collect(),
            Raw::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| (format!("x-pomerium-claim-{c}"), c.to_string()))
                .collect(),
        }))
    }
}

/// Declares the per-route settings once. From the one field list it makes
/// [`RouteOptions`] (what an Ingress's annotations deserialise into) and
/// [`RouteConfig`] (a config-file route: where it is, plus the same fields,
/// flat, so an error names the key's own line and an unknown key is refused —
/// `#[serde(flatten)]` would lose both).
macro_rules! route_options {
    ($( $(#[$attr:meta])* $name:ident : $ty:ty, )*) => {
        /// Every per-route setting except where the route is (`from`, `to`,
        /// `prefix`, `path`). Config-file routes and `jetbridge.dev/*` /
        /// `ingress.pomerium.io/*` annotations both deserialise into it, so a
        /// key means the same in both. Unknown keys are refused.
        #[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct RouteOptions {
            $(
                $(#[$attr])*
                #[serde(skip_serializing_if = "is_default")]
                pub $name: $ty,
            )*
        }

        impl std::fmt::Debug for RouteOptions {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                debug_redacted("RouteOptions", self, f)
            }
        }

        impl RouteOptions {
            /// Every key, in declaration order.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($name)),*];
        }

        /// One route of the config file: where it is, and its [`RouteOptions`].
        #[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct RouteConfig {
            pub from: String,
            #[serde(default, deserialize_with = "string_or_list")]
            #[serde(skip_serializing_if = "is_default")]
            pub to: Vec<String>,
            #[serde(skip_serializing_if = "is_default")]
            pub prefix: Option<String>,
            #[serde(skip_serializing_if = "is_default")]
            pub path: Option<String>,
            /// An RE2 pattern the whole path must match (instead of `prefix` / `path`).
            #[serde(skip_serializing_if = "is_default")]
            pub regex: Option<String>,
            $(
                $(#[$attr])*
                #[serde(skip_serializing_if = "is_default")]
                pub $name: $ty,
            )*
        }

        impl std::fmt::Debug for RouteConfig {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                debug_redacted("RouteConfig", self, f)
            }
        }

        impl RouteConfig {
            /// The route's settings, apart from where it is.
            pub fn options(&self) -> RouteOptions {
                RouteOptions { $( $name: self.$name.clone(), )* }
            }
        }
    };
}

route_options! {
    name: Option<String>,
    description: Option<String>,
    /// An image URL for the route in `/.pomerium/routes`.
    logo_url: Option<String>,
    /// Speak HTTP/2 without TLS (h2c, prior knowledge) to `http://` targets.
    #[serde(default)]
    h2c_upstream: bool,
    pass_identity_headers: Option<bool>,
    policy: Option<serde_json::Value>,
    #[serde(default)]
    allowed_users: Vec<String>,
    #[serde(default)]
    allowed_domains: Vec<String>,
    #[serde(default)]
    allowed_idp_claims: BTreeMap<String, Vec<serde_json::Value>>,
    #[serde(default)]
    allow_public_unauthenticated_access: bool,
    #[serde(default)]
    allow_any_authenticated_user: bool,
    #[serde(default)]
    allow_websockets: bool,
    /// Allow SPDY/3.1 upgrades (e.g. `kubectl exec` through the proxy).
    #[serde(default)]
    allow_spdy: bool,
    /// Other `Upgrade` protocols to pass through.
    #[serde(default)]
    allow_upgrades: Vec<String>,
    /// CORS preflight requests (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) pass without sign-in.
    #[serde(default)]
    cors_allow_preflight: bool,
    #[serde(default)]
    preserve_host_header: bool,
    #[serde(default)]
    set_request_headers: BTreeMap<String, String>,
    #[serde(default)]
    remove_request_headers: Vec<String>,
    /// Request headers appended to any of the same name the client sent
    /// (another line), unlike `set_request_headers`, which replaces.
    #[serde(default)]
    add_request_headers: BTreeMap<String, String>,
    /// Response headers appended to any of the same name the upstream sent
    /// (another line), unlike `set_response_headers`, which replaces.
    #[serde(default)]
    add_response_headers: BTreeMap<String, String>,
    /// Copy each request without a body to one of these URLs (round robin):
    /// fire-and-forget, its answer dropped; the forwarded request never
    /// waits for it.
    #[serde(default, deserialize_with = "string_or_list")]
    mirror_to: Vec<String>,
    /// Answer every request with a redirect instead of forwarding it
    /// (Pomerium's `redirect`); `to` is then not needed.
    redirect: Option<RouteRedirect>,
    /// The route's upstream timeout (time to the response head); `0s`: none.
    #[serde(default, with = "duration_opt")]
    timeout: Option<Duration>,
    #[serde(default, with = "duration_opt")]
    idle_timeout: Option<Duration>,
    #[serde(default)]
    tls_skip_verify: bool,
    /// A CA bundle file (config files only: an annotation cannot name a local file).
    tls_custom_ca_file: Option<String>,
    /// PEM, or base64 of PEM, CA bundle.
    tls_custom_ca: Option<String>,
    tls_server_name: Option<String>,
    /// Client certificate (PEM, or base64 of PEM) presented to an https
    /// upstream that asks for one; with `tls_client_key`.
    tls_client_cert: Option<String>,
    /// The private key of `tls_client_cert` (PEM, or base64 of PEM).
    tls_client_key: Option<String>,
    /// `tls_client_cert` from a file (config files only).
    tls_client_cert_file: Option<String>,
    /// `tls_client_key` from a file (config files only).
    tls_client_key_file: Option<String>,
    /// CA bundle (PEM, or base64 of PEM) a browser's client certificate
    /// must chain to on this route; without one the route answers 495.
    tls_downstream_client_ca: Option<String>,
    /// `tls_downstream_client_ca` from a file (config files only).
    tls_downstream_client_ca_file: Option<String>,
    jwt_claims_headers: Option<ClaimsHeaders>,
    /// Replaces the matched prefix (or exact path) in the forwarded path.
    prefix_rewrite: Option<String>,
    /// RE2 pattern whose matches in the forwarded path are substituted.
    regex_rewrite_pattern: Option<String>,
    /// Substitution for `regex_rewrite_pattern` (`\1` or `$1` groups).
    regex_rewrite_substitution: Option<String>,
    /// Forwarded `Host`, fixed.
    host_rewrite: Option<String>,
    /// Forwarded `Host` taken from this request header.
    host_rewrite_header: Option<String>,
    /// Forwarded `Host` made from the path by this RE2 pattern…
    host_path_regex_rewrite_pattern: Option<String>,
    /// …and this substitution.
    host_path_regex_rewrite_substitution: Option<String>,
    /// How a target is picked: `round_robin` (default), `random`,
    /// `least_request`, `ring_hash` or `maglev` (consistent by session, else
    /// client address).
    load_balancing_policy: Option<String>,
    /// Groups to keep in the assertion's `groups` (added to the global list).
    #[serde(default, deserialize_with = "string_or_list_opt")]
    jwt_groups_filter: Option<Vec<String>>,
    /// Active health checks of the targets: a list of Envoy `HealthCheck`s
    /// (`interval`, `timeout`, thresholds, `http_health_check` or
    /// `tcp_health_check`).
    health_checks: Option<serde_json::Value>,
    /// Passive ejection of failing targets: Envoy `OutlierDetection`
    /// (`consecutive_5xx`, `consecutive_gateway_failure`,
    /// `base_ejection_time`, `max_ejection_time`, `max_ejection_percent`).
    outlier_detection: Option<serde_json::Value>,
    /// Envoy `CircuitBreakers` thresholds: `max_requests` (and
    /// `max_connections`) bound the requests in flight to the targets.
    circuit_breaker_thresholds: Option<serde_json::Value>,
    /// Below this percentage of healthy targets, health is ignored
    /// (default 50; 0: failing targets are never used).
    healthy_panic_threshold: Option<u32>,
    /// `iss` of this route's assertions: `host` or `uri` (the global setting
    /// when unset).
    jwt_issuer_format: Option<String>,
    /// What `Authorization: Bearer <token>` means on this route (the global
    /// setting when unset).
    bearer_token_format: Option<String>,
    /// A Kubernetes service-account token: with a session, requests carry it
    /// as `Authorization: Bearer` and impersonate the user
    /// (`Impersonate-User`, `Impersonate-Group`), for the Kubernetes API.
    kubernetes_service_account_token: Option<String>,
    /// A file holding `kubernetes_service_account_token` (config files
    /// only), e.g. a mounted service-account token; re-read when it changes.
    kubernetes_service_account_token_file: Option<String>,
    /// Response headers (added to the global ones; a `disable` key drops all).
    set_response_headers: Option<BTreeMap<String, String>>,
    /// Response header values to rewrite, e.g. an upstream's `Location`.
    #[serde(default)]
    rewrite_response_headers: Vec<RewriteHeader>,
    /// This route's own OAuth client at the identity provider (Pomerium's
    /// per-route `idp_client_id`): its users sign in through it, and a
    /// session from another client does not count here.
    idp_client_id: Option<String>,
    /// The secret of `idp_client_id`.
    idp_client_secret: Option<String>,
    /// Audiences an IdP access token must name on this route (the global
    /// list when unset).
    #[serde(default, deserialize_with = "string_or_list_opt")]
    idp_access_token_allowed_audiences: Option<Vec<String>>,
    /// Hosts (`app.example.com` or `https://app.example.com`) a browser is
    /// also signed in to, one after the other, after signing in here.
    #[serde(default, deserialize_with = "string_or_list")]
    depends_on: Vec<String>,
    /// Serve a route without a host (an Ingress rule without `host`, or
    /// `from: https://` / `https://*`) for every host no other route names.
    #[serde(default)]
    subtle_allow_empty_host: bool,
}

/// One `rewrite_response_headers` entry: a value of `header` starting with
/// `prefix` (any value when empty) has that prefix replaced by `value`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RewriteHeader {
    pub header: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub value: String,
}

/// A route's `redirect`: the `Location` is the request's URL with the parts
/// given here replaced. Pomerium's keys.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteRedirect {
    /// `true`: scheme `https` (port 443 unless `port_redirect`).
    #[serde(skip_serializing_if = "is_default")]
    pub https_redirect: Option<bool>,
    /// `http` or `https`.
    #[serde(skip_serializing_if = "is_default")]
    pub scheme_redirect: Option<String>,
    /// The host to send the client to.
    #[serde(skip_serializing_if = "is_default")]
    pub host_redirect: Option<String>,
    /// The port to send the client to.
    #[serde(skip_serializing_if = "is_default")]
    pub port_redirect: Option<u32>,
    /// The whole path, replaced.
    #[serde(skip_serializing_if = "is_default")]
    pub path_redirect: Option<String>,
    /// The route's matched prefix (or path), replaced.
    #[serde(skip_serializing_if = "is_default")]
    pub prefix_rewrite: Option<String>,
    /// 301 (default), 302, 303, 307 or 308; Envoy's enum numbers 0–4
    /// (`MOVED_PERMANENTLY` … `PERMANENT_REDIRECT`) are read too.
    #[serde(skip_serializing_if = "is_default")]
    pub response_code: Option<u32>,
    /// Drop the query.
    #[serde(skip_serializing_if = "is_default")]
    pub strip_query: Option<bool>,
}

impl ConfigFile {
    /// The tracing keys, the OpenTelemetry environment variables filling
    /// what the file leaves unset.
    pub fn traces(&self) -> crate::traces::Keys {
        crate::traces::Keys {
            provider: self.tracing_provider.clone(),
            sample_rate: self.tracing_sample_rate,
            endpoint: self.tracing_otlp_endpoint.clone(),
            protocol: self.tracing_otlp_protocol.clone(),
        }
        .or_env(|k| std::env::var(k).ok())
    }

    /// Applies `authorize_log` and `authorize_log_fields` to the decision log.
    pub fn apply_decision_log(&self) {
        crate::telemetry::set_decision_log(
            self.authorize_log.unwrap_or(true),
            self.authorize_log_fields.unwrap_or_default(),
        );
    }

    /// Parses config text; `path` names the file in errors. An empty file
    /// (nothing but blanks and comments) is an error: it is what a reader
    /// sees while the file is being rewritten, never a configuration.
    /// Errors name the line, column and key and never quote a secret.
    pub fn parse(path: &str, text: &str) -> Result<Self, SettingsError> {
        let err = |message: String| SettingsError::Parse {
            path: path.to_string(),
            message: redact_secrets(&message, text),
        };
        if !has_content(text) {
            return Err(err("the file is empty (no settings)".into()));
        }
        let mut options = serde_saphyr::Options::default();
        options.with_snippet = false;
        let cfg =
            serde_saphyr::from_str_with_options::<ConfigFile>(text, options).map_err(|e| {
                let mut message = e
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let location = e.location().map(|l| (l.line(), l.column()));
                if let Some((line, column)) = location {
                    let suffix = format!(" at line {line}, column {column}");
                    if let Some(m) = message.strip_suffix(&suffix) {
                        message = m.to_string();
                    }
                }
                let message = describe_serde_error(&message);
                err(match location {
                    Some((line, column)) => format!("line {line}, column {column}: {message}"),
                    None => message,
                })
            })?;
        let mut cfg = cfg;
        cfg.spans = route_spans(text);
        Ok(cfg)
    }

    /// Reads and parses a config file.
    pub fn load(path: &str) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_string(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// `routes` followed by the legacy `policy` list.
    pub fn all_routes(&self) -> impl Iterator<Item = &RouteConfig> {
        self.routes.iter().chain(self.policy.iter())
    }
}

/// Where a config-file route is: the line and column (from 1) of its
/// entry, and of its `policy` value when it has one (`None` where the
/// parser cannot tell).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteSpan {
    pub at: Option<(usize, usize)>,
    pub policy: Option<(usize, usize)>,
}

/// The places of the routes in config text (`routes`, then the legacy
/// `policy` list); empty when the text does not parse (its error says where).
pub fn route_spans(text: &str) -> Vec<RouteSpan> {
    use serde::de::IgnoredAny;
    use serde_saphyr::Spanned;
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        routes: Vec<Spanned<RouteAt>>,
        #[serde(default)]
        policy: Vec<Spanned<RouteAt>>,
    }
    #[derive(Deserialize)]
    struct RouteAt {
        #[serde(default)]
        policy: Option<Spanned<IgnoredAny>>,
    }
    // Line 0 is the parser's "unknown" (e.g. a value behind a merge key).
    let here = |l: &serde_saphyr::Location| {
        Some((l.line() as usize, l.column() as usize)).filter(|(line, _)| *line > 0)
    };
    let Ok(doc) = serde_saphyr::from_str::<Doc>(text) else {
        return Vec::new();
    };
    doc.routes
        .iter()
        .chain(doc.policy.iter())
        .map(|r| RouteSpan {
            at: here(&r.referenced),
            policy: r.value.policy.as_ref().and_then(|p| here(&p.referenced)),
        })
        .collect()
}

/// True if the text holds anything but blank lines and comments.
fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "---" && t != "..."
    })
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" as
/// `unknown key "x" (did you mean "a"?)`; other messages pass through.
fn describe_serde_error(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key") {
        let key = rest
            .strip_prefix(": ")
            .and_then(|r| r.split(',').next())
            .unwrap_or("");
        return format!("duplicate key {key}").trim_end().to_string();
    }
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((key, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    let known: Vec<&str> = tail
        .trim_start_matches(", expected one of ")
        .split(',')
        .map(|k| k.trim().trim_matches('`'))
        .filter(|k| !k.is_empty())
        .collect();
    // A route's keys include `from`; the file's top level includes `routes`.
    let in_route = known.contains(&"from");
    if (in_route || known.contains(&"routes"))
        && let Some(k) = pomerium::refused(key, !in_route)
    {
        return pomerium::refusal_message(key, k);
    }
    format!(
        "unknown key {key:?}{}",
        crate::policy::did_you_mean(key, &known)
    )
}

/// Pomerium's runtime flags that a config may set; only
/// `pomerium_jwt_endpoint` changes anything here.
pub const KNOWN_RUNTIME_FLAGS: &[&str] = &[
    "pomerium_jwt_endpoint",
    "match_any_incoming_port",
    "legacy_identity_manager",
    "grpc_databroker_keepalive",
    "envoy_resource_manager",
    "config_hot_reload",
    "debug_admin_endpoints",
    "authorize_use_sync_set",
    "refresh_session_at_id_token_expiration",
    "add_extra_metrics_labels",
    "mcp",
    "ssh_routes_portal",
    "ssh_allow_direct_tcpip",
    "ssh_rls_enabled",
];

/// True for config keys whose values are secrets.
pub fn is_secret_key(key: &str) -> bool {
    let k = key
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_ascii_lowercase();
    k.ends_with("_secret")
        || k.ends_with("secret")
        || k.ends_with("_key")
        || k == "key"
        || k.contains("password")
        || k.contains("token")
}

/// Removes from `message` every secret value found in the config `text`
/// (values of secret-bearing keys, including multi-line block scalars) and
/// any long base64-looking blob, so an error message can be logged.
pub fn redact_secrets(message: &str, text: &str) -> String {
    let mut secrets: Vec<String> = Vec::new();
    let mut block_indent: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(min) = block_indent {
            if line.trim().is_empty() || indent >= min {
                let v = line.trim();
                if v.len() >= 4 {
                    secrets.push(v.to_string());
                }
                continue;
            }
            block_indent = None;
        }
        let body = line.trim_start().trim_start_matches("- ");
        let Some((key, value)) = body.split_once(':') else {
            continue;
        };
        if !is_secret_key(key) {
            continue;
        }
        let v = value.trim().trim_matches(|c| c == '"' || c == '\'');
        if v.starts_with('|') || v.starts_with('>') || v.is_empty() {
            block_indent = Some(indent + 1);
        } else if v.len() >= 4 {
            secrets.push(v.to_string());
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = message.to_string();
    for s in &secrets {
        out = out.replace(s.as_str(), "<redacted>");
    }
    redact_blobs(&out)
}

/// Replaces base64-looking runs of 24+ characters (mixed case and digits)
/// with `<redacted>`.
fn redact_blobs(text: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_');
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let looks_secret = run.len() >= 24
            && run.chars().any(|c| c.is_ascii_uppercase())
            && run.chars().any(|c| c.is_ascii_lowercase())
            && run.chars().any(|c| c.is_ascii_digit());
        if looks_secret {
            out.push_str("<redacted>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_b64(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Whether a value is its type's default: such keys are left out when a
/// config is written, so what is written reads back as the same value.
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `Debug` of a settings value: its written form, with the value of every
/// secret-bearing key ([`is_secret_key`]) replaced by `<redacted>`.
fn debug_redacted<T: Serialize>(
    name: &str,
    value: &T,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    fn redact(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    if is_secret_key(key) && inner.is_string() {
                        *inner = serde_json::Value::from("<redacted>");
                    } else {
                        redact(inner);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(value).map_err(|_| std::fmt::Error)?;
    redact(&mut v);
    write!(f, "{name} {v}")
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(s) => vec![s],
        Raw::Many(v) => v,
    })
}

fn string_or_list_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    string_or_list(d).map(Some)
}

/// An optional duration key: read with [`parse_duration`], written in the
/// largest unit that keeps it exact (`30s`, `250ms`, `1500ns`).
mod duration_opt {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }
}

/// A duration as [`parse_duration`] reads it back exactly.
fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// Why a duration does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing given.
    #[error("empty duration")]
    Empty,
    /// `text` is not a duration; `why` says what is wrong.
    #[error("duration {text:?}: {why}")]
    Invalid { text: String, why: String },
}

/// Parses a Go-style duration (`30s`, `1m30s`, `14h`, `250ms`, `1.5h`); a bare
/// number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError::Invalid {
        text: text.to_string(),
        why,
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit (e.g. 30s, 5m, 1h)".into()))?;
        if num_len == 0 {
            return Err(err("expected a number".into()));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| err("bad number".into()))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(err(format!("unknown unit {other:?}"))),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if !total.is_finite() || total > 1e10 {
        return Err(err("out of range".into()));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("14h").unwrap(),
            Duration::from_secs(14 * 3600)
        );
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        for bad in ["", "s", "10x", "1h-", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_key_error_names_the_key_and_line() {
        let text = "routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n    pass_identity_header: true\n";
        let err = ConfigFile::parse("config.yaml", text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pass_identity_header"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    const SECRETS: &str = "idp_client_secret: Sup3rS3cretIdpValue-7f3a9c\n\
cookie_secret: cGVyc29uYWwtY29va2llLXNlY3JldC0xMjM0NTY3ODk=\n\
shared_secret: c2hhcmVkLXNlY3JldC12YWx1ZS0xMjM0NTY3ODkwMTI=\n\
signing_key: |\n  -----BEGIN EC PRIVATE KEY-----\n  MHcCAQEEIBmZp2x9Qk0Yb6v3WqLrT8eXcNdUoJ5sHfA1gKtPzVyRoAoGCCqGSM49\n  -----END EC PRIVATE KEY-----\n";

    fn secret_values() -> Vec<&'static str> {
        vec![
            "Sup3rS3cretIdpValue-7f3a9c",
            "cGVyc29uYWwtY29va2llLXNlY3JldC0xMjM0NTY3ODk",
            "c2hhcmVkLXNlY3JldC12YWx1ZS0xMjM0NTY3ODkwMTI",
            "MHcCAQEEIBmZp2x9Qk0Yb6v3WqLrT8eXcNdUoJ5sHfA1gKtPzVyRoAoGCCqGSM49",
        ]
    }

    #[test]
    fn config_errors_name_line_and_key_but_never_quote_a_secret() {
        // Each mistake sits next to the secrets, before, between and after them.
        let cases = [
            format!("idp_cliend_id: app\n{SECRETS}"),
            format!("{SECRETS}idp_cliend_id: app\n"),
            format!("cookie_secret: x\n{SECRETS}"),
            format!("{SECRETS}pass_identity_headers: maybe\n"),
            format!("{SECRETS}\tbad: tab\n"),
            format!("{SECRETS}routes: [\n"),
            format!(
                "{SECRETS}routes:\n  - from: https://a\n    to: http://b\n    set_request_headers: [1, 2]\n"
            ),
            format!("idp_client_secret: [Sup3rS3cretIdpValue-7f3a9c]\n{SECRETS}"),
            format!("{SECRETS}signing_key: other\n"),
            format!(
                "routes:\n  - from: https://a\n    to: http://b\n    kubernetes_service_account_token_file: [Sup3rS3cretIdpValue-7f3a9c]\n{SECRETS}"
            ),
            format!(
                "routes:\n  - from: https://a\n    to: http://b\n    kubernetes_service_account_token: [Sup3rS3cretIdpValue-7f3a9c]\n{SECRETS}"
            ),
        ];
        for text in &cases {
            let err = ConfigFile::parse("config.yaml", text)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("config.yaml: "), "{err}");
            for v in secret_values() {
                for window in v.as_bytes().windows(12) {
                    let w = std::str::from_utf8(window).unwrap();
                    assert!(
                        !err.contains(w),
                        "error quotes part of a secret ({w}): {err}"
                    );
                }
            }
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_located_and_get_a_suggestion() {
        let err = ConfigFile::parse("c.yaml", &format!("{SECRETS}idp_cliend_id: app\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key \"idp_cliend_id\" (did you mean \"idp_client_id\"?)"),
            "{err}"
        );
        assert!(err.contains("line 8"), "{err}");
        let err = ConfigFile::parse(
            "c.yaml",
            "routes:\n  - from: https://a\n    to: http://b\n    alow_websockets: true\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("did you mean \"allow_websockets\""), "{err}");
        let err = ConfigFile::parse("c.yaml", "zzzzzz: 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key \"zzzzzz\"") && !err.contains("did you mean"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_or_comment_only_file_is_an_error() {
        for text in ["", "\n\n", "# nothing yet\n", "---\n", "  \n# a\n---\n..."] {
            let err = ConfigFile::parse("c.yaml", text).unwrap_err().to_string();
            assert!(err.contains("empty"), "{text:?}: {err}");
        }
    }

    #[test]
    fn redaction_removes_secret_values_and_secret_looking_blobs_only() {
        let msg = "bad value Sup3rS3cretIdpValue-7f3a9c near MHcCAQEEIBmZp2x9Qk0Yb6v3WqLrT8eXcNdUoJ5sHfA1gKtPzVyRoAoGCCqGSM49 in /tmp/config.yaml routes[0] kid 3f2a9c0d1e2b3a4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4";
        let out = redact_secrets(msg, SECRETS);
        for v in secret_values() {
            assert!(!out.contains(v), "{out}");
        }
        assert!(out.contains("/tmp/config.yaml routes[0]"), "{out}");
        assert!(out.contains("3f2a9c0d1e2b"), "hex ids stay: {out}");
        // A blob that is not in the file but looks like a key is removed too.
        let out = redact_secrets("got AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "");
        assert_eq!(out, "got <redacted>");
    }

    #[test]
    fn claims_headers_accept_map_list_and_comma_string() {
        let c = ConfigFile::parse("c", "jwt_claims_headers:\n  X-Email: email\n").unwrap();
        assert_eq!(
            c.jwt_claims_headers.unwrap().0,
            vec![("X-Email".into(), "email".into())]
        );
        let c = ConfigFile::parse("c", "jwt_claims_headers: [email, groups]\n").unwrap();
        assert_eq!(
            c.jwt_claims_headers.unwrap().0[1],
            ("x-pomerium-claim-groups".into(), "groups".into())
        );
        let c = ConfigFile::parse("c", "jwt_claims_headers: email, name\n").unwrap();
        assert_eq!(c.jwt_claims_headers.unwrap().0.len(), 2);
    }

    /// A config that sets every kind of value the file holds: scalars,
    /// durations in each unit, lists, maps, PEM blocks, JSON-shaped keys,
    /// nested structs and both route lists.
    fn rich_config() -> ConfigFile {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
        let route = RouteConfig {
            from: "https://app.example.com".into(),
            to: vec!["http://10.0.0.1:8080".into(), "http://10.0.0.2:8080".into()],
            prefix: Some("/app".into()),
            name: Some("App: the \"main\" one #1".into()),
            h2c_upstream: true,
            pass_identity_headers: Some(false),
            policy: Some(
                serde_json::json!([{"allow": {"or": [{"email": {"is": "a@example.com"}}]}}]),
            ),
            allowed_users: vec!["bob@example.com".into()],
            allowed_idp_claims: [(
                "groups".to_string(),
                vec![serde_json::json!("admins"), serde_json::json!(3)],
            )]
            .into(),
            allow_websockets: true,
            set_request_headers: [
                ("X-Set".to_string(), "yes: really".to_string()),
                ("x-empty".to_string(), String::new()),
            ]
            .into(),
            remove_request_headers: vec!["X-Remove".into()],
            mirror_to: vec!["http://mirror:1".into()],
            timeout: Some(Duration::from_millis(1500)),
            idle_timeout: Some(Duration::from_nanos(1_000_000_001)),
            tls_custom_ca: Some(pem.into()),
            tls_client_key: Some("client-key-value".into()),
            jwt_claims_headers: Some(ClaimsHeaders(vec![
                ("X-Email".into(), "email".into()),
                ("x-pomerium-claim-groups".into(), "groups".into()),
            ])),
            jwt_groups_filter: Some(vec!["admins".into()]),
            health_checks: Some(
                serde_json::json!([{"timeout": "1s", "interval": "5s", "http_health_check": {"path": "/h"}}]),
            ),
            healthy_panic_threshold: Some(0),
            kubernetes_service_account_token: Some("sa-token-value".into()),
            rewrite_response_headers: vec![RewriteHeader {
                header: "Location".into(),
                prefix: "http://app/".into(),
                value: "https://app.example.com/".into(),
            }],
            idp_client_secret: Some("route-client-secret".into()),
            depends_on: vec!["other.example.com".into()],
            ..Default::default()
        };
        let redirect = RouteConfig {
            from: "https://old.example.com".into(),
            path: Some("/exact".into()),
            redirect: Some(RouteRedirect {
                https_redirect: Some(true),
                host_redirect: Some("new.example.com".into()),
                response_code: Some(308),
                strip_query: Some(false),
                ..Default::default()
            }),
            allow_public_unauthenticated_access: true,
            ..Default::default()
        };
        ConfigFile {
            address: Some(":8443".into()),
            public_https_port: Some(443),
            insecure_server: Some(false),
            certificate: Some("Y2VydA==".into()),
            certificate_key: Some("a2V5LXZhbHVl".into()),
            certificates: vec![CertificateEntry {
                cert_file: Some("/tls/a.crt".into()),
                key: Some(pem.into()),
                ..Default::default()
            }],
            idp_provider: Some("oidc".into()),
            idp_client_secret: Some("global-client-secret".into()),
            idp_scopes: Some(vec!["openid".into(), "email".into()]),
            cookie_secret: Some("Y29va2llLXNlY3JldC12YWx1ZS0xMjM0NTY3ODkwMTI=".into()),
            cookie_expire: Some(Duration::from_secs(14 * 3600)),
            shared_secret: Some("c2hhcmVkLXNlY3JldC12YWx1ZQ==".into()),
            signing_key: Some(pem.into()),
            jwt_claims_headers: Some(ClaimsHeaders(vec![("X-Name".into(), "name".into())])),
            set_response_headers: Some(
                [("X-Frame-Options".to_string(), "DENY".to_string())].into(),
            ),
            runtime_flags: Some([("pomerium_jwt_endpoint".to_string(), true)].into()),
            default_upstream_timeout: Some(Duration::from_secs(30)),
            timeout_idle: Some(Duration::from_millis(250)),
            downstream_mtls: Some(DownstreamMtls {
                ca: Some(pem.into()),
                enforcement: Some("reject_connection".into()),
                max_verify_depth: Some(0),
                ..Default::default()
            }),
            routes: vec![route, redirect],
            policy: vec![RouteConfig {
                from: "https://legacy.example.com".into(),
                to: vec!["http://127.0.0.1:1".into()],
                allow_any_authenticated_user: true,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_written_config_reads_back_as_the_same_value() {
        let config = rich_config();
        let text = serde_saphyr::to_string(&config).unwrap();
        let mut read = ConfigFile::parse("c.yaml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(read.spans.len(), 3, "{text}");
        read.spans.clear();
        assert_eq!(read, config, "{text}");
        // Nothing left at its default is written.
        assert!(!text.contains("null"), "{text}");
        assert_eq!(text.matches("allow_websockets").count(), 1, "{text}");
        let minimal = serde_saphyr::to_string(&ConfigFile::default()).unwrap();
        assert!(!minimal.contains("routes"), "{minimal}");
    }

    #[test]
    fn durations_are_written_in_a_unit_that_reads_back_exactly() {
        for d in [
            Duration::ZERO,
            Duration::from_secs(90),
            Duration::from_millis(1),
            Duration::from_millis(290),
            Duration::from_nanos(1_000_000_001),
            Duration::from_nanos(7),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
        }
    }

    #[test]
    fn debug_output_shows_settings_but_no_secret() {
        let config = rich_config();
        let text = format!("{config:?}");
        assert!(
            text.contains("app.example.com") && text.contains("reject_connection"),
            "{text}"
        );
        for secret in [
            "global-client-secret",
            "route-client-secret",
            "Y29va2llLXNlY3JldC12YWx1ZS0xMjM0NTY3ODkwMTI=",
            "c2hhcmVkLXNlY3JldC12YWx1ZQ==",
            "a2V5LXZhbHVl",
            "client-key-value",
            "sa-token-value",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        // The PEM text appears for the CA and certificates, never for a key.
        assert!(!text.contains("\"signing_key\":\"-----"), "{text}");
        assert!(!text.contains("\"key\":\"-----"), "{text}");
        assert!(!format!("{:?}", config.routes[0].options()).contains("sa-token-value"));
    }

    #[test]
    fn to_accepts_a_string_or_a_list() {
        let c = ConfigFile::parse("c", "routes:\n  - from: https://a\n    to: http://b\n  - from: https://c\n    to: [http://d, http://e]\n").unwrap();
        assert_eq!(c.routes[0].to, vec!["http://b"]);
        assert_eq!(c.routes[1].to.len(), 2);
    }
}

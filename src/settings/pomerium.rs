//! Pomerium's keys that jetbridge does not take, each with the reason, so a
//! Pomerium user gets "not supported by jetbridge" and why, never a bare
//! "unknown key". The route-key table of docs/migrating-from-pomerium.md is
//! rendered from these lists and [`super::RouteOptions::KEYS`] (a test fails
//! when it drifts).

/// Whether a refused key is on the way or deliberately left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not implemented yet; planned.
    Planned,
    /// Deliberately not supported.
    NotSupported,
}

/// A refused key and what to do instead.
pub struct RefusedKey {
    pub key: &'static str,
    pub refusal: Refusal,
    pub reason: &'static str,
}

const fn planned(key: &'static str, reason: &'static str) -> RefusedKey {
    RefusedKey {
        key,
        refusal: Refusal::Planned,
        reason,
    }
}

const fn never(key: &'static str, reason: &'static str) -> RefusedKey {
    RefusedKey {
        key,
        refusal: Refusal::NotSupported,
        reason,
    }
}

/// Pomerium route keys (config-file routes and `ingress.pomerium.io/`
/// annotations) that jetbridge refuses.
pub const REFUSED_ROUTE_KEYS: &[RefusedKey] = &[
    never(
        "allowed_groups",
        "no longer supported (Pomerium refuses it too); use a `groups` criterion in `policy`",
    ),
    never(
        "enable_google_cloud_serverless_authentication",
        "Google Cloud serverless authentication is not supported by jetbridge",
    ),
    never("tcp_upstream", "TCP tunnels are not supported by jetbridge"),
    never("udp_upstream", "UDP tunnels are not supported by jetbridge"),
    never("ssh_upstream", "SSH is not supported by jetbridge"),
    never("upstream_tunnel", "tunnels are not supported by jetbridge"),
    never(
        "upstream_tunnel_ssh_policy",
        "tunnels are not supported by jetbridge",
    ),
    never("mcp_server", "MCP is not supported by jetbridge"),
    never("mcp_client", "MCP is not supported by jetbridge"),
    never(
        "mcp_server_max_request_bytes",
        "MCP is not supported by jetbridge",
    ),
    never("mcp_server_path", "MCP is not supported by jetbridge"),
    never(
        "mcp_server_authorization_server_url",
        "MCP is not supported by jetbridge",
    ),
    never(
        "mcp_server_upstream_oauth2_secret",
        "MCP is not supported by jetbridge",
    ),
];

/// Pomerium global keys that jetbridge refuses.
pub const REFUSED_GLOBAL_KEYS: &[RefusedKey] = &[
    never(
        "autocert",
        "use cert-manager (or any tool writing kubernetes.io/tls Secrets) with Ingress \
         `spec.tls`, or `certificates` in the config file",
    ),
    never(
        "autocert_dir",
        "autocert is not supported; use cert-manager and TLS Secrets",
    ),
    never(
        "autocert_use_staging",
        "autocert is not supported; use cert-manager and TLS Secrets",
    ),
    never(
        "autocert_must_staple",
        "autocert is not supported; use cert-manager and TLS Secrets",
    ),
    never(
        "autocert_ca",
        "autocert is not supported; use cert-manager and TLS Secrets",
    ),
    never(
        "autocert_email",
        "autocert is not supported; use cert-manager and TLS Secrets",
    ),
    planned("cookie_domain", "session cookies are host-only by design"),
    planned("cookie_same_site", "session cookies are SameSite=Lax"),
    planned("cookie_http_only", "session cookies are always HttpOnly"),
    planned(
        "signout_redirect_url",
        "sign-out ends on the authenticate host's page",
    ),
    planned("idp_request_params", "no extra authorize parameters yet"),
    planned("timeout_read", "per-route `timeout` and `idle_timeout`"),
    planned("timeout_write", "per-route `timeout` and `idle_timeout`"),
    planned(
        "metrics_basic_auth",
        "keep the internal listener off the network",
    ),
    planned("codec_type", "HTTP/1.1 and HTTP/2 are both served"),
    never(
        "services",
        "jetbridge is one process (proxy, authenticate and authorize together)",
    ),
    never("authorize_service_url", "authorization runs in the proxy"),
    never(
        "authenticate_internal_service_url",
        "authentication runs in the proxy",
    ),
    never("grpc_address", "there is no gRPC control plane"),
    never("grpc_insecure", "there is no gRPC control plane"),
    never(
        "databroker_storage_type",
        "there is no databroker: sessions are sealed cookies",
    ),
    never(
        "databroker_storage_connection_string",
        "there is no databroker: sessions are sealed cookies",
    ),
    never("ssh_address", "SSH is not supported by jetbridge"),
    never("ssh_host_keys", "SSH is not supported by jetbridge"),
    never("ssh_host_key_files", "SSH is not supported by jetbridge"),
    never("ssh_user_ca_key", "SSH is not supported by jetbridge"),
    never("ssh_user_ca_key_file", "SSH is not supported by jetbridge"),
];

/// Keys jetbridge adds beyond Pomerium's route keys (annotations only, or both).
pub const OWN_ROUTE_KEYS: &[(&str, &str)] = &[
    (
        "service_proxy_upstream",
        "`\"true\"`: the Service's cluster DNS name instead of its endpoints (annotation)",
    ),
    (
        "identity_provider_secret",
        "a Secret whose `client_id` and `client_secret` become `idp_client_id` and `idp_client_secret` (annotation)",
    ),
    (
        "tls_custom_ca_secret",
        "a Secret whose `ca.crt` becomes `tls_custom_ca` (annotation)",
    ),
    (
        "tls_client_secret",
        "a kubernetes.io/tls Secret whose `tls.crt` and `tls.key` become `tls_client_cert` and `tls_client_key` (annotation)",
    ),
    (
        "tls_downstream_client_ca_secret",
        "a Secret whose `ca.crt` becomes `tls_downstream_client_ca` (annotation)",
    ),
    (
        "set_request_headers_secret",
        "a Secret whose keys and values are added to `set_request_headers` (annotation)",
    ),
    (
        "set_response_headers_secret",
        "a Secret whose keys and values are added to `set_response_headers` (annotation)",
    ),
    (
        "kubernetes_service_account_token_secret",
        "a service-account-token Secret whose `token` becomes `kubernetes_service_account_token` (annotation)",
    ),
    (
        "path_regex",
        "`\"true\"`: the Ingress's ImplementationSpecific paths are RE2 patterns (annotation)",
    ),
    ("policy_ref", "names `Policy` objects (annotation only)"),
    (
        "secure_upstream",
        "`https` to the backends (annotation; in a config file say `https://` in `to`)",
    ),
];

/// The refusal for `key`, if it is a refused Pomerium key (route keys
/// first, then global ones, unless `global` says where it was found).
pub fn refused(key: &str, global: bool) -> Option<&'static RefusedKey> {
    let (first, second) = match global {
        true => (REFUSED_GLOBAL_KEYS, REFUSED_ROUTE_KEYS),
        false => (REFUSED_ROUTE_KEYS, REFUSED_GLOBAL_KEYS),
    };
    first
        .iter()
        .chain(second.iter())
        .find(|k| k.key == key || (k.key.starts_with("mcp_") && key.starts_with("mcp_")))
}

/// The message for `key`, refused as `k` says.
pub fn refusal_message(key: &str, k: &RefusedKey) -> String {
    match k.refusal {
        Refusal::Planned => format!(
            "{key:?} is a Pomerium setting not supported by jetbridge yet: {}",
            k.reason
        ),
        Refusal::NotSupported => format!(
            "{key:?} is a Pomerium setting not supported by jetbridge: {}",
            k.reason
        ),
    }
}

/// The route-key table of docs/migrating-from-pomerium.md: every supported
/// key, then every refused one with its reason.
pub fn route_keys_table() -> String {
    let mut out = String::from("| key | jetbridge |\n|---|---|\n");
    for k in ["from", "to", "prefix", "path", "regex"] {
        out.push_str(&format!(
            "| `{k}` | ✔ (config file; an Ingress rule in a cluster) |\n"
        ));
    }
    for k in super::RouteOptions::KEYS {
        let note = match *k {
            "tls_custom_ca_file"
            | "tls_client_cert_file"
            | "tls_client_key_file"
            | "tls_downstream_client_ca_file"
            | "kubernetes_service_account_token_file" => "✔ (config file only)",
            "jwt_claims_headers" => "✔ (per route: a jetbridge addition)",
            "add_request_headers" | "add_response_headers" | "mirror_to" => {
                "✔ (a jetbridge addition)"
            }
            _ => "✔",
        };
        out.push_str(&format!("| `{k}` | {note} |\n"));
    }
    for (k, note) in OWN_ROUTE_KEYS {
        out.push_str(&format!("| `{k}` | ✔ {note} |\n"));
    }
    for k in REFUSED_ROUTE_KEYS {
        let what = match k.refusal {
            Refusal::Planned => "refused, planned",
            Refusal::NotSupported => "refused, not supported",
        };
        out.push_str(&format!("| `{}` | {what}: {} |\n", k.key, k.reason));
    }
    out
}

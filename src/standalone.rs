//! `jetbridge standalone`: the config file becomes [`Inputs`]; the file is
//! watched and every valid edit publishes a new snapshot. An invalid edit
//! keeps the last good snapshot and is logged with the reason.
//!
//! This is the I/O edge for the file source: it reads referenced files
//! (certificates, CA bundles, key files) and generates what is missing
//! (a self-signed certificate, secrets) once per process, so reloads keep them.

use crate::identity::secrets::Secret32;
use crate::identity::{IssuerFormat, KeySet};
use crate::model::{
    AuthConfig, BearerTokenFormat, Diagnostic, IdpConfig, ObjectRef, Reason, Severity,
};
use crate::settings::{ConfigFile, RouteConfig};
use crate::translate::driver::Driver;
use crate::translate::{
    CertInput, GlobalInputs, Inputs, RouteInput, parse_upstream, route_location,
};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Default cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "_jetbridge";
/// Default session lifetime (Pomerium's `cookie_expire` default).
pub const DEFAULT_COOKIE_EXPIRE: Duration = Duration::from_secs(14 * 3600);

/// Listener addresses from the file (changing them needs a restart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listeners {
    pub https: SocketAddr,
    pub http_redirect: Option<SocketAddr>,
    pub internal: Option<SocketAddr>,
    /// `insecure_server`: the routes are served on `https` without TLS.
    pub insecure: bool,
    /// `public_https_port`: the HTTPS port users reach, when it is not the
    /// port `https` is bound to.
    pub public_https_port: Option<u16>,
}

/// Material generated once per process when the file does not provide it,
/// and what the running configuration was built from (so a reload cannot
/// silently lose it).
#[derive(Default)]
pub struct Generated {
    cookie_secret: Option<Secret32>,
    shared_secret: Option<Secret32>,
    keys: Option<Arc<KeySet>>,
    cert: Option<(Vec<String>, CertInput)>,
    /// Set once a configuration was published: from then on secrets are
    /// never invented, and the running one's provenance is kept here.
    running: Option<Provenance>,
}

/// Where the signing key of a configuration comes from, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyOrigin {
    /// Random for this process.
    Generated,
    /// Derived from `shared_secret`.
    Derived,
    /// `signing_key` or `signing_key_file`.
    Configured,
}

/// What a published configuration was built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provenance {
    pub signing_key: KeyOrigin,
    pub cookie_secret: bool,
    pub shared_secret: bool,
    pub routes: usize,
}

impl Provenance {
    /// The provenance of a parsed file.
    pub fn of(cfg: &ConfigFile) -> Self {
        Provenance {
            signing_key: if cfg.signing_key.is_some() || cfg.signing_key_file.is_some() {
                KeyOrigin::Configured
            } else if cfg.shared_secret.is_some() {
                KeyOrigin::Derived
            } else {
                KeyOrigin::Generated
            },
            cookie_secret: cfg.cookie_secret.is_some(),
            shared_secret: cfg.shared_secret.is_some(),
            routes: cfg.all_routes().count(),
        }
    }

    /// Refuses a reload that lost what the running configuration had: a
    /// configured secret or key that is no longer named, or every route.
    /// Such a file is far more often a half-written or truncated one than
    /// a deliberate change; a deliberate one takes a restart.
    pub fn check_reload(&self, next: &Provenance) -> Result<(), String> {
        let mut lost = Vec::new();
        if self.signing_key == KeyOrigin::Configured && next.signing_key < self.signing_key {
            lost.push("signing_key");
        }
        if self.cookie_secret && !next.cookie_secret {
            lost.push("cookie_secret");
        }
        if self.shared_secret && !next.shared_secret {
            lost.push("shared_secret");
        }
        if !lost.is_empty() {
            return Err(format!(
                "the file no longer sets {} that the running configuration uses; refusing to \
                 replace it with a new random or derived value (every session and published key \
                 would change). Put it back, or restart jetbridge to apply the change deliberately",
                lost.join(", ")
            ));
        }
        if self.routes > 0 && next.routes == 0 {
            return Err(format!(
                "the file defines no routes (the running configuration has {}); refusing to take \
                 every route down on reload. Restart jetbridge to run without routes deliberately",
                self.routes
            ));
        }
        Ok(())
    }
}

/// Parses `:443`, `0.0.0.0:443`, `127.0.0.1:8443`, `localhost:8443`, `[::1]:443`.
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    let t = if let Some(port) = t.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if let Some(port) = t.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else {
        t.to_string()
    };
    t.parse()
        .map_err(|_| format!("address {text:?}: expected host:port, e.g. :8443 or 127.0.0.1:8443"))
}

/// The listeners named by the file, with defaults.
pub fn listeners(cfg: &ConfigFile) -> Result<Listeners, String> {
    Ok(Listeners {
        https: parse_address(cfg.address.as_deref().unwrap_or(":8443"))?,
        http_redirect: cfg
            .http_redirect_address
            .as_deref()
            .map(parse_address)
            .transpose()?,
        internal: cfg
            .internal_address
            .as_deref()
            .or(cfg.metrics_address.as_deref())
            .map(parse_address)
            .transpose()?,
        insecure: cfg.insecure_server.unwrap_or(false),
        public_https_port: cfg.public_https_port.map(check_public_port).transpose()?,
    })
}

/// Refuses port 0 as a public port (it names no port a browser can reach).
fn check_public_port(port: u16) -> Result<u16, String> {
    match port {
        0 => Err("public_https_port 0: expected the HTTPS port users reach, e.g. 443".into()),
        p => Ok(p),
    }
}

/// Contents of the files a config names (key files, certificates, CA
/// bundles), read together with the config so one reading is consistent.
pub type Files = BTreeMap<String, Result<String, String>>;

/// Pomerium's identity providers that speak OpenID Connect: each is used
/// through its discovery document at `idp_provider_url`.
pub const OIDC_PROVIDERS: &[&str] = &[
    "oidc", "google", "azure", "okta", "auth0", "keycloak", "onelogin", "ping", "cognito", "apple",
];

/// Refuses a provider jetbridge cannot sign in with, saying why.
fn check_idp_provider(p: &str) -> Result<(), String> {
    match p {
        p if OIDC_PROVIDERS.contains(&p) => Ok(()),
        "github" => Err(
            "idp_provider \"github\": GitHub signs in with plain OAuth 2.0, not \
             OpenID Connect, which jetbridge does not support; put an OpenID Connect broker \
             (Dex, Keycloak, Auth0) in front of GitHub and name it here as oidc"
                .into(),
        ),
        other => Err(format!(
            "idp_provider {other:?}: expected one of {}",
            OIDC_PROVIDERS.join(", ")
        )),
    }
}

/// Where a provider's issuer URL usually is.
fn issuer_hint(p: &str) -> &'static str {
    match p {
        "azure" => " (https://login.microsoftonline.com/<tenant id>/v2.0)",
        "okta" => " (https://<your domain>.okta.com, or an authorization server's URL)",
        "auth0" => " (https://<tenant>.<region>.auth0.com/)",
        "keycloak" => " (https://<host>/realms/<realm>)",
        "cognito" => " (https://cognito-idp.<region>.amazonaws.com/<user pool id>)",
        "onelogin" => " (https://<subdomain>.onelogin.com/oidc/2)",
        "ping" => " (https://auth.pingone.com/<environment id>/as)",
        _ => "",
    }
}

fn read_file(files: &Files, what: &str, path: &str) -> Result<String, String> {
    match files.get(path) {
        Some(Ok(text)) => Ok(text.clone()),
        Some(Err(e)) => Err(format!("{what} {path:?}: {e}")),
        None => Err(format!("{what} {path:?}: not read")),
    }
}

/// Every file the config refers to.
pub fn referenced_files(cfg: &ConfigFile) -> Vec<String> {
    let mut out: Vec<String> = [
        &cfg.signing_key_file,
        &cfg.idp_client_secret_file,
        &cfg.certificate_file,
        &cfg.certificate_key_file,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    for c in &cfg.certificates {
        out.extend(c.cert_file.iter().chain(c.key_file.iter()).cloned());
    }
    if let Some(f) = cfg
        .downstream_mtls
        .as_ref()
        .and_then(|d| d.ca_file.as_ref())
    {
        out.push(f.clone());
    }
    for r in cfg.all_routes() {
        out.extend(
            [
                &r.tls_custom_ca_file,
                &r.tls_client_cert_file,
                &r.tls_client_key_file,
                &r.tls_downstream_client_ca_file,
                &r.kubernetes_service_account_token_file,
            ]
            .into_iter()
            .flatten()
            .cloned(),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// Reads every file the config refers to.
pub fn read_referenced(cfg: &ConfigFile) -> Files {
    referenced_files(cfg)
        .into_iter()
        .map(|p| {
            let r = read_one(&p);
            (p, r)
        })
        .collect()
}

/// One referenced file's text, or why it cannot be read.
fn read_one(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// Adds one referenced file, as read, to a reading's fingerprint.
fn hash_file(hash: &mut sha2::Sha256, name: &str, content: &Result<String, String>) {
    use sha2::Digest;
    hash.update(name.as_bytes());
    match content {
        Ok(c) => hash.update(c.as_bytes()),
        Err(e) => hash.update(e.as_bytes()),
    }
}

/// Text that may be PEM or base64 of PEM.
fn pem_or_base64(what: &str, text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.contains("-----BEGIN") {
        return Ok(t.to_string());
    }
    let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| format!("{what}: neither PEM nor base64 of PEM"))?;
    String::from_utf8(bytes).map_err(|_| format!("{what}: base64 does not decode to PEM text"))
}

fn secret(
    name: &'static str,
    value: Option<&str>,
    slot: &mut Option<Secret32>,
    first_load: bool,
    warnings: &mut Vec<String>,
) -> Result<Secret32, String> {
    if let Some(v) = value {
        return Secret32::parse(name, v).map_err(|e| e.to_string());
    }
    if slot.is_none() && !first_load {
        return Err(format!(
            "{name} is not set: refusing to invent a secret on reload (restart to generate one)"
        ));
    }
    if slot.is_none() {
        warnings.push(format!(
            "{name} is not set: using a random one for this process (sessions end on restart \
             and replicas will not share them); set it with `jetbridge gen-secrets --format config`"
        ));
    }
    Ok(slot.get_or_insert_with(Secret32::generate).clone())
}

/// Derives a stable P-256 key from the shared secret (used when no
/// `signing_key` is configured, so replicas agree without extra setup).
fn derived_key(shared: &Secret32) -> Option<KeySet> {
    use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
    let prk = Salt::new(HKDF_SHA256, b"jetbridge/v1").extract(&shared.0);
    for counter in 0u8..16 {
        let info = [
            b"derived-jwt-signing-key".as_slice(),
            std::slice::from_ref(&counter),
        ];
        let okm = prk.expand(&info, HKDF_SHA256).ok()?;
        let mut bytes = [0u8; 32];
        okm.fill(&mut bytes).ok()?;
        if let Ok(secret) = p256::SecretKey::from_slice(&bytes)
            && let Ok(key) = crate::identity::SigningKey::from_secret(secret)
        {
            return KeySet::new(vec![key]).ok();
        }
    }
    None
}

/// Builds translation inputs from a parsed config file. Errors here are
/// global (the whole file is rejected); per-route problems become
/// diagnostics in translation.
pub fn inputs_from_config(
    cfg: &ConfigFile,
    generated: &mut Generated,
    warnings: &mut Vec<String>,
) -> Result<Inputs, String> {
    inputs_from_parts(cfg, &read_referenced(cfg), generated, warnings)
}

/// [`inputs_from_config`] over files already read (see [`Reading`]).
pub fn inputs_from_parts(
    cfg: &ConfigFile,
    files: &Files,
    generated: &mut Generated,
    warnings: &mut Vec<String>,
) -> Result<Inputs, String> {
    let first_load = generated.running.is_none();
    for flag in cfg.runtime_flags.iter().flat_map(|f| f.keys()) {
        if !crate::settings::KNOWN_RUNTIME_FLAGS.contains(&flag.as_str()) {
            warnings.push(format!("runtime_flags: unknown flag {flag:?} is ignored"));
        }
    }
    let cookie_secret = secret(
        "cookie_secret",
        cfg.cookie_secret.as_deref(),
        &mut generated.cookie_secret,
        first_load,
        warnings,
    )?;
    let shared_secret = secret(
        "shared_secret",
        cfg.shared_secret.as_deref(),
        &mut generated.shared_secret,
        first_load,
        warnings,
    )?;

    let key_text = match (&cfg.signing_key, &cfg.signing_key_file) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(path)) => Some(read_file(files, "signing_key_file", path)?),
        (None, None) => None,
    };
    let keys = match key_text {
        Some(text) => {
            let set = KeySet::parse(&text).map_err(|e| e.to_string())?;
            warnings.extend(set.warnings.iter().cloned());
            Arc::new(set)
        }
        None if cfg.shared_secret.is_some() => Arc::new(
            derived_key(&shared_secret).ok_or("cannot derive a signing key from shared_secret")?,
        ),
        None => {
            if generated.keys.is_none() && !first_load {
                return Err("signing_key is not set: refusing to invent a key on reload".into());
            }
            if generated.keys.is_none() {
                warnings.push(
                    "signing_key is not set: using a random key for this process; upstreams \
                     must re-fetch the JWKS after a restart"
                        .into(),
                );
            }
            generated
                .keys
                .get_or_insert_with(|| Arc::new(KeySet::generate()))
                .clone()
        }
    };

    if let Some(l) = &cfg.log_level
        && !matches!(
            l.trim().to_ascii_lowercase().as_str(),
            "trace" | "debug" | "info" | "warn" | "warning" | "error" | "off"
        )
    {
        return Err(format!(
            "log_level {l:?}: expected error, warn, info, debug or trace"
        ));
    }
    if let Some(f) = &cfg.log_format {
        crate::telemetry::LogFormat::parse(f)?;
    }
    let issuer_format = IssuerFormat::parse(cfg.jwt_issuer_format.as_deref().unwrap_or(""))?;
    let bearer_token_format =
        BearerTokenFormat::parse(cfg.bearer_token_format.as_deref().unwrap_or(""))?;

    let authenticate_url = cfg
        .authenticate_service_url
        .as_ref()
        .map(|u| u.trim_end_matches('/').to_string());
    let authenticate_host = match &authenticate_url {
        Some(u) => {
            let parsed =
                url::Url::parse(u).map_err(|e| format!("authenticate_service_url {u:?}: {e}"))?;
            if parsed.scheme() != "https" {
                return Err(format!("authenticate_service_url {u:?}: must be https"));
            }
            parsed.host_str().map(str::to_ascii_lowercase)
        }
        None => None,
    };
    let idp = match (&cfg.idp_provider_url, &cfg.idp_provider) {
        (None, None) => None,
        (url, provider) => {
            let provider = provider.clone().unwrap_or_else(|| "oidc".into());
            check_idp_provider(&provider)?;
            let issuer_url = match (url, provider.as_str()) {
                (Some(u), _) => u.clone(),
                (None, "google") => "https://accounts.google.com".into(),
                (None, "apple") => "https://appleid.apple.com".into(),
                (None, p) => {
                    return Err(format!(
                        "idp_provider {p:?}: set idp_provider_url to the OIDC issuer URL{}",
                        issuer_hint(p)
                    ));
                }
            };
            Some(IdpConfig {
                provider,
                issuer_url,
                client_id: cfg
                    .idp_client_id
                    .clone()
                    .ok_or("idp_client_id is required with an identity provider")?,
                client_secret: client_secret(cfg, files, warnings)?,
                scopes: cfg
                    .idp_scopes
                    .clone()
                    .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]),
                groups_claim: cfg
                    .idp_groups_claim
                    .clone()
                    .unwrap_or_else(|| "groups".into()),
            })
        }
    };
    if let Some(w) = idp
        .as_ref()
        .and_then(|i| crate::identity::oidc::plain_http_issuer_warning(&i.issuer_url))
    {
        warnings.push(w);
    }
    if idp.is_some() && authenticate_url.is_none() {
        return Err(
            "authenticate_service_url is required when an identity provider is configured".into(),
        );
    }
    if let Some(h) = &authenticate_host
        && h.ends_with("pomerium.app")
        && idp.is_some()
    {
        warnings.push(format!(
            "authenticate_service_url points at {h}: jetbridge serves the authenticate endpoints \
             itself, so {h} must resolve to this proxy; use a host of your own"
        ));
    }

    let mut certificates = Vec::new();
    if let (Some(c), Some(k)) = (&cfg.certificate_file, &cfg.certificate_key_file) {
        certificates.push(CertInput {
            source: ObjectRef::file(format!("certificate_file {c:?}")),
            chain_pem: read_file(files, "certificate_file", c)?,
            key_pem: read_file(files, "certificate_key_file", k)?,
            hosts: Vec::new(),
            generated: false,
        });
    } else if cfg.certificate_file.is_some() != cfg.certificate_key_file.is_some() {
        return Err("certificate_file and certificate_key_file must be set together".into());
    }
    if let (Some(c), Some(k)) = (&cfg.certificate, &cfg.certificate_key) {
        certificates.push(CertInput {
            source: ObjectRef::file("certificate"),
            chain_pem: pem_or_base64("certificate", c)?,
            key_pem: pem_or_base64("certificate_key", k)?,
            hosts: Vec::new(),
            generated: false,
        });
    }
    for (i, e) in cfg.certificates.iter().enumerate() {
        let chain_pem = match (&e.cert, &e.cert_file) {
            (Some(c), _) => pem_or_base64(&format!("certificates[{i}].cert"), c)?,
            (None, Some(f)) => read_file(files, &format!("certificates[{i}].cert_file"), f)?,
            _ => return Err(format!("certificates[{i}]: cert or cert_file is required")),
        };
        let key_pem = match (&e.key, &e.key_file) {
            (Some(k), _) => pem_or_base64(&format!("certificates[{i}].key"), k)?,
            (None, Some(f)) => read_file(files, &format!("certificates[{i}].key_file"), f)?,
            _ => return Err(format!("certificates[{i}]: key or key_file is required")),
        };
        certificates.push(CertInput {
            source: ObjectRef::file(format!("certificates[{i}]")),
            chain_pem,
            key_pem,
            hosts: Vec::new(),
            generated: false,
        });
    }

    let mut routes = Vec::new();
    let mut diagnostics = Vec::new();
    for (i, r) in cfg.all_routes().enumerate() {
        let custom_ca_pem = match (&r.tls_custom_ca, &r.tls_custom_ca_file) {
            (Some(ca), _) => Some(pem_or_base64(&format!("routes[{i}].tls_custom_ca"), ca)?),
            (None, Some(f)) => Some(read_file(
                files,
                &format!("routes[{i}].tls_custom_ca_file"),
                f,
            )?),
            (None, None) => None,
        };
        let source = ObjectRef::file(route_object(i, r));
        let (host, path) = match route_location(
            &r.from,
            r.prefix.as_deref(),
            r.path.as_deref(),
            r.regex.as_deref(),
        ) {
            Ok((host, _)) if (host.is_empty() || host == "*") && !r.subtle_allow_empty_host => {
                diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    object: source,
                    reason: Reason::NotServed,
                    message: format!(
                        "from {:?} names no host; set subtle_allow_empty_host: true to serve \
                         this route for every host no other route names",
                        r.from
                    ),
                });
                continue;
            }
            Ok((host, path)) if host == "*" => (String::new(), path),
            Ok(location) => location,
            Err(message) => {
                diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    object: source,
                    reason: Reason::NotServed,
                    message,
                });
                continue;
            }
        };
        let mut problems = Vec::new();
        // A file that cannot be read denies its route only.
        let mut pem_file = |key: &str, path: &Option<String>| {
            let path = path.as_ref()?;
            read_file(files, &format!("routes[{i}].{key}"), path)
                .map_err(|e| problems.push(e))
                .ok()
        };
        let client_cert_pem = pem_file("tls_client_cert_file", &r.tls_client_cert_file);
        let client_key_pem = pem_file("tls_client_key_file", &r.tls_client_key_file);
        let downstream_ca_pem = pem_file(
            "tls_downstream_client_ca_file",
            &r.tls_downstream_client_ca_file,
        );
        let mut options = r.options();
        if let Some(token) = pem_file(
            "kubernetes_service_account_token_file",
            &r.kubernetes_service_account_token_file,
        ) {
            match options.kubernetes_service_account_token {
                Some(_) => problems.push(format!(
                    "routes[{i}]: give kubernetes_service_account_token or \
                     kubernetes_service_account_token_file, not both"
                )),
                None => options.kubernetes_service_account_token = Some(token.trim().to_string()),
            }
        }
        let mut backends = Vec::new();
        for to in &r.to {
            match parse_upstream(to) {
                Ok(u) => backends.push(u),
                Err(e) => problems.push(e),
            }
        }
        routes.push(RouteInput {
            id: r.name.clone().unwrap_or_else(|| format!("routes[{i}]")),
            source,
            created: i as i64,
            host,
            path,
            backends,
            options,
            custom_ca_pem,
            client_cert_pem,
            client_key_pem,
            downstream_ca_pem,
            problems,
        });
    }

    if certificates.is_empty() {
        let mut names: Vec<String> = route_hosts(cfg.all_routes());
        if let Some(h) = &authenticate_host {
            names.push(h.clone());
        }
        names.push("localhost".into());
        names.sort();
        names.dedup();
        let reuse = matches!(&generated.cert, Some((n, _)) if *n == names);
        if !reuse {
            warnings.push(format!(
                "no certificate configured: serving a generated self-signed certificate for {}",
                names.join(", ")
            ));
            let ck = rcgen::generate_simple_self_signed(names.clone())
                .map_err(|e| format!("cannot generate a certificate: {e}"))?;
            generated.cert = Some((
                names,
                CertInput {
                    source: ObjectRef::file("generated self-signed certificate"),
                    chain_pem: ck.cert.pem(),
                    key_pem: ck.signing_key.serialize_pem(),
                    hosts: Vec::new(),
                    generated: true,
                },
            ));
        }
        if let Some((_, c)) = &generated.cert {
            certificates.push(c.clone());
        }
    }

    let downstream_mtls = cfg
        .downstream_mtls
        .as_ref()
        .map(|d| downstream_mtls(d, files))
        .transpose()?;
    Ok(Inputs {
        global: GlobalInputs {
            keys,
            retired_keys: Vec::new(),
            issuer_format,
            bearer_token_format,
            access_token_audiences: cfg
                .idp_access_token_allowed_audiences
                .clone()
                .unwrap_or_default(),
            pass_identity_headers: cfg.pass_identity_headers.unwrap_or(false),
            jwt_claims_headers: cfg
                .jwt_claims_headers
                .as_ref()
                .map(|c| c.0.clone())
                .unwrap_or_default(),
            set_response_headers: cfg.set_response_headers.clone(),
            jwt_groups_filter: cfg.jwt_groups_filter.clone(),
            default_upstream_timeout: cfg.default_upstream_timeout,
            timeout_idle: cfg.timeout_idle,
            auth: AuthConfig {
                authenticate_url,
                authenticate_host,
                idp,
                cookie_name: cfg
                    .cookie_name
                    .clone()
                    .unwrap_or_else(|| DEFAULT_COOKIE_NAME.into()),
                cookie_expire: cfg.cookie_expire.unwrap_or(DEFAULT_COOKIE_EXPIRE),
                cookie_secret: cookie_secret.0,
                shared_secret: shared_secret.0,
                jwt_endpoint: cfg
                    .runtime_flags
                    .as_ref()
                    .and_then(|f| f.get("pomerium_jwt_endpoint").copied())
                    .unwrap_or(false),
                // Filled in by `translate`, from the routes.
                route_idps: Default::default(),
            },
            certificates,
            downstream_mtls,
        },
        routes,
        diagnostics,
    })
}

/// `downstream_mtls`: the CA (inline or from `ca_file`) and the
/// enforcement; what jetbridge cannot honour is refused, never ignored.
fn downstream_mtls(
    d: &crate::settings::DownstreamMtls,
    files: &Files,
) -> Result<crate::translate::DownstreamMtls, String> {
    let refused = |field: &str| {
        format!(
            "downstream_mtls.{field} is a Pomerium setting not supported by jetbridge yet \
             (remove it, or enforce it in the upstream)"
        )
    };
    for (field, set) in [
        ("crl", d.crl.is_some()),
        ("crl_file", d.crl_file.is_some()),
        (
            "match_subject_alt_names",
            d.match_subject_alt_names.is_some(),
        ),
        (
            "max_verify_depth",
            d.max_verify_depth.is_some_and(|n| n != 0),
        ),
    ] {
        if set {
            return Err(refused(field));
        }
    }
    let reject_connection = match d.enforcement.as_deref() {
        None | Some("policy_with_default_deny") => false,
        Some("reject_connection") => true,
        Some("policy") => {
            return Err(
                "downstream_mtls.enforcement \"policy\" is not supported by jetbridge: \
                        it relies on the client_certificate PPL criteria; use \
                        policy_with_default_deny or reject_connection"
                    .into(),
            );
        }
        Some(other) => {
            return Err(format!(
                "downstream_mtls.enforcement {other:?}: expected policy_with_default_deny or \
                 reject_connection"
            ));
        }
    };
    let pem = match (&d.ca, &d.ca_file) {
        (Some(_), Some(_)) => return Err("downstream_mtls: set ca or ca_file, not both".into()),
        (Some(ca), None) => pem_or_base64("downstream_mtls.ca", ca)?,
        (None, Some(f)) => read_file(files, "downstream_mtls.ca_file", f)?,
        (None, None) => return Err("downstream_mtls: ca or ca_file is required".into()),
    };
    let ca = crate::model::ClientCa::parse_as("downstream_mtls.ca", &pem)?;
    Ok(crate::translate::DownstreamMtls {
        ca,
        reject_connection,
    })
}

fn route_hosts<'a>(routes: impl Iterator<Item = &'a RouteConfig>) -> Vec<String> {
    routes
        .filter_map(|r| {
            let rest = r.from.split("://").nth(1)?;
            let authority = rest.split('/').next()?;
            let host = authority
                .rsplit_once(':')
                .map(|(h, _)| h)
                .unwrap_or(authority);
            (!host.is_empty() && host != "*").then(|| host.to_ascii_lowercase())
        })
        .collect()
}

/// One reading of the config file and of every file it names, with a
/// fingerprint of all of their bytes (a change to a certificate or key file
/// is a change too).
pub struct Reading {
    pub fingerprint: [u8; 32],
    /// The parsed file and its referenced files, or why it cannot be used.
    pub parsed: Result<(ConfigFile, Files), String>,
    /// SHA-256 of the config file's bytes alone.
    text: [u8; 32],
}

/// What the watch loop keeps of the last full reading, so that a file whose
/// bytes have not changed is not parsed again on every tick (with 10 000
/// routes a parse is tens of milliseconds, five times a second).
struct Seen {
    text: [u8; 32],
    /// The files it named (none when it did not parse).
    files: Vec<String>,
}

impl Seen {
    fn of(r: &Reading) -> Seen {
        Seen {
            text: r.text,
            files: match &r.parsed {
                Ok((_, files)) => files.keys().cloned().collect(),
                Err(_) => Vec::new(),
            },
        }
    }

    /// The fingerprint [`Reading::read`] would give now, without parsing,
    /// if the config file's bytes are those seen; `None` when they differ
    /// or cannot be read (a full reading is due).
    fn fingerprint(&self, path: &str) -> Option<[u8; 32]> {
        use sha2::Digest;
        let bytes = std::fs::read(path).ok()?;
        if <[u8; 32]>::from(sha2::Sha256::digest(&bytes)) != self.text {
            return None;
        }
        let mut hash = sha2::Sha256::new();
        hash.update(&bytes);
        for name in &self.files {
            hash_file(&mut hash, name, &read_one(name));
        }
        Some(hash.finalize().into())
    }
}

impl Reading {
    /// Reads `path` (following symlinks, so Kubernetes' atomic `..data`
    /// swap of mounted ConfigMaps and Secrets is seen as one change).
    pub fn read(path: &str) -> Reading {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                hash.update(b"unreadable");
                return Reading {
                    fingerprint: hash.finalize().into(),
                    parsed: Err(format!("{path}: cannot read: {e}")),
                    text: [0; 32],
                };
            }
        };
        let text_hash = sha2::Sha256::digest(&text).into();
        hash.update(&text);
        let parsed = String::from_utf8(text)
            .map_err(|_| format!("{path}: not UTF-8 text"))
            .and_then(|text| {
                ConfigFile::parse(path, &text)
                    .map_err(|e| e.to_string())
                    .map(|cfg| {
                        let files = read_referenced(&cfg);
                        for (name, content) in &files {
                            hash_file(&mut hash, name, content);
                        }
                        (cfg, files)
                    })
            });
        Reading {
            fingerprint: hash.finalize().into(),
            parsed,
            text: text_hash,
        }
    }
}

/// Loads, translates and publishes the file. Returns the warnings, or the
/// reason the file was rejected (the current snapshot then stays).
pub fn load_and_publish(
    path: &str,
    driver: &mut Driver,
    generated: &mut Generated,
    now: i64,
) -> Result<(Option<u64>, Vec<String>), String> {
    apply(path, &Reading::read(path), driver, generated, now)
}

/// Translates and publishes one reading, unless it is unusable or would
/// lose what the running configuration has (see [`Provenance::check_reload`]).
pub fn apply(
    path: &str,
    reading: &Reading,
    driver: &mut Driver,
    generated: &mut Generated,
    now: i64,
) -> Result<(Option<u64>, Vec<String>), String> {
    let (cfg, files) = reading.parsed.as_ref().map_err(Clone::clone)?;
    let provenance = Provenance::of(cfg);
    if let Some(running) = &generated.running {
        running
            .check_reload(&provenance)
            .map_err(|e| format!("{path}: {e}"))?;
    }
    let redact = |e: String| crate::settings::redact_secrets(&format!("{path}: {e}"), "");
    let mut warnings = Vec::new();
    let inputs = inputs_from_parts(cfg, files, generated, &mut warnings).map_err(redact)?;
    // A config file is all or nothing: any error refuses the whole reading.
    let applied = driver
        .apply(inputs, now, |snapshot| {
            let errors: Vec<String> = snapshot
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| locate(d, cfg))
                .collect();
            match errors.is_empty() {
                true => Ok(()),
                false => Err(errors.join("; ")),
            }
        })
        .map_err(redact)?;
    warnings.extend(applied.diagnostics.iter().map(|d| locate(d, cfg)));
    generated.running = Some(provenance);
    Ok((applied.generation, warnings))
}

/// `idp_client_secret` (or the content of `idp_client_secret_file`). A key
/// that is set but empty is refused (a value that failed to arrive, such as
/// an unset variable in a template); no key at all is a warning, as the
/// identity provider then refuses the code exchange unless the client is a
/// public one.
fn client_secret(
    cfg: &ConfigFile,
    files: &Files,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let secret = match (&cfg.idp_client_secret, &cfg.idp_client_secret_file) {
        (Some(s), _) if s.trim().is_empty() => {
            return Err(
                "idp_client_secret is empty: set the client secret the identity provider \
                 issued, or remove the key for a public client"
                    .into(),
            );
        }
        (Some(s), _) => s.clone(),
        (None, Some(path)) => {
            let s = read_file(files, "idp_client_secret_file", path)?
                .trim()
                .to_string();
            if s.is_empty() {
                return Err(format!("idp_client_secret_file {path}: the file is empty"));
            }
            s
        }
        (None, None) => {
            warnings.push(
                "idp_client_secret is not set: jetbridge signs in as a public client, and an \
                 identity provider that expects a client secret refuses every sign-in \
                 (invalid_client)"
                    .into(),
            );
            String::new()
        }
    };
    Ok(secret)
}

/// How a config-file route is named in diagnostics: `routes[i] (<from>)`.
fn route_object(i: usize, r: &RouteConfig) -> String {
    format!("routes[{i}] ({})", r.from)
}

/// A diagnostic as a line of a load or reload report, naming where in the
/// file the route is (line, column), and for a `policy` problem where the
/// policy is.
fn locate(d: &Diagnostic, cfg: &ConfigFile) -> String {
    let span = cfg
        .all_routes()
        .zip(&cfg.spans)
        .enumerate()
        .find(|(i, (r, _))| d.object.kind.is_empty() && d.object.name == route_object(*i, r))
        .map(|(_, (_, span))| *span);
    let Some(span) = span else {
        return d.to_string();
    };
    match (span.policy, d.message.strip_prefix("policy: "), span.at) {
        (Some((line, column)), Some(rest), _) => {
            format!(
                "{}: policy at line {line}, column {column}: {rest}",
                d.object
            )
        }
        (_, _, Some((line, column))) => {
            format!(
                "{} at line {line}, column {column}: {}",
                d.object, d.message
            )
        }
        _ => d.to_string(),
    }
}

/// Applies `log_level` and `access_log` of a reading that was accepted.
fn apply_log_settings(path: &str, reading: &Reading) {
    if let Ok((cfg, _)) = &reading.parsed {
        match crate::telemetry::set_level(cfg.log_level.as_deref(), cfg.access_log.unwrap_or(true))
        {
            Ok(true) => {
                tracing::info!(path = %path, level = cfg.log_level.as_deref().unwrap_or("info"), "log level changed")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(path = %path, "{e}"),
        }
    }
}

/// How often the file is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a changed file must stay unchanged before it is read as the new
/// configuration (an in-place rewrite is never caught half-way).
pub const SETTLE_TIME: Duration = Duration::from_millis(600);

/// Polls the file and republishes on change until `shutdown` is cancelled.
/// A change is applied once the file (and every file it names) has stayed
/// the same for [`SETTLE_TIME`]; an unusable reading is a reload failure
/// that keeps the running configuration.
/// `applied` is the fingerprint of the reading already published.
pub async fn watch(
    path: String,
    applied: [u8; 32],
    mut driver: Driver,
    mut generated: Generated,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut applied = applied;
    // The last reading was refused: the next accepted one says so.
    let mut rejected = false;
    let mut pending: Option<([u8; 32], tokio::time::Instant)> = None;
    let mut seen: Option<Seen> = None;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = crate::proxy::unix_now();
        // The file is parsed only when its bytes changed since the last
        // full reading; otherwise its and its files' bytes are hashed.
        let quick = seen.as_ref().and_then(|s| s.fingerprint(&path));
        let mut reading = None;
        let fingerprint = match quick {
            Some(fp) => fp,
            None => {
                let r = Reading::read(&path);
                seen = Some(Seen::of(&r));
                let fp = r.fingerprint;
                reading = Some(r);
                fp
            }
        };
        let retired_due = driver.next_key_expiry(now).is_some_and(|s| s == 0);
        if fingerprint == applied && !retired_due {
            pending = None;
            continue;
        }
        if fingerprint != applied {
            match pending {
                Some((fp, since)) if fp == fingerprint => {
                    if since.elapsed() < SETTLE_TIME {
                        continue;
                    }
                }
                _ => {
                    pending = Some((fingerprint, tokio::time::Instant::now()));
                    continue;
                }
            }
        }
        let reading = match reading {
            Some(r) => r,
            None => {
                let r = Reading::read(&path);
                seen = Some(Seen::of(&r));
                if r.fingerprint != fingerprint {
                    // Changed again since the quick look: wait for it to settle.
                    pending = Some((r.fingerprint, tokio::time::Instant::now()));
                    continue;
                }
                r
            }
        };
        pending = None;
        applied = reading.fingerprint;
        let outcome = apply(&path, &reading, &mut driver, &mut generated, now);
        if outcome.is_ok() && std::mem::take(&mut rejected) {
            tracing::info!(path = %path, "configuration accepted again: the file that was rejected is fixed");
        }
        match outcome {
            Ok((Some(generation), warnings)) => {
                for w in warnings {
                    tracing::warn!(path = %path, "{w}");
                }
                apply_log_settings(&path, &reading);
                driver.record_success();
                tracing::info!(path = %path, generation, "configuration reloaded");
            }
            Ok((None, _)) => {
                apply_log_settings(&path, &reading);
                driver.record_success();
                tracing::debug!(path = %path, "configuration unchanged")
            }
            Err(e) => {
                rejected = true;
                driver.record_failure();
                tracing::error!(path = %path, error = %e, "configuration rejected; keeping the running one");
            }
        }
        drop(reading);
        crate::memory::release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::secrets::Bootstrap;

    fn write(dir: &std::path::Path, body: &str) -> String {
        let p = dir.join("config.yaml");
        std::fs::write(&p, body).unwrap();
        p.to_string_lossy().into_owned()
    }

    fn kids(publisher: &Driver) -> Vec<String> {
        let s = publisher.reader().load().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&s.identity.jwks.body).unwrap();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn rotated_signing_key_keeps_the_old_key_published_until_its_assertions_expire() {
        let dir = tempfile::tempdir().unwrap();
        let a = Bootstrap::generate().to_config_yaml();
        let b = Bootstrap::generate().to_config_yaml();
        let route = "routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n    allow_public_unauthenticated_access: true\n";
        let (mut p, mut g) = (Driver::new(), Generated::default());
        let path = write(dir.path(), &format!("{a}{route}"));
        load_and_publish(&path, &mut p, &mut g, 1000).unwrap();
        let old = kids(&p);
        assert_eq!(old.len(), 1);
        let path = write(dir.path(), &format!("{b}{route}"));
        load_and_publish(&path, &mut p, &mut g, 1010).unwrap();
        let both = kids(&p);
        assert_eq!(both.len(), 2, "new key first, old key still published");
        assert_eq!(both[1], old[0]);
        let signer = p
            .reader()
            .load()
            .unwrap()
            .identity
            .keys
            .signer()
            .kid()
            .to_string();
        assert_eq!(signer, both[0], "the new key signs");
        // After the grace period the old key is dropped.
        load_and_publish(
            &path,
            &mut p,
            &mut g,
            1010 + crate::snapshot::RETIRED_KEY_GRACE_SECS,
        )
        .unwrap();
        assert_eq!(kids(&p), vec![both[0].clone()]);
    }

    #[test]
    fn invalid_edit_keeps_the_last_good_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut p, mut g) = (Driver::new(), Generated::default());
        let path = write(
            dir.path(),
            "routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n",
        );
        assert_eq!(
            load_and_publish(&path, &mut p, &mut g, 0).unwrap().0,
            Some(1)
        );
        write(
            dir.path(),
            "routes:\n  - from: https://a.example.com\n    too: http://127.0.0.1:1\n",
        );
        let err = load_and_publish(&path, &mut p, &mut g, 0).unwrap_err();
        assert!(err.contains("too") && err.contains("line 3"), "{err}");
        assert_eq!(p.reader().generation(), 1);
        assert!(
            p.reader()
                .load()
                .unwrap()
                .route("a.example.com", "/")
                .is_some()
        );
    }

    fn fresh() -> (Driver, Generated) {
        (Driver::new(), Generated::default())
    }

    const ROUTES: &str = "routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n    allow_public_unauthenticated_access: true\n  - from: https://b.example.com\n    to: http://127.0.0.1:2\n    allow_public_unauthenticated_access: true\n";

    #[test]
    fn a_reload_that_loses_secrets_or_every_route_keeps_the_running_config() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Bootstrap::generate().to_config_yaml();
        let (mut p, mut g) = fresh();
        let path = write(dir.path(), &format!("{secrets}{ROUTES}"));
        load_and_publish(&path, &mut p, &mut g, 0).unwrap();
        let kid = kids(&p);
        let lines: Vec<&str> = secrets.lines().collect();
        // Truncations and partial writes of the same file, each refused.
        let broken = [
            String::new(),
            "# comment only\n".to_string(),
            ROUTES.to_string(),
            format!("{}\n{ROUTES}", lines[0]),
            format!("{}\n{}\n{ROUTES}", lines[0], lines[1]),
            format!("{}\n{}\n{ROUTES}", lines[1], lines[2]),
            secrets.clone(),
            format!("{secrets}routes: []\n"),
            format!("{}{}", &secrets[..secrets.len() / 2], ""),
            format!("{secrets}{}", &ROUTES[..40]),
        ];
        for (i, text) in broken.iter().enumerate() {
            write(dir.path(), text);
            let err = load_and_publish(&path, &mut p, &mut g, 1).unwrap_err();
            assert!(!err.is_empty(), "case {i}");
            assert_eq!(p.reader().generation(), 1, "case {i}: {err}");
            assert_eq!(kids(&p), kid, "case {i}: keys unchanged");
            let s = p.reader().load().unwrap();
            assert!(s.route("a.example.com", "/").is_some(), "case {i}");
            assert!(s.route("b.example.com", "/").is_some(), "case {i}");
        }
        // The message says what was lost.
        write(dir.path(), &format!("{}\n{}\n{ROUTES}", lines[1], lines[2]));
        let err = load_and_publish(&path, &mut p, &mut g, 1).unwrap_err();
        assert!(err.contains("signing_key"), "{err}");
        write(dir.path(), &format!("{secrets}routes: []\n"));
        let err = load_and_publish(&path, &mut p, &mut g, 1).unwrap_err();
        assert!(err.contains("no routes") && err.contains("has 2"), "{err}");
        // A deliberate edit that keeps the secrets still applies.
        write(
            dir.path(),
            &format!(
                "{secrets}{}",
                &ROUTES[..ROUTES.find("  - from: https://b").unwrap()]
            ),
        );
        assert_eq!(
            load_and_publish(&path, &mut p, &mut g, 2).unwrap().0,
            Some(2)
        );
        assert!(
            p.reader()
                .load()
                .unwrap()
                .route("b.example.com", "/")
                .is_none()
        );
        assert_eq!(kids(&p), kid);
    }

    #[test]
    fn secrets_generated_at_first_start_are_reused_never_invented_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut p, mut g) = fresh();
        let path = write(dir.path(), ROUTES);
        let (_, warnings) = load_and_publish(&path, &mut p, &mut g, 0).unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("cookie_secret is not set"))
        );
        let kid = kids(&p);
        let cookie = p.reader().load().unwrap().auth.cookie_secret;
        // Edit the file (still without secrets): the same generated ones stay.
        write(dir.path(), &ROUTES.replace("127.0.0.1:2", "127.0.0.1:3"));
        let (generation, warnings) = load_and_publish(&path, &mut p, &mut g, 1).unwrap();
        assert_eq!(generation, Some(2));
        assert!(
            warnings.iter().all(|w| !w.contains("not set")),
            "{warnings:?}"
        );
        assert_eq!(kids(&p), kid);
        assert_eq!(p.reader().load().unwrap().auth.cookie_secret, cookie);
    }

    #[test]
    fn a_configured_key_is_not_replaced_by_one_derived_from_the_shared_secret() {
        let dir = tempfile::tempdir().unwrap();
        let (mut p, mut g) = fresh();
        let b = Bootstrap::generate().to_config_yaml();
        let path = write(dir.path(), &format!("{b}{ROUTES}"));
        load_and_publish(&path, &mut p, &mut g, 0).unwrap();
        let without_key: String = b
            .lines()
            .filter(|l| !l.starts_with("signing_key"))
            .map(|l| format!("{l}\n"))
            .collect();
        write(dir.path(), &format!("{without_key}{ROUTES}"));
        let err = load_and_publish(&path, &mut p, &mut g, 1).unwrap_err();
        assert!(err.contains("signing_key"), "{err}");
        assert_eq!(p.reader().generation(), 1);
    }

    #[test]
    fn a_change_to_a_referenced_file_changes_the_reading() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("key.pem");
        std::fs::write(&key_path, KeySet::generate().signer().to_sec1_pem()).unwrap();
        let path = write(
            dir.path(),
            &format!("signing_key_file: {}\n{ROUTES}", key_path.display()),
        );
        let a = Reading::read(&path);
        assert!(a.parsed.is_ok());
        assert_eq!(Reading::read(&path).fingerprint, a.fingerprint);
        // The watch loop's look without parsing agrees with a full reading…
        let seen = Seen::of(&a);
        assert_eq!(seen.files.len(), 1);
        assert_eq!(seen.fingerprint(&path), Some(a.fingerprint));
        std::fs::write(&key_path, KeySet::generate().signer().to_sec1_pem()).unwrap();
        let b = Reading::read(&path);
        assert_ne!(b.fingerprint, a.fingerprint);
        // …also when only a file it names changed…
        assert_eq!(seen.fingerprint(&path), Some(b.fingerprint));
        // …and asks for a full reading once the config file itself changes.
        write(
            dir.path(),
            &format!(
                "signing_key_file: {}\n{ROUTES}# edited\n",
                key_path.display()
            ),
        );
        assert_eq!(seen.fingerprint(&path), None);
        let unparsable = write(dir.path(), "routes: [\n");
        let bad = Reading::read(&unparsable);
        assert!(bad.parsed.is_err());
        assert_eq!(
            Seen::of(&bad).fingerprint(&unparsable),
            Some(bad.fingerprint)
        );
        write(
            dir.path(),
            &format!("signing_key_file: {}\n{ROUTES}", key_path.display()),
        );
        // A key file caught empty mid-write is an error, not a new random key.
        std::fs::write(&key_path, "").unwrap();
        let (mut p, mut g) = fresh();
        assert!(apply(&path, &Reading::read(&path), &mut p, &mut g, 0).is_err());
    }

    #[test]
    fn the_idp_client_secret_can_come_from_a_mounted_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("client_secret");
        std::fs::write(&secret, "from-a-file\n").unwrap();
        let cfg = ConfigFile::parse(
            "c",
            &format!(
                "authenticate_service_url: https://auth.example.com\nidp_provider_url: https://idp.example.com\nidp_client_id: app\nidp_client_secret_file: {}\n",
                secret.display()
            ),
        )
        .unwrap();
        let inputs = inputs_from_config(&cfg, &mut Generated::default(), &mut Vec::new()).unwrap();
        assert_eq!(inputs.global.auth.idp.unwrap().client_secret, "from-a-file");
        std::fs::remove_file(&secret).unwrap();
        let err = inputs_from_config(&cfg, &mut Generated::default(), &mut Vec::new()).unwrap_err();
        assert!(err.contains("idp_client_secret_file"), "{err}");
    }

    #[test]
    fn pomeriums_oidc_providers_load_and_github_or_unknown_ones_say_why_not() {
        let cfg = |provider: &str, url: bool| {
            let url = if url {
                "idp_provider_url: https://idp.example.com\n"
            } else {
                ""
            };
            ConfigFile::parse(
                "c",
                &format!("authenticate_service_url: https://auth.example.com\nidp_provider: {provider}\n{url}idp_client_id: app\n"),
            )
            .unwrap()
        };
        let load =
            |c: &ConfigFile| inputs_from_config(c, &mut Generated::default(), &mut Vec::new());
        for p in OIDC_PROVIDERS {
            let idp = load(&cfg(p, true)).unwrap().global.auth.idp.unwrap();
            assert_eq!(
                (idp.provider.as_str(), idp.issuer_url.as_str()),
                (*p, "https://idp.example.com")
            );
        }
        let google = load(&cfg("google", false))
            .unwrap()
            .global
            .auth
            .idp
            .unwrap();
        assert_eq!(google.issuer_url, "https://accounts.google.com");
        let e = load(&cfg("azure", false)).unwrap_err();
        assert!(e.contains("login.microsoftonline.com"), "{e}");
        let e = load(&cfg("github", true)).unwrap_err();
        assert!(e.contains("not OpenID Connect") && e.contains("Dex"), "{e}");
        let e = load(&cfg("gitlabb", true)).unwrap_err();
        assert!(e.contains("expected one of oidc, google"), "{e}");
    }

    #[test]
    fn a_service_account_token_file_fills_the_routes_token_and_a_bad_one_denies_it() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "mounted-sa-token\n").unwrap();
        let route = |host: &str, extra: &str| {
            format!(
                "  - from: https://{host}\n    to: http://127.0.0.1:1\n    allow_any_authenticated_user: true\n{extra}"
            )
        };
        let cfg = ConfigFile::parse(
            "c",
            &format!(
                "routes:\n{}{}{}",
                route("k8s.test", &format!("    kubernetes_service_account_token_file: {}\n", token.display())),
                route("gone.test", "    kubernetes_service_account_token_file: /nonexistent/token\n"),
                route("both.test", &format!("    kubernetes_service_account_token: x\n    kubernetes_service_account_token_file: {}\n", token.display())),
            ),
        )
        .unwrap();
        let inputs = inputs_from_config(&cfg, &mut Generated::default(), &mut Vec::new()).unwrap();
        assert!(referenced_files(&cfg).contains(&token.display().to_string()));
        let snap = crate::translate::translate(&inputs);
        let header = snap.routes[0].kubernetes_token.as_ref().unwrap();
        assert_eq!(header.to_str().unwrap(), "Bearer mounted-sa-token");
        for (i, needle) in [
            (1, "kubernetes_service_account_token_file"),
            (2, "not both"),
        ] {
            assert!(
                matches!(&snap.routes[i].access, crate::model::Access::Invalid(m) if m.contains(needle)),
                "{:?}",
                snap.routes[i].access
            );
        }
    }

    #[test]
    fn addresses_accept_pomerium_forms() {
        assert_eq!(parse_address(":443").unwrap().to_string(), "0.0.0.0:443");
        assert_eq!(
            parse_address("localhost:8443").unwrap().to_string(),
            "127.0.0.1:8443"
        );
        assert_eq!(
            parse_address("[::1]:8443").unwrap().to_string(),
            "[::1]:8443"
        );
        assert!(parse_address("nonsense").is_err());
    }

    #[test]
    fn missing_signing_key_is_derived_from_the_shared_secret_stably() {
        let cfg = ConfigFile::parse(
            "c",
            "shared_secret: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        )
        .unwrap();
        let mut w = Vec::new();
        let a = inputs_from_config(&cfg, &mut Generated::default(), &mut w).unwrap();
        let b = inputs_from_config(&cfg, &mut Generated::default(), &mut w).unwrap();
        assert_eq!(a.global.keys.signer().kid(), b.global.keys.signer().kid());
    }
}

//! The config file → [`Inputs`]: the pure counterpart of
//! [`super::cluster`]. A parsed [`ConfigFile`] and the files it names (read
//! by the file source) become translation inputs; secrets the file does not
//! set are generated once per process ([`Generated`]) so reloads keep them.

use crate::identity::secrets::{Secret32, Secrets};
use crate::identity::{IssuerFormat, KeySet};
use crate::model::{
    AuthConfig, BearerTokenFormat, Diagnostic, IdpConfig, ObjectRef, Reason, Severity,
};
use crate::settings::{ConfigFile, RouteConfig};
use crate::translate::{
    CertInput, GlobalInputs, Inputs, PathSpec, RouteInput, parse_upstream, route_location,
};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Default cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "_jetbridge";
/// Default session lifetime (Pomerium's `cookie_expire` default).
pub const DEFAULT_COOKIE_EXPIRE: Duration = Duration::from_secs(14 * 3600);

/// Why a config file cannot be used at all; the running configuration
/// (if any) stays. Per-route problems are never this: they become
/// diagnostics that deny their route only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A secret or signing key that is invalid, cannot be read, or would
    /// have to be invented on a reload.
    #[error("{0}")]
    Secrets(String),
    /// A global setting (listener, sign-in, certificate, logging…) that
    /// cannot be used; the message names it.
    #[error("{0}")]
    Setting(String),
}

impl ConfigError {
    /// The error with secret-looking values (long base64 blobs) removed
    /// from its message, to be logged.
    pub fn redacted(self) -> Self {
        let redact = |m: String| crate::settings::redact_secrets(&m, "");
        match self {
            ConfigError::Secrets(m) => ConfigError::Secrets(redact(m)),
            ConfigError::Setting(m) => ConfigError::Setting(redact(m)),
        }
    }
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

impl Generated {
    /// What the running configuration was built from, once one was published.
    pub fn running(&self) -> Option<&Provenance> {
        self.running.as_ref()
    }

    /// Records that a configuration built from `provenance` was published:
    /// from then on secrets are never invented.
    pub fn set_running(&mut self, provenance: Provenance) {
        self.running = Some(provenance);
    }
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
    pub fn check_reload(&self, next: &Provenance) -> Result<(), ReloadError> {
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
            return Err(ReloadError::LostSecrets(lost));
        }
        if self.routes > 0 && next.routes == 0 {
            return Err(ReloadError::NoRoutes(self.routes));
        }
        Ok(())
    }
}

/// Why a reload is refused although the new file is valid: it would lose
/// what the running configuration has (see [`Provenance::check_reload`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// Configured secrets or keys the new file no longer names.
    #[error(
        "the file no longer sets {} that the running configuration uses; refusing to \
         replace it with a new random or derived value (every session and published key \
         would change). Put it back, or restart jetbridge to apply the change deliberately",
        .0.join(", ")
    )]
    LostSecrets(Vec<&'static str>),
    /// The new file has no routes; the running configuration has this many.
    #[error(
        "the file defines no routes (the running configuration has {0}); refusing to take \
         every route down on reload. Restart jetbridge to run without routes deliberately"
    )]
    NoRoutes(usize),
}

/// Contents of the files a config names (key files, certificates, CA
/// bundles), read together with the config so one reading is consistent.
pub type Files = BTreeMap<String, Result<String, Unreadable>>;

/// Why a file the config names could not be read: the reader's message
/// (`No such file or directory (os error 2)`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

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
    warnings: &mut Vec<Diagnostic>,
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
        warnings.push(Diagnostic::setting(format!(
            "{name} is not set: using a random one for this process (sessions end on restart \
             and replicas will not share them); set it with `jetbridge gen-secrets --format config`"
        )));
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

/// The config file's translation inputs, over files already read (see
/// `source::file::Reading`): its secrets resolved (or generated once per
/// process), then [`inputs_with_secrets`]. Errors here are global (the whole
/// file is rejected); per-route problems become diagnostics in translation.
pub fn inputs_from_parts(
    cfg: &ConfigFile,
    files: &Files,
    generated: &mut Generated,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Inputs, ConfigError> {
    warn_unknown_runtime_flags(cfg, warnings);
    let secrets = file_secrets(cfg, files, generated, warnings).map_err(ConfigError::Secrets)?;
    inputs_with_secrets(cfg, files, secrets, generated, warnings)
}

/// The translation inputs of a config file whose global secrets were
/// resolved by its source: the file's own (see [`inputs_from_parts`]), or
/// the cluster's bootstrap Secret, or the demo's.
pub fn inputs_with_secrets(
    cfg: &ConfigFile,
    files: &Files,
    secrets: Secrets,
    generated: &mut Generated,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Inputs, ConfigError> {
    inputs(cfg, files, secrets, generated, warnings).map_err(ConfigError::Setting)
}

/// [`inputs_with_secrets`]; an error names the setting.
fn inputs(
    cfg: &ConfigFile,
    files: &Files,
    secrets: Secrets,
    generated: &mut Generated,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Inputs, String> {
    check_logging(cfg)?;
    let issuer_format = IssuerFormat::parse(cfg.jwt_issuer_format.as_deref().unwrap_or(""))
        .map_err(|e| e.to_string())?;
    let bearer_token_format =
        BearerTokenFormat::parse(cfg.bearer_token_format.as_deref().unwrap_or(""))
            .map_err(|e| e.to_string())?;
    let (authenticate_url, authenticate_host) = authenticate_service(cfg)?;
    let idp = identity_provider(cfg, files, warnings)?;
    check_sign_in(
        idp.as_ref(),
        authenticate_host.as_deref(),
        authenticate_url.is_some(),
        warnings,
    )?;
    let forward_auth = forward_auth_host(cfg, authenticate_host.as_deref())?;
    let mut certificates = configured_certificates(cfg, files)?;
    let (routes, diagnostics) = routes(cfg, files)?;
    if certificates.is_empty() {
        certificates.extend(self_signed(
            cfg,
            [authenticate_host.as_deref(), forward_auth.as_deref()],
            generated,
            warnings,
        )?);
    }
    let downstream_mtls = cfg
        .downstream_mtls
        .as_ref()
        .map(|d| downstream_mtls(d, files))
        .transpose()?;
    let mut auth = auth_config(cfg, &secrets, authenticate_url, authenticate_host, idp);
    auth.forward_auth_host = forward_auth;
    Ok(Inputs {
        global: GlobalInputs {
            keys: secrets.keys,
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
            auth,
            certificates,
            downstream_mtls,
            gateway_ports: Vec::new(),
        },
        routes,
        diagnostics,
    })
}

/// Warns about `runtime_flags` jetbridge does not know.
fn warn_unknown_runtime_flags(cfg: &ConfigFile, warnings: &mut Vec<Diagnostic>) {
    for flag in cfg.runtime_flags.iter().flat_map(|f| f.keys()) {
        if !crate::settings::KNOWN_RUNTIME_FLAGS.contains(&flag.as_str()) {
            warnings.push(Diagnostic::setting(format!(
                "runtime_flags: unknown flag {flag:?} is ignored"
            )));
        }
    }
}

/// The file's secrets: as set, or generated once per process (never on a
/// reload), and the signing key derived from `shared_secret` when the file
/// names none.
fn file_secrets(
    cfg: &ConfigFile,
    files: &Files,
    generated: &mut Generated,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Secrets, String> {
    let first_load = generated.running.is_none();
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
    let keys = signing_keys(cfg, files, &shared_secret, generated, warnings)?;
    Ok(Secrets {
        keys,
        cookie_secret,
        shared_secret,
    })
}

/// `signing_key` (or its file), else a key derived from `shared_secret`,
/// else one generated for this process.
fn signing_keys(
    cfg: &ConfigFile,
    files: &Files,
    shared_secret: &Secret32,
    generated: &mut Generated,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Arc<KeySet>, String> {
    let key_text = match (&cfg.signing_key, &cfg.signing_key_file) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(path)) => Some(read_file(files, "signing_key_file", path)?),
        (None, None) => None,
    };
    if let Some(text) = key_text {
        let set = KeySet::parse(&text).map_err(|e| e.to_string())?;
        warnings.extend(
            set.warnings
                .iter()
                .map(|w| Diagnostic::setting(w.to_string())),
        );
        return Ok(Arc::new(set));
    }
    if cfg.shared_secret.is_some() {
        return Ok(Arc::new(
            derived_key(shared_secret).ok_or("cannot derive a signing key from shared_secret")?,
        ));
    }
    if generated.keys.is_none() && generated.running.is_some() {
        return Err("signing_key is not set: refusing to invent a key on reload".into());
    }
    if generated.keys.is_none() {
        warnings.push(Diagnostic::setting(
            "signing_key is not set: using a random key for this process; upstreams \
             must re-fetch the JWKS after a restart",
        ));
    }
    Ok(generated
        .keys
        .get_or_insert_with(|| Arc::new(KeySet::generate()))
        .clone())
}

/// Refuses a `log_level` or `log_format` jetbridge does not know.
fn check_logging(cfg: &ConfigFile) -> Result<(), String> {
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
        crate::telemetry::LogFormat::parse(f).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `authenticate_service_url` without its trailing slash, and its host.
fn authenticate_service(cfg: &ConfigFile) -> Result<(Option<String>, Option<String>), String> {
    service_url(
        "authenticate_service_url",
        cfg.authenticate_service_url.as_deref(),
    )
}

/// An https URL of a service this proxy serves itself, without its
/// trailing `/`, and its host.
fn service_url(key: &str, raw: Option<&str>) -> Result<(Option<String>, Option<String>), String> {
    let Some(u) = raw.map(|u| u.trim_end_matches('/').to_string()) else {
        return Ok((None, None));
    };
    let parsed = url::Url::parse(&u).map_err(|e| format!("{key} {u:?}: {e}"))?;
    if parsed.scheme() != "https" {
        return Err(format!("{key} {u:?}: must be https"));
    }
    let host = parsed.host_str().map(str::to_ascii_lowercase);
    Ok((Some(u), host))
}

/// The host of `forward_auth_url`: https, and a host of its own (neither a
/// route's nor the authenticate service's), since every path on it is a
/// forward-auth check.
fn forward_auth_host(
    cfg: &ConfigFile,
    authenticate_host: Option<&str>,
) -> Result<Option<String>, String> {
    let (_, host) = service_url("forward_auth_url", cfg.forward_auth_url.as_deref())?;
    let Some(host) = host else {
        return Ok(None);
    };
    if authenticate_host == Some(host.as_str()) || route_hosts(cfg.all_routes()).contains(&host) {
        return Err(format!(
            "forward_auth_url: {host} must be a host of its own, not a route's or the \
             authenticate service's"
        ));
    }
    Ok(Some(host))
}

/// The identity provider the file names, if any.
fn identity_provider(
    cfg: &ConfigFile,
    files: &Files,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Option<IdpConfig>, String> {
    let (url, provider) = match (&cfg.idp_provider_url, &cfg.idp_provider) {
        (None, None) => return Ok(None),
        (url, provider) => (url, provider.clone().unwrap_or_else(|| "oidc".into())),
    };
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
    Ok(Some(IdpConfig {
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
    }))
}

/// Checks that sign-in can work: an identity provider needs
/// `authenticate_service_url`, and warns about issuers and hosts that
/// cannot be meant.
fn check_sign_in(
    idp: Option<&IdpConfig>,
    authenticate_host: Option<&str>,
    has_authenticate_url: bool,
    warnings: &mut Vec<Diagnostic>,
) -> Result<(), String> {
    if let Some(w) =
        idp.and_then(|i| crate::identity::oidc::plain_http_issuer_warning(&i.issuer_url))
    {
        warnings.push(Diagnostic::setting(w));
    }
    if idp.is_some() && !has_authenticate_url {
        return Err(
            "authenticate_service_url is required when an identity provider is configured".into(),
        );
    }
    if let Some(h) = authenticate_host
        && h.ends_with("pomerium.app")
        && idp.is_some()
    {
        warnings.push(Diagnostic::setting(format!(
            "authenticate_service_url points at {h}: jetbridge serves the authenticate endpoints \
             itself, so {h} must resolve to this proxy; use a host of your own"
        )));
    }
    Ok(())
}

/// A certificate the file configures.
fn configured(source: ObjectRef, chain_pem: String, key_pem: String) -> CertInput {
    CertInput {
        source,
        chain_pem,
        key_pem,
        hosts: Vec::new(),
        generated: false,
    }
}

/// `certificate_file`/`certificate_key_file`, `certificate`/`certificate_key`
/// and `certificates`, in that order.
fn configured_certificates(cfg: &ConfigFile, files: &Files) -> Result<Vec<CertInput>, String> {
    let mut certificates = Vec::new();
    if let (Some(c), Some(k)) = (&cfg.certificate_file, &cfg.certificate_key_file) {
        certificates.push(configured(
            ObjectRef::file(format!("certificate_file {c:?}")),
            read_file(files, "certificate_file", c)?,
            read_file(files, "certificate_key_file", k)?,
        ));
    } else if cfg.certificate_file.is_some() != cfg.certificate_key_file.is_some() {
        return Err("certificate_file and certificate_key_file must be set together".into());
    }
    if let (Some(c), Some(k)) = (&cfg.certificate, &cfg.certificate_key) {
        certificates.push(configured(
            ObjectRef::file("certificate"),
            pem_or_base64("certificate", c)?,
            pem_or_base64("certificate_key", k)?,
        ));
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
        certificates.push(configured(
            ObjectRef::file(format!("certificates[{i}]")),
            chain_pem,
            key_pem,
        ));
    }
    Ok(certificates)
}

/// The file's routes; a route whose `from` cannot be served is a
/// diagnostic, a CA that cannot be read rejects the file.
fn routes(cfg: &ConfigFile, files: &Files) -> Result<(Vec<RouteInput>, Vec<Diagnostic>), String> {
    let mut routes = Vec::new();
    let mut diagnostics = Vec::new();
    for (i, r) in cfg.all_routes().enumerate() {
        let custom_ca_pem = custom_ca(i, r, files)?;
        let source = ObjectRef::file(route_object(i, r));
        match route_place(r, &source) {
            Ok((host, path)) => {
                routes.push(route_input(i, r, files, source, host, path, custom_ca_pem))
            }
            Err(d) => diagnostics.push(d),
        }
    }
    Ok((routes, diagnostics))
}

/// `tls_custom_ca` or the content of `tls_custom_ca_file`.
fn custom_ca(i: usize, r: &RouteConfig, files: &Files) -> Result<Option<String>, String> {
    Ok(match (&r.tls_custom_ca, &r.tls_custom_ca_file) {
        (Some(ca), _) => Some(pem_or_base64(&format!("routes[{i}].tls_custom_ca"), ca)?),
        (None, Some(f)) => Some(read_file(
            files,
            &format!("routes[{i}].tls_custom_ca_file"),
            f,
        )?),
        (None, None) => None,
    })
}

/// The host and path a route answers, or why it is not served.
fn route_place(r: &RouteConfig, source: &ObjectRef) -> Result<(String, PathSpec), Diagnostic> {
    let not_served = |message| Diagnostic {
        severity: Severity::Error,
        object: source.clone(),
        reason: Reason::NotServed,
        message,
    };
    match route_location(
        &r.from,
        r.prefix.as_deref(),
        r.path.as_deref(),
        r.regex.as_deref(),
    ) {
        Ok((host, _)) if (host.is_empty() || host == "*") && !r.subtle_allow_empty_host => {
            Err(not_served(format!(
                "from {:?} names no host; set subtle_allow_empty_host: true to serve \
                 this route for every host no other route names",
                r.from
            )))
        }
        Ok((host, path)) if host == "*" => Ok((String::new(), path)),
        Ok(location) => Ok(location),
        Err(e) => Err(not_served(e.to_string())),
    }
}

/// One served route: the files it names that cannot be read, a token
/// given twice and an upstream that does not parse deny it only.
fn route_input(
    i: usize,
    r: &RouteConfig,
    files: &Files,
    source: ObjectRef,
    host: String,
    path: PathSpec,
    custom_ca_pem: Option<String>,
) -> RouteInput {
    let mut problems = Vec::new();
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
            Err(e) => problems.push(e.to_string()),
        }
    }
    let id = r.name.clone().unwrap_or_else(|| format!("routes[{i}]"));
    RouteInput {
        created: i as i64,
        backends,
        options,
        custom_ca_pem,
        client_cert_pem,
        client_key_pem,
        downstream_ca_pem,
        problems: problems
            .into_iter()
            .map(|m| Diagnostic::invalid_route(&source, m))
            .collect(),
        ..RouteInput::new(id, source.clone(), host, path)
    }
}

/// The self-signed certificate served when the file configures none: for
/// the routes' hosts, the authenticate and forward-auth hosts and `localhost`, generated again
/// only when those names change.
fn self_signed(
    cfg: &ConfigFile,
    own_hosts: [Option<&str>; 2],
    generated: &mut Generated,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Option<CertInput>, String> {
    let mut names: Vec<String> = route_hosts(cfg.all_routes());
    names.extend(own_hosts.into_iter().flatten().map(str::to_string));
    names.push("localhost".into());
    names.sort();
    names.dedup();
    let reuse = matches!(&generated.cert, Some((n, _)) if *n == names);
    if !reuse {
        warnings.push(Diagnostic::setting(format!(
            "no certificate configured: serving a generated self-signed certificate for {}",
            names.join(", ")
        )));
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
    Ok(generated.cert.as_ref().map(|(_, c)| c.clone()))
}

/// The sign-in settings: the identity provider, the cookie and the secrets.
fn auth_config(
    cfg: &ConfigFile,
    secrets: &Secrets,
    authenticate_url: Option<String>,
    authenticate_host: Option<String>,
    idp: Option<IdpConfig>,
) -> AuthConfig {
    AuthConfig {
        authenticate_url,
        authenticate_host,
        // Checked and filled in by `inputs`.
        forward_auth_host: None,
        idp,
        cookie_name: cfg
            .cookie_name
            .clone()
            .unwrap_or_else(|| DEFAULT_COOKIE_NAME.into()),
        cookie_expire: cfg.cookie_expire.unwrap_or(DEFAULT_COOKIE_EXPIRE),
        cookie_secret: secrets.cookie_secret.0,
        shared_secret: secrets.shared_secret.0,
        jwt_endpoint: cfg
            .runtime_flags
            .as_ref()
            .and_then(|f| f.get("pomerium_jwt_endpoint").copied())
            .unwrap_or(false),
        // Filled in by `translate`, from the routes.
        route_idps: Default::default(),
    }
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
    let ca =
        crate::model::ClientCa::parse_as("downstream_mtls.ca", &pem).map_err(|e| e.to_string())?;
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

/// `idp_client_secret` (or the content of `idp_client_secret_file`). A key
/// that is set but empty is refused (a value that failed to arrive, such as
/// an unset variable in a template); no key at all is a warning, as the
/// identity provider then refuses the code exchange unless the client is a
/// public one.
fn client_secret(
    cfg: &ConfigFile,
    files: &Files,
    warnings: &mut Vec<Diagnostic>,
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
            warnings.push(Diagnostic::setting(
                "idp_client_secret is not set: jetbridge signs in as a public client, and an \
                 identity provider that expects a client secret refuses every sign-in \
                 (invalid_client)",
            ));
            String::new()
        }
    };
    Ok(secret)
}

/// How a config-file route is named in diagnostics: `routes[i] (<from>)`.
fn route_object(i: usize, r: &RouteConfig) -> String {
    format!("routes[{i}] ({})", r.from)
}

/// A diagnostic as a load or reload reports it: naming where in the file
/// the route is (line, column), and for a `policy` problem where the policy
/// is.
pub fn locate(d: &Diagnostic, cfg: &ConfigFile) -> Diagnostic {
    let span = cfg
        .all_routes()
        .zip(&cfg.spans)
        .enumerate()
        .find(|(i, (r, _))| d.object.kind.is_empty() && d.object.name == route_object(*i, r))
        .map(|(_, (_, span))| *span);
    let Some(span) = span else {
        return d.clone();
    };
    let mut located = d.clone();
    match (span.policy, d.message.strip_prefix("policy: "), span.at) {
        (Some((line, column)), Some(rest), _) => {
            located.message = format!("policy at line {line}, column {column}: {rest}");
        }
        (_, _, Some((line, column))) => {
            let at = format!("{} at line {line}, column {column}", d.object.name);
            located.object = ObjectRef::file(at);
        }
        _ => {}
    }
    located
}

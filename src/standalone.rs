//! `jetbridge standalone`: the config file becomes [`Inputs`]; the file is
//! watched and every valid edit publishes a new snapshot. An invalid edit
//! keeps the last good snapshot and is logged with the reason.
//!
//! This is the I/O edge for the file source: it reads referenced files
//! (certificates, CA bundles, key files) and generates what is missing
//! (a self-signed certificate, secrets) once per process, so reloads keep them.

use crate::identity::secrets::Secret32;
use crate::identity::{IssuerFormat, KeySet};
use crate::model::{AuthConfig, IdpConfig, Severity};
use crate::settings::{ConfigFile, RouteConfig};
use crate::snapshot::{KeyHistory, Publisher};
use crate::translate::{CertInput, GlobalInputs, Inputs, RouteInput, translate};
use base64::Engine as _;
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
}

/// Material generated once per process when the file does not provide it.
#[derive(Default)]
pub struct Generated {
    cookie_secret: Option<Secret32>,
    shared_secret: Option<Secret32>,
    keys: Option<Arc<KeySet>>,
    cert: Option<(Vec<String>, CertInput)>,
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
    })
}

fn read_file(what: &str, path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{what} {path:?}: {e}"))
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
    warnings: &mut Vec<String>,
) -> Result<Secret32, String> {
    if let Some(v) = value {
        return Secret32::parse(name, v).map_err(|e| e.to_string());
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
    let cookie_secret = secret(
        "cookie_secret",
        cfg.cookie_secret.as_deref(),
        &mut generated.cookie_secret,
        warnings,
    )?;
    let shared_secret = secret(
        "shared_secret",
        cfg.shared_secret.as_deref(),
        &mut generated.shared_secret,
        warnings,
    )?;

    let key_text = match (&cfg.signing_key, &cfg.signing_key_file) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(path)) => Some(read_file("signing_key_file", path)?),
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

    let issuer_format = match cfg.jwt_issuer_format.as_deref() {
        None | Some("") | Some("host") | Some("hostOnly") | Some("IssuerHostOnly") => {
            IssuerFormat::Host
        }
        Some("uri") | Some("IssuerURI") => IssuerFormat::Uri,
        Some(other) => return Err(format!("jwt_issuer_format {other:?}: expected host or uri")),
    };

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
            let issuer_url = match (url, provider.as_str()) {
                (Some(u), _) => u.clone(),
                (None, "google") => "https://accounts.google.com".into(),
                (None, p) => {
                    return Err(format!(
                        "idp_provider {p:?}: set idp_provider_url to the OIDC issuer URL"
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
                client_secret: cfg.idp_client_secret.clone().unwrap_or_default(),
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
            source: format!("certificate_file {c:?}"),
            chain_pem: read_file("certificate_file", c)?,
            key_pem: read_file("certificate_key_file", k)?,
        });
    } else if cfg.certificate_file.is_some() != cfg.certificate_key_file.is_some() {
        return Err("certificate_file and certificate_key_file must be set together".into());
    }
    if let (Some(c), Some(k)) = (&cfg.certificate, &cfg.certificate_key) {
        certificates.push(CertInput {
            source: "certificate".into(),
            chain_pem: pem_or_base64("certificate", c)?,
            key_pem: pem_or_base64("certificate_key", k)?,
        });
    }
    for (i, e) in cfg.certificates.iter().enumerate() {
        let chain_pem = match (&e.cert, &e.cert_file) {
            (Some(c), _) => pem_or_base64(&format!("certificates[{i}].cert"), c)?,
            (None, Some(f)) => read_file(&format!("certificates[{i}].cert_file"), f)?,
            _ => return Err(format!("certificates[{i}]: cert or cert_file is required")),
        };
        let key_pem = match (&e.key, &e.key_file) {
            (Some(k), _) => pem_or_base64(&format!("certificates[{i}].key"), k)?,
            (None, Some(f)) => read_file(&format!("certificates[{i}].key_file"), f)?,
            _ => return Err(format!("certificates[{i}]: key or key_file is required")),
        };
        certificates.push(CertInput {
            source: format!("certificates[{i}]"),
            chain_pem,
            key_pem,
        });
    }

    let mut routes = Vec::new();
    for (i, r) in cfg.all_routes().enumerate() {
        let custom_ca_pem = match (&r.tls_custom_ca, &r.tls_custom_ca_file) {
            (Some(ca), _) => Some(pem_or_base64(&format!("routes[{i}].tls_custom_ca"), ca)?),
            (None, Some(f)) => Some(read_file(&format!("routes[{i}].tls_custom_ca_file"), f)?),
            (None, None) => None,
        };
        routes.push(RouteInput {
            id: r.name.clone().unwrap_or_else(|| format!("routes[{i}]")),
            object: format!("routes[{i}] ({})", r.from),
            created: i as i64,
            spec: r.clone(),
            custom_ca_pem,
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
                    source: "generated self-signed certificate".into(),
                    chain_pem: ck.cert.pem(),
                    key_pem: ck.signing_key.serialize_pem(),
                },
            ));
        }
        if let Some((_, c)) = &generated.cert {
            certificates.push(c.clone());
        }
    }

    Ok(Inputs {
        global: GlobalInputs {
            keys,
            retired_keys: Vec::new(),
            issuer_format,
            pass_identity_headers: cfg.pass_identity_headers.unwrap_or(false),
            jwt_claims_headers: cfg
                .jwt_claims_headers
                .as_ref()
                .map(|c| c.0.clone())
                .unwrap_or_default(),
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
            },
            certificates,
        },
        routes,
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
            (!host.is_empty()).then(|| host.to_ascii_lowercase())
        })
        .collect()
}

/// Loads, translates and publishes the file. Returns the warnings, or the
/// reason the file was rejected (the current snapshot then stays).
pub fn load_and_publish(
    path: &str,
    publisher: &mut Publisher,
    generated: &mut Generated,
    history: &mut KeyHistory,
    now: i64,
) -> Result<(Option<u64>, Vec<String>), String> {
    let cfg = ConfigFile::load(path).map_err(|e| e.to_string())?;
    let mut warnings = Vec::new();
    let mut inputs =
        inputs_from_config(&cfg, generated, &mut warnings).map_err(|e| format!("{path}: {e}"))?;
    inputs.global.retired_keys = history.update(&inputs.global.keys, now);
    let snapshot = translate(&inputs);
    let errors: Vec<String> = snapshot
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    if !errors.is_empty() {
        return Err(format!("{path}: {}", errors.join("; ")));
    }
    warnings.extend(snapshot.diagnostics.iter().map(|d| d.to_string()));
    Ok((publisher.publish(snapshot), warnings))
}

/// Polls the file and republishes on change until `shutdown` is cancelled.
pub async fn watch(
    path: String,
    mut publisher: Publisher,
    mut generated: Generated,
    mut history: KeyHistory,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut last = std::fs::read(&path).ok();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = crate::proxy::unix_now();
        let current = std::fs::read(&path).ok();
        let retired_due = history.next_expiry(now).is_some_and(|s| s == 0);
        if current == last && !retired_due {
            continue;
        }
        if current.is_none() {
            tracing::warn!(path = %path, "config file unreadable; keeping the current configuration");
            last = current;
            publisher.record_failure();
            continue;
        }
        last = current;
        match load_and_publish(&path, &mut publisher, &mut generated, &mut history, now) {
            Ok((Some(generation), warnings)) => {
                for w in warnings {
                    tracing::warn!(path = %path, "{w}");
                }
                tracing::info!(path = %path, generation, "configuration reloaded");
            }
            Ok((None, _)) => tracing::debug!(path = %path, "configuration unchanged"),
            Err(e) => {
                publisher.record_failure();
                tracing::error!(path = %path, error = %e, "invalid configuration; keeping the last good one");
            }
        }
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

    fn kids(publisher: &Publisher) -> Vec<String> {
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
        let (mut p, mut g, mut h) = (
            Publisher::new(),
            Generated::default(),
            KeyHistory::default(),
        );
        let path = write(dir.path(), &format!("{a}{route}"));
        load_and_publish(&path, &mut p, &mut g, &mut h, 1000).unwrap();
        let old = kids(&p);
        assert_eq!(old.len(), 1);
        let path = write(dir.path(), &format!("{b}{route}"));
        load_and_publish(&path, &mut p, &mut g, &mut h, 1010).unwrap();
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
            &mut h,
            1010 + crate::snapshot::RETIRED_KEY_GRACE_SECS,
        )
        .unwrap();
        assert_eq!(kids(&p), vec![both[0].clone()]);
    }

    #[test]
    fn invalid_edit_keeps_the_last_good_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut p, mut g, mut h) = (
            Publisher::new(),
            Generated::default(),
            KeyHistory::default(),
        );
        let path = write(
            dir.path(),
            "routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n",
        );
        assert_eq!(
            load_and_publish(&path, &mut p, &mut g, &mut h, 0)
                .unwrap()
                .0,
            Some(1)
        );
        write(
            dir.path(),
            "routes:\n  - from: https://a.example.com\n    too: http://127.0.0.1:1\n",
        );
        let err = load_and_publish(&path, &mut p, &mut g, &mut h, 0).unwrap_err();
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

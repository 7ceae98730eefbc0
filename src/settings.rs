//! Settings: the Pomerium-style config file (`jetbridge standalone --config`)
//! as plain serde types, plus small value parsers (durations, string-or-list).
//!
//! Keys keep Pomerium's names so an existing `config.yaml` loads unchanged.
//! Unknown keys are errors that name the key and its line.

use serde::{Deserialize, Deserializer};
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
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// HTTPS listen address (default `:8443` here; Pomerium's `:443`).
    pub address: Option<String>,
    /// Plain-HTTP listener that redirects to HTTPS.
    pub http_redirect_address: Option<String>,
    /// Internal plain-HTTP listener: JWKS, health, metrics.
    pub internal_address: Option<String>,
    /// Alias of `internal_address`.
    pub metrics_address: Option<String>,
    pub certificate_file: Option<String>,
    pub certificate_key_file: Option<String>,
    /// Base64 PEM certificate (Pomerium's `certificate`).
    pub certificate: Option<String>,
    /// Base64 PEM key (Pomerium's `certificate_key`).
    pub certificate_key: Option<String>,
    #[serde(default)]
    pub certificates: Vec<CertificateEntry>,
    pub authenticate_service_url: Option<String>,
    pub idp_provider: Option<String>,
    pub idp_provider_url: Option<String>,
    pub idp_client_id: Option<String>,
    pub idp_client_secret: Option<String>,
    #[serde(default, deserialize_with = "string_or_list_opt")]
    pub idp_scopes: Option<Vec<String>>,
    /// Name of the ID-token/userinfo claim that holds group names (default `groups`).
    pub idp_groups_claim: Option<String>,
    pub cookie_secret: Option<String>,
    pub cookie_name: Option<String>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub cookie_expire: Option<Duration>,
    pub shared_secret: Option<String>,
    pub signing_key: Option<String>,
    /// File holding the signing key (PEM or base64 PEM).
    pub signing_key_file: Option<String>,
    pub jwt_claims_headers: Option<ClaimsHeaders>,
    pub jwt_issuer_format: Option<String>,
    pub pass_identity_headers: Option<bool>,
    /// Log level (`error`, `warn`, `info`, `debug`).
    pub log_level: Option<String>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Pomerium's older name for `routes`.
    #[serde(default)]
    pub policy: Vec<RouteConfig>,
}

/// One entry of `certificates`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificateEntry {
    /// Base64 PEM (or PEM) certificate chain.
    pub cert: Option<String>,
    /// Base64 PEM (or PEM) private key.
    pub key: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// `jwt_claims_headers`: a map header → claim, or a list / comma string of claims.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimsHeaders(pub Vec<(String, String)>);

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

/// One route of the config file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub from: String,
    #[serde(default, deserialize_with = "string_or_list")]
    pub to: Vec<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub prefix: Option<String>,
    pub path: Option<String>,
    pub pass_identity_headers: Option<bool>,
    pub policy: Option<serde_json::Value>,
    #[serde(default)]
    pub allowed_users: Vec<String>,
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    #[serde(default)]
    pub allowed_idp_claims: BTreeMap<String, Vec<serde_json::Value>>,
    #[serde(default)]
    pub allow_public_unauthenticated_access: bool,
    #[serde(default)]
    pub allow_any_authenticated_user: bool,
    #[serde(default)]
    pub allow_websockets: bool,
    #[serde(default)]
    pub preserve_host_header: bool,
    #[serde(default)]
    pub set_request_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub remove_request_headers: Vec<String>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub idle_timeout: Option<Duration>,
    #[serde(default)]
    pub tls_skip_verify: bool,
    pub tls_custom_ca_file: Option<String>,
    /// Base64 PEM CA bundle.
    pub tls_custom_ca: Option<String>,
    pub tls_server_name: Option<String>,
    pub jwt_claims_headers: Option<ClaimsHeaders>,
}

impl ConfigFile {
    /// Parses config text; `path` names the file in errors.
    pub fn parse(path: &str, text: &str) -> Result<Self, SettingsError> {
        serde_saphyr::from_str::<ConfigFile>(text).map_err(|e| SettingsError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })
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

fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Parses a Go-style duration (`30s`, `1m30s`, `14h`, `250ms`, `1.5h`); a bare
/// number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {text:?}: missing unit (e.g. 30s, 5m, 1h)"))?;
        if num_len == 0 {
            return Err(format!("duration {text:?}: expected a number"));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("duration {text:?}: bad number"))?;
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
            other => return Err(format!("duration {text:?}: unknown unit {other:?}")),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if !total.is_finite() || total > 1e10 {
        return Err(format!("duration {text:?}: out of range"));
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

    #[test]
    fn to_accepts_a_string_or_a_list() {
        let c = ConfigFile::parse("c", "routes:\n  - from: https://a\n    to: http://b\n  - from: https://c\n    to: [http://d, http://e]\n").unwrap();
        assert_eq!(c.routes[0].to, vec!["http://b"]);
        assert_eq!(c.routes[1].to.len(), 2);
    }
}

//! Logging: JSON lines (the default off a terminal, as a Kubernetes
//! deployment wants) or text (the default on a terminal, with colour only
//! there), one access-log line per request, and a level that a config
//! reload can change while the process runs.
//!
//! The decision log (target `jetbridge::authorize`) is one line per
//! authorization decision, with the identity and request fields that
//! Pomerium's `authorize_log_fields` names; [`set_decision_log`] sets what
//! it writes and whether it is on, at start and on every reload.
//!
//! `JETBRIDGE_LOG` (an `EnvFilter` directive such as `debug` or
//! `info,jetbridge::access=off`) overrides the level from the config file
//! and is not changed by reloads.

use std::io::IsTerminal as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, reload};

/// Target of the access-log events (filter them with `jetbridge::access=off`).
pub const ACCESS_TARGET: &str = "jetbridge::access";

/// Target of the decision-log events (filter them with `jetbridge::authorize=off`).
pub const AUTHORIZE_TARGET: &str = "jetbridge::authorize";

/// A logging setting jetbridge does not know, or a filter it cannot apply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryError {
    /// `log_format` other than json or text (as written, lowercased).
    #[error("log_format {0:?}: expected json or text")]
    Format(String),
    /// `log_level` other than a level name (as written, lowercased).
    #[error("log_level {0:?}: expected error, warn, info, debug or trace")]
    Level(String),
    /// The subscriber refused the filter (its message).
    #[error("{0}")]
    Filter(String),
    /// An `authorize_log_fields` entry that is no field name.
    #[error("authorize_log_fields: unknown field {0:?}; known fields: {KNOWN_FIELDS}")]
    UnknownField(String),
    /// An `authorize_log_fields` entry naming a credential.
    #[error("authorize_log_fields: {0:?} is never logged here: it carries tokens or cookies")]
    SecretField(String),
}

/// An identity or request field of the decision log, by Pomerium's
/// `authorize_log_fields` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizeLogField {
    /// `request-id`: the id the access log and `X-Request-Id` carry.
    RequestId,
    /// `method`.
    Method,
    /// `path`: the normalised path, without the query.
    Path,
    /// `host`.
    Host,
    /// `ip`: the client address.
    Ip,
    /// `session-id`: the session's id (not its cookie).
    SessionId,
    /// `user`: the identity provider's subject.
    User,
    /// `email`.
    Email,
    /// `groups` (an addition of jetbridge's; not in Pomerium's list).
    Groups,
}

/// Field names with a value here, in the order lines carry them.
const FIELDS: [(&str, AuthorizeLogField); 9] = [
    ("request-id", AuthorizeLogField::RequestId),
    ("method", AuthorizeLogField::Method),
    ("path", AuthorizeLogField::Path),
    ("host", AuthorizeLogField::Host),
    ("ip", AuthorizeLogField::Ip),
    ("session-id", AuthorizeLogField::SessionId),
    ("user", AuthorizeLogField::User),
    ("email", AuthorizeLogField::Email),
    ("groups", AuthorizeLogField::Groups),
];

/// Pomerium field names accepted and left out: jetbridge has no value for
/// them (no Envoy, service accounts, impersonation or MCP).
const WITHOUT_VALUE: [&str; 13] = [
    "check-request-id",
    "cluster-stat-name",
    "envoy-route-checksum",
    "envoy-route-id",
    "route-checksum",
    "route-id",
    "impersonate-email",
    "impersonate-session-id",
    "impersonate-user-id",
    "removed-groups-count",
    "service-account-id",
    "mcp-method",
    "mcp-tool",
];

/// Pomerium field names refused: their values are credentials (tokens,
/// cookies in headers) or may hold them (query values, bodies).
const SECRET: [&str; 6] = [
    "id-token",
    "id-token-claims",
    "headers",
    "query",
    "body",
    "mcp-tool-parameters",
];

const KNOWN_FIELDS: &str = "request-id, method, path, host, ip, session-id, user, email, groups \
     (and Pomerium's check-request-id, cluster-stat-name, envoy-route-checksum, envoy-route-id, \
     route-checksum, route-id, impersonate-*, removed-groups-count, service-account-id, \
     mcp-method, mcp-tool, which have no value here)";

/// The set of [`AuthorizeLogField`]s a decision line carries. The default
/// is Pomerium's default list, as far as jetbridge has the values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthorizeLogFields(u32);

impl Default for AuthorizeLogFields {
    fn default() -> Self {
        use AuthorizeLogField::*;
        [RequestId, Method, Path, Host, Ip, SessionId, User, Email]
            .into_iter()
            .collect()
    }
}

impl FromIterator<AuthorizeLogField> for AuthorizeLogFields {
    fn from_iter<I: IntoIterator<Item = AuthorizeLogField>>(iter: I) -> Self {
        AuthorizeLogFields(iter.into_iter().fold(0, |m, f| m | 1 << f as u32))
    }
}

impl AuthorizeLogFields {
    /// Reads Pomerium's field names; unknown names and names of
    /// credentials (`headers.cookie`, `id-token`, ...) are refused.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, TelemetryError> {
        let mut out = Vec::new();
        for name in names {
            let name = name.as_ref().trim();
            let lower = name.to_ascii_lowercase();
            if SECRET.contains(&lower.as_str()) || lower.starts_with("headers.") {
                return Err(TelemetryError::SecretField(name.to_string()));
            }
            match FIELDS.iter().find(|(n, _)| *n == lower) {
                Some((_, f)) => out.push(*f),
                None if WITHOUT_VALUE.contains(&lower.as_str()) => {}
                None => return Err(TelemetryError::UnknownField(name.to_string())),
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Whether lines carry `field`.
    pub fn has(self, field: AuthorizeLogField) -> bool {
        self.0 & (1 << field as u32) != 0
    }

    /// The names of the fields lines carry, in order.
    pub fn names(self) -> Vec<&'static str> {
        FIELDS
            .iter()
            .filter(|(_, f)| self.has(*f))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// Pomerium's form: a list of names, or one string of comma-separated
/// names (its environment-variable form).
impl<'de> serde::Deserialize<'de> for AuthorizeLogFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Names {
            One(String),
            List(Vec<String>),
        }
        let names = match Names::deserialize(d)? {
            Names::One(s) => s.split(',').map(str::to_string).collect(),
            Names::List(l) => l,
        };
        AuthorizeLogFields::parse(&names).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for AuthorizeLogFields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

static DECISION_LOG_ON: AtomicBool = AtomicBool::new(true);
static DECISION_LOG_FIELDS: AtomicU32 = AtomicU32::new(u32::MAX);

/// Sets whether decision lines are written and which fields they carry
/// (from the config file, at start and on every reload).
pub fn set_decision_log(on: bool, fields: AuthorizeLogFields) {
    DECISION_LOG_ON.store(on, Ordering::Relaxed);
    DECISION_LOG_FIELDS.store(fields.0, Ordering::Relaxed);
}

/// Whether decision lines are written, and the fields they carry (the
/// default until [`set_decision_log`] is called).
pub fn decision_log() -> Option<AuthorizeLogFields> {
    if !DECISION_LOG_ON.load(Ordering::Relaxed) {
        return None;
    }
    match DECISION_LOG_FIELDS.load(Ordering::Relaxed) {
        u32::MAX => Some(AuthorizeLogFields::default()),
        bits => Some(AuthorizeLogFields(bits)),
    }
}

/// The log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text (coloured only on a terminal).
    Text,
}

impl LogFormat {
    /// Parses `json` or `text`.
    pub fn parse(text: &str) -> Result<Self, TelemetryError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "text" | "console" | "pretty" => Ok(LogFormat::Text),
            other => Err(TelemetryError::Format(other.to_string())),
        }
    }

    /// Text on a terminal, JSON otherwise.
    pub fn default_for_stdout() -> Self {
        if std::io::stdout().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        }
    }
}

struct Control {
    handle: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// The filter for a level name: the level for everything, rustls's
/// per-connection warnings off, the access log unless disabled.
fn filter(level: &str, access_log: bool) -> Result<EnvFilter, TelemetryError> {
    let level = level.trim().to_ascii_lowercase();
    if !matches!(
        level.as_str(),
        "trace" | "debug" | "info" | "warn" | "warning" | "error" | "off"
    ) {
        return Err(TelemetryError::Level(level));
    }
    let level = if level == "warning" { "warn" } else { &level };
    // Libraries stay at `info` or above: at debug and trace, HTTP/2, TLS and
    // client crates print frames and headers (paths with query values,
    // cookies), which must never reach a log. `JETBRIDGE_LOG` can still ask
    // for them explicitly.
    let libraries = match level {
        "trace" | "debug" => "info",
        other => other,
    };
    let access = if access_log {
        ""
    } else {
        ",jetbridge::access=off"
    };
    EnvFilter::try_new(format!(
        "{libraries},jetbridge={level},rustls=error{access}"
    ))
    .map_err(|e| TelemetryError::Filter(e.to_string()))
}

/// Installs the process-wide subscriber (once; later calls do nothing).
pub fn init(format: LogFormat, level: Option<&str>, access_log: bool) {
    let (env_filter, from_env) = match EnvFilter::try_from_env("JETBRIDGE_LOG") {
        Ok(f) => (f, true),
        Err(_) => (
            filter(level.unwrap_or("info"), access_log)
                .or_else(|_| filter("info", access_log))
                .unwrap_or_else(|_| EnvFilter::new("info")),
            false,
        ),
    };
    let (filter_layer, handle) = reload::Layer::new(env_filter);
    let output = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .with_target(false)
            .boxed(),
    };
    if tracing_subscriber::registry()
        .with(filter_layer)
        .with(output)
        .try_init()
        .is_ok()
    {
        let _ = CONTROL.set(Control { handle, from_env });
    }
}

/// Applies a new level (from a reloaded config). Does nothing when
/// `JETBRIDGE_LOG` set the filter. Returns true if the filter changed.
pub fn set_level(level: Option<&str>, access_log: bool) -> Result<bool, TelemetryError> {
    let new = filter(level.unwrap_or("info"), access_log)?;
    let Some(c) = CONTROL.get() else {
        return Ok(false);
    };
    if c.from_env {
        return Ok(false);
    }
    let old = c
        .handle
        .with_current(|f| f.to_string())
        .map_err(|e| TelemetryError::Filter(e.to_string()))?;
    if old == new.to_string() {
        return Ok(false);
    }
    c.handle
        .reload(new)
        .map_err(|e| TelemetryError::Filter(e.to_string()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_log_fields_take_pomerium_names_and_refuse_unknown_or_secret_ones() {
        use AuthorizeLogField::*;
        let f = AuthorizeLogFields::parse(&["Email", " groups", "route-id"]).unwrap();
        assert!(f.has(Email) && f.has(Groups) && !f.has(User) && !f.has(Path));
        assert_eq!(f.names(), ["email", "groups"]);
        let default = AuthorizeLogFields::default();
        assert_eq!(
            default.names(),
            [
                "request-id",
                "method",
                "path",
                "host",
                "ip",
                "session-id",
                "user",
                "email"
            ]
        );
        assert!(
            AuthorizeLogFields::parse::<&str>(&[])
                .unwrap()
                .names()
                .is_empty()
        );
        let e = AuthorizeLogFields::parse(&["emial"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field \"emial\"") && e.contains("known fields"),
            "{e}"
        );
        for secret in [
            "id-token",
            "headers",
            "headers.cookie",
            "Headers.Authorization",
            "query",
            "body",
        ] {
            let e = AuthorizeLogFields::parse(&[secret])
                .unwrap_err()
                .to_string();
            assert!(e.contains("never logged"), "{secret}: {e}");
        }
        // Pomerium's env-variable form: one comma-separated string.
        let one: AuthorizeLogFields = serde_json::from_str("\"user,email\"").unwrap();
        assert_eq!(one.names(), ["user", "email"]);
        let bad = serde_json::from_str::<AuthorizeLogFields>("[\"user\", \"cookie\"]");
        assert!(bad.unwrap_err().to_string().contains("\"cookie\""));
    }

    #[test]
    fn levels_and_formats_parse_and_bad_ones_say_what_is_expected() {
        assert!(filter("debug", true).is_ok());
        assert!(filter("WARNING", false).is_ok());
        let e = filter("verbose", true).unwrap_err().to_string();
        assert!(e.contains("expected error, warn"), "{e}");
        assert_eq!(LogFormat::parse("JSON").unwrap(), LogFormat::Json);
        assert_eq!(LogFormat::parse("text").unwrap(), LogFormat::Text);
        assert!(LogFormat::parse("xml").is_err());
        let directives = |level: &str| -> Vec<String> {
            let mut d: Vec<String> = filter(level, true)
                .unwrap()
                .to_string()
                .split(',')
                .map(str::to_string)
                .collect();
            d.sort();
            d
        };
        assert_eq!(
            directives("debug"),
            ["info", "jetbridge=debug", "rustls=error"]
        );
        assert_eq!(
            directives("trace"),
            ["info", "jetbridge=trace", "rustls=error"]
        );
        assert_eq!(
            directives("warn"),
            ["jetbridge=warn", "rustls=error", "warn"]
        );
        assert!(
            filter("info", false)
                .unwrap()
                .to_string()
                .contains("jetbridge::access=off")
        );
    }
}

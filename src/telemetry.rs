//! Logging: JSON lines (the default off a terminal, as a Kubernetes
//! deployment wants) or text (the default on a terminal, with colour only
//! there), one access-log line per request, and a level that a config
//! reload can change while the process runs.
//!
//! `JETBRIDGE_LOG` (an `EnvFilter` directive such as `debug` or
//! `info,jetbridge::access=off`) overrides the level from the config file
//! and is not changed by reloads.

use std::io::IsTerminal as _;
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, reload};

/// Target of the access-log events (filter them with `jetbridge::access=off`).
pub const ACCESS_TARGET: &str = "jetbridge::access";

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

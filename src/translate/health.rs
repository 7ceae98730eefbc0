//! `health_checks`: Envoy's `HealthCheck` messages as Pomerium passes them
//! on (snake_case or protojson's camelCase), read into [`HealthCheck`]s.
//! Anything jetbridge would not honour is refused with its name.

use crate::model::{HealthCheck, Probe};
use crate::settings::parse_duration;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Envoy fields accepted and without effect here (tuning of when probes run).
const IGNORED: &[&str] = &[
    "initial_jitter",
    "interval_jitter",
    "interval_jitter_percent",
    "no_traffic_interval",
    "no_traffic_healthy_interval",
    "unhealthy_interval",
    "unhealthy_edge_interval",
    "healthy_edge_interval",
    "reuse_connection",
    "always_log_health_check_failures",
    "always_log_health_check_success",
    "event_log_path",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    timeout: Option<String>,
    interval: Option<String>,
    #[serde(alias = "unhealthyThreshold")]
    unhealthy_threshold: Option<u32>,
    #[serde(alias = "healthyThreshold")]
    healthy_threshold: Option<u32>,
    #[serde(alias = "httpHealthCheck")]
    http_health_check: Option<HttpSpec>,
    #[serde(alias = "tcpHealthCheck")]
    tcp_health_check: Option<TcpSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSpec {
    path: String,
    host: Option<String>,
    #[serde(default, alias = "expectedStatuses")]
    expected_statuses: Vec<Range>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    start: u16,
    end: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpSpec {
    send: Option<Payload>,
    #[serde(default)]
    receive: Vec<Payload>,
}

/// Envoy's `Payload`: hex `text`, or base64 `binary`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    text: Option<String>,
    binary: Option<String>,
}

/// Reads a route's `health_checks` value.
pub fn parse(value: &Value) -> Result<Vec<HealthCheck>, String> {
    let items = match value {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![value.clone()],
        Value::Null => return Ok(Vec::new()),
        _ => return Err("health_checks: expected a list of health checks".into()),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| one(item).map_err(|e| format!("health_checks[{i}]: {e}")))
        .collect()
}

fn one(item: &Value) -> Result<HealthCheck, String> {
    let Value::Object(map) = item else {
        return Err("expected a map".into());
    };
    let mut kept = Map::new();
    for (k, v) in map {
        let snake = snake_case(k);
        if snake == "grpc_health_check" || snake == "custom_health_check" {
            return Err(format!(
                "{k} is not supported by jetbridge (http_health_check and tcp_health_check are)"
            ));
        }
        if !IGNORED.contains(&snake.as_str()) {
            kept.insert(k.clone(), v.clone());
        }
    }
    let spec: Spec = serde_json::from_value(Value::Object(kept)).map_err(|e| e.to_string())?;
    let duration = |name: &str, v: Option<String>| -> Result<std::time::Duration, String> {
        let text = v.ok_or_else(|| format!("{name} is required"))?;
        let d = parse_duration(&text).map_err(|e| format!("{name}: {e}"))?;
        if d.is_zero() {
            return Err(format!("{name} must be more than 0"));
        }
        Ok(d)
    };
    let interval = duration("interval", spec.interval)?;
    let timeout = duration("timeout", spec.timeout)?;
    let threshold = |name: &str, v: Option<u32>| match v.unwrap_or(1) {
        0 => Err(format!("{name} must be at least 1")),
        n => Ok(n),
    };
    let probe = match (spec.http_health_check, spec.tcp_health_check) {
        (Some(h), None) => {
            if !h.path.starts_with('/') || h.path.chars().any(|c| c.is_control() || c == ' ') {
                return Err(format!(
                    "http_health_check.path {:?} must be a path starting with /",
                    h.path
                ));
            }
            if let Some(host) = &h.host
                && http::HeaderValue::from_str(host).is_err()
            {
                return Err("http_health_check.host is not a valid header value".into());
            }
            let mut expected = Vec::new();
            for r in &h.expected_statuses {
                if !(100..=600).contains(&r.start) || r.end <= r.start || r.end > 600 {
                    return Err(format!(
                        "expected_statuses {{start: {}, end: {}}}: need 100 <= start < end <= 600",
                        r.start, r.end
                    ));
                }
                expected.push((r.start, r.end));
            }
            if expected.is_empty() {
                expected.push((200, 201));
            }
            Probe::Http {
                path: h.path,
                host: h.host,
                expected,
            }
        }
        (None, Some(t)) => Probe::Tcp {
            send: match &t.send {
                Some(p) => payload(p)?,
                None => Vec::new(),
            },
            receive: t.receive.iter().map(payload).collect::<Result<_, _>>()?,
        },
        (Some(_), Some(_)) => {
            return Err("give one of http_health_check and tcp_health_check, not both".into());
        }
        (None, None) => return Err("needs http_health_check or tcp_health_check".into()),
    };
    Ok(HealthCheck {
        interval,
        timeout,
        unhealthy_threshold: threshold("unhealthy_threshold", spec.unhealthy_threshold)?,
        healthy_threshold: threshold("healthy_threshold", spec.healthy_threshold)?,
        probe,
    })
}

fn payload(p: &Payload) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    match (&p.text, &p.binary) {
        (Some(hex), None) => {
            let hex = hex.trim();
            if hex.len() % 2 != 0 {
                return Err(format!("payload text {hex:?} is not hex"));
            }
            (0..hex.len())
                .step_by(2)
                .map(|i| {
                    u8::from_str_radix(&hex[i..i + 2], 16)
                        .map_err(|_| format!("payload text {hex:?} is not hex"))
                })
                .collect()
        }
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| "payload binary is not base64".to_string()),
        _ => Err("a payload has one of text (hex) and binary (base64)".into()),
    }
}

fn snake_case(k: &str) -> String {
    let mut out = String::new();
    for c in k.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envoy_http_and_tcp_checks_are_read_in_both_spellings() {
        let checks = parse(&json!([
            {"timeout": "1s", "interval": "2s", "unhealthy_threshold": 2, "healthy_threshold": 3,
             "http_health_check": {"path": "/healthz", "host": "app.internal",
                                   "expected_statuses": [{"start": 200, "end": 300}]},
             "interval_jitter": "1s"},
            {"timeout": "0.5s", "interval": "10s", "tcpHealthCheck": {"send": {"text": "50494e47"},
             "receive": [{"text": "504f4e47"}]}},
        ]))
        .unwrap();
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].unhealthy_threshold, 2);
        assert_eq!(
            checks[0].probe,
            Probe::Http {
                path: "/healthz".into(),
                host: Some("app.internal".into()),
                expected: vec![(200, 300)]
            }
        );
        assert_eq!(checks[1].timeout, std::time::Duration::from_millis(500));
        assert_eq!(
            checks[1].probe,
            Probe::Tcp {
                send: b"PING".to_vec(),
                receive: vec![b"PONG".to_vec()]
            }
        );
        assert_eq!(checks[1].healthy_threshold, 1);
    }

    #[test]
    fn what_jetbridge_would_not_honour_is_refused_by_name() {
        for (v, needle) in [
            (
                json!([{"timeout": "1s", "interval": "1s", "grpc_health_check": {}}]),
                "grpc_health_check is not supported",
            ),
            (
                json!([{"timeout": "1s", "interval": "1s"}]),
                "needs http_health_check or tcp_health_check",
            ),
            (
                json!([{"interval": "1s", "http_health_check": {"path": "/"}}]),
                "timeout is required",
            ),
            (
                json!([{"timeout": "1s", "interval": "0s", "http_health_check": {"path": "/"}}]),
                "interval must be more than 0",
            ),
            (
                json!([{"timeout": "1s", "interval": "1s", "http_health_check": {"path": "x"}}]),
                "must be a path",
            ),
            (
                json!([{"timeout": "1s", "interval": "1s", "http_health_check": {"path": "/", "method": "POST"}}]),
                "unknown field `method`",
            ),
            (
                json!([{"timeout": "1s", "interval": "1s", "http_health_check": {"path": "/", "expected_statuses": [{"start": 300, "end": 200}]}}]),
                "expected_statuses",
            ),
            (
                json!([{"timeout": "1s", "interval": "1s", "unhealthy_threshold": 0, "http_health_check": {"path": "/"}}]),
                "at least 1",
            ),
            (
                json!([{"timeout": "1s", "interval": "1s", "tcp_health_check": {"send": {"text": "zz"}}}]),
                "not hex",
            ),
            (json!("every 5s"), "expected a list"),
        ] {
            let e = parse(&v).unwrap_err();
            assert!(e.contains(needle), "{v}: {e}");
        }
    }
}

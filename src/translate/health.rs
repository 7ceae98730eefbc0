//! `health_checks`, `outlier_detection` and `circuit_breaker_thresholds`:
//! Envoy's messages as Pomerium passes them on (snake_case or protojson's
//! camelCase), read into the model. Anything jetbridge would not honour is
//! refused with its name.

use crate::model::{CircuitBreaker, HealthCheck, OutlierDetection, Probe};
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
pub fn parse(value: &Value) -> Result<Vec<HealthCheck>, HealthError> {
    let items = match value {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![value.clone()],
        Value::Null => return Ok(Vec::new()),
        _ => return Err(HealthError::ChecksNotAList),
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| one(item).map_err(|message| HealthError::Check { index, message }))
        .collect()
}

/// Why a route's `health_checks`, `outlier_detection` or
/// `circuit_breaker_thresholds` cannot be used; each message names the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    /// `health_checks` is neither a list nor one check.
    #[error("health_checks: expected a list of health checks")]
    ChecksNotAList,
    /// One health check (`message` says what is wrong with it).
    #[error("health_checks[{index}]: {message}")]
    Check { index: usize, message: String },
    /// `outlier_detection` is not a map.
    #[error("outlier_detection: expected a map")]
    OutlierNotAMap,
    /// A value of `outlier_detection`.
    #[error("outlier_detection.{key}: {message}")]
    Outlier { key: String, message: String },
    /// A key of `outlier_detection` jetbridge does not implement.
    #[error(
        "outlier_detection.{0} is not supported by jetbridge (consecutive_5xx, \
         consecutive_gateway_failure, their enforcing_ percentages as on/off, \
         base_ejection_time, max_ejection_time and max_ejection_percent are)"
    )]
    OutlierUnsupported(String),
    /// `circuit_breaker_thresholds` is not a map.
    #[error("circuit_breaker_thresholds: expected a map")]
    BreakerNotAMap,
    /// A limit of `circuit_breaker_thresholds` that is not a count above 0.
    #[error("circuit_breaker_thresholds.{0}: expected a whole number above 0")]
    BreakerLimit(String),
    /// A key of `circuit_breaker_thresholds` jetbridge does not implement.
    #[error(
        "circuit_breaker_thresholds.{0} is not supported by jetbridge \
         (max_requests and max_connections are)"
    )]
    BreakerUnsupported(String),
}

fn one(item: &Value) -> Result<HealthCheck, String> {
    let spec = known_fields(item)?;
    let interval = positive_duration("interval", spec.interval)?;
    let timeout = positive_duration("timeout", spec.timeout)?;
    let threshold = |name: &str, v: Option<u32>| match v.unwrap_or(1) {
        0 => Err(format!("{name} must be at least 1")),
        n => Ok(n),
    };
    let probe = match (spec.http_health_check, spec.tcp_health_check) {
        (Some(h), None) => http_probe(h)?,
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

/// One health check's map, without the Envoy keys jetbridge ignores; the
/// checks it cannot run are refused.
fn known_fields(item: &Value) -> Result<Spec, String> {
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
    serde_json::from_value(Value::Object(kept)).map_err(|e| e.to_string())
}

/// A required duration of more than 0.
fn positive_duration(name: &str, v: Option<String>) -> Result<std::time::Duration, String> {
    let text = v.ok_or_else(|| format!("{name} is required"))?;
    let d = parse_duration(&text).map_err(|e| format!("{name}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{name} must be more than 0"));
    }
    Ok(d)
}

/// `http_health_check`: a path, an optional Host, the statuses that pass
/// (200 when none are given).
fn http_probe(h: HttpSpec) -> Result<Probe, String> {
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
    Ok(Probe::Http {
        path: h.path,
        host: h.host,
        expected,
    })
}

/// Reads a route's `outlier_detection` (Envoy's defaults where unset:
/// 5 consecutive 5xx, gateway failures off, 30 s base ejection, 300 s at
/// most, 10 % of the targets).
pub fn outlier_detection(value: &Value) -> Result<OutlierDetection, HealthError> {
    const ACCEPTED_WITHOUT_EFFECT: &[&str] = &["interval", "split_external_local_origin_errors"];
    let Value::Object(map) = value else {
        return Err(HealthError::OutlierNotAMap);
    };
    let mut o = OutlierDetection {
        consecutive_5xx: Some(5),
        consecutive_gateway_failure: None,
        base_ejection_time: std::time::Duration::from_secs(30),
        max_ejection_time: std::time::Duration::from_secs(300),
        max_ejection_percent: 10,
    };
    let mut gateway = 5;
    let (mut enforce_5xx, mut enforce_gateway) = (100, 0);
    let err = |k: &str, message: String| HealthError::Outlier {
        key: k.to_string(),
        message,
    };
    for (k, v) in map {
        let key = snake_case(k);
        let count = || -> Result<u32, HealthError> {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| err(k, "expected a whole number".into()))
        };
        let duration = || -> Result<std::time::Duration, HealthError> {
            let text = v
                .as_str()
                .ok_or_else(|| err(k, "expected a duration such as 30s".into()))?;
            parse_duration(text).map_err(|e| err(k, e.to_string()))
        };
        match key.as_str() {
            "consecutive_5xx" | "consecutive5xx" => o.consecutive_5xx = Some(count()?),
            "consecutive_gateway_failure" => gateway = count()?,
            "enforcing_consecutive_5xx" | "enforcing_consecutive5xx" => enforce_5xx = count()?,
            "enforcing_consecutive_gateway_failure" => enforce_gateway = count()?,
            "base_ejection_time" => o.base_ejection_time = duration()?,
            "max_ejection_time" => o.max_ejection_time = duration()?,
            "max_ejection_percent" => match count()? {
                p @ 0..=100 => o.max_ejection_percent = p,
                _ => return Err(err(k, "must be 0 to 100".into())),
            },
            k if ACCEPTED_WITHOUT_EFFECT.contains(&k) => {}
            _ => {
                return Err(HealthError::OutlierUnsupported(k.to_string()));
            }
        }
    }
    if enforce_5xx == 0 || o.consecutive_5xx == Some(0) {
        o.consecutive_5xx = None;
    }
    if enforce_gateway > 0 && gateway > 0 {
        o.consecutive_gateway_failure = Some(gateway);
    }
    if o.base_ejection_time.is_zero() {
        return Err(err("base_ejection_time", "must be more than 0".into()));
    }
    o.max_ejection_time = o.max_ejection_time.max(o.base_ejection_time);
    Ok(o)
}

/// Reads a route's `circuit_breaker_thresholds`: `max_requests` and
/// `max_connections` both bound the requests in flight (each request to an
/// HTTP/1.1 target holds a connection); the smaller wins. There is no
/// queue, so `max_pending_requests` is accepted as 0 in effect.
pub fn circuit_breaker(value: &Value) -> Result<Option<CircuitBreaker>, HealthError> {
    let Value::Object(map) = value else {
        return Err(HealthError::BreakerNotAMap);
    };
    let mut max = None::<u32>;
    for (k, v) in map {
        match snake_case(k).as_str() {
            "max_requests" | "max_connections" => {
                let n = v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| HealthError::BreakerLimit(k.to_string()))?;
                max = Some(max.map_or(n, |m| m.min(n)));
            }
            "max_pending_requests" | "max_retries" | "max_connection_pools" | "priority" => {}
            _ => {
                return Err(HealthError::BreakerUnsupported(k.to_string()));
            }
        }
    }
    Ok(max.map(|max_requests| CircuitBreaker { max_requests }))
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
    fn outlier_detection_and_circuit_breakers_read_envoys_fields() {
        let o = outlier_detection(&json!({"consecutive5xx": 3, "baseEjectionTime": "2s",
            "enforcing_consecutive_gateway_failure": 100, "max_ejection_percent": 50, "interval": "1s"}))
        .unwrap();
        assert_eq!(o.consecutive_5xx, Some(3));
        assert_eq!(o.consecutive_gateway_failure, Some(5));
        assert_eq!(o.base_ejection_time, std::time::Duration::from_secs(2));
        assert_eq!(o.max_ejection_percent, 50);
        let off = outlier_detection(&json!({"enforcing_consecutive_5xx": 0})).unwrap();
        assert_eq!(
            (off.consecutive_5xx, off.consecutive_gateway_failure),
            (None, None)
        );
        for (v, needle) in [
            (
                json!({"success_rate_minimum_hosts": 3}),
                "success_rate_minimum_hosts is not supported",
            ),
            (json!({"max_ejection_percent": 101}), "0 to 100"),
            (json!({"base_ejection_time": 30}), "expected a duration"),
            (json!([1]), "expected a map"),
        ] {
            let e = outlier_detection(&v).unwrap_err().to_string();
            assert!(e.contains(needle), "{v}: {e}");
        }
        let c =
            circuit_breaker(&json!({"max_requests": 100, "maxConnections": 40, "max_retries": 3}))
                .unwrap();
        assert_eq!(c, Some(CircuitBreaker { max_requests: 40 }));
        assert_eq!(
            circuit_breaker(&json!({"max_pending_requests": 5})).unwrap(),
            None
        );
        assert!(circuit_breaker(&json!({"max_requests": 0})).is_err());
        assert!(
            circuit_breaker(&json!({"track_remaining": true}))
                .unwrap_err()
                .to_string()
                .contains("track_remaining")
        );
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
            let e = parse(&v).unwrap_err().to_string();
            assert!(e.contains(needle), "{v}: {e}");
        }
    }
}

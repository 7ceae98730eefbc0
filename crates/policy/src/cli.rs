//! Command-line helpers: evaluate a policy against a JSON description of a
//! request, and lint a policy. They return an exit code and the text to
//! print, so the binary only does the I/O.
//!
//! Input for [`eval_command`]:
//!
//! ```json
//! {"user": null | {"id": "…", "email": "…", "name": "…", "groups": ["…"], "claims": {}},
//!  "request": {"method": "GET", "host": "…", "path": "/", "source_ip": "10.0.0.1",
//!              "headers": {"origin": "…"}},
//!  "time": "2030-01-02T15:04:05Z"}
//! ```
//!
//! Every field is optional; `time` defaults to the `now` the caller passes.
//! Header names are lower-cased.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Facts, RequestFacts, User, compile, compile_with_warnings};

/// Exit code: allowed, or the policy compiles cleanly.
pub const EXIT_OK: i32 = 0;
/// Exit code: denied, or the policy compiles with warnings.
pub const EXIT_DENY: i32 = 1;
/// Exit code: invalid policy or input.
pub const EXIT_INVALID: i32 = 2;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    user: Option<User>,
    #[serde(default)]
    request: RequestInput,
    #[serde(default)]
    time: Option<String>,
}

/// The `request` member of the input: owned, then lent to [`RequestFacts`].
#[derive(Default, Deserialize)]
#[serde(default)]
struct RequestInput {
    method: String,
    host: String,
    path: String,
    source_ip: Option<IpAddr>,
    headers: BTreeMap<String, String>,
}

/// Evaluates `policy_text` against `input_json`. Returns exit code 0 and
/// `allow: <reason>`, 1 and `deny: <reason>` (with `(sign-in required)` when
/// an anonymous request should be sent to sign in), or 2 and `error: ...`.
pub fn eval_command(policy_text: &str, input_json: &str, now: OffsetDateTime) -> (i32, String) {
    let program = match compile(policy_text) {
        Ok(p) => p,
        Err(e) => return (EXIT_INVALID, format!("error: policy: {e}")),
    };
    let input: Input = match serde_json::from_str(input_json) {
        Ok(i) => i,
        Err(e) => return (EXIT_INVALID, format!("error: input: {e}")),
    };
    let now = match input.time.as_deref() {
        None => now,
        Some(t) => match OffsetDateTime::parse(t, &Rfc3339) {
            Ok(t) => t,
            Err(e) => {
                return (
                    EXIT_INVALID,
                    format!("error: input: time {t:?} is not RFC 3339: {e}"),
                );
            }
        },
    };
    let req = input.request;
    let lowered: BTreeMap<String, String> = req
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let headers: Vec<(&str, &str)> = lowered
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let request = RequestFacts {
        method: &req.method,
        host: &req.host,
        path: &req.path,
        source_ip: req.source_ip,
        headers: &headers,
    };
    let d = program.eval(&Facts {
        user: input.user.as_ref(),
        request: &request,
        now,
    });
    if d.allow {
        (EXIT_OK, format!("allow: {}", d.reason))
    } else if d.needs_login {
        (EXIT_DENY, format!("deny: {} (sign-in required)", d.reason))
    } else {
        (EXIT_DENY, format!("deny: {}", d.reason))
    }
}

/// The [`eval_command`] input a decision-log line describes (jetbridge's
/// `jetbridge::authorize` lines: `user`, `email`, `groups`, `method`,
/// `host`, `path`, `ip` and `timestamp`, each when the line has it), and
/// what the line says was decided (`allow: <reason>` or `deny: <reason>`).
/// Claims and the user's name are not in a decision line, so criteria on
/// them see none.
pub fn input_from_log_line(line: &str) -> Result<(String, String), String> {
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("log line: not JSON: {e}"))?;
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
    let Some(allow) = v.get("allow").and_then(|a| a.as_bool()) else {
        return Err("log line: no \"allow\" field (not a decision-log line)".into());
    };
    let user = (!text("user").is_empty() || !text("email").is_empty()).then(|| {
        serde_json::json!({
            "id": text("user"),
            "email": text("email"),
            "groups": text("groups").split(',').filter(|g| !g.is_empty()).collect::<Vec<_>>(),
        })
    });
    let mut request = serde_json::json!({
        "method": text("method"),
        "host": text("host"),
        "path": text("path"),
    });
    if let Ok(ip) = text("ip").parse::<IpAddr>() {
        request["source_ip"] = serde_json::json!(ip);
    }
    let mut input = serde_json::json!({ "user": user, "request": request });
    if !text("timestamp").is_empty() {
        input["time"] = serde_json::json!(text("timestamp"));
    }
    let logged = format!(
        "{}: {}",
        if allow { "allow" } else { "deny" },
        text("reason")
    );
    Ok((input.to_string(), logged))
}

/// Lints `policy_text`. Returns 0 and `ok: ...` when it compiles cleanly, 1
/// and one `warning: ...` line per finding, or 2 and `error: ...`.
pub fn check_command(policy_text: &str) -> (i32, String) {
    match compile_with_warnings(policy_text) {
        Err(e) => (EXIT_INVALID, format!("error: {e}")),
        Ok((p, warnings)) if warnings.is_empty() => {
            let n = p.rules.iter().map(|r| r.number).max().unwrap_or(0);
            let plural = if n == 1 { "" } else { "s" };
            (EXIT_OK, format!("ok: {n} rule{plural}"))
        }
        Ok((_, warnings)) => {
            let lines: Vec<String> = warnings.iter().map(|w| format!("warning: {w}")).collect();
            (EXIT_DENY, lines.join("\n"))
        }
    }
}

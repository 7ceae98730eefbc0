//! The claims of a verified assertion, and the pure checks that produce them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::VerifyError;

/// The claims of an `X-Pomerium-Jwt-Assertion` whose signature, issuer,
/// audience and lifetime have been checked.
///
/// String claims that are absent from the assertion are empty strings, and
/// `groups` is empty when absent or `null`, so an upstream can use the fields
/// directly. Claims not listed here (for example custom claims named in
/// `jwt_claims_headers`, or `nbf`) are kept in [`extra`](Self::extra).
///
/// Serialises to the same JSON shape as the assertion's payload, except that
/// `aud` is always an array.
///
/// ```
/// use jetbridge_verify::VerifiedClaims;
///
/// let claims: VerifiedClaims = serde_json::from_value(serde_json::json!({
///     "iss": "app.example.com", "aud": "app.example.com",
///     "sub": "u-1", "user": "u-1", "email": "ada@example.com",
///     "groups": ["admins"], "exp": 1_700_000_300, "iat": 1_700_000_000,
///     "department": "research"
/// })).unwrap();
/// assert_eq!(claims.aud, ["app.example.com"]);
/// assert!(claims.in_group("admins"));
/// assert_eq!(claims.extra["department"], "research");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifiedClaims {
    /// Issuer: the route's host, or `https://host/` with `jwt_issuer_format: uri`.
    #[serde(default)]
    pub iss: String,
    /// Audiences: the route's host. A single-string `aud` becomes a one-element list.
    #[serde(default, deserialize_with = "de::string_or_list")]
    pub aud: Vec<String>,
    /// Subject: the identity provider's user id.
    #[serde(default)]
    pub sub: String,
    /// The user id (same value as `sub` in assertions minted by jetbridge or Pomerium).
    #[serde(default)]
    pub user: String,
    /// The user's email address.
    #[serde(default)]
    pub email: String,
    /// The user's display name.
    #[serde(default)]
    pub name: String,
    /// The user's groups (ids and names).
    #[serde(default, deserialize_with = "de::list_or_null")]
    pub groups: Vec<String>,
    /// The session id.
    #[serde(default)]
    pub sid: String,
    /// The unique id of this assertion.
    #[serde(default)]
    pub jti: String,
    /// Issued-at, seconds since the Unix epoch, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Every other claim in the assertion, unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl VerifiedClaims {
    /// Whether `group` is one of the user's groups (exact match).
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// What the claims are checked against; everything time-related is passed in.
#[derive(Debug, Clone)]
pub(crate) struct ClaimChecks {
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<String>,
    /// Seconds of clock skew tolerated on `exp`, `iat` and `nbf`.
    pub(crate) leeway: i64,
}

/// Seconds since the Unix epoch (negative before it), rounded down.
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let before: Duration = e.duration();
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            // Round towards minus infinity.
            if before.subsec_nanos() > 0 {
                -secs - 1
            } else {
                -secs
            }
        }
    }
}

/// Checks the (already signature-verified) payload and turns it into
/// [`VerifiedClaims`]. Pure: `now` is seconds since the Unix epoch.
///
/// The time claims follow go-jose, which the Go SDK uses: expired when
/// `now > exp + leeway`; `iat`/`nbf` rejected when `now + leeway < iat/nbf`.
pub(crate) fn check(
    mut payload: Map<String, Value>,
    checks: &ClaimChecks,
    now: i64,
) -> Result<VerifiedClaims, VerifyError> {
    let exp = numeric_date(payload.remove("exp"), "exp")?
        .ok_or_else(|| VerifyError::Malformed("the `exp` claim is required".into()))?;
    let iat = numeric_date(payload.remove("iat"), "iat")?;
    // `nbf` stays in `extra`; it is only checked.
    let nbf = numeric_date(payload.get("nbf").cloned(), "nbf")?;

    let leeway = checks.leeway;
    if now > exp.saturating_add(leeway) {
        return Err(VerifyError::Expired { exp, now });
    }
    for (name, at) in [("iat", iat), ("nbf", nbf)] {
        if let Some(at) = at
            && now.saturating_add(leeway) < at
        {
            return Err(VerifyError::NotYetValid {
                claim: name,
                at,
                now,
            });
        }
    }

    let iss = string_claim(payload.remove("iss"), "iss")?;
    let aud = string_or_list_claim(payload.remove("aud"), "aud")?;
    if let Some(expected) = &checks.issuer
        && &iss != expected
    {
        return Err(VerifyError::WrongIssuer {
            expected: expected.clone(),
            actual: iss,
        });
    }
    if let Some(expected) = &checks.audience
        && !aud.iter().any(|a| a == expected)
    {
        return Err(VerifyError::WrongAudience {
            expected: expected.clone(),
            actual: aud,
        });
    }

    Ok(VerifiedClaims {
        iss,
        aud,
        sub: string_claim(payload.remove("sub"), "sub")?,
        user: string_claim(payload.remove("user"), "user")?,
        email: string_claim(payload.remove("email"), "email")?,
        name: string_claim(payload.remove("name"), "name")?,
        groups: list_claim(payload.remove("groups"), "groups")?,
        sid: string_claim(payload.remove("sid"), "sid")?,
        jti: string_claim(payload.remove("jti"), "jti")?,
        iat,
        exp,
        extra: payload,
    })
}

fn malformed_claim(name: &str, want: &str) -> VerifyError {
    VerifyError::Malformed(format!("the `{name}` claim must be {want}"))
}

/// A JSON number of seconds; fractions are rounded down (RFC 7519 allows them).
fn numeric_date(value: Option<Value>, name: &str) -> Result<Option<i64>, VerifyError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                    _ => Err(malformed_claim(name, "a number of seconds")),
                }
            }
        }
        Some(_) => Err(malformed_claim(name, "a number of seconds")),
    }
}

fn string_claim(value: Option<Value>, name: &str) -> Result<String, VerifyError> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(malformed_claim(name, "a string")),
    }
}

fn list_claim(value: Option<Value>, name: &str) -> Result<Vec<String>, VerifyError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(malformed_claim(name, "a list of strings")),
            })
            .collect(),
        Some(_) => Err(malformed_claim(name, "a list of strings")),
    }
}

fn string_or_list_claim(value: Option<Value>, name: &str) -> Result<Vec<String>, VerifyError> {
    match value {
        Some(Value::String(s)) => Ok(vec![s]),
        other => list_claim(other, name)
            .map_err(|_| malformed_claim(name, "a string or a list of strings")),
    }
}

mod de {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    pub(super) fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Option::<OneOrMany>::deserialize(d)? {
            None => Vec::new(),
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        })
    }

    pub(super) fn list_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn payload(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test payloads are objects"),
        }
    }

    fn pomerium_payload() -> Value {
        json!({
            "iss": "app.example.com", "aud": "app.example.com",
            "sub": "u-1", "user": "u-1", "email": "ada@example.com", "name": "Ada",
            "groups": ["admins", "g-42"], "sid": "s-1", "jti": "j-1",
            "iat": NOW - 10, "exp": NOW + 290, "department": "research"
        })
    }

    fn checks() -> ClaimChecks {
        ClaimChecks {
            issuer: Some("app.example.com".into()),
            audience: Some("app.example.com".into()),
            leeway: 60,
        }
    }

    #[test]
    fn pomerium_shaped_payload_yields_every_claim() {
        let c = check(payload(pomerium_payload()), &checks(), NOW).unwrap();
        assert_eq!(c.iss, "app.example.com");
        assert_eq!(c.aud, ["app.example.com"]);
        assert_eq!((c.sub.as_str(), c.user.as_str()), ("u-1", "u-1"));
        assert_eq!(c.email, "ada@example.com");
        assert_eq!(c.name, "Ada");
        assert_eq!(c.groups, ["admins", "g-42"]);
        assert_eq!((c.sid.as_str(), c.jti.as_str()), ("s-1", "j-1"));
        assert_eq!((c.iat, c.exp), (Some(NOW - 10), NOW + 290));
        assert_eq!(c.extra.len(), 1);
        assert_eq!(c.extra["department"], "research");
    }

    #[test]
    fn time_claims_are_judged_with_leeway() {
        // (exp, iat, nbf, accepted)
        let cases: &[(i64, i64, Option<i64>, bool)] = &[
            (NOW + 1, NOW, None, true),
            (NOW - 59, NOW - 400, None, true),
            (NOW - 60, NOW - 400, None, true),
            (NOW - 61, NOW - 400, None, false),
            (NOW + 300, NOW + 60, None, true),
            (NOW + 300, NOW + 61, None, false),
            (NOW + 300, NOW, Some(NOW + 60), true),
            (NOW + 300, NOW, Some(NOW + 61), false),
        ];
        for &(exp, iat, nbf, accepted) in cases {
            let mut p = payload(pomerium_payload());
            p.insert("exp".into(), exp.into());
            p.insert("iat".into(), iat.into());
            if let Some(nbf) = nbf {
                p.insert("nbf".into(), nbf.into());
            }
            let got = check(p, &checks(), NOW);
            assert_eq!(
                got.is_ok(),
                accepted,
                "exp={exp} iat={iat} nbf={nbf:?}: {got:?}"
            );
        }
    }

    #[test]
    fn missing_exp_is_rejected() {
        let mut p = payload(pomerium_payload());
        p.remove("exp");
        let err = check(p, &checks(), NOW).unwrap_err();
        assert!(matches!(err, VerifyError::Malformed(m) if m.contains("exp")));
    }

    #[test]
    fn audience_may_be_a_list_containing_the_expected_value() {
        let mut p = payload(pomerium_payload());
        p.insert(
            "aud".into(),
            json!(["other.example.com", "app.example.com"]),
        );
        let c = check(p, &checks(), NOW).unwrap();
        assert_eq!(c.aud, ["other.example.com", "app.example.com"]);
    }

    #[test]
    fn issuer_and_audience_must_match_exactly() {
        let cases = [
            ("iss", json!("https://app.example.com/")),
            ("iss", json!("APP.example.com")),
            ("iss", Value::Null),
            ("aud", json!("app.example.com.evil")),
            ("aud", json!(["other.example.com"])),
            ("aud", json!([])),
        ];
        for (claim, value) in cases {
            let mut p = payload(pomerium_payload());
            p.insert(claim.into(), value.clone());
            let err = check(p, &checks(), NOW).unwrap_err();
            let right_kind = match claim {
                "iss" => matches!(err, VerifyError::WrongIssuer { .. }),
                _ => matches!(err, VerifyError::WrongAudience { .. }),
            };
            assert!(right_kind, "{claim}={value}: {err:?}");
        }
    }

    #[test]
    fn unconfigured_issuer_and_audience_are_not_checked() {
        let mut p = payload(pomerium_payload());
        p.insert("iss".into(), json!("anything"));
        p.insert("aud".into(), json!("else"));
        let open = ClaimChecks {
            issuer: None,
            audience: None,
            leeway: 60,
        };
        assert!(check(p, &open, NOW).is_ok());
    }

    #[test]
    fn null_or_absent_groups_become_an_empty_list() {
        for groups in [Some(Value::Null), None] {
            let mut p = payload(pomerium_payload());
            p.remove("groups");
            if let Some(g) = groups {
                p.insert("groups".into(), g);
            }
            assert!(check(p, &checks(), NOW).unwrap().groups.is_empty());
        }
    }

    #[test]
    fn wrongly_typed_claims_are_malformed() {
        for (claim, value) in [
            ("email", json!(7)),
            ("groups", json!("admins")),
            ("groups", json!([1])),
            ("exp", json!("soon")),
            ("aud", json!({"a": 1})),
        ] {
            let mut p = payload(pomerium_payload());
            p.insert(claim.into(), value);
            let err = check(p, &checks(), NOW).unwrap_err();
            assert!(
                matches!(&err, VerifyError::Malformed(m) if m.contains(claim)),
                "{claim}: {err:?}"
            );
        }
    }

    #[test]
    fn fractional_times_are_rounded_down() {
        let mut p = payload(pomerium_payload());
        p.insert("exp".into(), json!((NOW + 100) as f64 + 0.9));
        assert_eq!(check(p, &checks(), NOW).unwrap().exp, NOW + 100);
    }

    #[test]
    fn unix_seconds_rounds_towards_minus_infinity() {
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_millis(1500)), 1);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_millis(1500)), -2);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(3)), -3);
    }

    #[test]
    fn claims_round_trip_through_json() {
        let c = check(payload(pomerium_payload()), &checks(), NOW).unwrap();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["aud"], json!(["app.example.com"]));
        assert_eq!(json["department"], "research");
        let back: VerifiedClaims = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
    }
}

//! Sessions: a sealed, host-bound cookie holding only what the assertion and
//! policy need, plus the session id and expiry. Stateless: any replica with
//! the same `cookie_secret` accepts it. Pure given the key and `now`.

use super::jwt::Identity;
use super::seal::Sealer;
use serde::{Deserialize, Serialize};

/// Browsers keep cookies up to 4096 bytes (name + value + attributes).
pub const MAX_COOKIE_VALUE: usize = 3800;

/// What a session carries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Session id (`sid`).
    pub id: String,
    pub sub: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Extra IdP claims for `claim/<name>` policies (dropped first when large).
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// True when groups or claims were cut to fit the cookie.
    #[serde(default)]
    pub truncated: bool,
    /// Unix seconds.
    pub iat: i64,
    /// Unix seconds.
    pub exp: i64,
    /// Refresh token from the IdP, if any (sealed with the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the IdP tokens expire and a refresh is due (unix seconds).
    #[serde(default)]
    pub refresh_at: i64,
    /// The IdP's own tokens, kept only while a route passes them upstream
    /// (`${pomerium.id_token}`, `${pomerium.access_token}`); the first thing
    /// dropped when the cookie would be too large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_tokens: Option<IdpTokens>,
    /// The OAuth client the user signed in through: a route's own
    /// (`RouteIdp::id`), or empty for the global one.
    #[serde(rename = "idp", default, skip_serializing_if = "String::is_empty")]
    pub idp: String,
}

/// The identity provider's tokens of a session.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IdpTokens {
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
}

impl Session {
    /// The identity for the assertion.
    pub fn identity(&self) -> Identity {
        Identity {
            sub: self.sub.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
            groups: self.groups.clone(),
            sid: self.id.clone(),
        }
    }

    /// The user facts for policy evaluation.
    pub fn user(&self) -> crate::policy::User {
        crate::policy::User {
            id: self.sub.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
            groups: self.groups.clone(),
            claims: self.claims.clone(),
        }
    }
}

/// Seals and opens session cookies for one `cookie_secret`.
#[derive(Debug)]
pub struct SessionCodec {
    sealer: Sealer,
}

impl SessionCodec {
    /// A codec for the given secret.
    pub fn new(cookie_secret: &[u8; 32]) -> Self {
        SessionCodec {
            sealer: Sealer::new(cookie_secret, "session-cookie"),
        }
    }

    /// Seals a session for `host`. Large sessions degrade: first the IdP's
    /// tokens are dropped, then the extra claims, then groups are cut, and
    /// `truncated` is set.
    pub fn seal(&self, host: &str, session: &Session) -> String {
        let mut s = session.clone();
        loop {
            let json = serde_json::to_vec(&s).unwrap_or_default();
            let value = self.sealer.seal(host.as_bytes(), &json);
            if value.len() <= MAX_COOKIE_VALUE {
                return value;
            }
            s.truncated = true;
            if s.idp_tokens.is_some() {
                s.idp_tokens = None;
            } else if s.claims.keys().any(|k| k != "email_verified") {
                // `email_verified: false` stays: policies refuse such an
                // address, and losing the claim would let it pass.
                s.claims.retain(|k, _| k == "email_verified");
            } else if !s.groups.is_empty() {
                let keep = s.groups.len() * 3 / 4;
                s.groups.truncate(keep);
            } else {
                if s.name.is_empty()
                    && s.refresh_token.is_none()
                    && (s.email.is_empty() || value.len() <= MAX_COOKIE_VALUE * 2)
                {
                    // Nothing left to drop (`sub` or `email` alone is that large):
                    // return the oversized cookie rather than loop for ever.
                    return value;
                }
                s.name.clear();
                s.refresh_token = None;
                if value.len() > MAX_COOKIE_VALUE * 2 {
                    s.email.clear();
                }
            }
        }
    }

    /// Opens a cookie for `host`; `None` means "no session" (tampered,
    /// truncated, expired, foreign key or host).
    pub fn open(&self, host: &str, value: &str, now: i64) -> Option<Session> {
        let plain = self.sealer.open(host.as_bytes(), value)?;
        let s: Session = serde_json::from_slice(&plain).ok()?;
        (s.exp > now && s.iat <= now + 60).then_some(s)
    }
}

/// A session for tests: user `u1`, group `g1`, valid for an hour from `now`.
#[cfg(test)]
pub(crate) fn test_session(now: i64) -> Session {
    Session {
        id: "sid-1".into(),
        sub: "u1".into(),
        email: "u1@example.com".into(),
        name: "U One".into(),
        groups: vec!["g1".into()],
        claims: Default::default(),
        truncated: false,
        iat: now,
        exp: now + 3600,
        refresh_token: None,
        refresh_at: 0,
        idp_tokens: None,
        idp: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::test_session as session;
    use super::*;

    #[test]
    fn idp_tokens_are_dropped_first_when_the_cookie_would_be_too_large() {
        let c = SessionCodec::new(&[3; 32]);
        let mut s = session(100);
        s.claims.insert("team".into(), "blue".into());
        s.idp_tokens = Some(IdpTokens {
            id_token: Some("i".repeat(600)),
            access_token: Some("a".repeat(400)),
        });
        let opened = c.open("h", &c.seal("h", &s), 200).unwrap();
        assert_eq!(opened, s, "small enough: kept whole");
        s.idp_tokens = Some(IdpTokens {
            id_token: Some("i".repeat(2500)),
            access_token: Some("a".repeat(400)),
        });
        let opened = c.open("h", &c.seal("h", &s), 200).unwrap();
        assert!(opened.idp_tokens.is_none() && opened.truncated);
        assert_eq!(opened.claims, s.claims, "the claims stay");
        assert_eq!(opened.groups, s.groups);
    }

    #[test]
    fn session_too_large_to_trim_still_seals() {
        let c = SessionCodec::new(&[3; 32]);
        let mut s = session(100);
        s.sub = "u".repeat(3000);
        let v = c.seal("h", &s);
        assert!(v.len() > MAX_COOKIE_VALUE);
        let opened = c.open("h", &v, 200).unwrap();
        assert_eq!(opened.sub, s.sub);
        assert!(opened.truncated);
    }

    #[test]
    fn session_round_trips_for_its_host_only() {
        let c = SessionCodec::new(&[3; 32]);
        let v = c.seal("a.example.com", &session(100));
        assert_eq!(c.open("a.example.com", &v, 200).unwrap(), session(100));
        assert!(c.open("b.example.com", &v, 200).is_none());
    }

    #[test]
    fn expired_or_foreign_key_cookie_is_no_session() {
        let c = SessionCodec::new(&[3; 32]);
        let v = c.seal("h", &session(100));
        assert!(c.open("h", &v, 100 + 3600).is_none());
        assert!(SessionCodec::new(&[4; 32]).open("h", &v, 200).is_none());
    }

    #[test]
    fn many_groups_degrade_to_fit_a_cookie() {
        let c = SessionCodec::new(&[3; 32]);
        let mut s = session(100);
        s.groups = (0..500)
            .map(|i| format!("group-with-a-long-name-{i:04}"))
            .collect();
        s.claims
            .insert("big".into(), serde_json::Value::String("x".repeat(2000)));
        let v = c.seal("h", &s);
        assert!(v.len() <= MAX_COOKIE_VALUE);
        let back = c.open("h", &v, 200).unwrap();
        assert!(back.truncated);
        assert!(back.claims.is_empty());
        assert!(!back.groups.is_empty() && back.groups.len() < 500);
        assert_eq!(back.email, s.email);
    }

    #[test]
    fn an_unverified_email_stays_marked_when_claims_are_dropped() {
        let c = SessionCodec::new(&[3; 32]);
        let mut s = session(100);
        s.claims
            .insert("big".into(), serde_json::Value::String("x".repeat(5000)));
        s.claims
            .insert("email_verified".into(), serde_json::Value::Bool(false));
        let back = c.open("h", &c.seal("h", &s), 200).unwrap();
        assert!(back.truncated);
        assert_eq!(back.claims.len(), 1);
        assert_eq!(back.claims["email_verified"], false);
    }
}

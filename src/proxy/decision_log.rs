//! The decision log: one line per authorization decision on a policy route
//! (target `jetbridge::authorize`, message `authorize check`, as Pomerium's
//! authorize log), apart from the access log, and the per-Policy decision
//! counters. A line names the route, the `Policy` (or the route's own
//! setting) and the rule that decided, allow or deny and the reason, plus
//! the identity and request fields `authorize_log_fields` asks for. Never a
//! token, a cookie or an assertion: the fields that would carry one are
//! refused when the configuration is read.

use super::metrics::Metrics;
use crate::identity::session::Session;
use crate::model::Route;
use crate::model::rule_origin::{self, RuleOrigin};
use crate::telemetry::{AUTHORIZE_TARGET, AuthorizeLogField as F, decision_log};
use std::net::IpAddr;

/// One decision and what the line may say about its request.
pub struct Decided<'a> {
    pub route: &'a Route,
    /// The request id the access log carries.
    pub request_id: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    /// The normalised path, without the query.
    pub path: &'a str,
    /// The client address the policy saw.
    pub ip: Option<IpAddr>,
    pub session: Option<&'a Session>,
    pub allow: bool,
    /// The engine's reason (`rule 2 allow matched`, `no allow rule matched`).
    pub reason: &'a str,
    /// The number of the deciding rule in the route's program.
    pub rule: Option<usize>,
}

/// The deciding rule, `n` of `origin`, as its author numbers it (`rule 2`
/// of a Policy, `policy rule 1`, `allowed_users`,
/// `allow_any_authenticated_user`).
fn rule_name(origin: &RuleOrigin, n: usize) -> String {
    match (origin.policy.as_deref(), origin.setting) {
        (Some(_), "PolicyFilter") => format!("PolicyFilter rule {n}"),
        (Some(_), _) => format!("rule {n}"),
        (None, "policy") => format!("policy rule {n}"),
        (None, setting) => setting.to_string(),
    }
}

/// The Policy (`namespace/name`) whose rule `rule` of `route` decided, and
/// that rule's name (as lines name it); `None`s when no rule decided.
pub(super) fn decided_by(route: &Route, rule: Option<usize>) -> (Option<&str>, Option<String>) {
    let origin = rule.and_then(|n| rule_origin::locate(&route.rule_origins, n));
    let policy = origin.and_then(|(o, _)| o.policy.as_deref());
    (policy, origin.map(|(o, n)| rule_name(o, n)))
}

/// Counts the decision by the Policy (`namespace/name`) whose rule decided,
/// and writes its line (unless the decision log is off: the rule's name is
/// formatted only for a line).
pub fn record(d: &Decided<'_>, metrics: &Metrics) {
    let origin = d
        .rule
        .and_then(|n| rule_origin::locate(&d.route.rule_origins, n));
    let policy = origin.and_then(|(o, _)| o.policy.as_deref());
    metrics.decision(&d.route.id, policy.unwrap_or("-"), d.allow);
    let Some(f) = decision_log() else {
        return;
    };
    let rule = origin.map(|(o, n)| rule_name(o, n));
    let session = d
        .session
        .filter(|_| f.has(F::SessionId) || f.has(F::User) || f.has(F::Email) || f.has(F::Groups));
    let groups = session
        .filter(|_| f.has(F::Groups))
        .map(|s| s.groups.join(","));
    tracing::info!(
        target: AUTHORIZE_TARGET,
        allow = d.allow,
        reason = d.reason,
        "route-id" = %d.route.id,
        "request-id" = f.has(F::RequestId).then_some(d.request_id),
        method = f.has(F::Method).then_some(d.method),
        path = f.has(F::Path).then_some(d.path),
        host = f.has(F::Host).then_some(d.host),
        ip = d.ip.filter(|_| f.has(F::Ip)).map(|ip| ip.to_string()),
        "session-id" = session.filter(|_| f.has(F::SessionId)).map(|s| s.id.as_str()),
        user = session.filter(|_| f.has(F::User)).map(|s| s.sub.as_str()),
        email = session.filter(|_| f.has(F::Email)).map(|s| s.email.as_str()),
        groups,
        policy,
        rule,
        "authorize check"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deciding_rule_is_named_as_its_author_numbers_it() {
        let origins = [
            RuleOrigin {
                first: 1,
                rules: 1,
                policy: None,
                setting: "policy",
            },
            RuleOrigin {
                first: 2,
                rules: 2,
                policy: Some("team/staff".into()),
                setting: "Policy",
            },
            RuleOrigin {
                first: 4,
                rules: 1,
                policy: None,
                setting: "allow_any_authenticated_user",
            },
        ];
        let name = |n: Option<usize>| match n.and_then(|n| rule_origin::locate(&origins, n)) {
            Some((o, n)) => (o.policy.clone(), Some(rule_name(o, n))),
            None => (None, None),
        };
        assert_eq!(name(Some(1)), (None, Some("policy rule 1".into())));
        assert_eq!(
            name(Some(3)),
            (Some("team/staff".into()), Some("rule 2".into()))
        );
        assert_eq!(
            name(Some(4)),
            (None, Some("allow_any_authenticated_user".into()))
        );
        assert_eq!(name(None), (None, None));
        assert_eq!(name(Some(9)), (None, None));
    }
}

//! Evaluation of a compiled [`Program`](super::Program) against [`Facts`].
//!
//! Each result carries, next to its truth value, whether it depended on a
//! missing user. The flag is merged the way Pomerium merges its
//! `user-unauthenticated` reason: a true `and`/`or` keeps the flags of its
//! true children, a false one keeps those of its false children, and `not`
//! and `nor` invert values but keep flags. A denied request whose allow or
//! deny result carries the flag is sent to sign-in instead of refused.
//!
//! With a user present the flag is always false, so evaluation
//! short-circuits; without one every child is evaluated so that the flag is
//! exact.

use super::address;
use super::program::{Action, Criterion, Expr, Rule};
use super::{Decision, Facts};

/// A truth value plus "this depended on a missing user".
#[derive(Clone, Copy, Debug, Default)]
struct Res {
    value: bool,
    anon: bool,
}

/// Merges child results like Pomerium's `merge_with_and` / `merge_with_or`,
/// optionally inverting each child first (`not` / `nor`).
fn merge<'e>(
    children: impl Iterator<Item = &'e Expr>,
    f: &Facts<'_>,
    all: bool,
    invert: bool,
) -> Res {
    let full = f.user.is_none();
    // Flags of true children and of false children, tracked separately.
    let (mut any_true, mut any_false) = (false, false);
    let (mut anon_true, mut anon_false) = (false, false);
    for c in children {
        let mut r = eval_expr(c, f);
        if invert {
            r.value = !r.value;
        }
        if r.value {
            any_true = true;
            anon_true |= r.anon;
        } else {
            any_false = true;
            anon_false |= r.anon;
        }
        if !full && (if all { any_false } else { any_true }) {
            break;
        }
    }
    let value = if all { !any_false } else { any_true };
    Res {
        value,
        anon: if value { anon_true } else { anon_false },
    }
}

fn eval_expr(e: &Expr, f: &Facts<'_>) -> Res {
    match e {
        Expr::And(cs) => merge(cs.iter(), f, true, false),
        Expr::Or(cs) => merge(cs.iter(), f, false, false),
        Expr::Not(cs) => merge(cs.iter(), f, true, true),
        Expr::Nor(cs) => merge(cs.iter(), f, false, true),
        Expr::Leaf(c) => Res {
            value: eval_criterion(c, f),
            anon: f.user.is_none() && c.needs_user(),
        },
    }
}

fn eval_criterion(c: &Criterion, f: &Facts<'_>) -> bool {
    let req = f.request;
    match c {
        Criterion::Accept => true,
        Criterion::Reject => false,
        Criterion::AuthenticatedUser => f.user.is_some(),
        Criterion::CorsPreflight => {
            let present = |h: &str| req.header(h).is_some_and(|v| !v.is_empty());
            req.method == "OPTIONS" && present("access-control-request-method") && present("origin")
        }
        Criterion::PomeriumRoutes => {
            req.path.starts_with("/.pomerium/") || req.path == "/.pomerium"
        }
        Criterion::Email(m) => f.user.is_some_and(|u| m.matches(&u.email)),
        Criterion::Domain(m) => f
            .user
            .is_some_and(|u| address::domain(&u.email).is_some_and(|d| m.matches(&d))),
        Criterion::User(m) => f.user.is_some_and(|u| m.matches(&u.id)),
        Criterion::Groups(m) => f
            .user
            .is_some_and(|u| m.matches(&u.groups, |l, g| l.eq_str(g))),
        Criterion::Claim(path, m) => f.user.is_some_and(|u| {
            match path.lookup(&u.claims) {
                Some(serde_json::Value::Array(items)) => m.matches(items, |l, v| l.eq_json(v)),
                Some(serde_json::Value::Null) => m.matches::<serde_json::Value>(&[], |_, _| false),
                Some(v) => m.matches(std::slice::from_ref(v), |l, v| l.eq_json(v)),
                // Standard identity fields stand in for claims the IdP
                // data did not repeat in `claims`.
                None => match &*path.key {
                    "email" => m.matches(std::slice::from_ref(&u.email), |l, v| l.eq_str(v)),
                    "sub" | "user" => m.matches(std::slice::from_ref(&u.id), |l, v| l.eq_str(v)),
                    "name" => m.matches(std::slice::from_ref(&u.name), |l, v| l.eq_str(v)),
                    "groups" => m.matches(&u.groups, |l, v| l.eq_str(v)),
                    _ => m.matches::<serde_json::Value>(&[], |_, _| false),
                },
            }
        }),
        Criterion::HttpMethod(m) => m.matches(req.method),
        Criterion::HttpPath(m) => m.matches(req.path),
        Criterion::SourceIp(nets) => req.source_ip.is_some_and(|ip| {
            let ip = ip.to_canonical();
            nets.iter().any(|n| n.contains(&ip))
        }),
        Criterion::DayOfWeek(d) => d.matches(f.now),
        Criterion::TimeOfDay(t) => t.matches(f.now),
        Criterion::Date(d) => d.matches(f.now),
    }
}

/// Result of one action over all rules: the merged value and flag, plus the
/// first rule that matched.
fn eval_action<'r>(rules: &'r [Rule], action: Action, f: &Facts<'_>) -> (Res, Option<&'r Rule>) {
    let full = f.user.is_none();
    let mut first: Option<&Rule> = None;
    let (mut anon_true, mut anon_false) = (false, false);
    for rule in rules.iter().filter(|r| r.action == action) {
        let r = merge(rule.ops.iter(), f, false, false);
        if r.value {
            anon_true |= r.anon;
            if first.is_none() {
                first = Some(rule);
                if !full {
                    break;
                }
            }
        } else {
            anon_false |= r.anon;
        }
    }
    let value = first.is_some();
    let res = Res {
        value,
        anon: if value { anon_true } else { anon_false },
    };
    (res, first)
}

fn matched_reason(rule: &Rule) -> String {
    match rule.label {
        Some(l) => l.to_owned(),
        None => format!("rule {} {} matched", rule.number, rule.action.as_str()),
    }
}

pub(crate) fn eval(rules: &[Rule], f: &Facts<'_>) -> Decision {
    if rules.is_empty() {
        return Decision {
            allow: false,
            reason: "no policy".to_owned(),
            needs_login: false,
            rule: None,
        };
    }
    // Fail closed on an address `email`/`domain` criteria cannot trust,
    // whatever their polarity (see the `address` module).
    if let Some(u) = f.user
        && rules.iter().any(Rule::reads_address)
        && let Some(why) = address::unusable(u)
    {
        return Decision {
            allow: false,
            reason: why.to_owned(),
            needs_login: false,
            rule: None,
        };
    }
    let (deny, deny_rule) = eval_action(rules, Action::Deny, f);
    // With a user present a matching deny settles it; without one the allow
    // side is still needed for the sign-in flag.
    let (allow, allow_rule) = if deny.value && f.user.is_some() {
        (Res::default(), None)
    } else {
        eval_action(rules, Action::Allow, f)
    };
    let allowed = allow.value && !deny.value;
    let needs_login = !allowed && f.user.is_none() && (allow.anon || deny.anon);
    let decided = deny_rule.or(allow_rule);
    let reason = match decided {
        Some(r) => matched_reason(r),
        None => "no allow rule matched".to_owned(),
    };
    Decision {
        allow: allowed,
        reason,
        needs_login,
        rule: decided.map(|r| r.number),
    }
}

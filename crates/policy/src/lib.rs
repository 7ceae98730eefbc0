//! Pomerium Policy Language (PPL): parse → compile → evaluate.
//!
//! A policy is compiled once, when configuration changes, into a
//! [`Program`]; the proxy then calls [`Program::eval`] per request with plain
//! [`Facts`]. This crate does no I/O, has no clock (the caller passes
//! `now`), and never panics on any input.
//!
//! # Accepted documents
//!
//! [`compile`] reads YAML or JSON text holding one of:
//!
//! - a rule object: `{allow: {...}, deny: {...}}`;
//! - a list of rule objects;
//! - a `Policy` spec: an object with `rules` (a list of rule objects) and
//!   optionally `allow`/`deny`, which form the first rule;
//! - a Kubernetes object `{apiVersion: jetbridge.dev/v1, kind: Policy, spec: ...}`
//!   (`metadata` is ignored), whose `spec` is read by [`spec_rules`], the
//!   same function the controller reads a watched `Policy` with.
//!
//! # Semantics (as in Pomerium)
//!
//! - Access is granted when at least one `allow` matches and no `deny`
//!   matches. A program without rules denies ("no policy").
//! - An action holds operators, each over a list of criteria: `and` (all),
//!   `or` (any), `not` (none: ¬A ∧ ¬B) and `nor` (not all: ¬A ∨ ¬B, which
//!   Pomerium's generator builds as an `or` of negations). Several operators
//!   under one action are combined with `or`, the same as writing separate
//!   rules. An operator with an empty list is ignored.
//! - Criteria: `accept`, `reject`, `authenticated_user`, `cors_preflight`,
//!   `pomerium_routes` (value ignored; `false` is refused because it would
//!   still match), `email`, `domain` (of a single `local@domain` address,
//!   compared in lower-case ASCII; see the `address` module), `user` (the user
//!   id), `http_method`, `http_path` (string matchers), `groups`,
//!   `claim/<name>` (string list matchers), `source_ip` (IP or CIDR, or a
//!   list), `day_of_week`, `time_of_day`, `date`.
//! - String matchers: `is`, `not`, `starts_with`, `ends_with`, `contains`,
//!   `in`, `not_in`; several in one object must all hold; a bare value means
//!   `is`. Comparisons are exact and case-sensitive, emails included;
//!   `domain` values are compared in lower case, with internationalised
//!   labels in punycode.
//! - A user whose email address is not a single `local@domain`, or whose
//!   identity provider says `email_verified: false`, is denied by every
//!   program that has an `email` or `domain` criterion (fail closed).
//! - String list matchers: `has`, `is` (exactly one element, equal),
//!   `exclude` (no element equal); a bare value means `has`.
//! - `claim/<name>` looks up `name` in the user's claims, then, if absent,
//!   follows `name` split on `/` and `.` through nested objects
//!   (`claim/address/country`). A scalar claim counts as a one-element list.
//!   When the claims do not contain `email`, `sub`/`user`, `name` or
//!   `groups`, the user's own fields stand in.
//! - Without a signed-in user, user criteria are false. A denied request
//!   whose result depended on such a criterion reports
//!   [`Decision::needs_login`], so the proxy redirects to sign-in rather than
//!   answering 403 (Pomerium's `user-unauthenticated` reason).
//!
//! # Extensions and limits
//!
//! - Operators may nest inside operator lists (`and: [{or: [...]}, ...]`),
//!   up to 16 levels; Pomerium rejects this, and [`compile_with_warnings`]
//!   says so.
//! - `time_of_day` is `{timezone, after, before}` with the documented
//!   layouts (`15:04`, `15:04:05`, `15:04:05.999999999`, `3:04PM`,
//!   `3:04 PM`, `3PM`, `3 PM`); `after` is inclusive, `before` exclusive,
//!   and `after` later than `before` spans midnight. `day_of_week` is a
//!   string (`*`, `mon,wed`, `mon-fri`, `fri-mon`, full or three-letter
//!   names) read in UTC, or `{days, timezone}`. `date` is
//!   `{after, before}` with ISO-8601 date-times (UTC when no offset is
//!   given). Time zones are `UTC` or fixed offsets (`+02:00`, `UTC-7`);
//!   named zones such as `America/Phoenix` are refused at compile time.
//! - Pomerium criteria that need data this proxy does not have
//!   (`client_certificate`, `device`, `record`, `mcp_tool`, `ssh_*`, …) are
//!   refused with a "not supported" error.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

mod address;
pub mod cli;
mod eval;
mod parse;
pub use parse::suggest as did_you_mean;
/// Deepest nesting of operators inside one action.
pub const MAX_OPERATOR_DEPTH: usize = parse::MAX_DEPTH;
mod program;
mod schedule;
#[cfg(test)]
mod tests;

use program::{Action, ClaimPath, Criterion, Expr, ListMatch, ListOp, Lit, Rule, StrMatch, StrOp};

/// Result type of this module.
pub type Result<T, E = PolicyError> = std::result::Result<T, E>;

fn located(at: &str, message: &str) -> String {
    if at.is_empty() {
        message.to_string()
    } else {
        format!("{at}: {message}")
    }
}

/// A lint warning: a rule that compiles but can never match or is likely
/// not what was meant. Displays as `at: message` (`rule 2, allow.and[0].reject:
/// ...`), or the message alone for the document as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Where: empty for the document as a whole, else `rule 2` or
    /// `rule 2, allow.and[1].email`.
    pub at: String,
    /// What is likely wrong.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&located(&self.at, &self.message))
    }
}

/// Why a policy did not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not valid YAML (or JSON).
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error, 0 when unknown.
        line: u64,
        /// 1-based column of the error, 0 when unknown.
        column: u64,
        /// What the parser reported.
        message: String,
    },
    /// The document is well-formed but is not a valid policy.
    #[error("{}", located(at, message))]
    Invalid {
        /// Where: empty for the document as a whole, `rule 2` or
        /// `rule 2, allow.and[1].email`. Callers add their own context
        /// (`policy: `, the Ingress annotation), so it is never repeated.
        at: String,
        /// What is wrong, with a suggestion when one is likely.
        message: String,
    },
    /// Operators nest deeper than the engine allows.
    #[error("{at}: operators nest deeper than {max} levels")]
    TooDeep {
        /// Where the limit was reached.
        at: String,
        /// The limit.
        max: usize,
    },
}

/// A signed-in user, as the session describes them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// The identity provider's subject (`sub`).
    pub id: String,
    /// The user's email address.
    pub email: String,
    /// The user's display name.
    pub name: String,
    /// Group ids or names.
    pub groups: Vec<String>,
    /// All other claims from the identity provider.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// What the policy may know about the request, borrowed from it: building
/// the facts allocates nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    /// The HTTP method, e.g. `GET`.
    pub method: &'a str,
    /// The request host, without port.
    pub host: &'a str,
    /// The request path, without the query string.
    pub path: &'a str,
    /// The client address, if known.
    pub source_ip: Option<IpAddr>,
    /// Request headers as `(name, value)` pairs; names in lower case. Only
    /// the headers a criterion looks at need to be present.
    pub headers: &'a [(&'a str, &'a str)],
}

impl<'a> RequestFacts<'a> {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// Everything a policy is evaluated against.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The signed-in user, or `None` for an anonymous request.
    pub user: Option<&'a User>,
    /// The request.
    pub request: &'a RequestFacts<'a>,
    /// The time of the request.
    pub now: time::OffsetDateTime,
}

/// The outcome of evaluating a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether access is granted.
    pub allow: bool,
    /// Why: `rule 1 allow matched`, `rule 2 deny matched`,
    /// `no allow rule matched` or `no policy`.
    pub reason: String,
    /// Denied, no user, and the result depended on a criterion that needs a
    /// user: the proxy should redirect to sign-in instead of answering 403.
    pub needs_login: bool,
    /// The number of the rule that decided (as in `reason`, counted across
    /// a merged program), or `None` when no rule did.
    pub rule: Option<usize>,
}

/// Route options that predate PPL; [`Program::from_legacy`] compiles them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Legacy {
    /// Email addresses or user ids; each matches `user` or `email`.
    pub allowed_users: Vec<String>,
    /// Email domains.
    pub allowed_domains: Vec<String>,
    /// Claim name → accepted values; any single match allows.
    pub allowed_idp_claims: BTreeMap<String, Vec<serde_json::Value>>,
}

/// A compiled policy, ready to evaluate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Program {
    rules: Vec<Rule>,
}

/// Compiles PPL text (YAML or JSON): a rule object, a list of rule objects,
/// `{rules: [...]}`, or a `jetbridge.dev/v1` `Policy` object.
pub fn compile(text: &str) -> Result<Program> {
    compile_with_warnings(text).map(|(p, _)| p)
}

/// Compiles an already-parsed policy document (same forms as [`compile`]).
pub fn compile_value(v: &serde_json::Value) -> Result<Program> {
    compile_value_with_warnings(v).map(|(p, _)| p)
}

/// Like [`compile_value`], and also returns the lint warnings of
/// [`compile_with_warnings`].
pub fn compile_value_with_warnings(v: &serde_json::Value) -> Result<(Program, Vec<Warning>)> {
    let c = parse::compile_document(v)?;
    Ok((Program { rules: c.rules }, c.warnings))
}

/// Any document [`compile_value`] accepts, as the list of rule objects it
/// stands for: how an Ingress joins its inline `policy` with the Policies
/// it references, whatever form each is written in.
pub fn rule_list(v: &serde_json::Value) -> Result<serde_json::Value> {
    parse::rule_list(v)
}

/// Reads a `Policy` object's `spec` (`allow`, `deny`, `rules`) into the list
/// of rule objects it stands for: `allow`/`deny` form the first rule when
/// either is set, then each of `rules`. Unknown fields are refused by name.
pub fn spec_rules(spec: &serde_json::Value) -> Result<serde_json::Value> {
    parse::spec_rules(spec)
}

/// Like [`compile`], and also returns lint warnings: rules that can never
/// match, `reject` under allow, `not` over user criteria, non-portable
/// extensions, and the like. Each warning starts with its location.
pub fn compile_with_warnings(text: &str) -> Result<(Program, Vec<Warning>)> {
    compile_value_with_warnings(&parse::parse_text(text)?)
}

impl Program {
    /// Compiles the legacy `allowed_users`, `allowed_domains` and
    /// `allowed_idp_claims` options into one allow rule, as Pomerium does:
    /// each user entry matches `user` or `email`, each domain `domain`, each
    /// claim value `claim/<name>: {has: value}`. Claim values that are lists,
    /// objects or null can never match and are skipped. With all three
    /// empty the program is empty (deny).
    pub fn from_legacy(l: &Legacy) -> Program {
        let mut any = Vec::new();
        for d in &l.allowed_domains {
            any.push(Expr::Leaf(Criterion::Domain(StrMatch(vec![StrOp::Is(
                address::domain_literal(d).into(),
            )]))));
        }
        for (claim, values) in &l.allowed_idp_claims {
            for v in values {
                let lit = match v {
                    serde_json::Value::String(s) => Lit::Str(s.as_str().into()),
                    serde_json::Value::Bool(b) => Lit::Bool(*b),
                    serde_json::Value::Number(n) => match n.as_f64() {
                        Some(f) => Lit::Num(f),
                        None => continue,
                    },
                    _ => continue,
                };
                any.push(Expr::Leaf(Criterion::Claim(
                    ClaimPath::new(claim),
                    ListMatch(vec![ListOp::Has(lit)]),
                )));
            }
        }
        for u in &l.allowed_users {
            let is = || StrMatch(vec![StrOp::Is(u.as_str().into())]);
            any.push(Expr::Leaf(Criterion::User(is())));
            any.push(Expr::Leaf(Criterion::Email(is())));
        }
        if any.is_empty() {
            return Program::default();
        }
        Program {
            rules: vec![Rule {
                number: 1,
                action: Action::Allow,
                ops: vec![Expr::Or(any)],
                label: None,
            }],
        }
    }

    /// A program that allows every request (`allow: {or: [{accept: true}]}`).
    pub fn allow_all() -> Program {
        Program {
            rules: vec![Rule {
                number: 1,
                action: Action::Allow,
                ops: vec![Expr::Or(vec![Expr::Leaf(Criterion::Accept)])],
                label: Some("allow-all policy"),
            }],
        }
    }

    /// A program that denies every request, even when merged with others:
    /// use it for a route whose policy failed to compile.
    pub fn deny_all() -> Program {
        Program {
            rules: vec![Rule {
                number: 1,
                action: Action::Deny,
                ops: vec![Expr::Or(vec![Expr::Leaf(Criterion::Accept)])],
                label: Some("deny-all policy"),
            }],
        }
    }

    /// Concatenates the rules of `parts`, as Pomerium concatenates a route's
    /// policies. Rule numbers in decisions count across the merged whole.
    pub fn merge(parts: Vec<Program>) -> Program {
        let mut rules = Vec::new();
        let mut offset = 0;
        for p in parts {
            let max = p.last_rule();
            rules.extend(p.rules.into_iter().map(|mut r| {
                r.number += offset;
                r
            }));
            offset += max;
        }
        Program { rules }
    }

    /// True if the program has no rules (and so denies everything).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The highest rule number (0 without rules): what [`Program::merge`]
    /// shifts the numbers of the parts after this one by.
    pub fn last_rule(&self) -> usize {
        self.rules.iter().map(|r| r.number).max().unwrap_or(0)
    }

    /// Evaluates the program. Cheap: no parsing, and the only allocation is
    /// the reason string.
    pub fn eval(&self, f: &Facts<'_>) -> Decision {
        eval::eval(&self.rules, f)
    }

    /// True if any criterion needs a signed-in user, so an anonymous request
    /// may have to sign in before the policy can allow it.
    pub fn needs_user(&self) -> bool {
        self.rules
            .iter()
            .flat_map(|r| &r.ops)
            .any(|e| e.any_leaf(&Criterion::needs_user))
    }
}

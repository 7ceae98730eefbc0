//! The compiled form of a policy: rules, operators, criteria and matchers.
//!
//! Everything here is built once by the parser and only read afterwards.
//! Strings are stored in the shape evaluation needs (IP ranges parsed, claim
//! paths split, times converted to nanoseconds), so evaluating never parses.

use ipnet::IpNet;
use serde_json::Value;

use super::schedule::{DateWindow, DayOfWeek, TimeOfDay};

/// `allow` or `deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    Deny,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

/// One action of one rule object. A rule object holding both `allow` and
/// `deny` becomes two `Rule`s with the same `number`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rule {
    /// 1-based position of the rule object in the (merged) policy.
    pub(crate) number: usize,
    pub(crate) action: Action,
    /// The action matches when any of these operators matches (Pomerium
    /// merges all operators of an action with `or`).
    pub(crate) ops: Vec<Expr>,
    /// Replaces "rule N <action> matched" in decisions, for built-in programs.
    pub(crate) label: Option<&'static str>,
}

/// A logical operator over criteria (or, as an extension, nested operators).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    /// All children match.
    And(Vec<Expr>),
    /// At least one child matches.
    Or(Vec<Expr>),
    /// No child matches: ¬A ∧ ¬B.
    Not(Vec<Expr>),
    /// At least one child does not match: ¬A ∨ ¬B (Pomerium's `nor`).
    Nor(Vec<Expr>),
    /// A single criterion.
    Leaf(Criterion),
}

/// A criterion with its compiled matcher.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Criterion {
    Accept,
    Reject,
    AuthenticatedUser,
    CorsPreflight,
    PomeriumRoutes,
    Email(StrMatch),
    Domain(StrMatch),
    User(StrMatch),
    HttpMethod(StrMatch),
    HttpPath(StrMatch),
    Groups(ListMatch),
    Claim(ClaimPath, ListMatch),
    SourceIp(Vec<IpNet>),
    DayOfWeek(DayOfWeek),
    TimeOfDay(TimeOfDay),
    Date(DateWindow),
}

impl Rule {
    /// True if any criterion of the rule reads the user's email address
    /// (`email` or `domain`).
    pub(crate) fn reads_address(&self) -> bool {
        self.ops
            .iter()
            .any(|e| e.any_leaf(&|c| matches!(c, Criterion::Email(_) | Criterion::Domain(_))))
    }
}

impl Expr {
    /// True if `pred` holds for any criterion in the expression.
    pub(crate) fn any_leaf(&self, pred: &impl Fn(&Criterion) -> bool) -> bool {
        match self {
            Expr::And(cs) | Expr::Or(cs) | Expr::Not(cs) | Expr::Nor(cs) => {
                cs.iter().any(|c| c.any_leaf(pred))
            }
            Expr::Leaf(c) => pred(c),
        }
    }
}

impl Criterion {
    /// True if the criterion reads the signed-in user.
    pub(crate) fn needs_user(&self) -> bool {
        matches!(
            self,
            Criterion::AuthenticatedUser
                | Criterion::Email(_)
                | Criterion::Domain(_)
                | Criterion::User(_)
                | Criterion::Groups(_)
                | Criterion::Claim(..)
        )
    }
}

/// `claim/<name>`: the exact key first, then the name split on `/` and `.`
/// as a path into nested objects.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ClaimPath {
    pub(crate) key: Box<str>,
    pub(crate) segments: Vec<Box<str>>,
}

impl ClaimPath {
    pub(crate) fn new(key: &str) -> Self {
        let segments = key
            .split(['/', '.'])
            .map(Box::from)
            .collect::<Vec<Box<str>>>();
        ClaimPath {
            key: key.into(),
            segments,
        }
    }

    /// Looks the claim up in `claims`.
    pub(crate) fn lookup<'a>(
        &self,
        claims: &'a serde_json::Map<String, Value>,
    ) -> Option<&'a Value> {
        if let Some(v) = claims.get(&*self.key) {
            return Some(v);
        }
        if self.segments.len() < 2 {
            return None;
        }
        let (first, rest) = self.segments.split_first()?;
        let mut cur = claims.get(&**first)?;
        for seg in rest {
            cur = cur.as_object()?.get(&**seg)?;
        }
        Some(cur)
    }
}

/// A string matcher: every operator must hold.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StrMatch(pub(crate) Vec<StrOp>);

/// One string matcher operator.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StrOp {
    Is(Box<str>),
    Not(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    In(Vec<Box<str>>),
    NotIn(Vec<Box<str>>),
}

impl StrMatch {
    pub(crate) fn matches(&self, s: &str) -> bool {
        self.0.iter().all(|op| match op {
            StrOp::Is(v) => s == &**v,
            StrOp::Not(v) => s != &**v,
            StrOp::StartsWith(v) => s.starts_with(&**v),
            StrOp::EndsWith(v) => s.ends_with(&**v),
            StrOp::Contains(v) => s.contains(&**v),
            StrOp::In(vs) => vs.iter().any(|v| s == &**v),
            StrOp::NotIn(vs) => !vs.iter().any(|v| s == &**v),
        })
    }
}

/// A literal compared against list elements (groups, claim values).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lit {
    Str(Box<str>),
    Num(f64),
    Bool(bool),
}

impl Lit {
    pub(crate) fn eq_str(&self, s: &str) -> bool {
        matches!(self, Lit::Str(v) if &**v == s)
    }

    pub(crate) fn eq_json(&self, v: &Value) -> bool {
        match (self, v) {
            (Lit::Str(a), Value::String(b)) => &**a == b.as_str(),
            (Lit::Num(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Lit::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

/// A string list matcher: every operator must hold.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ListMatch(pub(crate) Vec<ListOp>);

/// One string list matcher operator.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ListOp {
    /// Some element equals the literal.
    Has(Lit),
    /// The list has exactly one element and it equals the literal.
    Is(Lit),
    /// No element equals the literal.
    Exclude(Lit),
}

impl ListMatch {
    /// Evaluates against a list of `items`, comparing with `eq`.
    pub(crate) fn matches<T>(&self, items: &[T], eq: impl Fn(&Lit, &T) -> bool) -> bool {
        self.0.iter().all(|op| match op {
            ListOp::Has(l) => items.iter().any(|i| eq(l, i)),
            ListOp::Is(l) => items.len() == 1 && eq(l, &items[0]),
            ListOp::Exclude(l) => !items.iter().any(|i| eq(l, i)),
        })
    }
}

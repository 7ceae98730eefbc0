//! Text → JSON value → compiled rules, with located errors and lint warnings.
//!
//! Errors name the rule (1-based, as a person counts rule objects) and the
//! path inside it (0-based list indices, as in the YAML), for example
//! `rule 1, allow.or[0].email: unknown matcher "iss" (did you mean "is"?)`.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::address;
use super::program::{
    Action, ClaimPath, Criterion, Expr, ListMatch, ListOp, Lit, Rule, StrMatch, StrOp,
};
use super::schedule::{self, DateWindow, DayOfWeek, TimeOfDay};
use super::{PolicyError, Warning};

/// Deepest nesting of operators inside one action.
pub(crate) const MAX_DEPTH: usize = 16;

const ACTIONS: &[&str] = &["allow", "deny"];
const OPERATORS: &[&str] = &["and", "or", "not", "nor"];
const CRITERIA: &[&str] = &[
    "accept",
    "reject",
    "authenticated_user",
    "email",
    "domain",
    "user",
    "groups",
    "claim",
    "http_method",
    "http_path",
    "source_ip",
    "cors_preflight",
    "day_of_week",
    "time_of_day",
    "date",
    "pomerium_routes",
];
/// Pomerium criteria this engine does not evaluate; named so that the error
/// says "not supported" rather than "unknown".
const UNSUPPORTED: &[&str] = &[
    "client_certificate",
    "invalid_client_certificate",
    "device",
    "record",
    "mcp_tool",
    "ssh_username",
    "ssh_username_matches_email",
    "ssh_username_matches_claim",
    "ssh_publickey",
    "ssh_ca",
];
const STRING_MATCHERS: &[&str] = &[
    "is",
    "not",
    "starts_with",
    "ends_with",
    "contains",
    "in",
    "not_in",
];
const LIST_MATCHERS: &[&str] = &["has", "is", "exclude"];

/// The output of compilation: rules plus lint warnings.
pub(crate) struct Compiled {
    pub(crate) rules: Vec<Rule>,
    pub(crate) warnings: Vec<Warning>,
}

/// Parses policy text. JSON is tried first when the text looks like JSON
/// (JSON allows tabs where YAML does not); otherwise, or if that fails, the
/// text is read as YAML.
pub(crate) fn parse_text(text: &str) -> Result<Value, PolicyError> {
    let head = text.trim_start();
    if (head.starts_with('{') || head.starts_with('['))
        && let Ok(v) = serde_json::from_str::<Value>(text)
    {
        return Ok(v);
    }
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let mut message = first_line(&e.to_string());
        let suffix = format!(" at line {line}, column {column}");
        if let Some(m) = message.strip_suffix(&suffix) {
            message = m.to_owned();
        }
        PolicyError::Syntax {
            line,
            column,
            message,
        }
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_owned()
}

/// Describes a JSON value's kind for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// ` (did you mean "x"?)` when one of `known` is close to `word`, else empty.
pub fn suggest(word: &str, known: &[&str]) -> String {
    if word.chars().count() > 64 {
        return String::new();
    }
    let lower = word.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (distance(&lower, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default()
}

/// Shortens user text quoted in messages.
fn quote(s: &str) -> String {
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(60).collect();
        format!("{:?}…", cut)
    } else {
        format!("{s:?}")
    }
}

/// Compilation context: where we are, for errors and warnings.
struct Cx {
    rule: usize,
    path: String,
    action: Action,
    negated: bool,
    warnings: Vec<Warning>,
}

impl Cx {
    /// The context at the top of a document.
    fn new() -> Cx {
        Cx {
            rule: 0,
            path: String::new(),
            action: Action::Allow,
            negated: false,
            warnings: Vec::new(),
        }
    }

    fn at(&self) -> String {
        match (self.rule, self.path.is_empty()) {
            (0, _) => String::new(),
            (n, true) => format!("rule {n}"),
            (n, false) => format!("rule {n}, {}", self.path),
        }
    }

    fn err(&self, message: impl std::fmt::Display) -> PolicyError {
        PolicyError::Invalid {
            at: self.at(),
            message: message.to_string(),
        }
    }

    fn warn(&mut self, message: impl std::fmt::Display) {
        self.warnings.push(Warning {
            at: self.at(),
            message: message.to_string(),
        });
    }

    /// Runs `f` with `seg` appended to the path.
    fn with<T>(&mut self, seg: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        let len = self.path.len();
        if !self.path.is_empty() && !seg.starts_with('[') {
            self.path.push('.');
        }
        self.path.push_str(seg);
        let out = f(self);
        self.path.truncate(len);
        out
    }
}

/// Compiles a parsed document: a rule object, a list of rule objects, a
/// `Policy` spec (an object with `rules`, and optionally `allow`/`deny`), or a
/// `jetbridge.dev/v1` `Policy` object.
pub(crate) fn compile_document(v: &Value) -> Result<Compiled, PolicyError> {
    let mut cx = Cx::new();
    let root = unwrap_root(v, &cx)?;
    let mut rules = Vec::new();
    match &*root {
        Value::Array(items) => {
            if items.is_empty() {
                cx.warn("the policy has no rules and denies every request");
            }
            for (i, item) in items.iter().enumerate() {
                cx.rule = i + 1;
                compile_rule(item, &mut cx, &mut rules)?;
            }
        }
        Value::Object(_) => {
            cx.rule = 1;
            compile_rule(&root, &mut cx, &mut rules)?;
        }
        Value::Null => {
            return Err(cx.err(
                "the policy is empty (expected a rule object such as \
                 {allow: {or: [...]}} or a list of rule objects)",
            ));
        }
        other => {
            return Err(cx.err(format!(
                "expected a rule object or a list of rule objects, found {}",
                kind(other)
            )));
        }
    }
    Ok(Compiled {
        rules,
        warnings: cx.warnings,
    })
}

/// The document's rules: a `Policy` object's spec and any object with a
/// `rules` key become the list [`spec_rules`] makes; anything else is
/// compiled as it is.
fn unwrap_root<'v>(v: &'v Value, cx: &Cx) -> Result<Cow<'v, Value>, PolicyError> {
    let Value::Object(m) = v else {
        return Ok(Cow::Borrowed(v));
    };
    if m.contains_key("apiVersion") || m.contains_key("kind") {
        check_policy_header(m, cx)?;
        let spec = m
            .get("spec")
            .ok_or_else(|| cx.err("the Policy object has no spec"))?;
        return spec_rules(spec).map(Cow::Owned);
    }
    if m.contains_key("rules") {
        return spec_rules(v).map(Cow::Owned);
    }
    Ok(Cow::Borrowed(v))
}

/// Any accepted document (same forms as [`compile_document`]) as the list
/// of rule objects it stands for, so that documents can be joined.
pub(crate) fn rule_list(v: &Value) -> Result<Value, PolicyError> {
    Ok(match unwrap_root(v, &Cx::new())?.into_owned() {
        Value::Array(list) => Value::Array(list),
        other => Value::Array(vec![other]),
    })
}

/// Refuses an object that is not a `jetbridge.dev/v1` `Policy`.
fn check_policy_header(m: &Map<String, Value>, cx: &Cx) -> Result<(), PolicyError> {
    match m.get("apiVersion") {
        Some(Value::String(s)) if s == "jetbridge.dev/v1" => {}
        Some(other) => {
            let found = other.as_str().map_or_else(|| kind(other).to_owned(), quote);
            return Err(cx.err(format!(
                "unsupported apiVersion {found} (expected \"jetbridge.dev/v1\")"
            )));
        }
        None => return Err(cx.err("a Policy object needs apiVersion: jetbridge.dev/v1")),
    }
    match m.get("kind") {
        Some(Value::String(s)) if s == "Policy" => Ok(()),
        Some(other) => {
            let found = other.as_str().map_or_else(|| kind(other).to_owned(), quote);
            Err(cx.err(format!("unsupported kind {found} (expected \"Policy\")")))
        }
        None => Err(cx.err("a Policy object needs kind: Policy")),
    }
}

/// The fields of a `Policy` spec.
const SPEC_FIELDS: &[&str] = &[
    "allow",
    "deny",
    "rules",
    "targetRefs",
    "passIdentityHeaders",
    "jwtClaimsHeaders",
];

/// The fields of a `Policy` spec that say where it applies and what the
/// upstream learns, not what it allows: read by the controller, skipped here.
const ATTACHMENT_FIELDS: &[&str] = &["targetRefs", "passIdentityHeaders", "jwtClaimsHeaders"];

/// Reads a `Policy` spec into the list of rule objects it stands for:
/// `allow` and `deny`, when either is set, form the first rule, and each
/// element of `rules` follows. An empty spec is an empty list (no rules:
/// deny). The controller and every command read a spec through this one
/// function, so they accept the same documents.
pub(crate) fn spec_rules(spec: &Value) -> Result<Value, PolicyError> {
    let err = |message: String| PolicyError::Invalid {
        at: "spec".into(),
        message,
    };
    let m = match spec {
        Value::Object(m) => m,
        Value::Null => return Ok(Value::Array(Vec::new())),
        other => {
            return Err(err(format!(
                "expected an object with allow, deny and/or rules, found {}",
                kind(other)
            )));
        }
    };
    if let Some(key) = m.keys().find(|k| !SPEC_FIELDS.contains(&k.as_str())) {
        return Err(err(format!(
            "unknown field {}; a spec holds allow, deny and rules{}",
            quote(key),
            suggest(key, SPEC_FIELDS)
        )));
    }
    let mut list = Vec::new();
    // A null action is an absent one, as when the controller reads the spec.
    let first: Map<String, Value> = m
        .iter()
        .filter(|(k, v)| {
            k.as_str() != "rules" && !ATTACHMENT_FIELDS.contains(&k.as_str()) && !v.is_null()
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !first.is_empty() {
        list.push(Value::Object(first));
    }
    match m.get("rules") {
        None | Some(Value::Null) => {}
        Some(Value::Array(rules)) => list.extend(rules.iter().cloned()),
        Some(other) => {
            return Err(err(format!(
                "rules: expected a list of rule objects, found {}",
                kind(other)
            )));
        }
    }
    Ok(Value::Array(list))
}

fn compile_rule(v: &Value, cx: &mut Cx, out: &mut Vec<Rule>) -> Result<(), PolicyError> {
    let Value::Object(m) = v else {
        return Err(cx.err(format!(
            "expected a rule object with allow and/or deny, found {}",
            kind(v)
        )));
    };
    if m.is_empty() {
        cx.warn("the rule has no allow or deny action and never matches");
    }
    // Pomerium orders a rule object's actions allow, then deny.
    for key in m.keys() {
        if !ACTIONS.contains(&key.as_str()) {
            let hint = if OPERATORS.contains(&key.as_str()) || is_criterion_name(key) {
                format!(" ({key:?} must sit under an action, e.g. allow: {{{key}: ...}})")
            } else {
                suggest(key, ACTIONS)
            };
            return Err(cx.err(format!("unknown action {}{hint}", quote(key))));
        }
    }
    let number = cx.rule;
    for (name, action) in [("allow", Action::Allow), ("deny", Action::Deny)] {
        let Some(body) = m.get(name) else { continue };
        cx.action = action;
        let ops = cx.with(name, |cx| compile_body(body, cx))?;
        out.push(Rule {
            number,
            action,
            ops,
            label: None,
        });
    }
    Ok(())
}

fn is_criterion_name(key: &str) -> bool {
    let name = key.split_once('/').map_or(key, |(n, _)| n);
    CRITERIA.contains(&name)
}

fn compile_body(v: &Value, cx: &mut Cx) -> Result<Vec<Expr>, PolicyError> {
    let m = match v {
        Value::Object(m) => m,
        Value::Array(_) => {
            return Err(cx.err(
                "expected an object of operators, found a list \
                 (write e.g. allow: {or: [...]})",
            ));
        }
        other => {
            return Err(cx.err(format!(
                "expected an object of operators (and, or, not, nor), found {}",
                kind(other)
            )));
        }
    };
    for key in m.keys() {
        if OPERATORS.contains(&key.as_str()) || key == "action" {
            continue;
        }
        if is_criterion_name(key) {
            return Err(cx.err(format!(
                "criterion {key:?} must sit inside an operator list, e.g. {}: {{or: [{{{key}: ...}}]}}",
                cx.action.as_str()
            )));
        }
        return Err(cx.err(format!(
            "unknown operator {}{}",
            quote(key),
            suggest(key, OPERATORS)
        )));
    }
    let mut ops = Vec::new();
    for op in OPERATORS {
        let Some(list) = m.get(*op) else { continue };
        let expr = cx.with(op, |cx| compile_operator(op, list, cx, 0))?;
        match expr {
            Some(e) => ops.push(e),
            None => cx.with(op, |cx| {
                cx.warn("the operator has no criteria and is ignored");
            }),
        }
    }
    if ops.len() > 1 {
        cx.warn(
            "several operators under one action are combined with `or` (as in Pomerium); \
             use one operator per rule, or separate rules, to make that explicit",
        );
    }
    if ops.is_empty() && !m.is_empty() {
        cx.warn("the action has no criteria and never matches");
    } else if m.is_empty() {
        cx.warn("the action has no operators and never matches");
    }
    Ok(ops)
}

/// Compiles `op: [criteria...]`. Returns `None` for an empty list, which
/// Pomerium ignores.
fn compile_operator(
    op: &str,
    list: &Value,
    cx: &mut Cx,
    depth: usize,
) -> Result<Option<Expr>, PolicyError> {
    if depth >= MAX_DEPTH {
        return Err(PolicyError::TooDeep {
            at: cx.at(),
            max: MAX_DEPTH,
        });
    }
    let Value::Array(items) = list else {
        return Err(cx.err(format!(
            "expected a list of criteria, found {} (write e.g. {op}: [{{email: ...}}])",
            kind(list)
        )));
    };
    if items.is_empty() {
        return Ok(None);
    }
    let negating = matches!(op, "not" | "nor");
    let saved = cx.negated;
    if negating {
        cx.negated = !cx.negated;
    }
    let mut children = Vec::with_capacity(items.len());
    let result = (|| {
        for (i, item) in items.iter().enumerate() {
            let idx = format!("[{i}]");
            if let Some(e) = cx.with(&idx, |cx| compile_item(item, cx, depth))? {
                children.push(e);
            }
        }
        Ok(())
    })();
    cx.negated = saved;
    result?;
    Ok(Some(match op {
        "and" => Expr::And(children),
        "or" => Expr::Or(children),
        "not" => Expr::Not(children),
        _ => Expr::Nor(children),
    }))
}

/// One element of an operator list: a criterion, or a nested operator.
fn compile_item(v: &Value, cx: &mut Cx, depth: usize) -> Result<Option<Expr>, PolicyError> {
    let Value::Object(m) = v else {
        return Err(cx.err(format!(
            "expected a criterion object such as {{email: ...}}, found {}",
            kind(v)
        )));
    };
    let mut entries = m.iter();
    let (key, data) = match (entries.next(), entries.next()) {
        (Some(kv), None) => kv,
        (None, _) => return Err(cx.err("empty criterion object (expected e.g. {email: ...})")),
        (Some(_), Some(_)) => {
            let keys: Vec<&str> = m.keys().map(String::as_str).collect();
            return Err(cx.err(format!(
                "a criterion object must have exactly one key, found {} ({}); \
                 put each criterion in its own list item",
                keys.len(),
                keys.join(", ")
            )));
        }
    };
    if OPERATORS.contains(&key.as_str()) {
        cx.warn(format!(
            "nested operator {key:?} is a jetbridge extension; Pomerium rejects nested operators"
        ));
        let expr = cx.with(key, |cx| compile_operator(key, data, cx, depth + 1))?;
        if expr.is_none() {
            cx.with(key, |cx| {
                cx.warn("the operator has no criteria and is ignored")
            });
        }
        return Ok(expr);
    }
    let (name, sub) = match key.split_once('/') {
        Some((n, s)) => (n, Some(s)),
        None => (key.as_str(), None),
    };
    if !CRITERIA.contains(&name) && name != "claims" {
        if UNSUPPORTED.contains(&name) {
            return Err(cx.err(format!(
                "criterion {name:?} is a Pomerium criterion that jetbridge does not support"
            )));
        }
        return Err(cx.err(format!(
            "unknown criterion {}{}",
            quote(name),
            suggest(name, CRITERIA)
        )));
    }
    let c = cx.with(key, |cx| compile_criterion(name, sub, data, cx))?;
    Ok(Some(Expr::Leaf(c)))
}

/// One criterion (`name`, with `sub` after a slash for claims) and the
/// warnings its use in this rule deserves.
fn compile_criterion(
    name: &str,
    sub: Option<&str>,
    data: &Value,
    cx: &mut Cx,
) -> Result<Criterion, PolicyError> {
    check_sub_path(name, sub, cx)?;
    let c = match flag_criterion(name, data, cx)? {
        Some(c) => c,
        None => valued_criterion(name, sub, data, cx)?,
    };
    if c.needs_user() && cx.negated && cx.action == Action::Allow {
        cx.warn(format!(
            "`not`/`nor` over {name:?} also matches visitors who are not signed in; \
             add authenticated_user: true under `and` to require sign-in"
        ));
    }
    Ok(c)
}

/// Claims need a sub-path (`claim/groups`); no other criterion takes one.
fn check_sub_path(name: &str, sub: Option<&str>, cx: &Cx) -> Result<(), PolicyError> {
    let is_claim = matches!(name, "claim" | "claims");
    match (is_claim, sub) {
        (true, None) | (true, Some("")) => {
            Err(cx.err("claim needs a claim name, e.g. claim/groups"))
        }
        (false, Some(_)) => Err(cx.err(format!(
            "criterion {name:?} takes no sub-path (only claim/<name> does)"
        ))),
        _ => Ok(()),
    }
}

/// The criteria whose value is only `true` (`accept`, `reject`, …); `None`
/// for any other name.
fn flag_criterion(name: &str, data: &Value, cx: &mut Cx) -> Result<Option<Criterion>, PolicyError> {
    let c = match name {
        "accept" => Criterion::Accept,
        "reject" => Criterion::Reject,
        "authenticated_user" => Criterion::AuthenticatedUser,
        "cors_preflight" => Criterion::CorsPreflight,
        "pomerium_routes" => Criterion::PomeriumRoutes,
        _ => return Ok(None),
    };
    flag_value(name, data, cx)?;
    let allow_plain = cx.action == Action::Allow && !cx.negated;
    let deny_plain = cx.action == Action::Deny && !cx.negated;
    match c {
        Criterion::Accept if deny_plain => {
            cx.warn("`accept` under deny matches every request: this rule denies everyone")
        }
        Criterion::Reject if allow_plain => cx.warn("`reject` under allow never matches"),
        _ => {}
    }
    Ok(Some(c))
}

/// The criteria that match a value: strings, lists, addresses, times and claims.
fn valued_criterion(
    name: &str,
    sub: Option<&str>,
    data: &Value,
    cx: &mut Cx,
) -> Result<Criterion, PolicyError> {
    Ok(match name {
        "email" => {
            let m = string_matcher(data, cx)?;
            warn_case(name, &m, cx);
            Criterion::Email(m)
        }
        "domain" => Criterion::Domain(domain_matcher(string_matcher(data, cx)?)),
        "user" => Criterion::User(string_matcher(data, cx)?),
        "http_method" => {
            let m = string_matcher(data, cx)?;
            if has_text(&m, |s| s.chars().any(char::is_lowercase)) {
                cx.warn(
                    "HTTP methods are compared case-sensitively and requests use upper case \
                     (GET, POST)",
                );
            }
            Criterion::HttpMethod(m)
        }
        "http_path" => Criterion::HttpPath(string_matcher(data, cx)?),
        "groups" => Criterion::Groups(list_matcher(data, cx, true)?),
        "source_ip" => Criterion::SourceIp(source_ips(data, cx)?),
        "day_of_week" => Criterion::DayOfWeek(day_of_week(data, cx)?),
        "time_of_day" => Criterion::TimeOfDay(time_of_day(data, cx)?),
        "date" => Criterion::Date(date(data, cx)?),
        _ => {
            let path = sub.unwrap_or_default();
            Criterion::Claim(ClaimPath::new(path), list_matcher(data, cx, false)?)
        }
    })
}

/// Criteria whose value Pomerium ignores (`accept: true`). `false` would
/// still match, so it is refused rather than silently misread.
fn flag_value(name: &str, data: &Value, cx: &Cx) -> Result<(), PolicyError> {
    if matches!(data, Value::Bool(false)) {
        let alt = match name {
            "accept" => "; use `reject` for a criterion that never matches",
            "reject" => "; use `accept` for a criterion that always matches",
            _ => "; negate it with `not` instead",
        };
        return Err(cx.err(format!(
            "`{name}: false` would still match as `{name}` (the value is ignored){alt}"
        )));
    }
    Ok(())
}

/// True if any value in the matcher satisfies `pred`.
fn has_text(m: &StrMatch, pred: impl Fn(&str) -> bool) -> bool {
    m.0.iter().any(|op| match op {
        StrOp::Is(s)
        | StrOp::Not(s)
        | StrOp::StartsWith(s)
        | StrOp::EndsWith(s)
        | StrOp::Contains(s) => pred(s),
        StrOp::In(v) | StrOp::NotIn(v) => v.iter().any(|s| pred(s)),
    })
}

/// A `domain` matcher with its values as they are compared: lower case,
/// internationalised labels in punycode.
fn domain_matcher(m: StrMatch) -> StrMatch {
    let norm = |s: &str| -> Box<str> { address::domain_literal(s).into() };
    StrMatch(
        m.0.into_iter()
            .map(|op| match op {
                StrOp::Is(s) => StrOp::Is(norm(&s)),
                StrOp::Not(s) => StrOp::Not(norm(&s)),
                StrOp::StartsWith(s) => StrOp::StartsWith(norm(&s)),
                StrOp::EndsWith(s) => StrOp::EndsWith(norm(&s)),
                StrOp::Contains(s) => StrOp::Contains(norm(&s)),
                StrOp::In(v) => StrOp::In(v.iter().map(|s| norm(s)).collect()),
                StrOp::NotIn(v) => StrOp::NotIn(v.iter().map(|s| norm(s)).collect()),
            })
            .collect(),
    )
}

fn warn_case(name: &str, m: &StrMatch, cx: &mut Cx) {
    if has_text(m, |s| s.chars().any(char::is_uppercase)) {
        cx.warn(format!(
            "{name} values are compared case-sensitively (as in Pomerium) and identity \
             providers usually report lower case"
        ));
    }
}

/// A scalar as matcher text: strings as they are, numbers as written.
fn scalar_text(v: &Value, op: &str, cx: &Cx) -> Result<Box<str>, PolicyError> {
    match v {
        Value::String(s) => Ok(s.as_str().into()),
        Value::Number(n) => Ok(n.to_string().into()),
        Value::Array(_) if op == "is" => Err(cx
            .err("expected a string, found a list (to match any of several values use in: [...])")),
        other => Err(cx.err(format!("expected a string, found {}", kind(other)))),
    }
}

fn string_matcher(data: &Value, cx: &mut Cx) -> Result<StrMatch, PolicyError> {
    let obj = match data {
        Value::Object(m) => m,
        other => return Ok(StrMatch(vec![StrOp::Is(scalar_text(other, "is", cx)?)])),
    };
    if obj.is_empty() {
        return Err(cx.err("empty matcher (expected e.g. {is: ...})"));
    }
    let mut ops = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        if !STRING_MATCHERS.contains(&k.as_str()) {
            return Err(cx.err(format!(
                "unknown matcher {}{}",
                quote(k),
                suggest(k, STRING_MATCHERS)
            )));
        }
        let op = cx.with(k, |cx| -> Result<StrOp, PolicyError> {
            Ok(match k.as_str() {
                "in" | "not_in" => {
                    let Value::Array(items) = v else {
                        return Err(
                            cx.err(format!("expected a list of strings, found {}", kind(v)))
                        );
                    };
                    let mut vals = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        vals.push(cx.with(&format!("[{i}]"), |cx| scalar_text(item, k, cx))?);
                    }
                    if k == "in" {
                        StrOp::In(vals)
                    } else {
                        StrOp::NotIn(vals)
                    }
                }
                "is" => StrOp::Is(scalar_text(v, k, cx)?),
                "not" => StrOp::Not(scalar_text(v, k, cx)?),
                "starts_with" => StrOp::StartsWith(scalar_text(v, k, cx)?),
                "ends_with" => StrOp::EndsWith(scalar_text(v, k, cx)?),
                _ => StrOp::Contains(scalar_text(v, k, cx)?),
            })
        })?;
        ops.push(op);
    }
    Ok(StrMatch(ops))
}

fn literal(v: &Value, strings_only: bool, cx: &Cx) -> Result<Lit, PolicyError> {
    match v {
        Value::String(s) => Ok(Lit::Str(s.as_str().into())),
        Value::Number(n) if strings_only => Ok(Lit::Str(n.to_string().into())),
        Value::Number(n) => n
            .as_f64()
            .map(Lit::Num)
            .ok_or_else(|| cx.err("number out of range")),
        Value::Bool(b) if !strings_only => Ok(Lit::Bool(*b)),
        Value::Array(_) => Err(cx.err(
            "expected a single value, found a list (to match any of several values, \
             put one criterion per value under `or`)",
        )),
        other => Err(cx.err(format!("expected a string, found {}", kind(other)))),
    }
}

fn list_matcher(data: &Value, cx: &mut Cx, strings_only: bool) -> Result<ListMatch, PolicyError> {
    let obj = match data {
        Value::Object(m) => m,
        other => {
            return Ok(ListMatch(vec![ListOp::Has(literal(
                other,
                strings_only,
                cx,
            )?)]));
        }
    };
    if obj.is_empty() {
        return Err(cx.err("empty matcher (expected e.g. {has: ...})"));
    }
    let mut ops = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        if !LIST_MATCHERS.contains(&k.as_str()) {
            return Err(cx.err(format!(
                "unknown matcher {}{}",
                quote(k),
                suggest(k, LIST_MATCHERS)
            )));
        }
        let lit = cx.with(k, |cx| literal(v, strings_only, cx))?;
        ops.push(match k.as_str() {
            "has" => ListOp::Has(lit),
            "is" => ListOp::Is(lit),
            _ => ListOp::Exclude(lit),
        });
    }
    Ok(ListMatch(ops))
}

fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n);
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

fn source_ips(data: &Value, cx: &mut Cx) -> Result<Vec<IpNet>, PolicyError> {
    let one = |v: &Value, cx: &Cx| -> Result<IpNet, PolicyError> {
        let Value::String(s) = v else {
            return Err(cx.err(format!(
                "expected an IP address or CIDR range, found {}",
                kind(v)
            )));
        };
        parse_net(s).ok_or_else(|| cx.err(format!("invalid IP address or CIDR range {}", quote(s))))
    };
    match data {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(cx.err("source_ip needs at least one address or range"));
            }
            let mut nets = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                nets.push(cx.with(&format!("[{i}]"), |cx| one(item, cx))?);
            }
            Ok(nets)
        }
        other => Ok(vec![one(other, cx)?]),
    }
}

fn check_keys(m: &Map<String, Value>, known: &[&str], cx: &Cx) -> Result<(), PolicyError> {
    for k in m.keys() {
        if !known.contains(&k.as_str()) {
            return Err(cx.err(format!(
                "unknown option {}{} (expected one of: {})",
                quote(k),
                suggest(k, known),
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn str_field<'v>(
    m: &'v Map<String, Value>,
    key: &str,
    cx: &mut Cx,
) -> Result<Option<&'v str>, PolicyError> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(cx.with(key, |cx| {
            cx.err(format!("expected a string, found {}", kind(other)))
        })),
    }
}

fn tz_field(
    m: &Map<String, Value>,
    cx: &mut Cx,
    required: bool,
) -> Result<time::UtcOffset, PolicyError> {
    match str_field(m, "timezone", cx)? {
        Some(tz) => cx.with("timezone", |cx| {
            schedule::parse_tz(tz).map_err(|e| cx.err(e))
        }),
        None if required => Err(cx.err("timezone is required (e.g. timezone: UTC)")),
        None => Ok(time::UtcOffset::UTC),
    }
}

fn day_of_week(data: &Value, cx: &mut Cx) -> Result<DayOfWeek, PolicyError> {
    match data {
        Value::String(s) => Ok(DayOfWeek {
            days: schedule::parse_days(s).map_err(|e| cx.err(e))?,
            offset: time::UtcOffset::UTC,
        }),
        Value::Object(m) => {
            check_keys(m, &["days", "timezone"], cx)?;
            let offset = tz_field(m, cx, false)?;
            let days = str_field(m, "days", cx)?
                .ok_or_else(|| cx.err("days is required (e.g. days: mon-fri)"))?;
            let days = cx.with("days", |cx| {
                schedule::parse_days(days).map_err(|e| cx.err(e))
            })?;
            Ok(DayOfWeek { days, offset })
        }
        other => Err(cx.err(format!(
            "expected days such as \"mon-fri\", found {}",
            kind(other)
        ))),
    }
}

fn time_of_day(data: &Value, cx: &mut Cx) -> Result<TimeOfDay, PolicyError> {
    let Value::Object(m) = data else {
        return Err(cx.err(format!(
            "expected an object with timezone, after and/or before, found {}",
            kind(data)
        )));
    };
    check_keys(m, &["timezone", "after", "before"], cx)?;
    let offset = tz_field(m, cx, true)?;
    let get = |key: &str, cx: &mut Cx| -> Result<Option<u64>, PolicyError> {
        match str_field(m, key, cx)? {
            None => Ok(None),
            Some(s) => cx.with(key, |cx| {
                schedule::parse_time(s).map(Some).map_err(|e| cx.err(e))
            }),
        }
    };
    let after = get("after", cx)?;
    let before = get("before", cx)?;
    if after.is_none() && before.is_none() {
        return Err(cx.err("time_of_day needs after and/or before"));
    }
    if after.is_some() && after == before {
        cx.warn("after equals before, so the window is empty and never matches");
    }
    Ok(TimeOfDay {
        offset,
        after,
        before,
    })
}

fn date(data: &Value, cx: &mut Cx) -> Result<DateWindow, PolicyError> {
    let Value::Object(m) = data else {
        return Err(cx.err(format!(
            "expected an object with after and/or before, found {}",
            kind(data)
        )));
    };
    check_keys(m, &["after", "before"], cx)?;
    let get = |key: &str, cx: &mut Cx| -> Result<Option<time::OffsetDateTime>, PolicyError> {
        match str_field(m, key, cx)? {
            None => Ok(None),
            Some(s) => cx.with(key, |cx| {
                schedule::parse_datetime(s).map(Some).map_err(|e| cx.err(e))
            }),
        }
    };
    let after = get("after", cx)?;
    let before = get("before", cx)?;
    if after.is_none() && before.is_none() {
        return Err(cx.err("date needs after and/or before"));
    }
    if let (Some(a), Some(b)) = (after, before)
        && a >= b
    {
        cx.warn("after is not earlier than before, so the window never matches");
    }
    Ok(DateWindow { after, before })
}

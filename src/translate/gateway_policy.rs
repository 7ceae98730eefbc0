//! Access on Gateway API routes. Pure, like the rest of [`super::gateway`].
//!
//! A rule's access comes from three places:
//! - the `ExtensionRef` filters it names: a `jetbridge.dev` `Policy` or
//!   Pomerium's `gateway.pomerium.io` `PolicyFilter` in the route's
//!   namespace, whose rules combine as `policy_ref` does (allowed when one
//!   allows and none denies);
//! - the Policies whose `targetRefs` name the route itself (an HTTPRoute
//!   or GRPCRoute in the Policy's namespace; Policy attachment, GEP-713):
//!   their `deny` rules hold on every rule of the route, and their `allow`
//!   rules are the access of a rule that names no Policy of its own;
//! - the Policies whose `targetRefs` name a Gateway the route is attached
//!   to, in the Gateway's namespace: their `deny` rules hold on every route
//!   of the Gateway, whatever the route names, and their `allow` rules are
//!   the access of a rule that names no Policy of its own and whose route no
//!   Policy targets. A Gateway's owner thereby sets a baseline that route
//!   authors can narrow but not widen;
//!
//! So `deny` rules add up from every level, and `allow` rules come from the
//! most specific level that has any: the rule's ExtensionRef, else the
//! Policies targeting its route, else its Gateways' baselines.
//! - otherwise the Gateway's public-access annotation
//!   ([`super::gateway::PUBLIC_ACCESS_ANNOTATION`]); without it the rule
//!   denies.
//!
//! A Policy or PolicyFilter that is missing or does not compile makes the
//! rule deny, with a diagnostic.

use super::gateway::{Context, POLICY_GROUP};
use crate::crd::WatchedPolicy;
use crate::crd::gateway::{GROUP, LocalObjectReference};
use crate::crd::policy_filter::{self, PolicyFilter};
use crate::model::rule_origin::RuleOrigin;
use crate::model::{Diagnostic, ObjectRef, Reason, Severity};
use crate::settings::RouteOptions;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// An `ExtensionRef` naming access rules, in the route's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum AccessRef {
    /// A `jetbridge.dev` `Policy`.
    Policy(String),
    /// A `gateway.pomerium.io` `PolicyFilter`.
    PolicyFilter(String),
}

/// Reads an `ExtensionRef` filter: a Policy or a PolicyFilter, else an
/// error naming what it is.
pub(super) fn extension_ref(r: &LocalObjectReference) -> Result<AccessRef, String> {
    match (r.group.as_str(), r.kind.as_str()) {
        (POLICY_GROUP, "Policy") => Ok(AccessRef::Policy(r.name.clone())),
        (policy_filter::GROUP, policy_filter::KIND) => Ok(AccessRef::PolicyFilter(r.name.clone())),
        (group, kind) => Err(format!(
            "ExtensionRef {group}/{kind} is neither a {POLICY_GROUP} Policy nor a {} {}",
            policy_filter::GROUP,
            policy_filter::KIND
        )),
    }
}

/// What the Gateways a route is attached to through one hostname say about
/// access.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ParentAccess {
    /// The public-access default, or why it is unreadable.
    pub public: Result<bool, String>,
    /// The Gateways (`namespace/name`).
    pub gateways: BTreeSet<String>,
}

impl ParentAccess {
    /// Through one listener of the Gateway `namespace/name`.
    pub(super) fn new(public: Result<bool, String>, gateway: String) -> Self {
        ParentAccess {
            public,
            gateways: BTreeSet::from([gateway]),
        }
    }

    /// Attached through several listeners: public only if every one says
    /// so; every Gateway's baseline applies.
    pub(super) fn merge(self, other: ParentAccess) -> ParentAccess {
        let public = match (self.public, other.public) {
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok(a), Ok(b)) => Ok(a && b),
        };
        let mut gateways = self.gateways;
        gateways.extend(other.gateways);
        ParentAccess { public, gateways }
    }
}

/// What a PolicyFilter came to, for its `Valid` condition.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyFilterOutcome {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// Why its rules do not compile.
    pub error: Option<String>,
}

/// Which targets of a Policy were found, for its `Attached` condition.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetOutcome {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// `Kind namespace/name` of each target found and served.
    pub attached: Vec<String>,
    /// Each target not found (or not one jetbridge serves), and why.
    pub missing: Vec<String>,
}

/// What a Policy named by a rule tells the upstream about the user.
#[derive(Clone, Debug, Default, PartialEq)]
struct Identity {
    pass_identity_headers: Option<bool>,
    claims_headers: BTreeMap<String, String>,
}

/// One `targetRefs` entry: its kind (`Gateway`, `HTTPRoute`, `GRPCRoute`)
/// and `namespace/name`, or why it cannot be a target.
type Target = Result<(&'static str, String), String>;

/// The kinds a Policy's `targetRefs` may name.
const TARGET_KINDS: [&str; 3] = ["Gateway", "HTTPRoute", "GRPCRoute"];

/// The compiled PolicyFilters and the Policies targeting each Gateway.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Rule lists by `namespace/name`.
    filters: HashMap<String, Result<Value, String>>,
    /// By Gateway `namespace/name`: the Policies (`namespace/name`) naming
    /// it, in name order.
    defaults: BTreeMap<String, Vec<String>>,
    /// By route (`HTTPRoute namespace/name`, `GRPCRoute namespace/name`):
    /// the Policies (`namespace/name`) naming it, in name order.
    routes: BTreeMap<String, Vec<String>>,
    /// Each targeting Policy and its targets.
    targets: Vec<(Arc<WatchedPolicy>, Vec<Target>)>,
    /// What each Policy (`namespace/name`) tells the upstream, when it says
    /// anything.
    identity: HashMap<String, Identity>,
    pub filter_outcomes: Vec<PolicyFilterOutcome>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Catalog {
    /// Compiles the PolicyFilters and reads the Policies' `targetRefs`.
    pub fn new(policies: &[Arc<WatchedPolicy>], filters: &[Arc<PolicyFilter>]) -> Catalog {
        let mut c = Catalog::default();
        let mut sorted: Vec<&Arc<PolicyFilter>> = filters.iter().collect();
        sorted.sort_by_key(|f| key(&f.metadata.namespace, &f.metadata.name));
        for f in sorted {
            c.add_filter(f);
        }
        let mut sorted: Vec<&Arc<WatchedPolicy>> = policies.iter().collect();
        sorted.sort_by_key(|p| key(&p.metadata.namespace, &p.metadata.name));
        for p in sorted {
            c.add_targets(p);
            c.add_identity(p);
        }
        c
    }

    fn add_identity(&mut self, p: &WatchedPolicy) {
        let Ok(spec) = &p.spec else { return };
        let identity = Identity {
            pass_identity_headers: spec.pass_identity_headers,
            claims_headers: spec.jwt_claims_headers.clone(),
        };
        if identity != Identity::default() {
            let policy = key(&p.metadata.namespace, &p.metadata.name);
            self.identity.insert(policy, identity);
        }
    }

    fn add_filter(&mut self, f: &PolicyFilter) {
        let ns = f.metadata.namespace.clone().unwrap_or_default();
        let name = f.metadata.name.clone().unwrap_or_default();
        let compiled = compile_filter(f.spec.ppl.as_deref().unwrap_or(""));
        let error = compiled.as_ref().err().cloned();
        if let Some(e) = &error {
            self.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                object: ObjectRef::kube(policy_filter::KIND, &ns, &name),
                reason: Reason::InvalidPolicy,
                message: format!("ppl: {e}"),
            });
        }
        self.filter_outcomes.push(PolicyFilterOutcome {
            namespace: ns.clone(),
            name: name.clone(),
            generation: f.metadata.generation,
            error,
        });
        self.filters.insert(format!("{ns}/{name}"), compiled);
    }

    fn add_targets(&mut self, p: &Arc<WatchedPolicy>) {
        let Ok(spec) = &p.spec else { return };
        if spec.target_refs.is_empty() {
            return;
        }
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let policy = key(&p.metadata.namespace, &p.metadata.name);
        let mut targets = Vec::new();
        for t in &spec.target_refs {
            let kind = TARGET_KINDS.iter().find(|k| **k == t.kind);
            let Some(&kind) = kind.filter(|_| t.group == GROUP) else {
                targets.push(Err(format!(
                    "target {}/{} {}: only {GROUP} Gateways, HTTPRoutes and GRPCRoutes can be targeted",
                    t.group, t.kind, t.name
                )));
                continue;
            };
            let target = format!("{ns}/{}", t.name);
            let list = match kind {
                "Gateway" => self.defaults.entry(target.clone()).or_default(),
                _ => self.routes.entry(format!("{kind} {target}")).or_default(),
            };
            if !list.contains(&policy) {
                list.push(policy.clone());
            }
            targets.push(Ok((kind, target)));
        }
        self.targets.push((p.clone(), targets));
    }

    /// Each targeting Policy's outcome, given what is served: Gateways
    /// (`Gateway namespace/name`) and routes accepted by one of them
    /// (`HTTPRoute namespace/name`).
    pub fn target_outcomes(&self, served: &BTreeSet<String>) -> Vec<TargetOutcome> {
        self.targets
            .iter()
            .map(|(p, targets)| {
                let mut out = TargetOutcome {
                    namespace: p.metadata.namespace.clone().unwrap_or_default(),
                    name: p.metadata.name.clone().unwrap_or_default(),
                    generation: p.metadata.generation,
                    attached: Vec::new(),
                    missing: Vec::new(),
                };
                for t in targets {
                    match t {
                        Ok((kind, t)) if served.contains(&format!("{kind} {t}")) => {
                            out.attached.push(format!("{kind} {t}"))
                        }
                        Ok(("Gateway", g)) => out.missing.push(format!(
                            "Gateway {g} not found (or its class is not served by jetbridge)"
                        )),
                        Ok((kind, r)) => out.missing.push(format!(
                            "{kind} {r} not found (or not accepted by a Gateway jetbridge serves)"
                        )),
                        Err(e) => out.missing.push(e.clone()),
                    }
                }
                out
            })
            .collect()
    }
}

fn key(ns: &Option<String>, name: &Option<String>) -> String {
    format!(
        "{}/{}",
        ns.as_deref().unwrap_or(""),
        name.as_deref().unwrap_or("")
    )
}

/// A PolicyFilter's `ppl` text as a list of rule objects, compiled once to
/// check it (the route compiles its combined list again).
fn compile_filter(ppl: &str) -> Result<Value, String> {
    if ppl.trim().is_empty() {
        return Err("spec.ppl is empty".into());
    }
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let v = serde_saphyr::from_str_with_options::<Value>(ppl, options)
        .map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())?;
    crate::policy::compile_value(&v).map_err(|e| e.to_string())?;
    crate::policy::rule_list(&v).map_err(|e| e.to_string())
}

/// Sets a rule's access: the rules it names, the Policies targeting its
/// route (`route`: `HTTPRoute namespace/name`) and its Gateways' baselines,
/// else the Gateways' public-access default. Problems make the rule deny.
/// Returns where each run of the rule objects set as `policy` comes from
/// (a run from a level below the most specific one holds only its `deny`
/// rules).
pub(super) fn rule_access(
    cx: &Context<'_>,
    ns: &str,
    route: &str,
    refs: &[AccessRef],
    parent: &ParentAccess,
    o: &mut RouteOptions,
    problems: &mut Vec<String>,
) -> Vec<RuleOrigin> {
    let baseline: Vec<&String> = parent
        .gateways
        .iter()
        .filter_map(|g| cx.access.defaults.get(g))
        .flatten()
        .collect();
    let targeting: &[String] = cx.access.routes.get(route).map_or(&[], Vec::as_slice);
    if refs.is_empty() && targeting.is_empty() && baseline.is_empty() {
        match &parent.public {
            Ok(p) => o.allow_public_unauthenticated_access = *p,
            Err(e) => problems.push(e.clone()),
        }
        return Vec::new();
    }
    let mut runs = named_runs(cx, ns, refs, problems);
    let levels = [
        (
            targeting.iter().collect::<Vec<_>>(),
            refs.is_empty(),
            "targeting this route",
        ),
        (
            baseline,
            refs.is_empty() && targeting.is_empty(),
            "the baseline of this route's Gateway",
        ),
    ];
    for (policies, whole, what) in levels {
        runs.extend(attached_runs(cx, &policies, whole, what, problems));
    }
    let mut rules = Vec::new();
    let mut origins = Vec::new();
    for (run, policy, setting) in runs {
        origins.push(RuleOrigin {
            first: rules.len() + 1,
            rules: run.len(),
            policy: Some(policy),
            setting,
        });
        rules.extend(run);
    }
    o.policy = Some(Value::Array(rules));
    identity_options(cx, ns, refs, targeting, o);
    origins
}

/// One run of rule objects: the objects, the Policy or PolicyFilter
/// (`namespace/name`) they come from, and its kind.
type Run = (Vec<Value>, String, &'static str);

/// The runs of the Policies and PolicyFilters a rule names.
fn named_runs(
    cx: &Context<'_>,
    ns: &str,
    refs: &[AccessRef],
    problems: &mut Vec<String>,
) -> Vec<Run> {
    let mut runs = Vec::new();
    for r in refs {
        let (what, name, found) = match r {
            AccessRef::Policy(name) => ("Policy", name, cx.policies.get(&format!("{ns}/{name}"))),
            AccessRef::PolicyFilter(name) => (
                policy_filter::KIND,
                name,
                cx.access.filters.get(&format!("{ns}/{name}")),
            ),
        };
        match found {
            Some(Ok(v)) => runs.push((
                rule_objects(v).cloned().collect(),
                format!("{ns}/{name}"),
                what,
            )),
            Some(Err(e)) => problems.push(format!("{what} {ns}/{name} is invalid: {e}")),
            None => problems.push(format!("{what} {ns}/{name} not found")),
        }
    }
    runs
}

/// The runs of Policies attached by `targetRefs` (`what` says where):
/// `whole`, all their rules; else their `deny` rules alone.
fn attached_runs(
    cx: &Context<'_>,
    policies: &[&String],
    whole: bool,
    what: &str,
    problems: &mut Vec<String>,
) -> Vec<Run> {
    let mut runs = Vec::new();
    for policy in policies {
        match cx.policies.get(policy.as_str()) {
            Some(Ok(v)) if whole => runs.push((
                rule_objects(v).cloned().collect(),
                policy.to_string(),
                "Policy",
            )),
            Some(Ok(v)) => runs.push((
                rule_objects(v).filter_map(deny_half).collect(),
                policy.to_string(),
                "Policy",
            )),
            Some(Err(e)) => problems.push(format!("Policy {policy}, {what}, is invalid: {e}")),
            None => {}
        }
    }
    runs
}

/// The identity options of the Policies a rule names and of those
/// targeting its route (`namespace/name` each): the assertion when any asks
/// for it, and every claim header any names.
fn identity_options(
    cx: &Context<'_>,
    ns: &str,
    refs: &[AccessRef],
    targeting: &[String],
    o: &mut RouteOptions,
) {
    let mut claims: BTreeMap<String, String> = BTreeMap::new();
    let named = refs.iter().filter_map(|r| match r {
        AccessRef::Policy(name) => Some(format!("{ns}/{name}")),
        AccessRef::PolicyFilter(_) => None,
    });
    for policy in targeting.iter().cloned().chain(named) {
        let Some(id) = cx.access.identity.get(&policy) else {
            continue;
        };
        if id.pass_identity_headers == Some(true) {
            o.pass_identity_headers = Some(true);
        }
        claims.extend(id.claims_headers.clone());
    }
    if !claims.is_empty() {
        o.jwt_claims_headers = Some(crate::settings::ClaimsHeaders(claims.into_iter().collect()));
    }
}

/// The rule objects of a compiled list (a lone object: itself).
fn rule_objects(v: &Value) -> impl Iterator<Item = &Value> {
    match v {
        Value::Array(list) => list.iter(),
        other => std::slice::from_ref(other).iter(),
    }
}

/// A rule object's `deny` action alone, if it has one.
fn deny_half(rule: &Value) -> Option<Value> {
    let deny = rule.get("deny")?;
    Some(serde_json::json!({ "deny": deny }))
}

/// Adds what the catalog found to the Gateway API outcomes: each
/// PolicyFilter's validity and diagnostics, each targeting Policy's targets.
pub(super) fn outcomes(access: &Catalog, out: &mut super::gateway::GatewayInputs) {
    let gateways = out.gateways.iter().map(|(g, _)| format!("Gateway {g}"));
    let routes = out
        .parents
        .iter()
        .filter(|p| p.accepted.is_ok())
        .map(|p| format!("{} {}/{}", p.kind, p.namespace, p.name));
    let served: BTreeSet<String> = gateways.chain(routes).collect();
    out.policy_filters = access.filter_outcomes.clone();
    out.policy_targets = access.target_outcomes(&served);
    out.diagnostics.extend(access.diagnostics.iter().cloned());
}

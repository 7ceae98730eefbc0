//! GRPCRoutes in, routes out. Pure, and built on the HTTPRoute path of
//! [`super::gateway`]: the same attachment to listeners (parentRefs,
//! `allowedRoutes` with the kind `GRPCRoute`, hostname intersection), the
//! same backends (weights, ReferenceGrants from `GRPCRoute`), header
//! conditions, filters and access (Policies by `ExtensionRef`, else the
//! Gateway's default).
//!
//! - A gRPC call is a `POST` to `/<service>/<method>`, so a method match is
//!   a path: `Exact` service and method → the exact path; service alone →
//!   the prefix `/<service>`; method alone → `/<any service>/<method>`;
//!   `RegularExpression` → a pattern over the whole path (an absent part
//!   matches any one path element). A rule without matches takes every call.
//! - Precedence is the GRPCRoute specification's: between GRPCRoute
//!   routes of one host, more characters of an exactly matched service
//!   first, then of an exactly matched method, then more header matches,
//!   then an exact method before a pattern before a whole service, then
//!   the older route ([`crate::model::routing::GrpcPrecedence`]).
//! - Backends speak gRPC: HTTP/2 in clear text with prior knowledge (h2c).
//! - An HTTPRoute and a GRPCRoute meeting on a listener's hostname: the
//!   older keeps it ([`super::gateway`]).

use super::PathSpec;
use super::gateway::{
    self, Attachments, ConditionOutcome, Context, GatewayInputs, MatchSpec, ReadListener, RouteHead,
};
use crate::crd::gateway::{
    GrpcMethodMatch, GrpcRoute, GrpcRouteRule, HttpRouteMatch, HttpRouteRule,
};
use crate::model::rewrite::Pattern;
use crate::model::routing::GrpcPrecedence;

/// Attaches one GRPCRoute: its outcome per parent, and its routes on every
/// listener that accepts it.
pub(super) fn grpc_route(
    cx: &Context<'_>,
    route: &GrpcRoute,
    listeners: &[ReadListener<'_>],
    attached: &mut Attachments,
    out: &mut GatewayInputs,
) {
    let head = RouteHead {
        kind: "GRPCRoute",
        meta: &route.metadata,
        parent_refs: &route.spec.parent_refs,
        hostnames: &route.spec.hostnames,
    };
    let attachment = gateway::attach_parents(cx, &head, listeners, attached);
    let mut resolved: ConditionOutcome = Ok(());
    for (index, rule) in route.spec.rules.iter().enumerate() {
        let built = gateway::rule_routes(
            cx,
            &head,
            index,
            &as_http_rule(rule),
            grpc_matches(rule),
            &attachment.hosts,
        );
        if let Err(e) = built.resolved {
            resolved = resolved.and(Err(e));
        }
        out.routes.extend(built.routes.into_iter().map(|mut r| {
            r.options.h2c_upstream = true;
            r
        }));
    }
    gateway::push_parents(&head, attachment.parents, &resolved, out);
}

/// The parts a GRPCRoute rule shares with an HTTPRoute rule (filters and
/// backendRefs have the same shape); its matches are read by
/// [`grpc_matches`].
fn as_http_rule(rule: &GrpcRouteRule) -> HttpRouteRule {
    HttpRouteRule {
        name: rule.name.clone(),
        matches: Vec::new(),
        filters: rule.filters.clone(),
        backend_refs: rule.backend_refs.clone(),
        timeouts: None,
    }
}

/// The matches of a GRPCRoute rule as paths and header conditions (none:
/// every call).
fn grpc_matches(rule: &GrpcRouteRule) -> Vec<MatchSpec> {
    if rule.matches.is_empty() {
        return vec![MatchSpec {
            path: PathSpec::Prefix("/".into()),
            conditions: None,
            problems: Vec::new(),
            grpc: Some(GrpcPrecedence::default()),
        }];
    }
    rule.matches
        .iter()
        .map(|m| {
            let mut problems = Vec::new();
            let path = match method_path(m.method.as_ref()) {
                Ok(p) => p,
                Err((p, e)) => {
                    problems.push(e);
                    p
                }
            };
            let headers = HttpRouteMatch {
                headers: m.headers.clone(),
                ..HttpRouteMatch::default()
            };
            let conditions = gateway::conditions(&headers, &mut problems);
            MatchSpec {
                path,
                conditions,
                problems,
                grpc: Some(precedence(m.method.as_ref())),
            }
        })
        .collect()
}

/// A method match's rank: the characters of the service and method it
/// names `Exact`ly (a `RegularExpression` names none).
pub fn precedence(m: Option<&GrpcMethodMatch>) -> GrpcPrecedence {
    let exact = m.filter(|m| m.type_.as_deref().unwrap_or("Exact") == "Exact");
    let chars = |name: Option<&String>| name.map_or(0, String::len);
    GrpcPrecedence {
        service: chars(exact.and_then(|m| m.service.as_ref())),
        method: chars(exact.and_then(|m| m.method.as_ref())),
    }
}

/// Any one path element: a service or method a match leaves open.
const ANY_ELEMENT: &str = "[^/]+";

/// The path a method match selects, or why it cannot be read (with the
/// path the denying route then takes: the literal text, so it shadows
/// nothing else).
pub fn method_path(m: Option<&GrpcMethodMatch>) -> Result<PathSpec, (PathSpec, String)> {
    let Some(m) = m else {
        return Ok(PathSpec::Prefix("/".into()));
    };
    let service = m.service.as_deref().filter(|s| !s.is_empty());
    let method = m.method.as_deref().filter(|s| !s.is_empty());
    let literal = PathSpec::Exact(format!(
        "/{}/{}",
        service.unwrap_or("_"),
        method.unwrap_or("_")
    ));
    if service.is_none() && method.is_none() {
        return Err((
            literal,
            "method match names neither service nor method".into(),
        ));
    }
    match m.type_.as_deref().unwrap_or("Exact") {
        "Exact" => exact_path(service, method).map_err(|e| (literal, e)),
        "RegularExpression" => {
            let part = |p: Option<&str>| p.map_or(ANY_ELEMENT.to_string(), |p| format!("(?:{p})"));
            let pattern = format!("/{}/{}", part(service), part(method));
            match Pattern::whole(&pattern) {
                Ok(_) => Ok(PathSpec::Regex(pattern)),
                Err(e) => Err((literal, format!("method match: {e}"))),
            }
        }
        other => Err((
            literal,
            format!("method match type {other:?} is not supported"),
        )),
    }
}

/// An `Exact` method match: names checked (no `/` or other character a
/// gRPC name cannot hold), then the path.
fn exact_path(service: Option<&str>, method: Option<&str>) -> Result<PathSpec, String> {
    for name in [service, method].into_iter().flatten() {
        let ok = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !ok {
            return Err(format!("method match: {name:?} is not a gRPC name"));
        }
    }
    Ok(match (service, method) {
        (Some(s), Some(m)) => PathSpec::Exact(format!("/{s}/{m}")),
        (Some(s), None) => PathSpec::Prefix(format!("/{s}")),
        (None, Some(m)) => PathSpec::Regex(format!("/{ANY_ELEMENT}/{}", regex::escape(m))),
        (None, None) => PathSpec::Prefix("/".into()),
    })
}

#[cfg(test)]
#[path = "grpc_route_tests.rs"]
mod tests;

//! cert-manager's HTTP-01 solver Ingresses. cert-manager answers an ACME
//! HTTP-01 challenge by creating an Ingress (`cm-acme-http-solver-…`,
//! labelled `acme.cert-manager.io/http01-solver: "true"`) whose one rule
//! sends `/.well-known/acme-challenge/<token>` on the domain to its solver
//! pod. The ACME server fetches that URL over plain HTTP, so such an Ingress
//! becomes a public route on the plain-HTTP listener for that exact path
//! only — never on the TLS listener, never a prefix — and only on a host its
//! namespace owns (or may claim, when no namespace does). Anything else in a
//! solver Ingress refuses the whole Ingress.

use super::hosts::{Assignment, Delegations, HostRules};
use crate::model::routing::HostMatch;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use std::collections::HashMap;

/// The label cert-manager puts on its solver Ingresses (and pods and
/// Services), beside `acme.cert-manager.io/http-domain` and
/// `acme.cert-manager.io/http-token` (hashes of the domain and token).
pub const SOLVER_LABEL: &str = "acme.cert-manager.io/http01-solver";

/// The path prefix of an HTTP-01 challenge (RFC 8555 section 8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Whether cert-manager marked the Ingress as an HTTP-01 solver.
pub fn is_solver(ing: &Ingress) -> bool {
    ing.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SOLVER_LABEL))
        .is_some_and(|v| v == "true")
}

/// One challenge answer a solver Ingress asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Challenge {
    /// Lower case, one exact name.
    pub host: String,
    /// `/.well-known/acme-challenge/<token>`.
    pub path: String,
    pub backend: IngressBackend,
}

/// The challenge answers of a solver Ingress, or why it is refused (as a
/// whole: a solver Ingress that asks for anything else is not one).
pub fn challenges(ing: &Ingress) -> Result<Vec<Challenge>, String> {
    let spec = ing.spec.clone().unwrap_or_default();
    if spec.default_backend.is_some() {
        return Err(refused("it sets defaultBackend"));
    }
    if spec.tls.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(refused("it names TLS hosts (spec.tls)"));
    }
    let mut out = Vec::new();
    for rule in spec.rules.iter().flatten() {
        let host = solver_host(rule.host.as_deref().unwrap_or_default())?;
        let paths = rule.http.iter().flat_map(|h| h.paths.iter());
        for p in paths {
            let path = p.path.clone().unwrap_or_default();
            challenge_path(&p.path_type, &path)?;
            if p.backend.service.is_none() {
                return Err(refused(&format!("path {path} has no Service backend")));
            }
            out.push(Challenge {
                host: host.clone(),
                path,
                backend: p.backend.clone(),
            });
        }
    }
    if out.is_empty() {
        return Err(refused("it names no challenge path"));
    }
    Ok(out)
}

fn refused(why: &str) -> String {
    format!(
        "not served: an ACME HTTP-01 solver Ingress (label {SOLVER_LABEL}) may hold only \
         {CHALLENGE_PREFIX}<token> paths (pathType Exact or ImplementationSpecific) on named \
         hosts, and {why}"
    )
}

/// The rule's host: one exact name (an IP address or wildcard challenge is
/// not answered over the shared plain-HTTP listener).
fn solver_host(host: &str) -> Result<String, String> {
    match HostMatch::parse(host) {
        Ok(HostMatch::Exact(h)) if !h.is_empty() && h.parse::<std::net::IpAddr>().is_err() => {
            Ok(h.to_ascii_lowercase())
        }
        _ => Err(refused(&format!(
            "host {host:?} is not one host name (IP addresses and wildcards are not answered)"
        ))),
    }
}

/// `path` is exactly one challenge URL: the prefix and a token of
/// base64url characters (RFC 8555 section 8.3), matched exactly.
fn challenge_path(path_type: &str, path: &str) -> Result<(), String> {
    if !matches!(path_type, "Exact" | "ImplementationSpecific") {
        return Err(refused(&format!("path {path} has pathType {path_type}")));
    }
    let token = path.strip_prefix(CHALLENGE_PREFIX).unwrap_or_default();
    let base64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if token.is_empty() || !token.chars().all(base64url) {
        return Err(refused(&format!("path {path:?} is not one challenge URL")));
    }
    Ok(())
}

/// Whether namespace `ns` may answer a challenge on `host` at `path`: it
/// owns the host, or the owner delegates the path to it (`delegate_paths`),
/// or no namespace owns the host (nor a wildcard covering it) and the
/// administrator's host rules let `ns` claim it. A solver never claims a
/// host itself, so it cannot take one over: the reason is returned
/// otherwise.
pub fn admitted(
    ns: &str,
    c: &Challenge,
    assignment: &Assignment,
    delegations: &HashMap<String, Delegations>,
    rules: &HostRules,
) -> Result<(), String> {
    let wildcard = c
        .host
        .split_once('.')
        .map(|(_, parent)| format!("*.{parent}"));
    let owner = std::iter::once(c.host.clone())
        .chain(wildcard)
        .find_map(|h| assignment.owners.get(&h).map(|o| (h, o)));
    let delegated = |h: &str| delegations.get(h).is_some_and(|d| d.covers(ns, &c.path));
    match owner {
        Some((_, o)) if o.namespace == ns => Ok(()),
        Some((h, _)) if delegated(&h) => Ok(()),
        Some((_, o)) => Err(format!(
            "host {} belongs to {o}; the ACME challenge {} of namespace {ns} is not served there \
             (the owner can delegate it with the annotation delegate_paths: \"{ns}={}\")",
            c.host, c.path, c.path
        )),
        None => match rules.allowed(&c.host) {
            Some(allowed) if !allowed.iter().any(|a| a == ns) => Err(format!(
                "host {} may be claimed only by the namespaces the administrator allows \
                 (--host-namespaces); the ACME challenge of namespace {ns} is not served",
                c.host
            )),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
#[path = "acme_tests.rs"]
mod tests;

//! Host ownership across the two APIs. Pure.
//!
//! HTTPRoutes claim the hosts they serve as Ingresses do
//! ([`super::hosts::assign`]: the oldest claimant's namespace owns a host, a
//! remembered claim holds it). An Ingress of another namespace is refused
//! there as before; an HTTPRoute of another namespace is refused when the
//! owner's namespace serves the host with an Ingress. HTTPRoutes of several
//! namespaces share a host no Ingress of its owner names: the Gateway's
//! `allowedRoutes` already said who may attach.
//!
//! A refused HTTPRoute gets a Warning per host; one that keeps no host on
//! a parent gets `Accepted: False` there with reason [`HOSTNAME_CONFLICT`].

use super::RouteInput;
use super::gateway::GatewayInputs;
use super::hosts::{Assignment, Claimant};
use crate::model::{Diagnostic, ObjectRef, Reason, Severity};
use std::collections::{BTreeMap, BTreeSet};

/// The `Accepted` reason of an HTTPRoute whose every host belongs to
/// another namespace's Ingress.
pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";

/// Adds each HTTPRoute once per host it serves.
pub(super) fn claimants(routes: &[RouteInput], into: &mut BTreeMap<String, Vec<Claimant>>) {
    let mut seen = BTreeSet::new();
    for r in routes.iter().filter(|r| r.source.kind == "HTTPRoute") {
        if !seen.insert((r.host.clone(), r.source.namespace.clone(), &r.source.name)) {
            continue;
        }
        into.entry(r.host.clone()).or_default().push(Claimant {
            kind: "HTTPRoute",
            namespace: r.source.namespace.clone(),
            name: r.source.name.clone(),
            created: r.created,
        });
    }
}

/// Why an HTTPRoute of namespace `ns` may not serve `host`, if it may not:
/// the owner is another namespace that serves it with an Ingress.
fn refused(
    host: &str,
    ns: &str,
    hosts: &Assignment,
    claims: &BTreeMap<String, Vec<Claimant>>,
) -> Option<String> {
    let owner = hosts.owners.get(host)?;
    if owner.namespace == ns {
        return None;
    }
    let by_ingress = claims
        .get(host)
        .into_iter()
        .flatten()
        .any(|c| c.kind == "Ingress" && c.namespace == owner.namespace);
    by_ingress.then(|| {
        let shown = if host.is_empty() {
            "* (any host)"
        } else {
            host
        };
        format!("host {shown} belongs to {owner}; this HTTPRoute is not served there")
    })
}

/// Drops the Gateway routes on hosts another namespace's Ingress holds,
/// with a Warning per route and host, and marks the HTTPRoutes left with
/// no host not accepted.
pub(super) fn admit(
    gateway: &mut GatewayInputs,
    hosts: &Assignment,
    claims: &BTreeMap<String, Vec<Claimant>>,
) {
    let mut lost: BTreeMap<ObjectRef, BTreeSet<String>> = BTreeMap::new();
    let mut kept: BTreeSet<ObjectRef> = BTreeSet::new();
    gateway.routes.retain(|r| {
        let why = (r.source.kind == "HTTPRoute")
            .then(|| refused(&r.host, &r.source.namespace, hosts, claims))
            .flatten();
        match why {
            Some(message) => {
                lost.entry(r.source.clone()).or_default().insert(message);
                false
            }
            None => {
                kept.insert(r.source.clone());
                true
            }
        }
    });
    for (object, messages) in &lost {
        for message in messages {
            gateway.diagnostics.push(Diagnostic {
                severity: Severity::Warning,
                object: object.clone(),
                reason: Reason::HostConflict,
                message: message.clone(),
            });
        }
        if kept.contains(object) {
            continue;
        }
        let message: Vec<&str> = messages.iter().map(String::as_str).collect();
        for p in gateway.parents.iter_mut().filter(|p| {
            p.accepted.is_ok() && p.namespace == object.namespace && p.name == object.name
        }) {
            p.accepted = Err((HOSTNAME_CONFLICT.into(), message.join("; ")));
        }
    }
}

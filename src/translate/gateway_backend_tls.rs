//! BackendTLSPolicy: TLS from the proxy to a backend Service.
//!
//! - A policy targets Services in its own namespace (`targetRefs`, kind
//!   `Service`), all their ports or one by name (`sectionName`). A
//!   backendRef to a targeted port is reached over TLS (`https`
//!   upstreams), with `validation.hostname` as SNI and as the name the
//!   backend's certificate must carry, trusting the CA certificates of the
//!   ConfigMaps `validation.caCertificateRefs` name (key `ca.crt`) or the
//!   public roots (`wellKnownCACertificates: System`). This is the route's
//!   upstream TLS (`tls_custom_ca`, `tls_server_name`), the same the
//!   Ingress annotations set.
//! - Several policies on one target: one naming the port (`sectionName`)
//!   wins over one naming the whole Service; among equals the oldest, then
//!   the first by `namespace/name` (GEP-713). The others are
//!   `Accepted=False` (`Conflicted`) and not used there.
//! - A policy that cannot be used (no valid CA certificate, a CA reference of
//!   another kind, `subjectAltNames`, an unknown `wellKnownCACertificates`)
//!   makes its backends answer 500: never plain text, never unverified.
//! - Status: each policy's `status.ancestors` lists the Gateways whose
//!   routes reach a Service it targets, with `Accepted` and `ResolvedRefs`.

use super::cluster;
use super::gateway::{ConditionOutcome, Context, GatewayObjects, ParentOutcome, created};
use crate::crd::gateway::{BackendTlsPolicy, GROUP, HttpBackendRef, ParentReference};
use crate::model::UpstreamTls;
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::{BTreeSet, HashMap};

/// The most ancestors a policy's status lists (the CRD's limit).
const MAX_ANCESTORS: usize = 16;

/// How the proxy reaches a backend over TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendTls {
    /// PEM CA certificates to trust; none: the public roots.
    pub ca_pem: Option<String>,
    /// SNI, and the name the backend's certificate must carry.
    pub hostname: String,
}

/// What the translation concluded about one BackendTLSPolicy.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendTlsOutcome {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// The Gateways whose routes reach a Service it targets.
    pub ancestors: Vec<ParentReference>,
    /// `Accepted` (`NoValidCACertificate`, `Conflicted`, `Invalid`).
    pub accepted: ConditionOutcome,
    /// `ResolvedRefs` (`InvalidCACertificateRef`, `InvalidKind`).
    pub resolved_refs: ConditionOutcome,
}

/// One policy, read.
struct ReadPolicy<'a> {
    policy: &'a BackendTlsPolicy,
    ns: &'a str,
    accepted: ConditionOutcome,
    resolved_refs: ConditionOutcome,
    tls: Result<BackendTls, String>,
}

/// A policy's target, or a Service port a route reaches: namespace,
/// Service, and port name (none: every port, or a port without a name).
type Target = (String, String, Option<String>);

/// Every BackendTLSPolicy, read, and which one applies to each target.
#[derive(Default)]
pub struct BackendTlsCatalog<'a> {
    policies: Vec<ReadPolicy<'a>>,
    winners: HashMap<Target, usize>,
}

impl<'a> BackendTlsCatalog<'a> {
    /// Reads every policy against the ConfigMaps in `objects`.
    pub fn new(objects: &'a GatewayObjects) -> Self {
        let maps: HashMap<(&str, &str), &ConfigMap> = objects
            .config_maps
            .iter()
            .filter_map(|m| {
                Some((
                    (
                        m.metadata.namespace.as_deref()?,
                        m.metadata.name.as_deref()?,
                    ),
                    m.as_ref(),
                ))
            })
            .collect();
        let mut sorted: Vec<&BackendTlsPolicy> = objects
            .backend_tls_policies
            .iter()
            .map(|p| p.as_ref())
            .collect();
        sorted.sort_by_key(|p| {
            (
                created(&p.metadata),
                cluster::key(&p.metadata.namespace, &p.metadata.name),
            )
        });
        let mut catalog = BackendTlsCatalog::default();
        for p in sorted {
            let ns = p.metadata.namespace.as_deref().unwrap_or("");
            let maps = ConfigMaps {
                by_name: &maps,
                unreadable: objects.config_maps_unreadable,
            };
            let (accepted, resolved_refs, tls) = read_policy(p, ns, &maps);
            let index = catalog.policies.len();
            catalog.policies.push(ReadPolicy {
                policy: p,
                ns,
                accepted,
                resolved_refs,
                tls,
            });
            for target in targets(p, ns) {
                if let Some(&older) = catalog.winners.get(&target) {
                    catalog.policies[index].accepted = Err(conflicted(&catalog.policies[older]));
                    continue;
                }
                catalog.winners.insert(target, index);
            }
        }
        catalog
    }

    /// The TLS to reach port `port` (named `port_name`) of Service
    /// `ns/name` with, if a policy targets it: the policy naming the port
    /// first, else the one naming the Service; `Err` when that policy
    /// cannot be used.
    pub(super) fn lookup(
        &self,
        ns: &str,
        name: &str,
        port_name: Option<&str>,
    ) -> Option<&Result<BackendTls, String>> {
        let key = |section: Option<&str>| {
            (
                ns.to_string(),
                name.to_string(),
                section.map(str::to_string),
            )
        };
        let index = port_name
            .and_then(|p| self.winners.get(&key(Some(p))))
            .or_else(|| self.winners.get(&key(None)))?;
        Some(&self.policies[*index].tls)
    }

    /// Each policy's outcome, its ancestors the Gateways on which a route
    /// is accepted whose backendRefs reach a Service port it targets.
    pub(super) fn outcomes(
        &self,
        cx: &Context<'_>,
        parents: &[ParentOutcome],
    ) -> Vec<BackendTlsOutcome> {
        let reached = reached_services(cx, parents);
        self.policies
            .iter()
            .map(|p| {
                let mut ancestors: BTreeSet<(String, String)> = BTreeSet::new();
                for (ns, svc, port_name) in targets(p.policy, p.ns) {
                    for ((rns, rsvc, rport), gateways) in &reached {
                        let port_matches = port_name.is_none() || port_name == *rport;
                        if *rns == ns && *rsvc == svc && port_matches {
                            ancestors.extend(gateways.iter().cloned());
                        }
                    }
                }
                BackendTlsOutcome {
                    namespace: p.ns.to_string(),
                    name: p.policy.metadata.name.clone().unwrap_or_default(),
                    generation: p.policy.metadata.generation,
                    ancestors: ancestors
                        .into_iter()
                        .take(MAX_ANCESTORS)
                        .map(|(namespace, name)| ParentReference {
                            group: Some(GROUP.into()),
                            kind: Some("Gateway".into()),
                            namespace: Some(namespace),
                            name,
                            ..ParentReference::default()
                        })
                        .collect(),
                    accepted: p.accepted.clone(),
                    resolved_refs: p.resolved_refs.clone(),
                }
            })
            .collect()
    }
}

/// The `Conflicted` reason for a policy that an older one on the same
/// target wins over.
fn conflicted(winner: &ReadPolicy<'_>) -> (String, String) {
    (
        "Conflicted".into(),
        format!(
            "BackendTLSPolicy {}/{} targets the same Service port and takes precedence",
            winner.ns,
            winner.policy.metadata.name.as_deref().unwrap_or("")
        ),
    )
}

/// The Services (and ports) a policy targets; other kinds are not read.
fn targets(p: &BackendTlsPolicy, ns: &str) -> Vec<Target> {
    p.spec
        .target_refs
        .iter()
        .filter(|t| t.group.is_empty() && t.kind == "Service")
        .map(|t| (ns.to_string(), t.name.clone(), t.section_name.clone()))
        .collect()
}

/// The ConfigMaps `caCertificateRefs` may name, by namespace and name.
struct ConfigMaps<'m> {
    by_name: &'m HashMap<(&'m str, &'m str), &'m ConfigMap>,
    /// This controller may not read ConfigMaps (no RBAC for them).
    unreadable: bool,
}

/// A policy's `Accepted` and `ResolvedRefs` outcomes, and the TLS it
/// gives (or why it gives none).
type PolicyReading = (
    ConditionOutcome,
    ConditionOutcome,
    Result<BackendTls, String>,
);

/// A policy's `Accepted`, `ResolvedRefs`, and the TLS it gives (or why it
/// gives none).
fn read_policy(p: &BackendTlsPolicy, ns: &str, maps: &ConfigMaps<'_>) -> PolicyReading {
    let v = &p.spec.validation;
    let invalid = |m: String| (Err(("Invalid".to_string(), m.clone())), Ok(()), Err(m));
    if !v.subject_alt_names.is_empty() {
        return invalid("validation.subjectAltNames is not supported".into());
    }
    let probe = UpstreamTls {
        server_name: Some(v.hostname.clone()),
        ..UpstreamTls::default()
    };
    if v.hostname.is_empty() || probe.server_name().is_err() {
        return invalid(format!(
            "validation.hostname {:?} is not a DNS name",
            v.hostname
        ));
    }
    match (
        v.well_known_ca_certificates.as_deref(),
        v.ca_certificate_refs.is_empty(),
    ) {
        (Some("System"), true) => {
            let tls = BackendTls {
                ca_pem: None,
                hostname: v.hostname.clone(),
            };
            (Ok(()), Ok(()), Ok(tls))
        }
        (Some(other), true) => invalid(format!(
            "validation.wellKnownCACertificates {other:?} is not supported (only System)"
        )),
        (Some(_), false) => {
            invalid("set caCertificateRefs or wellKnownCACertificates, not both".into())
        }
        (None, true) => invalid("validation names no CA certificates".into()),
        (None, false) => ca_refs(p, ns, maps),
    }
}

/// The CA certificates of a policy's `caCertificateRefs`: every valid one
/// is trusted; an invalid one makes `ResolvedRefs=False`; none valid makes
/// `Accepted=False` (`NoValidCACertificate`) and the policy unusable.
fn ca_refs(p: &BackendTlsPolicy, ns: &str, maps: &ConfigMaps<'_>) -> PolicyReading {
    let mut resolved: ConditionOutcome = Ok(());
    let mut pems = Vec::new();
    for r in &p.spec.validation.ca_certificate_refs {
        match ca_ref(r, ns, maps) {
            Ok(pem) => pems.push(pem),
            Err(e) => resolved = resolved.and(Err(e)),
        }
    }
    if pems.is_empty() {
        let message = match &resolved {
            Err((_, m)) => m.clone(),
            Ok(()) => "no CA certificate".into(),
        };
        let accepted = Err(("NoValidCACertificate".to_string(), message.clone()));
        return (accepted, resolved, Err(message));
    }
    let tls = BackendTls {
        ca_pem: Some(pems.join("\n")),
        hostname: p.spec.validation.hostname.clone(),
    };
    (Ok(()), resolved, Ok(tls))
}

/// The PEM of one `caCertificateRefs` entry, or the reason and message
/// why it cannot be used.
fn ca_ref(
    r: &crate::crd::gateway::LocalObjectReference,
    ns: &str,
    maps: &ConfigMaps<'_>,
) -> Result<String, (String, String)> {
    if !r.group.is_empty() || r.kind != "ConfigMap" {
        return Err((
            "InvalidKind".into(),
            format!(
                "caCertificateRefs {}/{} {}: only ConfigMaps are supported",
                r.group, r.kind, r.name
            ),
        ));
    }
    let bad = |why: &str| {
        Err((
            "InvalidCACertificateRef".to_string(),
            format!("caCertificateRefs ConfigMap {ns}/{}: {why}", r.name),
        ))
    };
    if maps.unreadable {
        return bad(
            "this controller may not read ConfigMaps (RBAC; the chart's gatewayApi.backendTlsConfigMaps)",
        );
    }
    let Some(map) = maps.by_name.get(&(ns, r.name.as_str())) else {
        return bad("not found");
    };
    let Some(pem) = map.data.as_ref().and_then(|d| d.get("ca.crt")) else {
        return bad("no key ca.crt");
    };
    let probe = UpstreamTls {
        custom_ca_pem: Some(pem.clone()),
        ..UpstreamTls::default()
    };
    match probe.custom_roots() {
        Ok(_) => Ok(pem.clone()),
        Err(e) => bad(&format!("ca.crt: {e}")),
    }
}

/// For each Service port a route on one of our Gateways reaches (by
/// namespace, name and port name), the Gateways (`namespace`, `name`)
/// those routes are accepted on.
fn reached_services(
    cx: &Context<'_>,
    parents: &[ParentOutcome],
) -> HashMap<Target, BTreeSet<(String, String)>> {
    let mut reached: HashMap<Target, BTreeSet<(String, String)>> = HashMap::new();
    let routes = cx
        .objects
        .http_routes
        .iter()
        .map(|r| ("HTTPRoute", &r.metadata, backend_refs_http(r)))
        .chain(
            cx.objects
                .grpc_routes
                .iter()
                .map(|r| ("GRPCRoute", &r.metadata, backend_refs_grpc(r))),
        );
    for (kind, meta, refs) in routes {
        let ns = meta.namespace.as_deref().unwrap_or("");
        let name = meta.name.as_deref().unwrap_or("");
        let gateways: Vec<(String, String)> = parents
            .iter()
            .filter(|p| p.kind == kind && p.namespace == ns && p.name == name)
            .filter(|p| p.accepted.is_ok())
            .map(|p| {
                let gns = p.parent.namespace.clone().unwrap_or_else(|| ns.to_string());
                (gns, p.parent.name.clone())
            })
            .collect();
        if gateways.is_empty() {
            continue;
        }
        for r in refs {
            let group = r.group.as_deref().unwrap_or("");
            if !group.is_empty() || r.kind.as_deref().unwrap_or("Service") != "Service" {
                continue;
            }
            let target_ns = r.namespace.as_deref().unwrap_or(ns);
            let port_name = r
                .port
                .and_then(|port| port_name(cx, target_ns, &r.name, port))
                .map(str::to_string);
            reached
                .entry((target_ns.to_string(), r.name.clone(), port_name))
                .or_default()
                .extend(gateways.iter().cloned());
        }
    }
    reached
}

fn backend_refs_http(r: &crate::crd::gateway::HttpRoute) -> Vec<&HttpBackendRef> {
    r.spec
        .rules
        .iter()
        .flat_map(|rule| &rule.backend_refs)
        .collect()
}

fn backend_refs_grpc(r: &crate::crd::gateway::GrpcRoute) -> Vec<&HttpBackendRef> {
    r.spec
        .rules
        .iter()
        .flat_map(|rule| &rule.backend_refs)
        .collect()
}

/// The name of Service `ns/name`'s port `port`, if it has one.
pub(super) fn port_name<'a>(
    cx: &'a Context<'_>,
    ns: &str,
    name: &str,
    port: i32,
) -> Option<&'a str> {
    super::gateway::service_port(cx, ns, name, port)?
        .name
        .as_deref()
}

#[cfg(test)]
#[path = "gateway_backend_tls_tests.rs"]
mod tests;

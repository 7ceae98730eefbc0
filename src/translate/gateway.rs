//! Gateway API objects in, route inputs out. Pure, like [`super::cluster`],
//! whose Service, EndpointSlice, Secret and Policy resolution it reuses.
//!
//! - A GatewayClass is ours when its `controllerName` is [`CONTROLLER`]
//!   (or the controller's setting); a Gateway is ours when its class is.
//! - Listeners with protocol `HTTP` or `HTTPS` (TLS terminated, certificates
//!   from `kubernetes.io/tls` Secrets) take routes; others are reported.
//!   Every listener is served on the proxy's own ports.
//! - An HTTPRoute attaches to a listener its `parentRefs` name (by
//!   `sectionName` and `port` when given) that allows its namespace
//!   (`allowedRoutes.namespaces.from`: `Same`, `All`, `Selector`) and kind,
//!   on the hostnames both allow.
//! - Each rule × match × hostname becomes a route; `method`, `headers` and
//!   `queryParams` are conditions compiled into the route table, which
//!   orders routes as the Gateway API orders precedence
//!   ([`crate::model::routing::route_order_of`]).
//! - Access: an `ExtensionRef` filter naming a `jetbridge.dev` `Policy` in
//!   the route's namespace attaches its rules (several combine as
//!   `policy_ref` does). A rule without one denies, unless the Gateway or its
//!   GatewayClass carries the annotation [`PUBLIC_ACCESS_ANNOTATION`]
//!   `"true"`: whoever owns the Gateway decides that routes attached to it
//!   without a Policy are public. Any other value of the annotation makes the
//!   routes deny.
//! - Every problem is a diagnostic on the HTTPRoute; the rule's routes deny.
//! - GRPCRoutes ([`super::grpc_route`]) attach the same way; an HTTPRoute
//!   and a GRPCRoute whose hostnames meet on one listener: the older route
//!   keeps the listener, the other is not accepted there
//!   (`HostnameConflict`).

use super::cluster::{self, BackendGuard, ClusterSettings, Index};
use super::gateway_filters;
use super::gateway_policy::{AccessRef, ParentAccess, rule_access};
pub use super::gateway_policy::{Catalog, PolicyFilterOutcome, TargetOutcome};
use super::{CertInput, PathSpec, RouteInput};
use crate::crd::gateway::{
    GROUP, Gateway, GatewayClass, GrpcRoute, HttpBackendRef, HttpRoute, HttpRouteFilter,
    HttpRouteMatch, HttpRouteRule, LabelSelector, Listener, ParentReference, ReferenceGrant,
    ValueMatch as ApiValueMatch,
};
use crate::model::conditions::{Conditions, ValueMatch};
use crate::model::rewrite::Pattern;
use crate::model::routing::{
    GatewayPort, GatewayPortListeners, HostMatch, Listeners, allocate_proxy_ports,
};
use crate::model::rule_origin::RuleOrigin;
use crate::model::{Diagnostic, ObjectRef, Reason, Severity, Upstream, UpstreamScheme};
use crate::settings::RouteOptions;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::{IngressBackend, IngressServiceBackend, ServiceBackendPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// `spec.controllerName` of the GatewayClasses this controller serves.
pub const CONTROLLER: &str = "jetbridge.dev/gateway-controller";
/// On a Gateway or GatewayClass: `"true"` makes the routes attached to it
/// that name no Policy public (no sign-in).
pub const PUBLIC_ACCESS_ANNOTATION: &str = "jetbridge.dev/allow_public_unauthenticated_access";
/// The group of the `Policy` kind an `ExtensionRef` filter may name.
pub const POLICY_GROUP: &str = "jetbridge.dev";

/// The Gateway API objects the controller's stores hold.
#[derive(Clone, Debug, Default)]
pub struct GatewayObjects {
    pub classes: Vec<Arc<GatewayClass>>,
    pub gateways: Vec<Arc<Gateway>>,
    pub http_routes: Vec<Arc<HttpRoute>>,
    pub grpc_routes: Vec<Arc<GrpcRoute>>,
    pub grants: Vec<Arc<ReferenceGrant>>,
    /// For `allowedRoutes.namespaces.selector`.
    pub namespaces: Vec<Arc<Namespace>>,
    /// Pomerium's PolicyFilters (empty when the API server serves none).
    pub policy_filters: Vec<Arc<crate::crd::policy_filter::PolicyFilter>>,
}

/// A condition of a route on one parent: `Ok`, or the spec's reason and a
/// message.
pub type ConditionOutcome = Result<(), (String, String)>;

/// What the translation concluded about one route on one parent.
#[derive(Clone, Debug, PartialEq)]
pub struct ParentOutcome {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub parent: ParentReference,
    /// `Accepted`.
    pub accepted: ConditionOutcome,
    /// `ResolvedRefs`.
    pub resolved_refs: ConditionOutcome,
}

/// What the translation concluded about one listener.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerOutcome {
    pub namespace: String,
    pub gateway: String,
    pub listener: String,
    /// Where the proxy serves its port for this Gateway (none when it
    /// takes no routes).
    pub gateway_port: Option<GatewayPort>,
    /// Routes attached to it.
    pub attached_routes: i32,
    /// The route kinds (group `gateway.networking.k8s.io`) it takes.
    pub supported_kinds: Vec<String>,
    /// `Accepted` (`UnsupportedProtocol`, …).
    pub accepted: ConditionOutcome,
    /// `ResolvedRefs` (`InvalidCertificateRef`, `RefNotPermitted`).
    pub resolved_refs: ConditionOutcome,
}

/// What the Gateway API objects contribute.
#[derive(Clone, Debug, Default)]
pub struct GatewayInputs {
    pub routes: Vec<RouteInput>,
    pub certificates: Vec<CertInput>,
    pub diagnostics: Vec<Diagnostic>,
    /// Names of the GatewayClasses served.
    pub classes: Vec<String>,
    /// `namespace/name` and generation of every Gateway served.
    pub gateways: Vec<(String, Option<i64>)>,
    pub listeners: Vec<ListenerOutcome>,
    pub parents: Vec<ParentOutcome>,
    /// Each PolicyFilter's `Valid` outcome.
    pub policy_filters: Vec<PolicyFilterOutcome>,
    /// Each Policy with `targetRefs`: the Gateways it attached to.
    pub policy_targets: Vec<TargetOutcome>,
    /// Every Gateway port, served whether routes attach or not, with its
    /// listeners' hostnames.
    pub ports: Vec<GatewayPortListeners>,
}

/// What routes and translation share: the objects, indexes and settings.
pub(super) struct Context<'a> {
    pub objects: &'a GatewayObjects,
    pub settings: &'a ClusterSettings,
    pub idx: &'a Index<'a>,
    pub guard: &'a BackendGuard,
    /// Compiled Policies by `namespace/name`.
    pub policies: &'a HashMap<String, Result<serde_json::Value, String>>,
    /// Compiled PolicyFilters and the Policies targeting Gateways.
    pub access: &'a Catalog,
}

/// One listener of one of our Gateways, read.
pub(super) struct ReadListener<'a> {
    gateway: &'a Gateway,
    ns: &'a str,
    listener: &'a Listener,
    /// Whether it takes routes at all.
    usable: bool,
    /// The route kinds it takes.
    kinds: Vec<String>,
    /// Whether its certificate references resolved (`InvalidCertificateRef`,
    /// `RefNotPermitted`).
    resolved_refs: ConditionOutcome,
    /// The Gateway's public-access default, or why it is unreadable.
    public: Result<bool, String>,
    /// Where the proxy serves this listener's port for this Gateway alone
    /// (none for a listener that takes no routes).
    gateway_port: Option<GatewayPort>,
}

impl ReadListener<'_> {
    /// The proxy listeners this Gateway listener's routes are served on:
    /// the shared plain-HTTP one for `HTTP`, the shared TLS one for
    /// `HTTPS`, and the Gateway's own port.
    fn serves_on(&self) -> Listeners {
        let mut on = match self.listener.protocol.as_str() {
            "HTTP" => Listeners::PLAIN,
            _ => Listeners::TLS,
        };
        on.gateway_ports.extend(self.gateway_port.clone());
        on
    }
}

/// Gives every usable listener its Gateway port: one proxy port per
/// Gateway and listener port, older Gateways first
/// ([`allocate_proxy_ports`]).
fn assign_gateway_ports(listeners: &mut [ReadListener<'_>]) {
    let mut order: Vec<(i64, String, u16, usize)> = listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.usable)
        .filter_map(|(i, l)| {
            let port = u16::try_from(l.listener.port).ok().filter(|p| *p > 0)?;
            Some((created(&l.gateway.metadata), listener_gateway(l), port, i))
        })
        .collect();
    order.sort();
    let keys: Vec<(String, u16)> = order.iter().map(|o| (o.1.clone(), o.2)).collect();
    for ((_, gateway, port, i), proxy_port) in order.into_iter().zip(allocate_proxy_ports(&keys)) {
        let tls = listeners[i].listener.protocol == "HTTPS";
        listeners[i].gateway_port = Some(GatewayPort {
            proxy_port,
            gateway,
            port,
            tls,
        });
    }
}

/// Each Gateway port the usable listeners name, with their hostnames (a
/// listener's hostname that does not parse names nothing).
fn declared_ports(listeners: &[ReadListener<'_>]) -> Vec<GatewayPortListeners> {
    let mut ports: BTreeMap<u16, GatewayPortListeners> = BTreeMap::new();
    for l in listeners {
        let Some(port) = &l.gateway_port else {
            continue;
        };
        let entry = ports
            .entry(port.proxy_port)
            .or_insert_with(|| GatewayPortListeners {
                port: port.clone(),
                hostnames: Vec::new(),
            });
        let host = l.listener.hostname.as_deref().map(HostMatch::parse_gateway);
        if let Some(Ok(h)) = host
            && !entry.hostnames.contains(&h)
        {
            entry.hostnames.push(h);
        }
    }
    ports.into_values().collect()
}

/// Whether a more specific listener of the same Gateway port than `l`
/// names every name of `host` (`""`: any): then those requests are that
/// listener's alone, and `l`'s routes do not serve `host` (listener
/// isolation). Names of `host` under a more specific listener that does not
/// cover all of it are kept from `l`'s routes by that listener's claim in
/// the port's route table ([`crate::model::routing::RouteTable::claim`]).
fn shadowed(l: &ReadListener<'_>, host: &str, listeners: &[ReadListener<'_>]) -> bool {
    let Some(port) = &l.gateway_port else {
        return false;
    };
    let mine = l.listener.hostname.as_deref().map(str::to_ascii_lowercase);
    listeners.iter().any(|other| {
        let Some(theirs) = other
            .listener
            .hostname
            .as_deref()
            .map(str::to_ascii_lowercase)
        else {
            return false;
        };
        let narrower = match &mine {
            None => true,
            Some(mine) => covered(&theirs, mine),
        };
        other.gateway_port.as_ref().map(|p| p.proxy_port) == Some(port.proxy_port)
            && narrower
            && !host.is_empty()
            && (host == theirs || covered(host, &theirs))
    })
}

/// Reads the Gateway API objects into routes, certificates and outcomes.
pub(super) fn from_gateway(cx: &Context<'_>) -> GatewayInputs {
    let mut out = GatewayInputs::default();
    let classes: BTreeMap<&str, &GatewayClass> = cx
        .objects
        .classes
        .iter()
        .filter(|c| c.spec.controller_name == cx.settings.gateway_controller)
        .filter_map(|c| Some((c.metadata.name.as_deref()?, c.as_ref())))
        .collect();
    out.classes = classes.keys().map(|k| k.to_string()).collect();
    let mut gateways: Vec<&Gateway> = cx
        .objects
        .gateways
        .iter()
        .map(|g| g.as_ref())
        .filter(|g| classes.contains_key(g.spec.gateway_class_name.as_str()))
        .collect();
    gateways.sort_by_key(|g| cluster::key(&g.metadata.namespace, &g.metadata.name));
    let mut listeners = Vec::new();
    for g in gateways {
        let class = classes.get(g.spec.gateway_class_name.as_str()).copied();
        out.gateways.push((
            cluster::key(&g.metadata.namespace, &g.metadata.name),
            g.metadata.generation,
        ));
        listeners.extend(read_gateway(cx, g, class, &mut out));
    }
    assign_gateway_ports(&mut listeners);
    out.ports = declared_ports(&listeners);
    let mut attached = Attachments::default();
    for r in routes_by_age(cx.objects) {
        match r {
            AnyRoute::Http(r) => http_route(cx, r, &listeners, &mut attached, &mut out),
            AnyRoute::Grpc(r) => {
                super::grpc_route::grpc_route(cx, r, &listeners, &mut attached, &mut out)
            }
        }
    }
    for l in &listeners {
        out.listeners.push(listener_outcome(l, &attached.counts));
    }
    out
}

/// A route of either kind.
enum AnyRoute<'a> {
    Http(&'a HttpRoute),
    Grpc(&'a GrpcRoute),
}

/// Every route, oldest first (then by kind and `namespace/name`): the
/// order in which they claim hostnames on listeners.
fn routes_by_age(objects: &GatewayObjects) -> Vec<AnyRoute<'_>> {
    let mut routes: Vec<(i64, u8, String, AnyRoute<'_>)> = Vec::new();
    for r in &objects.http_routes {
        let m = &r.metadata;
        let key = cluster::key(&m.namespace, &m.name);
        routes.push((created(m), 0, key, AnyRoute::Http(r)));
    }
    for r in &objects.grpc_routes {
        let m = &r.metadata;
        let key = cluster::key(&m.namespace, &m.name);
        routes.push((created(m), 1, key, AnyRoute::Grpc(r)));
    }
    routes.sort_by(|a, b| (a.0, &a.2, a.1).cmp(&(b.0, &b.2, b.1)));
    routes.into_iter().map(|r| r.3).collect()
}

/// The listeners of one Gateway, and the certificates of its HTTPS ones.
fn read_gateway<'a>(
    cx: &Context<'_>,
    g: &'a Gateway,
    class: Option<&GatewayClass>,
    out: &mut GatewayInputs,
) -> Vec<ReadListener<'a>> {
    let ns = g.metadata.namespace.as_deref().unwrap_or("");
    let public = public_access(&g.metadata).and_then(|gw| match gw {
        Some(v) => Ok(v),
        None => Ok(class
            .map(|c| public_access(&c.metadata))
            .transpose()?
            .flatten()
            .unwrap_or(false)),
    });
    let mut read = Vec::new();
    for l in &g.spec.listeners {
        let usable = matches!(l.protocol.as_str(), "HTTP" | "HTTPS");
        let (kinds, mut resolved_refs) = listener_kinds(l, usable);
        if l.protocol == "HTTPS"
            && let Err((reason, message)) = listener_certificates(cx, g, l, out)
        {
            out.diagnostics.push(gateway_diagnostic(g, message.clone()));
            resolved_refs = resolved_refs.and(Err((reason, message)));
        }
        read.push(ReadListener {
            gateway: g,
            ns,
            listener: l,
            usable,
            kinds,
            resolved_refs,
            public: public.clone(),
            gateway_port: None,
        });
    }
    read
}

/// The route kinds a listener of a supported protocol takes.
const ROUTE_KINDS: [&str; 2] = ["HTTPRoute", "GRPCRoute"];

/// The route kinds a listener takes: those of `allowedRoutes.kinds` that
/// are supported (all supported ones when it names none; none when the
/// protocol is not supported), and `InvalidRouteKinds` when it names one
/// that is not.
fn listener_kinds(l: &Listener, usable: bool) -> (Vec<String>, ConditionOutcome) {
    if !usable {
        return (Vec::new(), Ok(()));
    }
    let named = l.allowed_routes.as_ref().map(|a| a.kinds.as_slice());
    let Some(named) = named.filter(|k| !k.is_empty()) else {
        return (ROUTE_KINDS.map(String::from).to_vec(), Ok(()));
    };
    let (mut kinds, mut invalid) = (Vec::new(), Vec::new());
    for k in named {
        let ours = k.group.as_deref().unwrap_or(GROUP) == GROUP;
        match ours && ROUTE_KINDS.contains(&k.kind.as_str()) {
            true if !kinds.contains(&k.kind) => kinds.push(k.kind.clone()),
            true => {}
            false => invalid.push(format!(
                "{}/{}",
                k.group.as_deref().unwrap_or(GROUP),
                k.kind
            )),
        }
    }
    let resolved = match invalid.is_empty() {
        true => Ok(()),
        false => Err((
            "InvalidRouteKinds".to_string(),
            format!("route kinds not supported: {}", invalid.join(", ")),
        )),
    };
    (kinds, resolved)
}

/// The annotation [`PUBLIC_ACCESS_ANNOTATION`] of an object: unset, `true`
/// or `false`; anything else is an error.
fn public_access(meta: &ObjectMeta) -> Result<Option<bool>, String> {
    match meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(PUBLIC_ACCESS_ANNOTATION))
        .map(|v| v.trim())
    {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(format!(
            "annotation {PUBLIC_ACCESS_ANNOTATION} on {} must be \"true\" or \"false\"",
            meta.name.as_deref().unwrap_or("")
        )),
    }
}

fn gateway_diagnostic(g: &Gateway, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Warning,
        object: ObjectRef::kube(
            "Gateway",
            g.metadata.namespace.as_deref().unwrap_or(""),
            g.metadata.name.as_deref().unwrap_or(""),
        ),
        reason: Reason::InvalidCertificate,
        message,
    }
}

/// The TLS Secrets of an HTTPS listener, bound to its hostname (a listener
/// without hostname: every name the certificate holds). A reference that
/// is not a Secret, names a missing or unusable one, or crosses namespaces
/// without a ReferenceGrant is the listener's `ResolvedRefs` reason
/// (`InvalidCertificateRef`, `RefNotPermitted`) and message.
fn listener_certificates(
    cx: &Context<'_>,
    g: &Gateway,
    l: &Listener,
    out: &mut GatewayInputs,
) -> ConditionOutcome {
    let ns = g.metadata.namespace.as_deref().unwrap_or("");
    let invalid = |m: String| ("InvalidCertificateRef".to_string(), m);
    let refs = l
        .tls
        .as_ref()
        .map(|t| t.certificate_refs.as_slice())
        .unwrap_or(&[]);
    if refs.is_empty() {
        return Err(invalid(format!(
            "listener {}: HTTPS without certificateRefs",
            l.name
        )));
    }
    let mut certificates = Vec::new();
    for r in refs {
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Secret");
        if !group.is_empty() || kind != "Secret" {
            return Err(invalid(format!(
                "listener {}: certificateRef {group}/{kind} is not a Secret",
                l.name
            )));
        }
        let target_ns = r.namespace.as_deref().unwrap_or(ns);
        if target_ns != ns && !granted(cx, ("Gateway", ns), ("", "Secret", target_ns, &r.name)) {
            return Err((
                "RefNotPermitted".into(),
                format!(
                    "listener {}: Secret {target_ns}/{} is in another namespace and no ReferenceGrant allows it",
                    l.name, r.name
                ),
            ));
        }
        let mut cert = cluster::tls_secret(cx.idx, target_ns, &r.name)
            .map_err(|e| invalid(format!("listener {}: {e}", l.name)))?;
        super::load_certified_key(&cert).map_err(|e| {
            invalid(format!(
                "listener {}: Secret {target_ns}/{}: {e}",
                l.name, r.name
            ))
        })?;
        cert.source = ObjectRef::kube("Gateway", ns, g.metadata.name.as_deref().unwrap_or(""));
        cert.hosts = l.hostname.iter().cloned().collect();
        certificates.push(cert);
    }
    out.certificates.extend(certificates);
    Ok(())
}

/// Whether a ReferenceGrant in the target's namespace lets `from` (kind,
/// namespace; group `gateway.networking.k8s.io`) refer to `to` (group, kind,
/// namespace, name).
fn granted(cx: &Context<'_>, from: (&str, &str), to: (&str, &str, &str, &str)) -> bool {
    let (from_kind, from_ns) = from;
    let (to_group, to_kind, to_ns, to_name) = to;
    cx.objects
        .grants
        .iter()
        .filter(|g| g.metadata.namespace.as_deref() == Some(to_ns))
        .any(|g| {
            g.spec
                .from
                .iter()
                .any(|f| f.group == GROUP && f.kind == from_kind && f.namespace == from_ns)
                && g.spec.to.iter().any(|t| {
                    t.group == to_group
                        && t.kind == to_kind
                        && t.name.as_deref().is_none_or(|n| n == to_name)
                })
        })
}

/// A listener's key in the attachment count: namespace, Gateway, listener.
pub(super) type ListenerKey = (String, String, String);

fn listener_key(l: &ReadListener<'_>) -> ListenerKey {
    (
        l.ns.to_string(),
        l.gateway.metadata.name.clone().unwrap_or_default(),
        l.listener.name.clone(),
    )
}

/// The conditions of one listener after every route was attached.
fn listener_outcome(
    l: &ReadListener<'_>,
    attached: &BTreeMap<ListenerKey, i32>,
) -> ListenerOutcome {
    let key = listener_key(l);
    ListenerOutcome {
        attached_routes: attached.get(&key).copied().unwrap_or(0),
        gateway_port: l.gateway_port.clone(),
        supported_kinds: l.kinds.clone(),
        namespace: key.0,
        gateway: key.1,
        listener: key.2,
        accepted: match l.usable {
            true => Ok(()),
            false => Err((
                "UnsupportedProtocol".into(),
                format!(
                    "protocol {} is not supported (HTTP and HTTPS are)",
                    l.listener.protocol
                ),
            )),
        },
        resolved_refs: l.resolved_refs.clone(),
    }
}

/// The listeners of `gateways` one parentRef of the route attaches to, with
/// the hostnames they allow, or the reason it attaches to none.
type Attached<'l, 'g> = Result<Vec<(&'l ReadListener<'g>, Vec<String>)>, (String, String)>;

fn attach<'l, 'g>(
    cx: &Context<'_>,
    route: &RouteHead<'_>,
    parent: &ParentReference,
    listeners: &'l [ReadListener<'g>],
) -> Option<Attached<'l, 'g>> {
    let route_ns = route.namespace();
    if parent.group.as_deref().unwrap_or(GROUP) != GROUP
        || parent.kind.as_deref().unwrap_or("Gateway") != "Gateway"
    {
        return None;
    }
    let parent_ns = parent.namespace.as_deref().unwrap_or(route_ns);
    let of_gateway: Vec<&ReadListener<'_>> = listeners
        .iter()
        .filter(|l| l.ns == parent_ns && l.gateway.metadata.name.as_deref() == Some(&parent.name))
        .collect();
    if of_gateway.is_empty() {
        // Not one of our Gateways: another controller's parent.
        return None;
    }
    let named: Vec<&ReadListener<'_>> = of_gateway
        .into_iter()
        .filter(|l| {
            parent
                .section_name
                .as_deref()
                .is_none_or(|s| s == l.listener.name)
        })
        .filter(|l| parent.port.is_none_or(|p| p == l.listener.port))
        .collect();
    if named.is_empty() {
        return Some(Err((
            "NoMatchingParent".into(),
            "no listener has this sectionName and port".into(),
        )));
    }
    let allowed: Vec<&ReadListener<'_>> = named
        .into_iter()
        .filter(|l| l.usable && allows(cx, l, route.kind, route_ns))
        .collect();
    if allowed.is_empty() {
        return Some(Err((
            "NotAllowedByListeners".into(),
            format!("no listener allows {}s from this namespace", route.kind),
        )));
    }
    let with_hosts: Vec<_> = allowed
        .into_iter()
        .filter_map(|l| {
            let hosts = intersect(l.listener.hostname.as_deref(), route.hostnames);
            (!hosts.is_empty()).then_some((l, hosts))
        })
        .collect();
    if with_hosts.is_empty() {
        return Some(Err((
            "NoMatchingListenerHostname".into(),
            "no hostname of the route is allowed by a listener".into(),
        )));
    }
    Some(Ok(with_hosts))
}

/// Whether the listener takes routes of `kind` (`HTTPRoute`, `GRPCRoute`)
/// from `route_ns`.
fn allows(cx: &Context<'_>, l: &ReadListener<'_>, kind: &str, route_ns: &str) -> bool {
    let allowed = l.listener.allowed_routes.as_ref();
    let kind_ok = l.kinds.iter().any(|k| k == kind);
    let namespaces = allowed.and_then(|a| a.namespaces.as_ref());
    let ns_ok = match namespaces.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Same" => route_ns == l.ns,
        "Selector" => namespaces
            .and_then(|n| n.selector.as_ref())
            .is_some_and(|s| namespace_selected(cx, s, route_ns)),
        _ => false,
    };
    kind_ok && ns_ok
}

/// Whether the namespace's labels satisfy the selector (an unknown
/// namespace or operator: no).
fn namespace_selected(cx: &Context<'_>, s: &LabelSelector, ns: &str) -> bool {
    let Some(namespace) = cx
        .objects
        .namespaces
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(ns))
    else {
        return false;
    };
    let empty = BTreeMap::new();
    let labels = namespace.metadata.labels.as_ref().unwrap_or(&empty);
    label_selector_matches(s, labels)
}

/// A Kubernetes label selector over `labels`.
pub fn label_selector_matches(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && s.match_expressions.iter().all(|e| {
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| e.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !e.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// The hostnames a route serves on a listener: the route's hostnames the
/// listener's allows (a wildcard on either side narrowed to the more
/// precise name), all of the route's when the listener names none, the
/// listener's when the route names none; `""` means any host.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let mut out = BTreeSet::new();
    match (listener, route.is_empty()) {
        (None, true) => {
            out.insert(String::new());
        }
        (None, false) => out.extend(route.iter().map(|h| h.to_ascii_lowercase())),
        (Some(l), true) => {
            out.insert(l.to_ascii_lowercase());
        }
        (Some(l), false) => {
            let l = l.to_ascii_lowercase();
            for r in route.iter().map(|h| h.to_ascii_lowercase()) {
                if r == l || covered(&r, &l) {
                    out.insert(r);
                } else if covered(&l, &r) {
                    out.insert(l.clone());
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Whether `host` (possibly a wildcard itself) lies under the wildcard
/// `pattern` (`*.example.com` covers names with one or more labels before
/// `example.com`).
fn covered(host: &str, pattern: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    host.len() > suffix.len() && host.ends_with(suffix) && host != pattern
}

pub(super) fn created(m: &ObjectMeta) -> i64 {
    m.creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0)
}

/// What attachment reads of a route of either kind.
pub(super) struct RouteHead<'a> {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: &'static str,
    pub meta: &'a ObjectMeta,
    pub parent_refs: &'a [ParentReference],
    pub hostnames: &'a [String],
}

impl RouteHead<'_> {
    fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or("")
    }

    /// The route as the object its diagnostics name.
    pub(super) fn object(&self) -> ObjectRef {
        ObjectRef::kube(self.kind, self.namespace(), self.name())
    }
}

/// What the routes attached so far hold: each listener's count of routes,
/// and the hostnames each route kind serves on it (oldest route first).
#[derive(Default)]
pub(super) struct Attachments {
    counts: BTreeMap<ListenerKey, i32>,
    /// Per listener: hostname (`""`: any), route kind, `namespace/name`.
    claims: BTreeMap<ListenerKey, Vec<(String, &'static str, String)>>,
}

impl Attachments {
    /// Keeps the listeners on which no route of the other kind already
    /// serves a hostname that meets one of the route's, and records the
    /// route there; none kept: `HostnameConflict`.
    fn claim<'l, 'g>(
        &mut self,
        route: &RouteHead<'_>,
        found: Vec<(&'l ReadListener<'g>, Vec<String>)>,
    ) -> Attached<'l, 'g> {
        let me = format!("{}/{}", route.namespace(), route.name());
        let mut conflicts = Vec::new();
        let mut kept = Vec::new();
        for (l, hosts) in found {
            let key = listener_key(l);
            let claims = self.claims.entry(key).or_default();
            let rival = claims.iter().find(|(h, kind, _)| {
                *kind != route.kind && hosts.iter().any(|mine| hosts_meet(h, mine))
            });
            if let Some((h, kind, name)) = rival {
                conflicts.push(format!(
                    "listener {}: hostname {:?} is served by the older {kind} {name}",
                    l.listener.name, h
                ));
                continue;
            }
            claims.extend(hosts.iter().map(|h| (h.clone(), route.kind, me.clone())));
            *self.counts.entry(listener_key(l)).or_default() += 1;
            kept.push((l, hosts));
        }
        match kept.is_empty() {
            true => Err(("HostnameConflict".into(), conflicts.join("; "))),
            false => Ok(kept),
        }
    }
}

/// Whether two hostnames a listener serves (`""`: any) share a name.
fn hosts_meet(a: &str, b: &str) -> bool {
    a.is_empty() || b.is_empty() || !intersect(Some(a), &[b.to_string()]).is_empty()
}

/// Where a route attached: each hostname with its [`HostAttachment`], and
/// the outcome on each parentRef (namespace filled in).
#[derive(Default)]
pub(super) struct Attachment {
    pub hosts: BTreeMap<String, HostAttachment>,
    pub parents: Vec<(ParentReference, ConditionOutcome)>,
}

/// Attaches a route of either kind to the listeners its parentRefs name.
pub(super) fn attach_parents(
    cx: &Context<'_>,
    route: &RouteHead<'_>,
    listeners: &[ReadListener<'_>],
    attached: &mut Attachments,
) -> Attachment {
    let mut out = Attachment::default();
    for parent in route.parent_refs {
        let Some(attachment) = attach(cx, route, parent, listeners) else {
            continue;
        };
        let accepted = attachment
            .and_then(|found| attached.claim(route, found))
            .map(|found| {
                for (l, hs) in found {
                    for h in hs.into_iter().filter(|h| !shadowed(l, h, listeners)) {
                        let merged = match out.hosts.remove(&h) {
                            None => HostAttachment::of(l),
                            Some(before) => before.and(l),
                        };
                        out.hosts.insert(h, merged);
                    }
                }
            });
        let mut parent = parent.clone();
        parent.namespace = Some(
            parent
                .namespace
                .clone()
                .unwrap_or_else(|| route.namespace().to_string()),
        );
        out.parents.push((parent, accepted));
    }
    out
}

/// Records a route's outcome on each of its parents.
pub(super) fn push_parents(
    route: &RouteHead<'_>,
    parents: Vec<(ParentReference, ConditionOutcome)>,
    resolved: &ConditionOutcome,
    out: &mut GatewayInputs,
) {
    for (parent, accepted) in parents {
        out.parents.push(ParentOutcome {
            kind: route.kind.to_string(),
            namespace: route.namespace().to_string(),
            name: route.name().to_string(),
            generation: route.meta.generation,
            parent,
            accepted,
            resolved_refs: resolved.clone(),
        });
    }
}

/// Attaches one HTTPRoute: its outcome per parent, and its routes on every
/// listener that accepts it.
fn http_route(
    cx: &Context<'_>,
    route: &HttpRoute,
    listeners: &[ReadListener<'_>],
    attached: &mut Attachments,
    out: &mut GatewayInputs,
) {
    let head = RouteHead {
        kind: "HTTPRoute",
        meta: &route.metadata,
        parent_refs: &route.spec.parent_refs,
        hostnames: &route.spec.hostnames,
    };
    let attachment = attach_parents(cx, &head, listeners, attached);
    let mut resolved: ConditionOutcome = Ok(());
    for (index, rule) in route.spec.rules.iter().enumerate() {
        let matches = http_matches(rule);
        let built = rule_routes(cx, &head, index, rule, matches, &attachment.hosts);
        if let Err(e) = built.resolved {
            resolved = resolved.and(Err(e));
        }
        out.routes.extend(built.routes);
    }
    push_parents(&head, attachment.parents, &resolved, out);
}

/// How a route's hostname is attached: its public-access default and the
/// proxy listeners it is served on, merged over every listener it attaches
/// to.
#[derive(Clone, Debug)]
pub(super) struct HostAttachment {
    access: ParentAccess,
    listeners: Listeners,
}

impl HostAttachment {
    fn of(l: &ReadListener<'_>) -> HostAttachment {
        HostAttachment {
            access: ParentAccess::new(l.public.clone(), listener_gateway(l)),
            listeners: l.serves_on(),
        }
    }

    /// Attached through one more listener: public only if every one says
    /// so ([`ParentAccess::merge`]); served on the proxy listeners of all
    /// of them.
    fn and(self, l: &ReadListener<'_>) -> HostAttachment {
        let access = ParentAccess::new(l.public.clone(), listener_gateway(l));
        HostAttachment {
            access: self.access.merge(access),
            listeners: self.listeners.union(l.serves_on()),
        }
    }
}

/// The `namespace/name` of the Gateway a listener belongs to.
fn listener_gateway(l: &ReadListener<'_>) -> String {
    cluster::key(&l.gateway.metadata.namespace, &l.gateway.metadata.name)
}

/// The routes of one rule, and whether its references resolved.
pub(super) struct RuleRoutes {
    pub routes: Vec<RouteInput>,
    pub resolved: ConditionOutcome,
}

/// One match of a rule as the route table takes it: the path, the other
/// conditions, and what could not be read.
#[derive(Clone, Debug)]
pub(super) struct MatchSpec {
    pub path: PathSpec,
    pub conditions: Option<Arc<Conditions>>,
    pub problems: Vec<String>,
    /// A GRPCRoute match's rank.
    pub grpc: Option<crate::model::routing::GrpcPrecedence>,
}

/// The matches of an HTTPRoute rule (none: every request).
fn http_matches(rule: &HttpRouteRule) -> Vec<MatchSpec> {
    let default_match = [HttpRouteMatch::default()];
    let matches: &[HttpRouteMatch] = match rule.matches.is_empty() {
        true => &default_match,
        false => &rule.matches,
    };
    matches
        .iter()
        .map(|m| {
            let mut problems = Vec::new();
            let path = path_spec(m, &mut problems);
            let conditions = conditions(m, &mut problems);
            MatchSpec {
                path,
                conditions,
                problems,
                grpc: None,
            }
        })
        .collect()
}

/// Builds one rule's routes: one per match and hostname, sharing options,
/// backends and problems.
pub(super) fn rule_routes(
    cx: &Context<'_>,
    route: &RouteHead<'_>,
    index: usize,
    rule: &HttpRouteRule,
    matches: Vec<MatchSpec>,
    hosts: &BTreeMap<String, HostAttachment>,
) -> RuleRoutes {
    let ns = route.namespace();
    let object = route.object();
    let mut problems = Vec::new();
    let (backends, resolved, websocket) =
        rule_backends(cx, route.kind, ns, &rule.backend_refs, &mut problems);
    let mut routes = Vec::new();
    for (m_index, m) in matches.into_iter().enumerate() {
        let mut p = problems.clone();
        p.extend(m.problems);
        let prefix = matches!(m.path, PathSpec::Prefix(_));
        for (host, attachment) in hosts {
            let mut p = p.clone();
            let (mut options, policy_origins) =
                rule_options(cx, route, rule, prefix, &attachment.access, &mut p);
            // The Gateway API forwards the client's Host unless a filter
            // rewrites it.
            options.preserve_host_header = true;
            // A backend whose port declares WebSocket accepts upgrades.
            options.allow_websockets |= websocket;
            let id = format!("{}/r{index:03}/m{m_index:03}/{host}", route_id(&object));
            routes.push(RouteInput {
                created: created(route.meta),
                backends: backends.clone(),
                options,
                conditions: m.conditions.clone(),
                grpc: m.grpc,
                listeners: attachment.listeners.clone(),
                contract: crate::model::Contract::GatewayApi,
                policy_origins,
                problems: p
                    .into_iter()
                    .map(|m| Diagnostic::invalid_route(&object, format!("rule {index}: {m}")))
                    .collect(),
                ..RouteInput::new(id, object.clone(), host.clone(), m.path.clone())
            });
        }
    }
    RuleRoutes { routes, resolved }
}

/// The id prefix of a route's entries: `namespace/name` for an HTTPRoute,
/// `grpc:namespace/name` for a GRPCRoute (the two may share a name).
fn route_id(o: &ObjectRef) -> String {
    match o.kind.as_str() {
        "GRPCRoute" => format!("grpc:{}/{}", o.namespace, o.name),
        _ => format!("{}/{}", o.namespace, o.name),
    }
}

/// The path of a match (`PathPrefix /` when absent).
fn path_spec(m: &HttpRouteMatch, problems: &mut Vec<String>) -> PathSpec {
    let Some(path) = &m.path else {
        return PathSpec::Prefix("/".into());
    };
    let value = path.value.clone().unwrap_or_else(|| "/".into());
    match path.type_.as_deref().unwrap_or("PathPrefix") {
        "Exact" => PathSpec::Exact(value),
        "PathPrefix" => PathSpec::Prefix(value),
        "RegularExpression" => PathSpec::Regex(value),
        other => {
            problems.push(format!("path match type {other:?} is not supported"));
            PathSpec::Prefix(value)
        }
    }
}

/// The method, header and query conditions of a match (none: `None`).
pub(super) fn conditions(
    m: &HttpRouteMatch,
    problems: &mut Vec<String>,
) -> Option<Arc<Conditions>> {
    let mut c = Conditions::default();
    if let Some(method) = &m.method {
        match http::Method::from_bytes(method.as_bytes()) {
            Ok(v) => c.method = Some(v),
            Err(_) => problems.push(format!("method {method:?} is not a method")),
        }
    }
    let mut seen = BTreeSet::new();
    for h in &m.headers {
        // Only the first of several matches on one name counts.
        if !seen.insert(h.name.to_ascii_lowercase()) {
            continue;
        }
        match (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            value_match(h),
        ) {
            (Ok(n), Ok(v)) => c.headers.push((n, v)),
            (Err(_), _) => problems.push(format!("header match: invalid name {:?}", h.name)),
            (_, Err(e)) => problems.push(format!("header match {}: {e}", h.name)),
        }
    }
    let mut seen = BTreeSet::new();
    for q in &m.query_params {
        if !seen.insert(q.name.clone()) {
            continue;
        }
        match value_match(q) {
            Ok(v) => c.query.push((q.name.clone(), v)),
            Err(e) => problems.push(format!("query parameter match {}: {e}", q.name)),
        }
    }
    (!c.is_empty()).then(|| Arc::new(c))
}

fn value_match(m: &ApiValueMatch) -> Result<ValueMatch, String> {
    match m.type_.as_deref().unwrap_or("Exact") {
        "Exact" => Ok(ValueMatch::Exact(m.value.clone())),
        "RegularExpression" => Pattern::whole(&m.value)
            .map(ValueMatch::Regex)
            .map_err(|e| e.to_string()),
        other => Err(format!("match type {other:?} is not supported")),
    }
}

/// The route settings of a rule: its filters as the settings the proxy
/// already applies, and its access (Policies, else the Gateway's default),
/// with where each run of its policy's rule objects comes from.
fn rule_options(
    cx: &Context<'_>,
    route: &RouteHead<'_>,
    rule: &HttpRouteRule,
    prefix_match: bool,
    parent: &ParentAccess,
    problems: &mut Vec<String>,
) -> (RouteOptions, Vec<RuleOrigin>) {
    let (kind, ns) = (route.kind, route.namespace());
    let mut o = RouteOptions::default();
    let mut policies = Vec::new();
    let backend_filters = gateway_filters::backend_filters(rule).unwrap_or_else(|e| {
        problems.push(e);
        &[]
    });
    if let Err(e) = gateway_filters::timeouts(rule.timeouts.as_ref(), &mut o) {
        problems.push(e);
    }
    if let Err(e) = mirror(
        cx,
        kind,
        ns,
        rule.filters.iter().chain(backend_filters),
        &mut o,
    ) {
        problems.push(e);
    }
    for f in rule.filters.iter().chain(backend_filters) {
        let applied = match f.type_.as_str() {
            "ExtensionRef" => extension_policy(f).map(|r| policies.push(r)),
            _ => gateway_filters::apply_filter(f, prefix_match, &mut o),
        };
        if let Err(e) = applied {
            problems.push(e);
        }
    }
    let target = format!("{kind} {ns}/{}", route.name());
    let origins = rule_access(cx, ns, &target, &policies, parent, &mut o, problems);
    (o, origins)
}

/// The Policy an `ExtensionRef` filter names, or why it names none.
fn extension_policy(f: &HttpRouteFilter) -> Result<AccessRef, String> {
    let r = f
        .extension_ref
        .as_ref()
        .ok_or_else(|| format!("filter {}: its settings are missing", f.type_))?;
    super::gateway_policy::extension_ref(r)
}

/// The endpoints of the rule's `RequestMirror` backend as `mirror_to`.
fn mirror<'a>(
    cx: &Context<'_>,
    kind: &str,
    ns: &str,
    filters: impl Iterator<Item = &'a HttpRouteFilter>,
    o: &mut RouteOptions,
) -> Result<(), String> {
    if let Some(r) = gateway_filters::mirror_ref(filters)? {
        let b = backend(cx, kind, ns, r).map_err(|(_, m)| format!("RequestMirror: {m}"))?;
        o.mirror_to = b.upstreams.iter().map(|u| u.url()).collect();
    }
    Ok(())
}

/// The upstreams of a route's (of `kind`) rule's backendRefs, each repeated by its weight,
/// whether every reference resolved (the spec's `ResolvedRefs` reason if
/// not), and whether a backend speaks WebSocket. A reference that does not
/// resolve is a problem: the rule denies.
fn rule_backends(
    cx: &Context<'_>,
    kind: &str,
    ns: &str,
    refs: &[HttpBackendRef],
    problems: &mut Vec<String>,
) -> (Vec<Upstream>, ConditionOutcome, bool) {
    let mut resolved: ConditionOutcome = Ok(());
    let mut weighted = Vec::new();
    let mut websocket = false;
    for r in refs {
        match backend(cx, kind, ns, r) {
            Ok(b) => {
                websocket |= b.websocket;
                weighted.push((r.weight.unwrap_or(1).max(0), b.upstreams));
            }
            Err((reason, message)) => {
                problems.push(message.clone());
                resolved = resolved.and(Err((reason, message)));
            }
        }
    }
    (spread(&weighted), resolved, websocket)
}

/// One resolved backendRef: its upstreams, in the protocol its Service
/// port declares, and whether that protocol is WebSocket.
struct Backend {
    upstreams: Vec<Upstream>,
    websocket: bool,
}

/// What a Service port's `appProtocol` asks of the connection to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BackendProtocol {
    /// `kubernetes.io/h2c`: HTTP/2 in clear text with prior knowledge.
    H2c,
    /// `kubernetes.io/ws`: HTTP/1.1 that may upgrade to WebSocket.
    WebSocket,
    /// `kubernetes.io/wss`: WebSocket over TLS.
    SecureWebSocket,
    /// Anything else, or none: HTTP/1.1.
    Http1,
}

impl BackendProtocol {
    /// The protocol an `appProtocol` value names.
    fn from_app_protocol(value: Option<&str>) -> Self {
        match value {
            Some("kubernetes.io/h2c") => Self::H2c,
            Some("kubernetes.io/ws") => Self::WebSocket,
            Some("kubernetes.io/wss") => Self::SecureWebSocket,
            _ => Self::Http1,
        }
    }

    /// `upstreams` (cleartext HTTP as resolved) speaking this protocol.
    fn apply(self, mut upstreams: Vec<Upstream>) -> Backend {
        let scheme = match self {
            Self::H2c => Some(UpstreamScheme::H2c),
            Self::SecureWebSocket => Some(UpstreamScheme::Https),
            Self::WebSocket | Self::Http1 => None,
        };
        for u in upstreams.iter_mut() {
            if let Some(s) = scheme.filter(|_| u.scheme == UpstreamScheme::Http) {
                u.scheme = s;
            }
        }
        Backend {
            upstreams,
            websocket: matches!(self, Self::WebSocket | Self::SecureWebSocket),
        }
    }
}

/// The `appProtocol` of Service `ns/name`'s port `port`, if it declares one.
fn app_protocol<'a>(cx: &'a Context<'_>, ns: &str, name: &str, port: i32) -> Option<&'a str> {
    cx.idx
        .services
        .get(&(ns, name))?
        .spec
        .as_ref()?
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == port)?
        .app_protocol
        .as_deref()
}

/// The upstreams of one Service backendRef of a route of `kind` (the
/// `from` a ReferenceGrant must name), in the protocol its Service port's
/// `appProtocol` declares.
fn backend(
    cx: &Context<'_>,
    kind: &str,
    ns: &str,
    r: &HttpBackendRef,
) -> Result<Backend, (String, String)> {
    let group = r.group.as_deref().unwrap_or("");
    let target_kind = r.kind.as_deref().unwrap_or("Service");
    if !group.is_empty() || target_kind != "Service" {
        return Err((
            "InvalidKind".into(),
            format!(
                "backendRef {group}/{target_kind} {}: only Services are supported",
                r.name
            ),
        ));
    }
    let target_ns = r.namespace.as_deref().unwrap_or(ns);
    if target_ns != ns && !granted(cx, (kind, ns), ("", "Service", target_ns, &r.name)) {
        return Err((
            "RefNotPermitted".into(),
            format!(
                "backendRef Service {target_ns}/{}: no ReferenceGrant allows it",
                r.name
            ),
        ));
    }
    let Some(port) = r.port else {
        return Err((
            "UnsupportedValue".into(),
            format!(
                "backendRef Service {target_ns}/{}: port is required",
                r.name
            ),
        ));
    };
    let as_ingress = IngressBackend {
        service: Some(IngressServiceBackend {
            name: r.name.clone(),
            port: Some(ServiceBackendPort {
                number: Some(port),
                name: None,
            }),
        }),
        resource: None,
    };
    let upstreams = cluster::backends(cx.idx, cx.guard, target_ns, &as_ingress, false, false)
        .map_err(|e| ("BackendNotFound".into(), e))?;
    let protocol = app_protocol(cx, target_ns, &r.name, port);
    Ok(BackendProtocol::from_app_protocol(protocol).apply(upstreams))
}

/// One list in which each backend's upstreams take their weight's share of
/// round-robin turns: a backend of weight `w` with `n` upstreams gets each
/// of them repeated `w × L / n` times (`L`: the least common multiple of
/// the counts), weights reduced by their greatest common divisor. Weight 0
/// contributes nothing. Shares are exact up to 1,000 entries, then rounded.
pub fn spread(weighted: &[(i32, Vec<Upstream>)]) -> Vec<Upstream> {
    let live: Vec<(u64, &Vec<Upstream>)> = weighted
        .iter()
        .filter(|(w, u)| *w > 0 && !u.is_empty())
        .map(|(w, u)| (u64::try_from(*w).unwrap_or(1), u))
        .collect();
    let g = live.iter().fold(0, |g, (w, _)| gcd(g, *w)).max(1);
    let l = live.iter().fold(1, |l, (_, u)| lcm(l, u.len() as u64));
    let total: u64 = live.iter().map(|(w, _)| w / g * l).sum();
    let scale = |n: u64| match total > 1000 {
        true => (n * 1000 / total).max(1),
        false => n,
    };
    let mut out = Vec::new();
    for (w, ups) in live {
        let each = scale(w / g * l) / ups.len() as u64;
        for u in ups {
            for _ in 0..each.max(1) {
                out.push(u.clone());
            }
        }
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn lcm(a: u64, b: u64) -> u64 {
    if a == 0 || b == 0 {
        return a.max(b);
    }
    (a / gcd(a, b) * b).min(1 << 20)
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "gateway_listener_tests.rs"]
mod listener_tests;

#[cfg(test)]
#[path = "gateway_port_tests.rs"]
mod port_tests;

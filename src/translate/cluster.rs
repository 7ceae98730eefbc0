//! Cluster objects in, translation inputs out. Pure: it takes the objects the
//! controller's stores hold (k8s-openapi types and the `Policy` custom
//! resource) and never calls the API.
//!
//! - An Ingress is managed when its class (`spec.ingressClassName`, else the
//!   legacy `kubernetes.io/ingress.class` annotation, else the IngressClass
//!   marked as the default) is an IngressClass whose `spec.controller` is
//!   [`CONTROLLER`].
//! - Annotations under `jetbridge.dev/` or `ingress.pomerium.io/` are route
//!   settings with the same names and meanings as in the config file; each
//!   value is YAML, decoded the same way. An unknown key is an error on that
//!   Ingress, whose routes then deny every request. A key under both
//!   prefixes is a warning when both mean the same, an error otherwise.
//! - Each rule host × path becomes a route `https://<host>` with its path:
//!   `Exact` → exact path, `Prefix` and `ImplementationSpecific` → prefix
//!   matched element-wise.
//! - Backends: the ready addresses of the Service's EndpointSlices, on the
//!   slice port named like the Service port; without ready addresses, the
//!   Service's cluster DNS name (an ExternalName Service: its name).

use super::hosts::{self, Delegations, HostClaims, HostRules};
use super::{CertInput, PathSpec, RouteInput};
use crate::crd::WatchedPolicy;
use crate::model::rule_origin::RuleOrigin;
use crate::model::{Diagnostic, ObjectRef, Reason, Severity, Upstream, UpstreamScheme};
use crate::settings::RouteOptions;
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{
    Ingress, IngressBackend, IngressClass, IngressServiceBackend, IngressSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// `spec.controller` of the IngressClasses this controller serves.
pub const CONTROLLER: &str = "jetbridge.dev/ingress-controller";
/// Annotation prefixes read by default (Pomerium's too, so a Pomerium user
/// moves over by changing the class).
pub const DEFAULT_PREFIXES: [&str; 2] = ["jetbridge.dev/", "ingress.pomerium.io/"];
/// The annotation the controller writes on each Ingress it serves
/// (`Programmed` or `Invalid`, and the messages). Not a route setting: the
/// annotation reader skips it whatever the prefixes.
pub const STATUS_ANNOTATION: &str = "jetbridge.dev/status";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
pub(super) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Route settings that are not annotations: they name a local file.
pub const FILE_ONLY_OPTIONS: &[&str] = &[
    "tls_custom_ca_file",
    "tls_client_cert_file",
    "tls_client_key_file",
    "tls_downstream_client_ca_file",
    "kubernetes_service_account_token_file",
];

/// Route settings accepted as annotations: every [`RouteOptions`] key
/// except the ones naming a local file.
pub fn route_annotations() -> impl Iterator<Item = &'static str> {
    RouteOptions::KEYS
        .iter()
        .copied()
        .filter(|k| !FILE_ONLY_OPTIONS.contains(k))
}
/// Keys whose value is a list; a plain string is split on commas.
const LIST_KEYS: &[&str] = &["allowed_users", "allowed_domains", "remove_request_headers"];

/// Everything the controller's stores hold.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub ingresses: Vec<Arc<Ingress>>,
    pub classes: Vec<Arc<IngressClass>>,
    pub policies: Vec<Arc<WatchedPolicy>>,
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
    pub secrets: Vec<Arc<Secret>>,
    /// Host claims remembered from earlier translations and the stored ones.
    pub claims: HostClaims,
    /// When the objects were read (unix seconds): held claims expire by it.
    pub now: i64,
    /// The Gateway API objects (empty when the API server serves none).
    pub gateway: super::gateway::GatewayObjects,
}

/// How to read the cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub prefixes: Vec<String>,
    pub controller: String,
    /// Loopback backends are allowed (a controller run outside the cluster
    /// for tests). In a pod, a loopback backend is jetbridge itself.
    pub allow_loopback_backends: bool,
    /// Which namespaces may claim which hosts (none: any namespace may).
    pub host_rules: HostRules,
    /// How long a host stays with its namespace after the namespace's last
    /// Ingress naming it goes away.
    pub claim_grace_seconds: i64,
    /// `spec.controllerName` of the GatewayClasses this controller serves.
    pub gateway_controller: String,
}

/// The default of [`ClusterSettings::claim_grace_seconds`]: one hour.
pub const DEFAULT_CLAIM_GRACE_SECONDS: i64 = 3600;

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            prefixes: DEFAULT_PREFIXES.iter().map(|p| p.to_string()).collect(),
            controller: CONTROLLER.to_string(),
            allow_loopback_backends: false,
            host_rules: HostRules::default(),
            claim_grace_seconds: DEFAULT_CLAIM_GRACE_SECONDS,
            gateway_controller: super::gateway::CONTROLLER.to_string(),
        }
    }
}

/// Backends a tenant's Ingress must never reach: the cluster's API server
/// (the `default/kubernetes` Service and its endpoints), link-local
/// addresses (cloud metadata at 169.254.169.254), unspecified, multicast and
/// broadcast addresses, and loopback (jetbridge's own listeners) unless
/// allowed.
pub(super) struct BackendGuard {
    allow_loopback: bool,
    api_server: std::collections::HashSet<std::net::IpAddr>,
}

impl BackendGuard {
    pub(super) fn new(idx: &Index<'_>, s: &ClusterSettings) -> Self {
        let mut api_server = std::collections::HashSet::new();
        if let Some(svc) = idx.services.get(&("default", "kubernetes")) {
            let spec = svc.spec.clone().unwrap_or_default();
            for ip in spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
            {
                if let Ok(ip) = ip.parse() {
                    api_server.insert(ip);
                }
            }
        }
        for slice in idx
            .slices
            .get(&("default", "kubernetes"))
            .into_iter()
            .flatten()
        {
            for ep in &slice.endpoints {
                for a in &ep.addresses {
                    if let Ok(ip) = a.parse() {
                        api_server.insert(ip);
                    }
                }
            }
        }
        BackendGuard {
            allow_loopback: s.allow_loopback_backends,
            api_server,
        }
    }

    /// Why `ip` may not be a backend, if it may not.
    fn refuse_ip(&self, ip: std::net::IpAddr) -> Option<&'static str> {
        use std::net::IpAddr;
        if self.api_server.contains(&ip) {
            return Some("the cluster's API server");
        }
        let link_local = match ip {
            IpAddr::V4(v) => v.is_link_local(),
            IpAddr::V6(v) => (v.segments()[0] & 0xffc0) == 0xfe80,
        };
        if link_local {
            return Some("a link-local address (cloud metadata lives there)");
        }
        if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
            return Some("not a unicast address");
        }
        if ip.is_loopback() && !self.allow_loopback {
            return Some("a loopback address (jetbridge itself)");
        }
        None
    }

    /// Why an ExternalName may not be a backend, if it may not.
    fn refuse_name(&self, name: &str) -> Option<&'static str> {
        let n = name.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = n.trim_matches(['[', ']']).parse() {
            return self.refuse_ip(ip);
        }
        if n == "kubernetes" || n.starts_with("kubernetes.default") {
            return Some("the cluster's API server");
        }
        if n == "metadata" || n == "metadata.google.internal" || n == "instance-data" {
            return Some("a cloud metadata service");
        }
        if (n == "localhost" || n.ends_with(".localhost")) && !self.allow_loopback {
            return Some("a loopback name (jetbridge itself)");
        }
        None
    }
}

/// The compile result of one Policy object, for its status.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyOutcome {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub error: Option<String>,
    /// Lint warnings of rules that compile (a rule that can never match,
    /// `reject` under allow, …), as `jetbridge policy check` prints them.
    pub warnings: Vec<crate::policy::Warning>,
}

/// A Policy's rule list and lint warnings, read and compiled as
/// `jetbridge policy check` reads a `Policy` file.
fn compile_policy(
    p: &WatchedPolicy,
) -> Result<(serde_json::Value, Vec<crate::policy::Warning>), String> {
    let spec = p.spec.as_ref().map_err(ToString::to_string)?;
    let ppl = spec.ppl().map_err(|e| e.to_string())?;
    let (_, warnings) =
        crate::policy::compile_value_with_warnings(&ppl).map_err(|e| e.to_string())?;
    Ok((ppl, warnings))
}

/// Compiles every Policy once, in namespace/name order: records each
/// outcome and a diagnostic per error (route-breaking) or warning (the
/// Policy still applies), and returns the rule lists by `namespace/name`.
pub(super) fn compile_policies(
    c: &Cluster,
    out: &mut ClusterInputs,
) -> HashMap<String, Result<serde_json::Value, String>> {
    let mut policies = HashMap::new();
    let mut sorted: Vec<&Arc<WatchedPolicy>> = c.policies.iter().collect();
    sorted.sort_by_key(|p| key(&p.metadata.namespace, &p.metadata.name));
    for p in sorted {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let object = ObjectRef::kube("Policy", &ns, &name);
        let compiled = compile_policy(p);
        let (error, warnings) = match &compiled {
            Ok((_, w)) => (None, w.clone()),
            Err(e) => (Some(e.clone()), Vec::new()),
        };
        if let Some(e) = &error {
            out.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                object: object.clone(),
                reason: Reason::InvalidPolicy,
                message: format!("policy: {e}"),
            });
        }
        for w in &warnings {
            out.diagnostics.push(Diagnostic {
                severity: Severity::Warning,
                object: object.clone(),
                reason: Reason::PolicyWarning,
                message: format!("policy: {w}"),
            });
        }
        out.policies.push(PolicyOutcome {
            namespace: ns.clone(),
            name: name.clone(),
            generation: p.metadata.generation,
            error,
            warnings,
        });
        policies.insert(format!("{ns}/{name}"), compiled.map(|(ppl, _)| ppl));
    }
    policies
}

/// What the cluster contributes to [`super::Inputs`].
#[derive(Clone, Debug, Default)]
pub struct ClusterInputs {
    pub routes: Vec<RouteInput>,
    pub certificates: Vec<CertInput>,
    pub diagnostics: Vec<Diagnostic>,
    pub policies: Vec<PolicyOutcome>,
    /// `namespace/name` of every managed Ingress.
    pub managed: Vec<String>,
    /// Each host's owner, and the claims to remember.
    pub hosts: hosts::Assignment,
    /// What the Gateway API objects contributed (their routes are in
    /// `routes` too), with the outcomes their status reports.
    pub gateway: super::gateway::GatewayInputs,
}

pub(super) fn key(ns: &Option<String>, name: &Option<String>) -> String {
    format!(
        "{}/{}",
        ns.as_deref().unwrap_or(""),
        name.as_deref().unwrap_or("")
    )
}

/// Services, EndpointSlices and Secrets by namespace and name, built once
/// per translation so each lookup is a hash probe, not a scan.
pub(super) struct Index<'a> {
    pub(super) services: HashMap<(&'a str, &'a str), &'a Service>,
    /// By namespace and the `kubernetes.io/service-name` label.
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    pub(super) secrets: HashMap<(&'a str, &'a str), &'a Secret>,
}

fn ns_name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (&str, &str) {
    (
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or(""),
    )
}

impl<'a> Index<'a> {
    pub(super) fn new(c: &'a Cluster) -> Self {
        let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for s in &c.slices {
            if let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                slices
                    .entry((s.metadata.namespace.as_deref().unwrap_or(""), svc.as_str()))
                    .or_default()
                    .push(s);
            }
        }
        Index {
            services: c
                .services
                .iter()
                .map(|s| (ns_name(&s.metadata), s.as_ref()))
                .collect(),
            slices,
            secrets: c
                .secrets
                .iter()
                .map(|s| (ns_name(&s.metadata), s.as_ref()))
                .collect(),
        }
    }
}

/// Reads the managed Ingresses, their Policies, Services, EndpointSlices and
/// TLS Secrets into translation inputs.
pub fn from_cluster(c: &Cluster, s: &ClusterSettings) -> ClusterInputs {
    from_cluster_laid_out(c, s, None)
}

/// Where a translation put what each Ingress contributed, and what later
/// translations of one Ingress need from the rest
/// ([`super::incremental_cluster`] replaces one Ingress's parts in place).
#[derive(Default)]
pub(super) struct Layout {
    /// How many diagnostics at the front are the Policies'.
    pub(super) policy_diagnostics: usize,
    /// The Policies' rule lists by `namespace/name`.
    pub(super) policies: HashMap<String, Result<serde_json::Value, String>>,
    /// host → the Ingresses of its owner's namespace that serve one of its paths.
    pub(super) owners: HashMap<String, Vec<ObjectRef>>,
    /// Each managed Ingress read (solvers aside), in reading order.
    pub(super) ingresses: Vec<Laid>,
    /// The objects cert-manager's solver Ingresses name.
    pub(super) solver_references: Vec<Reference>,
}

/// One Ingress's place in a translation.
pub(super) struct Laid {
    /// Namespace and name.
    pub(super) key: (String, String),
    pub(super) shape: Shape,
    pub(super) slots: Slots,
    pub(super) references: Vec<Reference>,
}

/// Positions of one Ingress's parts in [`ClusterInputs`].
#[derive(Clone, Debug, Default)]
pub(super) struct Slots {
    /// What reading it found (annotations, rules without host).
    pub(super) read_diagnostics: std::ops::Range<usize>,
    /// Its routes, one per served entry.
    pub(super) routes: std::ops::Range<usize>,
    /// The entries those routes serve, by position in its entries.
    pub(super) served: Vec<usize>,
    /// What its TLS Secrets found.
    pub(super) cert_diagnostics: std::ops::Range<usize>,
    pub(super) certificates: std::ops::Range<usize>,
}

/// What of an Ingress host ownership, delegation, first claims and the
/// order of routes read: while it stays equal, a change of the Ingress
/// (or of an object it names) changes its own routes and certificates
/// only.
#[derive(Debug, PartialEq)]
pub(super) struct Shape {
    created: i64,
    entries: Vec<(String, String, String)>,
    delegations: Delegations,
    path_regex: bool,
}

/// An object an Ingress reads: a Service (with its EndpointSlices), a
/// Secret or a Policy, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Reference {
    Service(String, String),
    Secret(String, String),
    Policy(String, String),
}

/// The managed Ingresses in translation order: cert-manager's solvers,
/// then the others.
fn managed_ingresses<'c>(
    c: &'c Cluster,
    s: &ClusterSettings,
) -> (Vec<&'c Ingress>, Vec<&'c Ingress>) {
    let classes = OurClasses::new(c, s);
    let mut ingresses: Vec<&Ingress> = c
        .ingresses
        .iter()
        .map(|a| a.as_ref())
        .filter(|i| managed(i, &classes.names, classes.default_is_ours))
        .collect();
    ingresses.sort_by_cached_key(|i| (created(i), key(&i.metadata.namespace, &i.metadata.name)));
    ingresses
        .into_iter()
        .partition(|i| super::acme::is_solver(i))
}

/// [`from_cluster`], filling `layout` when given.
pub(super) fn from_cluster_laid_out(
    c: &Cluster,
    s: &ClusterSettings,
    layout: Option<&mut Layout>,
) -> ClusterInputs {
    let mut out = ClusterInputs::default();
    let idx = Index::new(c);
    let guard = BackendGuard::new(&idx, s);
    let policies = compile_policies(c, &mut out);
    let policy_diagnostics = out.diagnostics.len();
    let (solvers, ingresses) = managed_ingresses(c, s);
    let mut slots: Vec<Slots> = Vec::with_capacity(ingresses.len());
    let read: Vec<ReadIngress> = ingresses
        .into_iter()
        .map(|ing| {
            let start = out.diagnostics.len();
            let r = read_ingress(ing, s, &idx, &policies, &mut out);
            slots.push(Slots {
                read_diagnostics: start..out.diagnostics.len(),
                ..Slots::default()
            });
            r
        })
        .collect();
    let mut gateway = gateway_inputs(c, s, &idx, &guard, &policies);
    let mut claims = claimants(&read);
    super::gateway_hosts::claimants(&gateway.routes, &mut claims);
    out.hosts = hosts::assign(
        &claims,
        &c.claims,
        &s.host_rules,
        c.now,
        s.claim_grace_seconds,
    );
    super::gateway_hosts::admit(&mut gateway, &out.hosts, &claims);
    let delegations = delegations(&read, &out.hosts);
    let owners = serve_entries(&read, &idx, &guard, &delegations, &mut slots, &mut out);
    let solver_references: Vec<Reference> = match layout {
        Some(_) => solvers.iter().flat_map(|i| references_of(i, s)).collect(),
        None => Vec::new(),
    };
    for ing in solvers {
        solver_routes(ing, s, &idx, &guard, &delegations, &mut out);
    }
    let held = held_routes(&out.hosts, &out.routes);
    out.routes.extend(held);
    for (r, slot) in read.iter().zip(&mut slots) {
        let (d, k) = (out.diagnostics.len(), out.certificates.len());
        certificates(r, &idx, &owners, &mut out);
        slot.cert_diagnostics = d..out.diagnostics.len();
        slot.certificates = k..out.certificates.len();
    }
    out.routes.extend(gateway.routes.iter().cloned());
    out.certificates
        .extend(gateway.certificates.iter().cloned());
    out.diagnostics.extend(gateway.diagnostics.iter().cloned());
    out.gateway = gateway;
    if let Some(layout) = layout {
        *layout = Layout {
            solver_references,
            policy_diagnostics,
            policies,
            owners,
            ingresses: read
                .iter()
                .zip(slots)
                .map(|(r, slots)| Laid {
                    key: (r.ns.clone(), r.object.name.clone()),
                    shape: r.shape(),
                    slots,
                    references: r.references(),
                })
                .collect(),
        };
    }
    out
}

/// Decides which entries of each Ingress are served (owned or delegated
/// host, first claim of the path) and adds their routes, recording each
/// Ingress's routes in its slots; returns host → the owner namespace's
/// Ingresses serving it.
fn serve_entries(
    read: &[ReadIngress<'_>],
    idx: &Index<'_>,
    guard: &BackendGuard,
    delegations: &HashMap<String, Delegations>,
    slots: &mut [Slots],
    out: &mut ClusterInputs,
) -> HashMap<String, Vec<ObjectRef>> {
    let mut claimed: HashMap<(String, String), ObjectRef> = HashMap::new();
    let mut owners: HashMap<String, Vec<ObjectRef>> = HashMap::new();
    for (r, slot) in read.iter().zip(slots) {
        let start = out.routes.len();
        for (index, entry) in r.entries.iter().enumerate() {
            let serves = admitted(r, entry, &out.hosts, delegations, &mut out.diagnostics)
                && first_claim(r, entry, &mut claimed, &mut out.diagnostics);
            if serves && out.hosts.owners.get(&entry.host).map(|o| &o.namespace) == Some(&r.ns) {
                owners
                    .entry(entry.host.clone())
                    .or_default()
                    .push(r.object.clone());
            }
            if serves {
                out.routes
                    .push(route_input(r, index + 1, entry, idx, guard));
                slot.served.push(index);
            }
        }
        slot.routes = start..out.routes.len();
    }
    owners
}

/// What the Gateway API objects contribute, before host ownership.
fn gateway_inputs(
    c: &Cluster,
    s: &ClusterSettings,
    idx: &Index<'_>,
    guard: &BackendGuard,
    policies: &HashMap<String, Result<serde_json::Value, String>>,
) -> super::gateway::GatewayInputs {
    let access = super::gateway::Catalog::new(&c.policies, &c.gateway.policy_filters);
    let backend_tls = super::gateway::BackendTlsCatalog::new(&c.gateway);
    let mut gateway = super::gateway::from_gateway(&super::gateway::Context {
        objects: &c.gateway,
        settings: s,
        idx,
        guard,
        policies,
        access: &access,
        backend_tls: &backend_tls,
    });
    super::gateway_policy::outcomes(&access, &mut gateway);
    gateway
}

/// The IngressClasses this controller serves, and whether the default one is.
pub(super) struct OurClasses<'a> {
    pub(super) names: Vec<&'a str>,
    pub(super) default_is_ours: bool,
}

impl<'a> OurClasses<'a> {
    pub(super) fn new(c: &'a Cluster, s: &ClusterSettings) -> Self {
        let names: Vec<&str> = c
            .classes
            .iter()
            .filter(|ic| {
                ic.spec
                    .as_ref()
                    .and_then(|sp| sp.controller.as_deref())
                    .is_some_and(|ctl| ctl == s.controller)
            })
            .filter_map(|ic| ic.metadata.name.as_deref())
            .collect();
        let default_is_ours = c
            .classes
            .iter()
            .find(|ic| {
                ic.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true")
            })
            .and_then(|ic| ic.metadata.name.as_deref())
            .is_some_and(|n| names.contains(&n));
        OurClasses {
            names,
            default_is_ours,
        }
    }
}

/// One rule path (or the defaultBackend as `/`) of an Ingress.
pub(super) struct Entry {
    /// Lower case; empty for "any host".
    pub(super) host: String,
    pub(super) path_type: String,
    pub(super) path: String,
    pub(super) backend: IngressBackend,
}

/// A managed Ingress, read once: its settings and the paths it asks for.
pub(super) struct ReadIngress<'a> {
    ing: &'a Ingress,
    ns: String,
    object: ObjectRef,
    annotations: Annotations,
    base: Result<RouteOptions, String>,
    problems: Vec<String>,
    pub(super) entries: Vec<Entry>,
    /// Where the rule objects of the combined `policy` come from.
    policy_origins: Vec<RuleOrigin>,
}

pub(super) fn read_ingress<'a>(
    ing: &'a Ingress,
    s: &ClusterSettings,
    idx: &Index<'_>,
    policies: &HashMap<String, Result<serde_json::Value, String>>,
    out: &mut ClusterInputs,
) -> ReadIngress<'a> {
    let ns = ing.metadata.namespace.clone().unwrap_or_default();
    let name = ing.metadata.name.clone().unwrap_or_default();
    let object = ObjectRef::kube("Ingress", &ns, &name);
    out.managed.push(format!("{ns}/{name}"));
    let annotations = read_annotations(ing, &s.prefixes);
    annotation_warnings(&annotations, &object, &mut out.diagnostics);
    let mut problems = annotations.problems.clone();
    let (policy, policy_origins) = combined_policy(&annotations, &ns, policies, &mut problems);
    let base = base_config(&annotations, &policy)
        .and_then(|o| with_secrets(o, &annotations.secret_refs, idx, &ns));
    // Pomerium's `subtle_allow_empty_host`: a rule without host serves
    // every host no other route names.
    let any_host = base.as_ref().is_ok_and(|o| o.subtle_allow_empty_host);
    let entries = entries(ing, any_host, &object, &mut out.diagnostics);
    ReadIngress {
        ing,
        ns,
        object,
        annotations,
        base,
        problems,
        entries,
        policy_origins,
    }
}

/// `(host, pathType, path, backend)` of every rule path, then the
/// defaultBackend as `/` on each host that has no `/` prefix of its own.
fn entries(
    ing: &Ingress,
    any_host: bool,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Entry> {
    let none = IngressSpec::default();
    let spec = ing.spec.as_ref().unwrap_or(&none);
    let mut entries: Vec<Entry> = Vec::new();
    for rule in spec.rules.iter().flatten() {
        let host = match rule.host.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => h,
            None if any_host => "",
            None => {
                diagnostics.push(Diagnostic {
                    severity: Severity::Warning,
                    object: object.clone(),
                    reason: Reason::NotServed,
                    message: "a rule without host is not served (set the annotation \
                              subtle_allow_empty_host: \"true\" to serve it for every host)"
                        .into(),
                });
                continue;
            }
        };
        for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
            entries.push(Entry {
                host: host.to_ascii_lowercase(),
                path_type: p.path_type.clone(),
                path: p.path.clone().unwrap_or_else(|| "/".into()),
                backend: p.backend.clone(),
            });
        }
    }
    let Some(default) = &spec.default_backend else {
        return entries;
    };
    let mut hosts: Vec<String> = spec
        .rules
        .iter()
        .flatten()
        .filter_map(|r| r.host.clone())
        .chain(
            spec.tls
                .iter()
                .flatten()
                .flat_map(|t| t.hosts.clone().unwrap_or_default()),
        )
        .filter(|h| !h.is_empty())
        .map(|h| h.to_ascii_lowercase())
        .collect();
    hosts.sort();
    hosts.dedup();
    if hosts.is_empty() && any_host {
        hosts.push(String::new());
    } else if hosts.is_empty() {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            object: object.clone(),
            reason: Reason::NotServed,
            message: "defaultBackend is not served: the Ingress names no host".into(),
        });
    }
    for h in hosts {
        let has_root = entries
            .iter()
            .any(|e| e.host == h && e.path_type != "Exact" && e.path == "/");
        if !has_root {
            entries.push(Entry {
                host: h,
                path_type: "Prefix".into(),
                path: "/".into(),
                backend: default.clone(),
            });
        }
    }
    entries
}

/// The Ingresses naming each host.
fn claimants(read: &[ReadIngress<'_>]) -> BTreeMap<String, Vec<hosts::Claimant>> {
    let mut out: BTreeMap<String, Vec<hosts::Claimant>> = BTreeMap::new();
    for r in read {
        for host in r.hosts() {
            out.entry(host.to_string())
                .or_default()
                .push(hosts::Claimant {
                    kind: "Ingress",
                    namespace: r.ns.clone(),
                    name: r.object.name.clone(),
                    created: created(r.ing),
                });
        }
    }
    out
}

/// Per host, the paths its owner's Ingresses delegate to other namespaces.
fn delegations(
    read: &[ReadIngress<'_>],
    assignment: &hosts::Assignment,
) -> HashMap<String, Delegations> {
    let mut out: HashMap<String, Delegations> = HashMap::new();
    for r in read
        .iter()
        .filter(|r| r.annotations.delegations != Delegations::default())
    {
        for host in r.hosts() {
            if assignment.owners.get(host).map(|o| &o.namespace) == Some(&r.ns) {
                out.entry(host.to_string())
                    .or_default()
                    .extend(&r.annotations.delegations);
            }
        }
    }
    out
}

impl ReadIngress<'_> {
    /// What host-level decisions read of it.
    pub(super) fn shape(&self) -> Shape {
        Shape {
            created: created(self.ing),
            entries: self
                .entries
                .iter()
                .map(|e| (e.host.clone(), e.path_type.clone(), e.path.clone()))
                .collect(),
            delegations: self.annotations.delegations.clone(),
            path_regex: self.annotations.path_regex,
        }
    }

    /// The objects reading it and building its routes and certificates
    /// look up, sorted, each once.
    pub(super) fn references(&self) -> Vec<Reference> {
        references(self.ing, &self.ns, &self.annotations)
    }

    /// The hosts its paths name, each once.
    fn hosts(&self) -> std::collections::BTreeSet<&str> {
        self.entries.iter().map(|e| e.host.as_str()).collect()
    }
}

/// Whether the Ingress's namespace may serve this path on the host: it owns
/// the host, or the owner delegated the path. Otherwise a Warning names the
/// owner.
fn admitted(
    r: &ReadIngress<'_>,
    e: &Entry,
    assignment: &hosts::Assignment,
    delegations: &HashMap<String, Delegations>,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    let shown = shown_host(&e.host);
    let regex = e.path_type == "ImplementationSpecific" && r.annotations.path_regex;
    let message = match assignment.owners.get(&e.host) {
        Some(o) if o.namespace == r.ns => return true,
        Some(_)
            if !regex
                && delegations
                    .get(&e.host)
                    .is_some_and(|d| d.covers(&r.ns, &e.path)) =>
        {
            return true;
        }
        Some(o) if regex => format!(
            "host {shown} belongs to {o}; a regular-expression path from namespace {} \
             cannot be delegated and is not served there",
            r.ns
        ),
        Some(o) if matches!(&o.ownership, hosts::Ownership::Served { by } if by.kind != "Ingress") =>
        {
            format!(
                "host {shown} belongs to {o}; path {} from namespace {} is not served there",
                e.path, r.ns
            )
        }
        Some(o) => format!(
            "host {shown} belongs to {o}; path {} from namespace {} is not served there \
             (the owner can delegate it with the annotation delegate_paths: \"{}={}\")",
            e.path, r.ns, r.ns, e.path
        ),
        None => format!(
            "host {shown} may be claimed only by the namespaces the administrator allows \
             (--host-namespaces); namespace {} may not",
            r.ns
        ),
    };
    diagnostics.push(Diagnostic {
        severity: Severity::Warning,
        object: r.object.clone(),
        reason: Reason::HostConflict,
        message,
    });
    false
}

/// Whether this Ingress is the first (oldest) to claim the host and path;
/// a later claimant gets a Warning naming the first.
fn first_claim(
    r: &ReadIngress<'_>,
    e: &Entry,
    claimed: &mut HashMap<(String, String), ObjectRef>,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    let claim = (e.host.clone(), format!("{}:{}", e.path_type, e.path));
    if let Some(winner) = claimed.get(&claim) {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            object: r.object.clone(),
            reason: Reason::HostConflict,
            message: format!(
                "host {} path {} is also claimed by {winner}, which is older; \
                 this one is not served there",
                shown_host(&e.host),
                e.path
            ),
        });
        return false;
    }
    claimed.insert(claim, r.object.clone());
    true
}

fn shown_host(host: &str) -> &str {
    if host.is_empty() {
        "* (any host)"
    } else {
        host
    }
}

/// The route of one admitted path.
pub(super) fn route_input(
    r: &ReadIngress<'_>,
    index: usize,
    e: &Entry,
    idx: &Index<'_>,
    guard: &BackendGuard,
) -> RouteInput {
    let path = match e.path_type.as_str() {
        "Exact" => PathSpec::Exact(e.path.clone()),
        "ImplementationSpecific" if r.annotations.path_regex => PathSpec::Regex(e.path.clone()),
        _ => PathSpec::Prefix(e.path.clone()),
    };
    let mut problems = r.problems.clone();
    let backends = backends(
        idx,
        guard,
        &r.ns,
        &e.backend,
        r.annotations.secure_upstream,
        r.annotations.service_proxy_upstream,
    )
    .unwrap_or_else(|e| {
        problems.push(e);
        Vec::new()
    });
    let options = r.base.clone().unwrap_or_else(|e| {
        problems.push(e);
        RouteOptions::default()
    });
    let id = format!(
        "{}/{index}",
        key(&r.ing.metadata.namespace, &r.ing.metadata.name)
    );
    RouteInput {
        created: created(r.ing),
        backends,
        options,
        policy_origins: r.policy_origins.clone(),
        problems: problems
            .into_iter()
            .map(|m| Diagnostic::invalid_route(&r.object, m))
            .collect(),
        ..RouteInput::new(id, r.object.clone(), e.host.clone(), path)
    }
}

/// The challenge answers of a cert-manager HTTP-01 solver Ingress
/// ([`super::acme`]): public routes for their exact paths on the plain-HTTP
/// listener alone, on the hosts its namespace may serve. A solver Ingress
/// that asks for more is refused whole (an Error); a challenge on a host
/// another namespace owns is not served (a Warning naming the owner).
fn solver_routes(
    ing: &Ingress,
    s: &ClusterSettings,
    idx: &Index<'_>,
    guard: &BackendGuard,
    delegations: &HashMap<String, Delegations>,
    out: &mut ClusterInputs,
) {
    let ns = ing.metadata.namespace.clone().unwrap_or_default();
    let name = ing.metadata.name.clone().unwrap_or_default();
    let object = ObjectRef::kube("Ingress", &ns, &name);
    out.managed.push(format!("{ns}/{name}"));
    let diagnostic = |severity, reason, message| Diagnostic {
        severity,
        object: object.clone(),
        reason,
        message,
    };
    let challenges = match super::acme::challenges(ing) {
        Ok(c) => c,
        Err(message) => {
            let d = diagnostic(Severity::Error, Reason::NotServed, message);
            return out.diagnostics.push(d);
        }
    };
    for (index, c) in challenges.iter().enumerate() {
        if let Err(m) = super::acme::admitted(&ns, c, &out.hosts, delegations, &s.host_rules) {
            let d = diagnostic(Severity::Warning, Reason::HostConflict, m);
            out.diagnostics.push(d);
            continue;
        }
        let mut problems = Vec::new();
        let backends = backends(idx, guard, &ns, &c.backend, false, false).unwrap_or_else(|e| {
            problems.push(Diagnostic::invalid_route(&object, e));
            Vec::new()
        });
        let id = format!("{ns}/{name}/{}", index + 1);
        let path = PathSpec::Exact(c.path.clone());
        out.routes.push(RouteInput {
            created: created(ing),
            backends,
            // The solver answers only for its domain (the Host it gets).
            options: RouteOptions {
                allow_public_unauthenticated_access: true,
                preserve_host_header: true,
                ..RouteOptions::default()
            },
            problems,
            listeners: crate::model::routing::Listeners::ACME_CHALLENGE,
            ..RouteInput::new(id, object.clone(), c.host.clone(), path)
        });
    }
}

/// A route denying every request on each held host (its owner's Ingresses
/// are gone for now) that another namespace's wildcard or "any host" route
/// would otherwise answer; a held host nothing else covers simply has no
/// route (404) meanwhile.
fn held_routes(assignment: &hosts::Assignment, routes: &[RouteInput]) -> Vec<RouteInput> {
    assignment
        .owners
        .iter()
        .filter(|(_, o)| matches!(o.ownership, hosts::Ownership::Held { .. }))
        .filter(|(host, o)| {
            routes
                .iter()
                .any(|r| r.source.namespace != o.namespace && covers(&r.host, host))
        })
        .map(|(host, o)| {
            let claim = ObjectRef::kube("HostClaim", &o.namespace, shown_host(host));
            RouteInput {
                problems: vec![Diagnostic::invalid_route(
                    &claim,
                    format!(
                        "host {} is held for {o}: no route is served there until it is re-applied",
                        shown_host(host)
                    ),
                )],
                ..RouteInput::new(
                    format!("held/{host}"),
                    claim,
                    host.clone(),
                    PathSpec::Prefix("/".into()),
                )
            }
        })
        .collect()
}

/// Whether a route on `route_host` answers requests for `host` when no
/// route names `host` itself: an "any host" route, or a wildcard one label
/// above it.
fn covers(route_host: &str, host: &str) -> bool {
    match route_host.strip_prefix("*.") {
        _ if route_host.is_empty() => !host.is_empty(),
        Some(suffix) => {
            !host.starts_with("*.")
                && host
                    .split_once('.')
                    .is_some_and(|(_, parent)| parent == suffix)
        }
        None => false,
    }
}

/// The Ingress's TLS Secrets, each bound to the hosts it was given for that
/// this Ingress serves and its namespace owns: a Secret in one namespace is
/// never served for another's host.
pub(super) fn certificates(
    r: &ReadIngress<'_>,
    idx: &Index<'_>,
    owners: &HashMap<String, Vec<ObjectRef>>,
    out: &mut ClusterInputs,
) {
    let none = IngressSpec::default();
    let spec = r.ing.spec.as_ref().unwrap_or(&none);
    let rule_hosts: Vec<String> = spec
        .rules
        .iter()
        .flatten()
        .filter_map(|r| r.host.clone())
        .filter(|h| !h.is_empty())
        .collect();
    for tls in spec.tls.iter().flatten() {
        let Some(secret_name) = &tls.secret_name else {
            continue;
        };
        match tls_secret(idx, &r.ns, secret_name) {
            Ok(mut cert) => {
                let listed = tls.hosts.clone().unwrap_or_default();
                let wanted = if listed.is_empty() {
                    rule_hosts.clone()
                } else {
                    listed
                };
                cert.hosts = wanted
                    .into_iter()
                    .filter(|h| {
                        owners
                            .get(&h.to_ascii_lowercase())
                            .is_some_and(|o| o.contains(&r.object))
                    })
                    .collect();
                cert.source = r.object.clone();
                if !cert.hosts.is_empty() {
                    out.certificates.push(cert);
                }
            }
            Err(e) => out.diagnostics.push(Diagnostic {
                severity: Severity::Warning,
                object: r.object.clone(),
                reason: Reason::InvalidCertificate,
                message: e,
            }),
        }
    }
}

/// The objects an Ingress names: its backends' Services, its TLS
/// Secrets and Secret-backed annotations, its `policy_ref` Policies.
fn references(ing: &Ingress, ns: &str, a: &Annotations) -> Vec<Reference> {
    let none = IngressSpec::default();
    let spec = ing.spec.as_ref().unwrap_or(&none);
    let services = spec
        .rules
        .iter()
        .flatten()
        .flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()))
        .map(|p| &p.backend)
        .chain(spec.default_backend.iter())
        .filter_map(|b| b.service.as_ref())
        .map(|svc| Reference::Service(ns.to_string(), svc.name.clone()));
    let tls = spec
        .tls
        .iter()
        .flatten()
        .filter_map(|t| t.secret_name.clone())
        .map(|n| Reference::Secret(ns.to_string(), n));
    let secrets = a
        .secret_refs
        .iter()
        .map(|(_, n)| Reference::Secret(ns.to_string(), n.clone()));
    let policies = a
        .policy_refs
        .iter()
        .map(|n| Reference::Policy(ns.to_string(), n.clone()));
    let mut out: Vec<Reference> = services.chain(tls).chain(secrets).chain(policies).collect();
    out.sort();
    out.dedup();
    out
}

/// [`ReadIngress::references`] of an Ingress not read yet (its
/// annotations are read for it).
pub(super) fn references_of(ing: &Ingress, s: &ClusterSettings) -> Vec<Reference> {
    let ns = ing.metadata.namespace.clone().unwrap_or_default();
    references(ing, &ns, &read_annotations(ing, &s.prefixes))
}

pub(super) fn created(i: &Ingress) -> i64 {
    i.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0)
}

pub(super) fn managed(ing: &Ingress, our_names: &[&str], default_is_ours: bool) -> bool {
    let class = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.clone())
        .or_else(|| {
            ing.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION).cloned())
        });
    match class {
        Some(c) => our_names.contains(&c.as_str()),
        None => default_is_ours,
    }
}

/// Annotations read under our prefixes.
#[derive(Clone, Debug, Default)]
struct Annotations {
    settings: serde_json::Map<String, serde_json::Value>,
    policy_refs: Vec<String>,
    secure_upstream: bool,
    path_regex: bool,
    service_proxy_upstream: bool,
    /// (annotation key, Secret name) of the Secret-backed keys.
    secret_refs: Vec<(String, String)>,
    /// Paths of this Ingress's hosts other namespaces may serve.
    delegations: Delegations,
    /// Errors: the Ingress's routes deny.
    problems: Vec<String>,
    /// Harmless repeats (the same setting under two prefixes).
    warnings: Vec<String>,
}

/// The annotation with which a host's owner lets other namespaces serve
/// paths on its hosts (`team2=/api, team3=/docs`).
pub const DELEGATE_PATHS: &str = "delegate_paths";

/// The largest annotation value read.
pub const MAX_ANNOTATION_BYTES: usize = 64 * 1024;

/// Annotations naming a Secret in the Ingress's namespace (Pomerium's).
pub const SECRET_ANNOTATIONS: [&str; 7] = [
    "identity_provider_secret",
    "tls_custom_ca_secret",
    "tls_client_secret",
    "tls_downstream_client_ca_secret",
    "set_request_headers_secret",
    "set_response_headers_secret",
    "kubernetes_service_account_token_secret",
];

/// What one annotation says, read on its own.
#[derive(Clone, Debug)]
enum Reading {
    /// `policy_ref`: the Policy names in order, without repeats.
    PolicyRefs(Vec<String>),
    /// A Secret-backed key: the Secret's name.
    SecretRef(String),
    /// `secure_upstream`, `path_regex` or `service_proxy_upstream`.
    Flag(bool),
    /// `delegate_paths`.
    Delegations(Delegations),
    /// A route setting: its normalised value and what it means (the
    /// setting alone as [`RouteOptions`]), so that `true` and `True`, or a
    /// policy in YAML and in JSON, count as the same.
    Setting(serde_json::Value, Box<RouteOptions>),
}

impl Reading {
    /// Whether two readings of the same key mean the same.
    fn same(&self, other: &Reading) -> bool {
        match (self, other) {
            (Reading::PolicyRefs(a), Reading::PolicyRefs(b)) => {
                let sorted = |v: &[String]| {
                    let mut v = v.to_vec();
                    v.sort();
                    v
                };
                sorted(a) == sorted(b)
            }
            (Reading::SecretRef(a), Reading::SecretRef(b)) => a == b,
            (Reading::Flag(a), Reading::Flag(b)) => a == b,
            (Reading::Delegations(a), Reading::Delegations(b)) => a == b,
            (Reading::Setting(_, a), Reading::Setting(_, b)) => a == b,
            _ => false,
        }
    }
}

/// Reads the Ingress's annotations under `prefixes`. A key given under more
/// than one prefix is read from each: equal meanings are a warning (the
/// setting applies), different ones a problem naming every key.
fn read_annotations(ing: &Ingress, prefixes: &[String]) -> Annotations {
    let mut a = Annotations::default();
    let none = BTreeMap::new();
    let all = ing.metadata.annotations.as_ref().unwrap_or(&none);
    // key → the annotations that set it, in annotation order.
    let mut by_key: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (full, raw) in all {
        if full == STATUS_ANNOTATION {
            continue;
        }
        if let Some(k) = prefixes.iter().find_map(|p| full.strip_prefix(p.as_str())) {
            by_key.entry(k).or_default().push((full, raw));
        }
    }
    for (k, given) in by_key {
        let mut readings = Vec::new();
        for (full, raw) in &given {
            match read_annotation(k, full, raw) {
                Ok(r) => readings.push(r),
                Err(e) => a.problems.push(e),
            }
        }
        if readings.len() < given.len() {
            continue;
        }
        let keys: Vec<&str> = given.iter().map(|(full, _)| *full).collect();
        match readings.split_first() {
            Some((first, rest)) if rest.iter().all(|r| r.same(first)) => {
                if !rest.is_empty() {
                    a.warnings.push(format!(
                        "annotations {} set {k} to the same value; one of them is enough",
                        keys.join(" and ")
                    ));
                }
                apply_reading(&mut a, k, first.clone());
            }
            Some(_) => a.problems.push(format!(
                "annotations {} set {k} to different values; keep one of them",
                keys.join(" and ")
            )),
            None => {}
        }
    }
    a
}

/// Reads one annotation `full` (key `k` after its prefix). The error names
/// the annotation and never quotes its value.
fn read_annotation(k: &str, full: &str, raw: &str) -> Result<Reading, String> {
    // Far above any honest value, far below what could hurt: the API
    // server caps all annotations of an object at 256 KiB together.
    if raw.len() > MAX_ANNOTATION_BYTES {
        return Err(format!(
            "annotation {full}: value of {} bytes is larger than {MAX_ANNOTATION_BYTES}",
            raw.len()
        ));
    }
    if k == DELEGATE_PATHS {
        return Delegations::parse(raw)
            .map(Reading::Delegations)
            .map_err(|e| format!("annotation {full}: {e}"));
    }
    if k == "policy_ref" {
        let mut names: Vec<String> = Vec::new();
        for name in raw.split(|c: char| c == ',' || c.is_whitespace()) {
            if !name.is_empty() && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        return Ok(Reading::PolicyRefs(names));
    }
    let value = decode(raw).map_err(|e| format!("annotation {full}: {e}"))?;
    if SECRET_ANNOTATIONS.contains(&k) {
        return match value {
            serde_json::Value::String(name) if !name.trim().is_empty() => {
                Ok(Reading::SecretRef(name.trim().to_string()))
            }
            _ => Err(format!("annotation {full}: expected a Secret name")),
        };
    }
    if matches!(
        k,
        "secure_upstream" | "path_regex" | "service_proxy_upstream"
    ) {
        return match value {
            serde_json::Value::Bool(b) => Ok(Reading::Flag(b)),
            _ => Err(format!("annotation {full}: expected true or false")),
        };
    }
    if !route_annotations().any(|r| r == k) {
        return Err(unknown_annotation(k, full));
    }
    let value = match (value, LIST_KEYS.contains(&k)) {
        (serde_json::Value::String(s), true) => serde_json::Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| serde_json::Value::String(x.to_string()))
                .collect(),
        ),
        (serde_json::Value::Number(n), false) if matches!(k, "timeout" | "idle_timeout") => {
            serde_json::Value::String(n.to_string())
        }
        (v, _) => v,
    };
    // Each value is checked on its own, so an error names its annotation.
    let alone = serde_json::json!({ k: value.clone() });
    match serde_json::from_value::<RouteOptions>(alone) {
        Ok(meaning) => Ok(Reading::Setting(value, Box::new(meaning))),
        Err(e) => Err(format!("annotation {full}: {e}")),
    }
}

/// The error for a key that is not a route annotation: refused Pomerium
/// keys say why, others suggest the closest known key.
fn unknown_annotation(k: &str, full: &str) -> String {
    if let Some(refused) = crate::settings::pomerium::refused(k, false) {
        return format!(
            "annotation {full}: {}",
            crate::settings::pomerium::refusal_message(k, refused)
        );
    }
    let mut known: Vec<&str> = route_annotations().collect();
    known.extend(
        crate::settings::pomerium::OWN_ROUTE_KEYS
            .iter()
            .map(|(k, _)| *k),
    );
    format!(
        "unknown annotation {full}{}",
        crate::policy::did_you_mean(k, &known)
    )
}

/// Puts one key's reading into the annotations.
fn apply_reading(a: &mut Annotations, k: &str, r: Reading) {
    match r {
        Reading::PolicyRefs(names) => a.policy_refs = names,
        Reading::SecretRef(name) => a.secret_refs.push((k.to_string(), name)),
        Reading::Flag(b) if k == "secure_upstream" => a.secure_upstream = b,
        Reading::Flag(b) if k == "path_regex" => a.path_regex = b,
        Reading::Flag(b) => a.service_proxy_upstream = b,
        Reading::Delegations(d) => a.delegations = d,
        Reading::Setting(value, _) => {
            a.settings.insert(k.to_string(), value);
        }
    }
}

/// A Warning on the Ingress for each annotation that repeats another's
/// value under a second prefix (the route still serves).
fn annotation_warnings(a: &Annotations, object: &ObjectRef, out: &mut Vec<Diagnostic>) {
    for w in &a.warnings {
        out.push(Diagnostic {
            severity: Severity::Warning,
            object: object.clone(),
            reason: Reason::DuplicateAnnotation,
            message: w.clone(),
        });
    }
}

/// Decodes an annotation value as YAML (JSON is YAML too).
fn decode(raw: &str) -> Result<serde_json::Value, String> {
    if raw.trim().is_empty() {
        return Ok(serde_json::Value::String(String::new()));
    }
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<serde_json::Value>(raw, options)
        .map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())
}

/// The route's PPL: the inline `policy` annotation plus the rules of every
/// referenced Policy, as one list (allow if any allows, deny if any denies),
/// and where each run of its rule objects comes from.
fn combined_policy(
    a: &Annotations,
    ns: &str,
    policies: &HashMap<String, Result<serde_json::Value, String>>,
    problems: &mut Vec<String>,
) -> (Option<serde_json::Value>, Vec<RuleOrigin>) {
    if a.policy_refs.is_empty() {
        return (a.settings.get("policy").cloned(), Vec::new());
    }
    let mut rules: Vec<serde_json::Value> = Vec::new();
    let mut origins = Vec::new();
    let mut add = |list: &[serde_json::Value], policy: Option<String>| {
        origins.push(RuleOrigin {
            first: rules.len() + 1,
            rules: list.len(),
            setting: if policy.is_some() { "Policy" } else { "policy" },
            policy,
        });
        rules.extend(list.iter().cloned());
    };
    if let Some(v) = a.settings.get("policy") {
        match crate::policy::rule_list(v) {
            Ok(serde_json::Value::Array(list)) => add(&list, None),
            Ok(other) => add(std::slice::from_ref(&other), None),
            Err(e) => problems.push(format!("policy: {e}")),
        }
    }
    for r in &a.policy_refs {
        let policy = Some(format!("{ns}/{r}"));
        match policies.get(&format!("{ns}/{r}")) {
            Some(Ok(serde_json::Value::Array(list))) => add(list, policy),
            Some(Ok(other)) => add(std::slice::from_ref(other), policy),
            Some(Err(e)) => {
                problems.push(format!("policy_ref {r}: Policy {ns}/{r} is invalid: {e}"))
            }
            None => problems.push(format!("policy_ref {r}: Policy {ns}/{r} not found")),
        }
    }
    (Some(serde_json::Value::Array(rules)), origins)
}

/// The route settings every route of an Ingress shares, read from its
/// annotations once (each route then only says where it is).
fn base_config(
    a: &Annotations,
    policy: &Option<serde_json::Value>,
) -> Result<RouteOptions, String> {
    let mut m = a.settings.clone();
    m.remove("policy");
    if let Some(p) = policy {
        m.insert("policy".into(), p.clone());
    }
    serde_json::from_value::<RouteOptions>(serde_json::Value::Object(m))
        .map_err(|e| format!("annotations: {e}"))
}

/// Fills the Secret-backed settings from the Secrets the annotations name
/// (same namespace). A missing Secret or key is the route's problem.
fn with_secrets(
    mut o: RouteOptions,
    refs: &[(String, String)],
    idx: &Index<'_>,
    ns: &str,
) -> Result<RouteOptions, String> {
    let mut problems = Vec::new();
    for (key, name) in refs {
        let Some(secret) = idx.secrets.get(&(ns, name.as_str())) else {
            problems.push(format!("{key}: Secret {ns}/{name} not found"));
            continue;
        };
        let data: BTreeMap<String, String> = secret
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        let entry = |k: &str| {
            data.get(k)
                .cloned()
                .ok_or_else(|| format!("{key}: Secret {ns}/{name} has no key {k:?}"))
        };
        match key.as_str() {
            "tls_custom_ca_secret" => match entry("ca.crt") {
                Ok(pem) => o.tls_custom_ca = Some(pem),
                Err(e) => problems.push(e),
            },
            "tls_downstream_client_ca_secret" => match entry("ca.crt") {
                Ok(pem) => o.tls_downstream_client_ca = Some(pem),
                Err(e) => problems.push(e),
            },
            "tls_client_secret" => {
                let kind = secret.type_.as_deref().unwrap_or("Opaque");
                if kind != "kubernetes.io/tls" {
                    problems.push(format!(
                        "{key}: Secret {ns}/{name} is of type {kind}, not kubernetes.io/tls"
                    ));
                    continue;
                }
                match (entry("tls.crt"), entry("tls.key")) {
                    (Ok(cert), Ok(key)) => {
                        o.tls_client_cert = Some(cert);
                        o.tls_client_key = Some(key);
                    }
                    (Err(e), _) | (_, Err(e)) => problems.push(e),
                }
            }
            "identity_provider_secret" => match (entry("client_id"), entry("client_secret")) {
                (Ok(id), Ok(secret)) => {
                    o.idp_client_id = Some(id.trim().to_string());
                    o.idp_client_secret = Some(secret.trim().to_string());
                }
                (Err(e), _) | (_, Err(e)) => problems.push(e),
            },
            "set_request_headers_secret" => o.set_request_headers.extend(data.clone()),
            "set_response_headers_secret" => o
                .set_response_headers
                .get_or_insert_with(BTreeMap::new)
                .extend(data.clone()),
            _ => match entry("token") {
                Ok(t) => o.kubernetes_service_account_token = Some(t.trim().to_string()),
                Err(e) => problems.push(e),
            },
        }
    }
    match problems.is_empty() {
        true => Ok(o),
        false => Err(problems.join("; ")),
    }
}

/// The upstreams of an Ingress backend.
pub(super) fn backends(
    c: &Index<'_>,
    guard: &BackendGuard,
    ns: &str,
    backend: &IngressBackend,
    secure: bool,
    service_proxy: bool,
) -> Result<Vec<Upstream>, String> {
    if ns == "default"
        && backend
            .service
            .as_ref()
            .is_some_and(|s| s.name == "kubernetes")
    {
        return Err(
            "backend: Service default/kubernetes is the cluster's API server; refused".into(),
        );
    }
    let scheme = if secure {
        UpstreamScheme::Https
    } else {
        UpstreamScheme::Http
    };
    let svc_ref = backend.service.as_ref().ok_or_else(|| {
        "backend: only Service backends are supported (resource backends are not)".to_string()
    })?;
    let svc = c
        .services
        .get(&(ns, svc_ref.name.as_str()))
        .ok_or_else(|| format!("backend: Service {ns}/{} not found", svc_ref.name))?;
    let none = ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&none);
    let port = service_port(ns, svc_ref, spec)?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return external_name(guard, ns, &svc_ref.name, spec, scheme, port.port);
    }
    let upstream = |authority: String| Upstream {
        scheme,
        authority,
        base_path: String::new(),
    };
    let service_dns = format!("{}.{ns}.svc.cluster.local:{}", svc_ref.name, port.port);
    if service_proxy {
        // `service_proxy_upstream`: the Service's own address balances.
        return Ok(vec![upstream(service_dns)]);
    }
    let mut authorities = endpoint_authorities(c, guard, ns, &svc_ref.name, port)?;
    if authorities.is_empty() {
        authorities.push(service_dns);
    }
    Ok(authorities.into_iter().map(upstream).collect())
}

/// The Service port a backend names (by number or name; the first when it
/// names none).
fn service_port<'a>(
    ns: &str,
    svc_ref: &IngressServiceBackend,
    spec: &'a ServiceSpec,
) -> Result<&'a ServicePort, String> {
    let wanted = svc_ref.port.clone().unwrap_or_default();
    spec.ports
        .iter()
        .flatten()
        .find(|p| match (&wanted.number, &wanted.name) {
            (Some(n), _) => p.port == *n,
            (None, Some(name)) => p.name.as_deref() == Some(name.as_str()),
            (None, None) => true,
        })
        .ok_or_else(|| {
            format!(
                "backend: Service {ns}/{} has no port {}",
                svc_ref.name,
                wanted
                    .number
                    .map(|n| n.to_string())
                    .or(wanted.name.clone())
                    .unwrap_or_default()
            )
        })
}

/// An ExternalName Service's upstream: a name the Service's author typed,
/// checked like a `to` URL.
fn external_name(
    guard: &BackendGuard,
    ns: &str,
    name: &str,
    spec: &ServiceSpec,
    scheme: UpstreamScheme,
    port: i32,
) -> Result<Vec<Upstream>, String> {
    let ext = spec.external_name.clone().unwrap_or_default();
    if let Some(why) = guard.refuse_name(&ext) {
        return Err(format!(
            "backend: Service {ns}/{name} (ExternalName {ext}) is {why}; refused"
        ));
    }
    super::parse_upstream(&format!("{scheme}://{ext}:{port}"))
        .map(|u| vec![u])
        .map_err(|e| format!("backend: Service {ns}/{name} (ExternalName): {e}"))
}

/// `address:port` of every ready endpoint of the Service's EndpointSlices,
/// sorted and without repeats; an address the guard refuses refuses the
/// backend.
fn endpoint_authorities(
    c: &Index<'_>,
    guard: &BackendGuard,
    ns: &str,
    name: &str,
    port: &ServicePort,
) -> Result<Vec<String>, String> {
    let port_name = port.name.clone().unwrap_or_default();
    let mut authorities: Vec<String> = Vec::new();
    for slice in c.slices.get(&(ns, name)).into_iter().flatten() {
        let number = slice
            .ports
            .iter()
            .flatten()
            .find(|sp| sp.name.clone().unwrap_or_default() == port_name)
            .and_then(|sp| sp.port)
            .or(match &port.target_port {
                Some(IntOrString::Int(n)) => Some(*n),
                _ => None,
            });
        let Some(number) = number else { continue };
        let ready = slice
            .endpoints
            .iter()
            .filter(|ep| ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true));
        for addr in ready.flat_map(|ep| &ep.addresses) {
            if let Some(why) = addr.parse().ok().and_then(|ip| guard.refuse_ip(ip)) {
                return Err(format!(
                    "backend: Service {ns}/{name} has endpoint {addr}, {why}; refused"
                ));
            }
            let host = if addr.contains(':') {
                format!("[{addr}]")
            } else {
                addr.clone()
            };
            authorities.push(format!("{host}:{number}"));
        }
    }
    authorities.sort();
    authorities.dedup();
    Ok(authorities)
}

pub(super) fn tls_secret(c: &Index<'_>, ns: &str, name: &str) -> Result<CertInput, String> {
    let secret = c
        .secrets
        .get(&(ns, name))
        .ok_or_else(|| format!("TLS Secret {ns}/{name} not found"))?;
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.clone()).ok())
            .ok_or_else(|| format!("TLS Secret {ns}/{name}: no {k}"))
    };
    Ok(CertInput {
        source: ObjectRef::kube("Secret", ns, name),
        chain_pem: text("tls.crt")?,
        key_pem: text("tls.key")?,
        hosts: Vec::new(),
        generated: false,
    })
}

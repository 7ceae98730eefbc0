//! The cluster's objects translated a change at a time: the last
//! translation's [`ClusterInputs`] is kept with where each Ingress's parts
//! are in it ([`Layout`]) and an index from each Service, Secret and Policy
//! to the Ingresses that name it. The next set of objects is compared with
//! the last by `Arc` identity (the stores hand out the same `Arc` for an
//! object that did not change); only the Ingresses a changed object
//! reaches are read again, with an index of just the objects they name,
//! and their routes, diagnostics and certificates are replaced in place.
//!
//! That is exact only while the host-level decisions cannot change: host
//! ownership, delegations, first claims and the order of routes read what
//! [`cluster::Shape`] holds of each Ingress, the Ingress set and
//! IngressClasses, the remembered host claims and the clock's place
//! against their release. Everything else is translated whole by
//! [`cluster::from_cluster`]: an Ingress, Service, EndpointSlice, Secret
//! or Policy added or removed, an Ingress whose hosts, paths or
//! delegations change, a class change, a host claim released or expiring,
//! any Gateway API object present (the Gateway API part is translated
//! whole), a change to an object a cert-manager solver Ingress names, a Secret or Policy change that changes how many diagnostics or
//! certificates an Ingress has, or more than [`MOST_CHANGED`] objects at
//! once. A property test checks both paths against a translation from
//! nothing (`translate::incremental_tests`).

use super::cluster::{
    self, BackendGuard, Cluster, ClusterInputs, ClusterSettings, Index, Layout, OurClasses,
    Reference,
};
use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// More objects changed at once than this: a full translation.
pub const MOST_CHANGED: usize = 512;

/// What one update gives.
pub struct Update<'a> {
    /// The cluster's contribution, equal to [`cluster::from_cluster`]'s.
    pub inputs: &'a ClusterInputs,
    /// Positions in `inputs.routes` whose route input may differ from the
    /// last update's (all others are equal); `None`: any may.
    pub changed: Option<Vec<usize>>,
}

/// The last translation of the cluster's objects and what a change needs
/// to redo part of it.
#[derive(Default)]
pub struct ClusterMemo {
    last: Option<Last>,
}

impl ClusterMemo {
    /// Translates `c`, reading again only the Ingresses that objects
    /// changed since the last call reach when that is exact.
    pub fn update(&mut self, c: &Cluster, s: &ClusterSettings) -> Update<'_> {
        let settings = format!("{s:?}");
        let mut changed = None;
        if let Some(last) = self.last.as_mut().filter(|l| l.settings == settings) {
            changed = in_place(last, c, s);
        }
        if changed.is_none() {
            self.last = None;
        }
        let last = self.last.get_or_insert_with(|| Last::full(c, s, settings));
        Update {
            inputs: &last.out,
            changed,
        }
    }
}

/// The last translation with its layout and indexes.
struct Last {
    /// The settings' text.
    settings: String,
    /// The objects translated (the same `Arc`s).
    cluster: Cluster,
    out: ClusterInputs,
    layout: Layout,
    /// Reading position in `layout.ingresses` by namespace and name.
    by_key: HashMap<(String, String), usize>,
    /// Position in `cluster.ingresses` by reading position.
    ingress_at: Vec<usize>,
    /// Each object → the reading positions of the Ingresses naming it.
    dependents: HashMap<Reference, Vec<usize>>,
    /// Position in `cluster.services` by namespace and name.
    services: HashMap<(String, String), usize>,
    /// Positions in `cluster.slices` (ascending) by namespace and Service.
    slices: HashMap<(String, String), Vec<usize>>,
    /// Position in `cluster.secrets` by namespace and name.
    secrets: HashMap<(String, String), usize>,
}

fn key_of(m: &ObjectMeta) -> (String, String) {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

fn positions<T: Metadata<Ty = ObjectMeta>>(list: &[Arc<T>]) -> HashMap<(String, String), usize> {
    list.iter()
        .enumerate()
        .map(|(i, o)| (key_of(o.metadata()), i))
        .collect()
}

/// The Service an EndpointSlice belongs to (its label), by namespace.
fn slice_service(s: &k8s_openapi::api::discovery::v1::EndpointSlice) -> Option<(String, String)> {
    let name = s
        .metadata
        .labels
        .as_ref()?
        .get(cluster::SERVICE_NAME_LABEL)?;
    Some((
        s.metadata.namespace.clone().unwrap_or_default(),
        name.clone(),
    ))
}

impl Last {
    fn full(c: &Cluster, s: &ClusterSettings, settings: String) -> Last {
        let mut layout = Layout::default();
        let out = cluster::from_cluster_laid_out(c, s, Some(&mut layout));
        let by_key: HashMap<(String, String), usize> = layout
            .ingresses
            .iter()
            .enumerate()
            .map(|(i, l)| (l.key.clone(), i))
            .collect();
        let mut ingress_at = vec![0; layout.ingresses.len()];
        for (at, ing) in c.ingresses.iter().enumerate() {
            if let Some(&i) = by_key.get(&key_of(&ing.metadata)) {
                ingress_at[i] = at;
            }
        }
        let mut dependents: HashMap<Reference, Vec<usize>> = HashMap::new();
        for (i, l) in layout.ingresses.iter().enumerate() {
            for r in &l.references {
                dependents.entry(r.clone()).or_default().push(i);
            }
        }
        let mut slices: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, slice) in c.slices.iter().enumerate() {
            if let Some(k) = slice_service(slice) {
                slices.entry(k).or_default().push(i);
            }
        }
        Last {
            settings,
            cluster: c.clone(),
            out,
            layout,
            by_key,
            ingress_at,
            dependents,
            services: positions(&c.services),
            slices,
            secrets: positions(&c.secrets),
        }
    }
}

/// Positions at which `new` holds another object than `old`; `None` when
/// the lists differ in length or more than `budget` allows changed.
fn moved<T>(old: &[Arc<T>], new: &[Arc<T>], budget: &mut usize) -> Option<Vec<usize>> {
    if old.len() != new.len() {
        return None;
    }
    let mut out = Vec::new();
    for (i, (a, b)) in old.iter().zip(new).enumerate() {
        if !Arc::ptr_eq(a, b) {
            *budget = budget.checked_sub(1)?;
            out.push(i);
        }
    }
    Some(out)
}

/// The same object (namespace and name) at one position of both lists.
fn same_key(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.namespace == b.namespace && a.name == b.name
}

/// Whether nothing but Ingresses, Services, EndpointSlices, Secrets and
/// Policies may have changed the translation: the same classes, no
/// Gateway API objects, the same host claims and none released or
/// expired between the two clocks.
fn same_context(old: &Cluster, c: &Cluster, s: &ClusterSettings) -> bool {
    let g = &c.gateway;
    let no_gateway = g.classes.is_empty()
        && g.gateways.is_empty()
        && g.http_routes.is_empty()
        && g.grpc_routes.is_empty()
        && g.grants.is_empty()
        && g.policy_filters.is_empty()
        && g.backend_tls_policies.is_empty();
    let expiry_crossed = c.claims.values().filter_map(|h| h.released).any(|t| {
        let end = t.saturating_add(s.claim_grace_seconds);
        (old.now < end) != (c.now < end)
    });
    no_gateway
        && moved(&old.classes, &c.classes, &mut 0).is_some_and(|m| m.is_empty())
        && !expiry_crossed
        && old.claims == c.claims
}

/// The positions of the objects that changed, by kind.
struct Moved {
    ingresses: Vec<usize>,
    services: Vec<usize>,
    slices: Vec<usize>,
    secrets: Vec<usize>,
    policies: Vec<usize>,
}

impl Moved {
    /// `None`: a list changed length, or more than [`MOST_CHANGED`]
    /// objects changed.
    fn between(old: &Cluster, c: &Cluster) -> Option<Moved> {
        let mut budget = MOST_CHANGED;
        Some(Moved {
            ingresses: moved(&old.ingresses, &c.ingresses, &mut budget)?,
            services: moved(&old.services, &c.services, &mut budget)?,
            slices: moved(&old.slices, &c.slices, &mut budget)?,
            secrets: moved(&old.secrets, &c.secrets, &mut budget)?,
            policies: moved(&old.policies, &c.policies, &mut budget)?,
        })
    }

    /// The Services, Secrets and Policies that changed where they were;
    /// `None` when one was replaced by another object, or an object the
    /// backend guard reads (the API server's Service) changed.
    fn references(&self, old: &Cluster, c: &Cluster) -> Option<BTreeSet<Reference>> {
        let mut out = BTreeSet::new();
        for &i in &self.services {
            let (a, b) = (&old.services[i].metadata, &c.services[i].metadata);
            let (ns, name) = key_of(b);
            if !same_key(a, b) || (ns == "default" && name == "kubernetes") {
                return None;
            }
            out.insert(Reference::Service(ns, name));
        }
        for &i in &self.slices {
            let (a, b) = (&old.slices[i], &c.slices[i]);
            let service = slice_service(b);
            if !same_key(&a.metadata, &b.metadata) || slice_service(a) != service {
                return None;
            }
            match service {
                Some((ns, name)) if ns == "default" && name == "kubernetes" => return None,
                Some((ns, name)) => out.insert(Reference::Service(ns, name)),
                None => false,
            };
        }
        for &i in &self.secrets {
            let (a, b) = (&old.secrets[i].metadata, &c.secrets[i].metadata);
            if !same_key(a, b) {
                return None;
            }
            let (ns, name) = key_of(b);
            out.insert(Reference::Secret(ns, name));
        }
        for &i in &self.policies {
            let (a, b) = (&old.policies[i].metadata, &c.policies[i].metadata);
            if !same_key(a, b) {
                return None;
            }
            let (ns, name) = key_of(b);
            out.insert(Reference::Policy(ns, name));
        }
        Some(out)
    }
}

/// Replaces the parts of the Ingresses that changed objects reach;
/// `None` when that would not be exact (the caller translates whole).
fn in_place(last: &mut Last, c: &Cluster, s: &ClusterSettings) -> Option<Vec<usize>> {
    if !same_context(&last.cluster, c, s) {
        return None;
    }
    let old = &last.cluster;
    let moved = Moved::between(old, c)?;
    let reached = moved.references(old, c)?;
    // A solver Ingress's routes are translated with the whole.
    if last
        .layout
        .solver_references
        .iter()
        .any(|r| reached.contains(r))
    {
        return None;
    }
    let mut touched: BTreeSet<usize> = reached
        .iter()
        .flat_map(|r| last.dependents.get(r).into_iter().flatten().copied())
        .collect();
    let classes = OurClasses::new(c, s);
    let managed = |i: &k8s_openapi::api::networking::v1::Ingress| {
        cluster::managed(i, &classes.names, classes.default_is_ours)
    };
    for &i in &moved.ingresses {
        let (a, b) = (&old.ingresses[i], &c.ingresses[i]);
        if !same_key(&a.metadata, &b.metadata) {
            return None;
        }
        match last.by_key.get(&key_of(&b.metadata)) {
            Some(&read) => {
                touched.insert(read);
            }
            None if managed(a) || managed(b) => return None,
            None => {}
        }
    }
    if !moved.policies.is_empty() {
        recompile_policies(last, c)?;
    }
    let mut changed = Vec::new();
    for read in touched {
        let ing = &c.ingresses[last.ingress_at[read]];
        if !managed(ing) || super::acme::is_solver(ing) {
            return None;
        }
        reread(last, c, s, read, ing, &mut changed)?;
    }
    let kept = &mut last.cluster;
    copy_at(&mut kept.ingresses, &c.ingresses, &moved.ingresses);
    copy_at(&mut kept.services, &c.services, &moved.services);
    copy_at(&mut kept.slices, &c.slices, &moved.slices);
    copy_at(&mut kept.secrets, &c.secrets, &moved.secrets);
    copy_at(&mut kept.policies, &c.policies, &moved.policies);
    kept.now = c.now;
    Some(changed)
}

fn copy_at<T>(kept: &mut [Arc<T>], new: &[Arc<T>], at: &[usize]) {
    for &i in at {
        kept[i] = new[i].clone();
    }
}

/// Compiles the Policies again (all of them: they are few) and replaces
/// their diagnostics and outcomes; `None` when the number of their
/// diagnostics changed.
fn recompile_policies(last: &mut Last, c: &Cluster) -> Option<()> {
    let mut fresh = ClusterInputs::default();
    let policies = cluster::compile_policies(c, &mut fresh);
    if fresh.diagnostics.len() != last.layout.policy_diagnostics {
        return None;
    }
    last.out.diagnostics[..fresh.diagnostics.len()].clone_from_slice(&fresh.diagnostics);
    last.out.policies = fresh.policies;
    last.layout.policies = policies;
    Some(())
}

/// The objects `references` name (and the API server's Service, which
/// the backend guard reads), each EndpointSlice in the order the full
/// translation meets it.
fn named_objects(last: &Last, c: &Cluster, references: &[Reference]) -> Cluster {
    let mut out = Cluster::default();
    let api = Reference::Service("default".into(), "kubernetes".into());
    let extra = (!references.contains(&api)).then_some(&api);
    for r in references.iter().chain(extra) {
        match r {
            Reference::Service(ns, name) => {
                let k = (ns.clone(), name.clone());
                if let Some(&i) = last.services.get(&k) {
                    out.services.push(c.services[i].clone());
                }
                for &i in last.slices.get(&k).into_iter().flatten() {
                    out.slices.push(c.slices[i].clone());
                }
            }
            Reference::Secret(ns, name) => {
                if let Some(&i) = last.secrets.get(&(ns.clone(), name.clone())) {
                    out.secrets.push(c.secrets[i].clone());
                }
            }
            Reference::Policy(..) => {}
        }
    }
    out
}

/// Reads the Ingress at reading position `read` again and replaces its
/// read diagnostics, routes, certificate diagnostics and certificates,
/// adding the positions of routes whose input changed to `changed`;
/// `None` when its shape or the number of its parts changed.
fn reread(
    last: &mut Last,
    c: &Cluster,
    s: &ClusterSettings,
    read: usize,
    ing: &k8s_openapi::api::networking::v1::Ingress,
    changed: &mut Vec<usize>,
) -> Option<()> {
    let references = cluster::references_of(ing, s);
    let objects = named_objects(last, c, &references);
    let idx = Index::new(&objects);
    let guard = BackendGuard::new(&idx, s);
    let mut fresh = ClusterInputs::default();
    let r = cluster::read_ingress(ing, s, &idx, &last.layout.policies, &mut fresh);
    let laid = &last.layout.ingresses[read];
    let slots = laid.slots.clone();
    if r.shape() != laid.shape || fresh.diagnostics.len() != slots.read_diagnostics.len() {
        return None;
    }
    let out = &mut last.out;
    out.diagnostics[slots.read_diagnostics.clone()].clone_from_slice(&fresh.diagnostics);
    for (k, &entry) in slots.served.iter().enumerate() {
        let input = cluster::route_input(&r, entry + 1, &r.entries[entry], &idx, &guard);
        let at = slots.routes.start + k;
        if out.routes[at] != input {
            out.routes[at] = input;
            changed.push(at);
        }
    }
    let mut certs = ClusterInputs::default();
    cluster::certificates(&r, &idx, &last.layout.owners, &mut certs);
    if certs.diagnostics.len() != slots.cert_diagnostics.len()
        || certs.certificates.len() != slots.certificates.len()
    {
        return None;
    }
    out.diagnostics[slots.cert_diagnostics].clone_from_slice(&certs.diagnostics);
    out.certificates[slots.certificates].clone_from_slice(&certs.certificates);
    if references != laid.references {
        for old in &laid.references {
            if let Some(list) = last.dependents.get_mut(old) {
                list.retain(|&i| i != read);
            }
        }
        for new in &references {
            last.dependents.entry(new.clone()).or_default().push(read);
        }
        last.layout.ingresses[read].references = references;
    }
    Some(())
}

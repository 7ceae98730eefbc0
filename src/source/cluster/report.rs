//! What the controller tells the cluster after each translation: Events,
//! the `jetbridge.dev/status` annotation and `status.loadBalancer` of each
//! Ingress, each Policy's `Accepted` and `Attached` conditions and each
//! PolicyFilter's `Valid` ([`super::policy_filter`]).
//!
//! Every replica logs each problem once; only the Lease holder
//! ([`super::leader`]) writes to the API server, so N replicas write one
//! Event per problem, not N. A replica that becomes the holder first
//! recalls what was already reported from the objects themselves (the
//! status annotation, the Policy condition), then writes what is current:
//! a hand-over neither repeats nor loses a report. (Problems of other
//! objects, such as the bootstrap Secret, leave no such record: a new holder
//! reports them once more.)
//!
//! Each Ingress's state is `Programmed` (served; warnings may follow) or
//! `Invalid` (at least one error: its routes deny). A change to
//! `Programmed` is a Normal Event (`Programmed`, and on recovery from
//! `Invalid` a note saying so); each new problem is a Warning Event with its
//! own message. An `Invalid` Ingress gets no address in
//! `status.loadBalancer` (it is cleared, and written back once fixed), and
//! neither does an Ingress jetbridge no longer serves (its class changed or
//! was deleted) or any Ingress once the publish Service is gone.

use super::events::{EventWriter, Kind};
use super::leader::Leadership;
use super::{Options, ingress_status};
use crate::model::{Diagnostic, ObjectRef, Severity};
use crate::translate::cluster::{Cluster, PolicyOutcome};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Client, Resource, ResourceExt as _};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::watch;

/// What one translation tells the cluster about.
pub(super) struct Reported {
    pub cluster: Cluster,
    pub diagnostics: Vec<Diagnostic>,
    /// `namespace/name` of every Ingress jetbridge serves.
    pub managed: Vec<String>,
    pub policies: Vec<PolicyOutcome>,
    /// What the Gateway API objects came to, for their status.
    pub gateway: crate::translate::gateway::GatewayInputs,
    /// A problem with the bootstrap Secret (not in the watched stores).
    pub bootstrap: Option<(ObjectReference, String)>,
}

/// One problem, resolved to the object an Event is about.
pub(super) struct Problem {
    pub object: ObjectRef,
    pub reference: Option<ObjectReference>,
    pub severity: Severity,
    pub reason: &'static str,
    /// One line: the annotation lists one message per line.
    pub message: String,
}

/// What the Lease holder has reported, so that it reports only changes.
struct Memory {
    /// (object, message) pairs already sent as Warning Events.
    evented: BTreeSet<(ObjectRef, String)>,
    /// The state of each Ingress (`namespace/name`, as its annotation value)
    /// last announced, or found on the object by [`recall`].
    states: HashMap<String, String>,
}

/// Writes the latest outcome until `shutdown` (again when the Gateway ports
/// the data plane could not listen on change); skips intermediate outcomes
/// when it falls behind. On shutdown, the holder clears the addresses it
/// published if the publish Service is gone (the release was uninstalled).
pub(super) async fn run(
    mut latest: watch::Receiver<Option<Arc<Reported>>>,
    mut events: EventWriter,
    client: Client,
    options: Options,
    leadership: Leadership,
    reader: crate::snapshot::SnapshotReader,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut leading = leadership.subscribe();
    let mut logged: BTreeSet<(ObjectRef, String)> = BTreeSet::new();
    let mut memory: Option<Memory> = None;
    let mut published = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = latest.changed() => if r.is_err() { break },
            r = leading.changed() => if r.is_err() { break },
            _ = reader.unbound_changed() => {}
        }
        let Some(r) = latest.borrow_and_update().clone() else {
            continue;
        };
        let problems = problems(&r);
        log_new(&problems, &mut logged);
        if !*leading.borrow_and_update() {
            memory = None;
            continue;
        }
        let memory = memory.get_or_insert_with(|| recall(&r.cluster));
        let by_ingress = problems_by_ingress(&problems);
        report_problems(&mut events, &problems, memory).await;
        report_states(&mut events, &client, &r, &by_ingress, memory).await;
        super::policy_filter::write_policy_status(
            &client,
            &r.cluster.policies,
            &r.policies,
            &r.gateway.policy_targets,
        )
        .await;
        super::policy_filter::write_status(
            &client,
            &r.cluster.gateway.policy_filters,
            &r.gateway.policy_filters,
        )
        .await;
        if let Some(lb) =
            ingress_status::publish(&client, &options, &r, &by_ingress, &published).await
        {
            published = lb;
        }
        let publish = options.publish_service.as_ref();
        let unbound = reader.unbound_gateway_ports();
        super::gateway_status::write(
            &client, &r.cluster, &r.gateway, &published, publish, &unbound,
        )
        .await;
    }
    let last = latest.borrow().clone();
    if memory.is_some()
        && let Some(r) = last
    {
        ingress_status::on_shutdown(&client, &options, &r, &published).await;
    }
}

/// The diagnostics and the bootstrap Secret's problem, with their objects.
fn problems(r: &Reported) -> Vec<Problem> {
    let mut out: Vec<Problem> = r
        .diagnostics
        .iter()
        .map(|d| Problem {
            object: d.object.clone(),
            reference: reference(&r.cluster, &d.object),
            severity: d.severity,
            reason: d.reason.as_str(),
            message: one_line(&d.message),
        })
        .collect();
    if let Some((reference, message)) = &r.bootstrap {
        out.push(Problem {
            object: ObjectRef::kube(
                "Secret",
                reference.namespace.as_deref().unwrap_or_default(),
                reference.name.as_deref().unwrap_or_default(),
            ),
            reference: Some(reference.clone()),
            severity: Severity::Error,
            reason: "InvalidBootstrapSecret",
            message: one_line(&format!("{message}; the last good keys stay in use")),
        });
    }
    out
}

/// `s` with its line breaks turned into spaces.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Logs each problem once while it lasts (every replica logs).
fn log_new(problems: &[Problem], logged: &mut BTreeSet<(ObjectRef, String)>) {
    let current: BTreeSet<(ObjectRef, String)> = problems
        .iter()
        .map(|p| (p.object.clone(), p.message.clone()))
        .collect();
    for p in problems {
        if logged.contains(&(p.object.clone(), p.message.clone())) {
            continue;
        }
        match p.severity {
            Severity::Error => tracing::error!(object = %p.object, "{}", p.message),
            Severity::Warning => tracing::warn!(object = %p.object, "{}", p.message),
        }
    }
    *logged = current;
}

/// What a new Lease holder finds already reported: each Ingress's status
/// annotation (its state and the messages it lists) and each failing
/// Policy's condition message.
fn recall(cluster: &Cluster) -> Memory {
    let mut memory = Memory {
        evented: BTreeSet::new(),
        states: HashMap::new(),
    };
    for ing in &cluster.ingresses {
        let Some(value) = ing.annotations().get(ingress_status::STATUS_ANNOTATION) else {
            continue;
        };
        let (ns, name) = (ing.namespace().unwrap_or_default(), ing.name_any());
        let object = ObjectRef::kube("Ingress", &ns, &name);
        for m in ingress_status::State::parse(value).messages {
            memory.evented.insert((object.clone(), m));
        }
        memory.states.insert(format!("{ns}/{name}"), value.clone());
    }
    for p in &cluster.policies {
        let failed = p.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "Accepted" && c.status == "False")
        });
        if let Some(message) = failed.and_then(|c| c.message.as_deref()) {
            // The Policy's diagnostic is its condition message after "policy: ".
            let object =
                ObjectRef::kube("Policy", &p.namespace().unwrap_or_default(), &p.name_any());
            memory
                .evented
                .insert((object, one_line(&format!("policy: {message}"))));
        }
    }
    memory
}

/// A Warning Event for each problem not reported yet.
async fn report_problems(events: &mut EventWriter, problems: &[Problem], memory: &mut Memory) {
    let mut current = BTreeSet::new();
    for p in problems {
        let key = (p.object.clone(), p.message.clone());
        current.insert(key.clone());
        if memory.evented.contains(&key) {
            continue;
        }
        let Some(reference) = &p.reference else {
            continue;
        };
        if let Err(e) = events
            .publish(reference, Kind::Warning, p.reason, &p.message)
            .await
        {
            tracing::warn!(object = %p.object, error = %e, "cannot record an Event");
            // Not remembered: tried again with the next outcome.
            current.remove(&key);
        }
    }
    memory.evented = current;
}

/// The problems of each Ingress (`namespace/name`), in order.
fn problems_by_ingress(problems: &[Problem]) -> BTreeMap<String, Vec<&Problem>> {
    let mut out: BTreeMap<String, Vec<&Problem>> = BTreeMap::new();
    for p in problems.iter().filter(|p| p.object.kind == "Ingress") {
        out.entry(format!("{}/{}", p.object.namespace, p.object.name))
            .or_default()
            .push(p);
    }
    out
}

/// Announces each managed Ingress's state when it changed (a Normal Event
/// when it becomes `Programmed`) and writes its status annotation when the
/// object shows another value.
async fn report_states(
    events: &mut EventWriter,
    client: &Client,
    r: &Reported,
    by_ingress: &BTreeMap<String, Vec<&Problem>>,
    memory: &mut Memory,
) {
    let shown: HashMap<String, Option<&String>> = r
        .cluster
        .ingresses
        .iter()
        .map(|i| {
            let key = format!("{}/{}", i.namespace().unwrap_or_default(), i.name_any());
            (key, i.annotations().get(ingress_status::STATUS_ANNOTATION))
        })
        .collect();
    for key in &r.managed {
        let problems = by_ingress.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let value = ingress_status::State::of(problems).to_annotation();
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        if memory.states.get(key) != Some(&value) {
            let before = memory
                .states
                .get(key)
                .map(|v| ingress_status::State::parse(v));
            let object = ObjectRef::kube("Ingress", ns, name);
            if !announce(events, &r.cluster, &object, before.as_ref(), &value).await {
                continue; // tried again with the next outcome
            }
            memory.states.insert(key.clone(), value.clone());
        }
        if shown.get(key).copied().flatten() != Some(&value) {
            ingress_status::write_annotation(client, ns, name, &value).await;
        }
    }
    let managed: BTreeSet<&String> = r.managed.iter().collect();
    memory.states.retain(|k, _| managed.contains(k));
}

/// A Normal `Programmed` Event when an Ingress becomes served (first, or
/// again after `Invalid`); false when the Event could not be written.
async fn announce(
    events: &mut EventWriter,
    cluster: &Cluster,
    object: &ObjectRef,
    before: Option<&ingress_status::State>,
    value: &str,
) -> bool {
    let now = ingress_status::State::parse(value);
    if !now.programmed || before.is_some_and(|b| b.programmed) {
        return true;
    }
    let note = if before.is_some() {
        "the problems reported earlier are fixed: routes are served by jetbridge again"
    } else {
        "routes are served by jetbridge"
    };
    let Some(reference) = reference(cluster, object) else {
        return true;
    };
    match events
        .publish(&reference, Kind::Normal, "Programmed", note)
        .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(object = %object, error = %e, "cannot record an Event");
            false
        }
    }
}

fn find_ref<K: Resource<DynamicType = ()>>(
    objs: &[Arc<K>],
    ns: &str,
    name: &str,
) -> Option<ObjectReference> {
    objs.iter()
        .find(|o| {
            o.meta().namespace.as_deref() == Some(ns) && o.meta().name.as_deref() == Some(name)
        })
        .map(|o| o.object_ref(&()))
}

/// The Kubernetes object a diagnostic is about.
fn reference(cluster: &Cluster, object: &ObjectRef) -> Option<ObjectReference> {
    let (ns, name) = (object.namespace.as_str(), object.name.as_str());
    match object.kind.as_str() {
        "Ingress" => find_ref(&cluster.ingresses, ns, name),
        "Policy" => find_ref(&cluster.policies, ns, name),
        "Secret" => find_ref(&cluster.secrets, ns, name),
        "PolicyFilter" => find_ref(&cluster.gateway.policy_filters, ns, name),
        _ => None,
    }
}

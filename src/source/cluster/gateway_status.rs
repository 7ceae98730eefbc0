//! Gateway API status, written by the Lease holder after each translation:
//! GatewayClass `Accepted`; Gateway `Accepted` and `Programmed` with each
//! listener's conditions and attached-route count; each HTTPRoute's and
//! GRPCRoute's `status.parents[]` entries for our Gateways (`Accepted`,
//! `ResolvedRefs`, with the spec's reasons), leaving other controllers'
//! entries as they are. Each object is written only when what it says changed, with
//! `observedGeneration` set.

use crate::crd::gateway::{
    GROUP, Gateway, GatewayClass, GatewayStatus, GatewayStatusAddress, GrpcRoute, HttpRoute,
    ListenerStatus, RouteGroupKind, RouteParentStatus, RouteStatus,
};
use crate::translate::cluster::Cluster;
use crate::translate::gateway::{ConditionOutcome, GatewayInputs, ListenerOutcome};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeMap;

/// Writes the status of every Gateway API object the translation concluded
/// about.
///
/// Each Gateway's `status.addresses` is its own Service's address
/// ([`super::gateway_service`], applied here from the publish Service
/// `publish`); a Gateway without one (no publish Service, or its Service
/// could not be written) shows `published`: the addresses Ingresses show
/// (`status.loadBalancer` entries, from the publish Service or the
/// configured addresses).
pub(super) async fn write(
    client: &Client,
    cluster: &Cluster,
    outcomes: &GatewayInputs,
    published: &[serde_json::Value],
    publish: Option<&(String, String)>,
    unbound: &BTreeMap<u16, String>,
) {
    let shared = addresses(published);
    let own = super::gateway_service::apply(
        client,
        publish,
        &cluster.gateway.gateways,
        &outcomes.gateways,
        &outcomes.listeners,
        &cluster.services,
    )
    .await;
    write_classes(client, cluster, outcomes).await;
    write_gateways(client, cluster, outcomes, &own, &shared, unbound).await;
    write_routes(client, cluster, outcomes).await;
}

async fn write_classes(client: &Client, cluster: &Cluster, outcomes: &GatewayInputs) {
    for class in cluster.gateway.classes.iter().filter(|c| {
        outcomes
            .classes
            .iter()
            .any(|n| Some(n) == c.metadata.name.as_ref())
    }) {
        let old = class
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or(&[]);
        let conditions = vec![condition(
            old,
            "Accepted",
            &Ok(()),
            "Accepted",
            class.metadata.generation,
        )];
        if !same(old, &conditions) {
            let api: Api<GatewayClass> = Api::all(client.clone());
            let name = class.metadata.name.clone().unwrap_or_default();
            patch(
                &api,
                &name,
                &serde_json::json!({"status": {"conditions": conditions}}),
            )
            .await;
        }
    }
}

/// `status.loadBalancer.ingress` entries as Gateway addresses.
fn addresses(published: &[serde_json::Value]) -> Vec<GatewayStatusAddress> {
    published
        .iter()
        .filter_map(|e| {
            let field = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_string);
            match (field("ip"), field("hostname")) {
                (Some(ip), _) => Some(("IPAddress", ip)),
                (None, Some(h)) => Some(("Hostname", h)),
                _ => None,
            }
        })
        .map(|(kind, value)| GatewayStatusAddress {
            type_: Some(kind.into()),
            value,
        })
        .collect()
}

async fn write_gateways(
    client: &Client,
    cluster: &Cluster,
    outcomes: &GatewayInputs,
    own: &BTreeMap<String, Vec<GatewayStatusAddress>>,
    shared: &[GatewayStatusAddress],
    unbound: &BTreeMap<u16, String>,
) {
    for g in &cluster.gateway.gateways {
        let (ns, name) = (
            g.metadata.namespace.clone().unwrap_or_default(),
            g.metadata.name.clone().unwrap_or_default(),
        );
        if !outcomes
            .gateways
            .iter()
            .any(|(k, _)| *k == format!("{ns}/{name}"))
        {
            continue;
        }
        let addresses = own
            .get(&format!("{ns}/{name}"))
            .map_or(shared, Vec::as_slice);
        let status = gateway_status(g, &outcomes.listeners, addresses, unbound);
        if g.status.as_ref() != Some(&status) && !same_gateway(g.status.as_ref(), &status) {
            let api: Api<Gateway> = Api::namespaced(client.clone(), &ns);
            // Written only over the status it was computed from: a condition
            // another controller added since is not overwritten (the write
            // conflicts, and the change that caused it is translated anew).
            let body = serde_json::json!({
                "metadata": {"resourceVersion": g.metadata.resource_version},
                "status": status,
            });
            patch(&api, &name, &body).await;
        }
    }
}

async fn write_routes(client: &Client, cluster: &Cluster, outcomes: &GatewayInputs) {
    for r in &cluster.gateway.http_routes {
        let Some((ns, name, status)) = route_update("HTTPRoute", &r.metadata, &r.status, outcomes)
        else {
            continue;
        };
        let api: Api<HttpRoute> = Api::namespaced(client.clone(), &ns);
        patch(&api, &name, &serde_json::json!({ "status": status })).await;
    }
    write_grpc_routes(client, cluster, outcomes).await;
}

/// GRPCRoute `status.parents[]`, as for HTTPRoutes.
async fn write_grpc_routes(client: &Client, cluster: &Cluster, outcomes: &GatewayInputs) {
    for r in &cluster.gateway.grpc_routes {
        let Some((ns, name, status)) = route_update("GRPCRoute", &r.metadata, &r.status, outcomes)
        else {
            continue;
        };
        let api: Api<GrpcRoute> = Api::namespaced(client.clone(), &ns);
        patch(&api, &name, &serde_json::json!({ "status": status })).await;
    }
}

/// A route's new status — our parents' entries replaced, other
/// controllers' kept — with its namespace and name, or `None` when it
/// says what the route's status already says.
fn route_update(
    kind: &str,
    meta: &ObjectMeta,
    status: &Option<RouteStatus>,
    outcomes: &GatewayInputs,
) -> Option<(String, String, RouteStatus)> {
    let controller = crate::translate::gateway::CONTROLLER;
    let (ns, name) = (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    );
    let current = status.clone().unwrap_or_default().parents;
    let ours: Vec<RouteParentStatus> = outcomes
        .parents
        .iter()
        .filter(|p| p.kind == kind && p.namespace == ns && p.name == name)
        .map(|p| {
            let old = current
                .iter()
                .find(|o| o.parent_ref == p.parent)
                .map(|o| o.conditions.as_slice())
                .unwrap_or(&[]);
            RouteParentStatus {
                parent_ref: p.parent.clone(),
                controller_name: controller.into(),
                conditions: vec![
                    condition(old, "Accepted", &p.accepted, "Accepted", p.generation),
                    condition(
                        old,
                        "ResolvedRefs",
                        &p.resolved_refs,
                        "ResolvedRefs",
                        p.generation,
                    ),
                ],
            }
        })
        .collect();
    let mut parents: Vec<RouteParentStatus> = current
        .iter()
        .filter(|p| p.controller_name != controller)
        .cloned()
        .collect();
    parents.extend(ours);
    let unchanged = parents.len() == current.len()
        && parents.iter().all(|p| {
            current.iter().any(|c| {
                c.parent_ref == p.parent_ref
                    && c.controller_name == p.controller_name
                    && same(&c.conditions, &p.conditions)
            })
        });
    (!unchanged).then_some((ns, name, RouteStatus { parents }))
}

/// The Gateway's conditions and listener statuses. A listener whose port
/// the proxy cannot listen on (`unbound`, by proxy port) is not
/// `Programmed` (reason `Pending`), nor is the Gateway.
fn gateway_status(
    g: &Gateway,
    listeners: &[ListenerOutcome],
    addresses: &[GatewayStatusAddress],
    unbound: &BTreeMap<u16, String>,
) -> GatewayStatus {
    let old = g.status.clone().unwrap_or_default();
    let generation = g.metadata.generation;
    let ns = g.metadata.namespace.as_deref().unwrap_or("");
    let name = g.metadata.name.as_deref().unwrap_or("");
    let mut pending = Vec::new();
    let listeners: Vec<ListenerStatus> = listeners
        .iter()
        .filter(|l| l.namespace == ns && l.gateway == name)
        .map(|l| {
            let before = old
                .listeners
                .iter()
                .find(|o| o.name == l.listener)
                .map(|o| o.conditions.as_slice())
                .unwrap_or(&[]);
            let programmed = programmed(l, unbound);
            if let Err((reason, message)) = &programmed
                && reason == PENDING
            {
                pending.push(format!("listener {}: {message}", l.listener));
            }
            listener_status(l, before, generation, &programmed)
        })
        .collect();
    let (accepted, reason) = gateway_accepted(&listeners);
    let programmed = accepted
        .clone()
        .map_err(|(_, m)| ("Invalid".into(), m))
        .and_then(|()| match pending.is_empty() {
            true => Ok(()),
            false => Err((PENDING.into(), pending.join("; "))),
        });
    GatewayStatus {
        addresses: addresses.to_vec(),
        conditions: keep_foreign(
            &old.conditions,
            vec![
                condition(&old.conditions, "Accepted", &accepted, reason, generation),
                condition(
                    &old.conditions,
                    "Programmed",
                    &programmed,
                    "Programmed",
                    generation,
                ),
            ],
        ),
        listeners,
    }
}

/// The `Programmed` reason of a listener the proxy is not serving yet.
const PENDING: &str = "Pending";

/// A listener's `Programmed`: `Invalid` when it is not accepted or its
/// references do not resolve, else `Pending` while the proxy cannot listen
/// on its Gateway port (`unbound`, by proxy port, with why).
fn programmed(l: &ListenerOutcome, unbound: &BTreeMap<u16, String>) -> ConditionOutcome {
    l.accepted
        .clone()
        .and(l.resolved_refs.clone())
        .map_err(|(_, m)| ("Invalid".to_string(), m))?;
    let Some(port) = &l.gateway_port else {
        return Ok(());
    };
    match unbound.get(&port.proxy_port) {
        None => Ok(()),
        Some(error) => Err((
            PENDING.into(),
            format!(
                "the proxy cannot listen on port {} (serving port {}): {error}; retrying",
                port.proxy_port, port.port
            ),
        )),
    }
}

/// One listener's status: its kinds, attached routes and conditions.
fn listener_status(
    l: &ListenerOutcome,
    before: &[Condition],
    generation: Option<i64>,
    programmed: &ConditionOutcome,
) -> ListenerStatus {
    ListenerStatus {
        name: l.listener.clone(),
        supported_kinds: l
            .supported_kinds
            .iter()
            .map(|kind| RouteGroupKind {
                group: Some(GROUP.into()),
                kind: kind.clone(),
            })
            .collect(),
        attached_routes: l.attached_routes,
        conditions: keep_foreign(
            before,
            vec![
                condition(before, "Accepted", &l.accepted, "Accepted", generation),
                condition(
                    before,
                    "ResolvedRefs",
                    &l.resolved_refs,
                    "ResolvedRefs",
                    generation,
                ),
                condition(before, "Programmed", programmed, "Programmed", generation),
            ],
        ),
    }
}

/// `ours` followed by the conditions in `old` of the types jetbridge does
/// not write (another controller's), unchanged: a status write replaces the
/// whole list, and the spec has an implementation leave those alone.
fn keep_foreign(old: &[Condition], mut ours: Vec<Condition>) -> Vec<Condition> {
    let foreign: Vec<Condition> = old
        .iter()
        .filter(|c| !ours.iter().any(|o| o.type_ == c.type_))
        .cloned()
        .collect();
    ours.extend(foreign);
    ours
}

/// The Gateway's `Accepted`: `False` (`ListenersNotValid`) when no listener
/// is accepted; `True`, with the reason `ListenersNotValid` when some are
/// not, else `Accepted`.
fn gateway_accepted(listeners: &[ListenerStatus]) -> (ConditionOutcome, &'static str) {
    let accepted = |l: &&ListenerStatus| {
        l.conditions
            .iter()
            .any(|c| c.type_ == "Accepted" && c.status == "True")
    };
    let valid = listeners.iter().filter(accepted).count();
    match (valid, listeners.len()) {
        (0, n) if n > 0 => (
            Err(("ListenersNotValid".into(), "no listener is valid".into())),
            "Accepted",
        ),
        (v, n) if v < n => (Ok(()), "ListenersNotValid"),
        _ => (Ok(()), "Accepted"),
    }
}

fn same_gateway(old: Option<&GatewayStatus>, new: &GatewayStatus) -> bool {
    old.is_some_and(|o| {
        o.addresses == new.addresses
            && same(&o.conditions, &new.conditions)
            && o.listeners.len() == new.listeners.len()
            && o.listeners.iter().zip(&new.listeners).all(|(a, b)| {
                a.name == b.name
                    && a.attached_routes == b.attached_routes
                    && a.supported_kinds == b.supported_kinds
                    && same(&a.conditions, &b.conditions)
            })
    })
}

/// One condition: `True` with `ok_reason`, or `False` with the outcome's
/// reason; the transition time kept while the status stays.
fn condition(
    old: &[Condition],
    type_: &str,
    outcome: &ConditionOutcome,
    ok_reason: &str,
    generation: Option<i64>,
) -> Condition {
    let (status, reason, message) = match outcome {
        Ok(()) => ("True", ok_reason.to_string(), String::new()),
        Err((reason, message)) => ("False", reason.clone(), message.clone()),
    };
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason,
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// Whether two condition lists say the same (times aside).
fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

async fn patch<K>(api: &Api<K>, name: &str, body: &serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(body))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::debug!(object = %name, "the Gateway API status changed meanwhile: written after the next translation");
        }
        Err(e) => {
            tracing::warn!(object = %name, error = %e, "cannot write the Gateway API status")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::gateway::ParentReference;
    use crate::translate::gateway::ParentOutcome;

    #[test]
    fn a_route_status_takes_only_its_own_kinds_outcomes_and_keeps_other_controllers() {
        let outcome = |kind: &str, accepted: ConditionOutcome| ParentOutcome {
            kind: kind.into(),
            namespace: "app".into(),
            name: "echo".into(),
            generation: Some(3),
            parent: ParentReference {
                name: "edge".into(),
                namespace: Some("app".into()),
                ..ParentReference::default()
            },
            accepted,
            resolved_refs: Ok(()),
        };
        let outcomes = GatewayInputs {
            parents: vec![
                outcome("HTTPRoute", Ok(())),
                outcome(
                    "GRPCRoute",
                    Err(("HostnameConflict".into(), "older HTTPRoute".into())),
                ),
            ],
            ..GatewayInputs::default()
        };
        let meta = ObjectMeta {
            name: Some("echo".into()),
            namespace: Some("app".into()),
            ..ObjectMeta::default()
        };
        let theirs = RouteParentStatus {
            parent_ref: ParentReference {
                name: "other".into(),
                ..ParentReference::default()
            },
            controller_name: "example.com/other".into(),
            conditions: Vec::new(),
        };
        let before = Some(RouteStatus {
            parents: vec![theirs.clone()],
        });
        let (_, _, status) = route_update("GRPCRoute", &meta, &before, &outcomes).unwrap();
        assert_eq!(status.parents.len(), 2);
        assert_eq!(status.parents[0], theirs);
        let accepted = &status.parents[1].conditions[0];
        assert_eq!(
            (accepted.status.as_str(), accepted.reason.as_str()),
            ("False", "HostnameConflict")
        );
        assert_eq!(accepted.observed_generation, Some(3));
        // Written once: the same outcome again changes nothing.
        let again = route_update("GRPCRoute", &meta, &Some(status), &outcomes);
        assert!(again.is_none());
        let (_, _, http) = route_update("HTTPRoute", &meta, &None, &outcomes).unwrap();
        assert_eq!(http.parents[0].conditions[0].status, "True");
    }

    #[test]
    fn another_controllers_gateway_and_listener_conditions_are_kept_as_they_are() {
        let foreign = Condition {
            type_: "example.com/Stale".into(),
            status: "True".into(),
            reason: "Seeded".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        };
        let g: Gateway = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "infra", "name": "edge", "generation": 2},
            "spec": {"gatewayClassName": "jetbridge", "listeners": []},
            "status": {
                "conditions": [foreign.clone()],
                "listeners": [{"name": "web", "attachedRoutes": 0, "supportedKinds": [],
                               "conditions": [foreign.clone()]}]
            }
        }))
        .unwrap();
        let listener = ListenerOutcome {
            namespace: "infra".into(),
            gateway: "edge".into(),
            listener: "web".into(),
            gateway_port: None,
            attached_routes: 1,
            supported_kinds: Vec::new(),
            accepted: Ok(()),
            resolved_refs: Ok(()),
        };
        let status = gateway_status(&g, &[listener], &[], &BTreeMap::new());
        for conditions in [&status.conditions, &status.listeners[0].conditions] {
            let kept: Vec<&Condition> = conditions
                .iter()
                .filter(|c| c.type_ == foreign.type_)
                .collect();
            assert_eq!(kept, [&foreign]);
            let ours = conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
            assert_eq!(ours.observed_generation, Some(2));
        }
    }

    #[test]
    fn published_load_balancer_entries_become_gateway_addresses() {
        let got = addresses(&[
            serde_json::json!({"ip": "192.0.2.7"}),
            serde_json::json!({"hostname": "lb.example.com"}),
            serde_json::json!({"ports": []}),
        ]);
        let shown: Vec<(Option<&str>, &str)> = got
            .iter()
            .map(|a| (a.type_.as_deref(), a.value.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (Some("IPAddress"), "192.0.2.7"),
                (Some("Hostname"), "lb.example.com")
            ]
        );
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_stays() {
        let first = condition(&[], "Accepted", &Ok(()), "Accepted", Some(1));
        let again = condition(
            std::slice::from_ref(&first),
            "Accepted",
            &Ok(()),
            "Accepted",
            Some(2),
        );
        assert_eq!(again.last_transition_time, first.last_transition_time);
        assert_eq!(again.observed_generation, Some(2));
        assert!(!same(std::slice::from_ref(&first), &[again]));
        let failed = condition(
            &[first],
            "Accepted",
            &Err(("NotAllowedByListeners".into(), "no".into())),
            "Accepted",
            Some(2),
        );
        assert_eq!(
            (failed.status.as_str(), failed.reason.as_str()),
            ("False", "NotAllowedByListeners")
        );
    }

    #[test]
    fn a_listener_whose_port_cannot_be_bound_is_pending_and_so_is_its_gateway() {
        let g: Gateway = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "infra", "name": "edge", "generation": 4},
            "spec": {"gatewayClassName": "jetbridge", "listeners": []}
        }))
        .unwrap();
        let listener = |name: &str, proxy_port: u16| ListenerOutcome {
            namespace: "infra".into(),
            gateway: "edge".into(),
            listener: name.into(),
            gateway_port: Some(crate::model::routing::GatewayPort {
                proxy_port,
                gateway: "infra/edge".into(),
                port: 80,
                tls: false,
            }),
            attached_routes: 1,
            supported_kinds: Vec::new(),
            accepted: Ok(()),
            resolved_refs: Ok(()),
        };
        let listeners = [listener("web", 20001), listener("other", 20002)];
        let find = |c: &[Condition], t: &str| {
            let c = c.iter().find(|c| c.type_ == t).unwrap();
            (c.status.clone(), c.reason.clone(), c.message.clone())
        };
        let unbound = BTreeMap::from([(20001, "Address already in use (os error 98)".to_string())]);
        let status = gateway_status(&g, &listeners, &[], &unbound);
        let (st, reason, message) = find(&status.listeners[0].conditions, "Programmed");
        assert_eq!((st.as_str(), reason.as_str()), ("False", "Pending"));
        assert!(
            message.contains("20001") && message.contains("in use"),
            "{message}"
        );
        assert_eq!(find(&status.listeners[0].conditions, "Accepted").0, "True");
        assert_eq!(
            find(&status.listeners[1].conditions, "Programmed").0,
            "True"
        );
        let (st, reason, message) = find(&status.conditions, "Programmed");
        assert_eq!((st.as_str(), reason.as_str()), ("False", "Pending"));
        assert!(message.starts_with("listener web:"), "{message}");
        assert_eq!(find(&status.conditions, "Accepted").0, "True");
        // Bound again: Programmed again.
        let status = gateway_status(&g, &listeners, &[], &BTreeMap::new());
        assert_eq!(
            find(&status.listeners[0].conditions, "Programmed").0,
            "True"
        );
        assert_eq!(find(&status.conditions, "Programmed").0, "True");
    }
}

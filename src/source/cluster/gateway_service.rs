//! An address per Gateway, written by the Lease holder: for each of our
//! Gateways, a Service in its namespace (owned by the Gateway, so it goes
//! with it) whose ports are the Gateway's listener ports, each mapped to
//! the proxy port that serves that Gateway's routes alone
//! ([`crate::model::routing::GatewayPort`]), and an EndpointSlice naming
//! the proxy's endpoints (those of the publish Service). The Service is of
//! the publish Service's type; its address (load balancer, else cluster IP)
//! is the Gateway's `status.addresses`.
//!
//! The Service has no selector because the proxy's pods run in the
//! controller's namespace, which a selector cannot reach from the
//! Gateway's; the EndpointSlice follows the publish Service's endpoints.

use crate::crd::gateway::{GROUP, Gateway, GatewayStatusAddress};
use crate::translate::gateway::ListenerOutcome;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::collections::{BTreeMap, BTreeSet};

/// The label naming the Gateway a Service or EndpointSlice serves.
pub const GATEWAY_LABEL: &str = "jetbridge.dev/gateway";
/// The field manager of what this module applies.
const MANAGER: &str = "jetbridge-gateway-service";

/// The Service of the Gateway `name`: `jetbridge-<name>` when that is a
/// valid Service name, else a name made from a hash of it.
pub fn service_name(name: &str) -> String {
    let plain = format!("jetbridge-{name}");
    let valid = plain.len() <= 63
        && plain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !plain.ends_with('-');
    match valid {
        true => plain,
        false => {
            let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            format!("jetbridge-gw-{h:016x}")
        }
    }
}

/// The Gateway's ports: listener port → proxy port, from its listeners'
/// outcomes (listeners that take no routes have none).
fn ports_of(listeners: &[ListenerOutcome], ns: &str, name: &str) -> BTreeMap<u16, u16> {
    listeners
        .iter()
        .filter(|l| l.namespace == ns && l.gateway == name)
        .filter_map(|l| l.gateway_port.as_ref())
        .map(|p| (p.port, p.proxy_port))
        .collect()
}

/// The Service applied for Gateway `g`.
fn desired_service(
    g: &Gateway,
    ports: &BTreeMap<u16, u16>,
    service_type: &str,
) -> Option<serde_json::Value> {
    let (ns, name) = (
        g.metadata.namespace.as_deref()?,
        g.metadata.name.as_deref()?,
    );
    let ports: Vec<serde_json::Value> = ports
        .iter()
        .map(|(port, target)| {
            serde_json::json!({"name": format!("port-{port}"), "port": port,
                "targetPort": target, "protocol": "TCP"})
        })
        .collect();
    Some(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(name),
            "namespace": ns,
            "labels": {GATEWAY_LABEL: name, "app.kubernetes.io/managed-by": "jetbridge"},
            "ownerReferences": [owner(g)?],
        },
        "spec": {"type": service_type, "ports": ports},
    }))
}

/// The EndpointSlice applied for Gateway `g`: the proxy's `addresses`, on
/// the proxy ports.
fn desired_slice(
    g: &Gateway,
    ports: &BTreeMap<u16, u16>,
    addresses: &[String],
) -> Option<serde_json::Value> {
    let (ns, name) = (
        g.metadata.namespace.as_deref()?,
        g.metadata.name.as_deref()?,
    );
    let service = service_name(name);
    let ports: Vec<serde_json::Value> = ports
        .iter()
        .map(|(port, target)| {
            serde_json::json!({"name": format!("port-{port}"), "port": target, "protocol": "TCP"})
        })
        .collect();
    let endpoints: Vec<serde_json::Value> = addresses
        .iter()
        .map(|a| serde_json::json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    Some(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-proxy"),
            "namespace": ns,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "jetbridge.dev",
                GATEWAY_LABEL: name,
            },
            "ownerReferences": [owner(g)?],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
}

/// The Gateway as the owner of what is applied for it.
fn owner(g: &Gateway) -> Option<serde_json::Value> {
    Some(serde_json::json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "Gateway",
        "name": g.metadata.name.as_deref()?,
        "uid": g.metadata.uid.as_deref()?,
        "controller": true,
        "blockOwnerDeletion": true,
    }))
}

/// A Service's address as the Gateway shows it: its load balancer's
/// entries, else its cluster IP.
pub fn service_addresses(svc: &Service) -> Vec<GatewayStatusAddress> {
    let lb: Vec<GatewayStatusAddress> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| match (&i.ip, &i.hostname) {
            (Some(ip), _) => Some(address("IPAddress", ip)),
            (None, Some(h)) => Some(address("Hostname", h)),
            _ => None,
        })
        .collect();
    if !lb.is_empty() {
        return lb;
    }
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(|ip| vec![address("IPAddress", ip)])
        .unwrap_or_default()
}

fn address(kind: &str, value: &str) -> GatewayStatusAddress {
    GatewayStatusAddress {
        type_: Some(kind.into()),
        value: value.into(),
    }
}

/// The publish Service's type and the ready addresses of its endpoints.
async fn proxy_endpoints(client: &Client, ns: &str, name: &str) -> Option<(String, Vec<String>)> {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc = match services.get_opt(name).await {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(service = %format!("{ns}/{name}"), error = %e, "cannot read the publish Service; Gateways keep their Services as they are");
            return None;
        }
    };
    let service_type = svc
        .spec
        .and_then(|s| s.type_)
        .unwrap_or_else(|| "ClusterIP".into());
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
    let list = match slices.list(&lp).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(service = %format!("{ns}/{name}"), error = %e, "cannot list the publish Service's endpoints");
            return None;
        }
    };
    let mut addresses: Vec<String> = list
        .items
        .iter()
        .filter(|s| s.address_type == "IPv4")
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|e| e.addresses.iter().cloned())
        .collect();
    addresses.sort();
    addresses.dedup();
    Some((service_type, addresses))
}

/// Applies each served Gateway's Service and EndpointSlice; returns the
/// addresses of the Gateways whose Service has one, by `namespace/name`.
/// Without a publish Service (`--publish-service`), nothing is applied and
/// every Gateway shows the published addresses.
pub(super) async fn apply(
    client: &Client,
    publish: Option<&(String, String)>,
    gateways: &[std::sync::Arc<Gateway>],
    served: &[(String, Option<i64>)],
    listeners: &[ListenerOutcome],
    services: &[std::sync::Arc<Service>],
) -> BTreeMap<String, Vec<GatewayStatusAddress>> {
    let keep: BTreeSet<String> = served
        .iter()
        .filter(|(key, _)| {
            listeners
                .iter()
                .any(|l| l.gateway_port.is_some() && listener_key(l) == *key)
        })
        .map(|(key, _)| key.clone())
        .collect();
    for (ns, service, gateway) in stale(services, &keep) {
        remove(client, &ns, &service, &gateway).await;
    }
    let mut out = BTreeMap::new();
    let Some((pns, pname)) = publish else {
        return out;
    };
    if !listeners.iter().any(|l| l.gateway_port.is_some()) {
        // No Gateway port to serve: nothing to read or write.
        return out;
    }
    let Some((service_type, endpoints)) = proxy_endpoints(client, pns, pname).await else {
        return out;
    };
    for g in gateways {
        let (ns, name) = (
            g.metadata.namespace.clone().unwrap_or_default(),
            g.metadata.name.clone().unwrap_or_default(),
        );
        let key = format!("{ns}/{name}");
        if !served.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let ports = ports_of(listeners, &ns, &name);
        if ports.is_empty() {
            continue;
        }
        let (Some(svc), Some(slice)) = (
            desired_service(g, &ports, &service_type),
            desired_slice(g, &ports, &endpoints),
        ) else {
            continue;
        };
        if let Some(addresses) = apply_pair(client, &ns, &key, svc, slice).await {
            out.insert(key, addresses);
        }
    }
    out
}

/// `namespace/name` of a listener's Gateway.
fn listener_key(l: &ListenerOutcome) -> String {
    format!("{}/{}", l.namespace, l.gateway)
}

/// The Services this module applied (its labels, owned by a Gateway) whose
/// Gateway is not in `keep` (no longer of our class, or with no port to
/// serve): namespace, Service name, and the Gateway's `namespace/name`.
fn stale(
    services: &[std::sync::Arc<Service>],
    keep: &BTreeSet<String>,
) -> Vec<(String, String, String)> {
    services
        .iter()
        .filter_map(|svc| {
            let m = &svc.metadata;
            let labels = m.labels.as_ref()?;
            let gateway = labels.get(GATEWAY_LABEL)?;
            let managed = labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str);
            let owned = m.owner_references.iter().flatten().any(|o| {
                o.kind == "Gateway" && o.api_version.starts_with(GROUP) && o.name == *gateway
            });
            let ns = m.namespace.clone()?;
            let key = format!("{ns}/{gateway}");
            (managed == Some("jetbridge") && owned && !keep.contains(&key))
                .then(|| Some((ns, m.name.clone()?, key)))
                .flatten()
        })
        .collect()
}

/// Deletes a Gateway's Service and its EndpointSlice (logged, naming the
/// Gateway; one already gone is no error).
async fn remove(client: &Client, ns: &str, service: &str, gateway: &str) {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    delete(&services, service, "Service", gateway).await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    delete(
        &slices,
        &format!("{service}-proxy"),
        "EndpointSlice",
        gateway,
    )
    .await;
}

/// Deletes `name` of kind `what`, logging the outcome with its Gateway.
async fn delete<K>(api: &Api<K>, name: &str, what: &str, gateway: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &kube::api::DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(%gateway, kind = what, name, "deleted what a Gateway no longer served had")
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => {
            tracing::warn!(%gateway, kind = what, name, error = %e, "cannot delete what a Gateway no longer served had")
        }
    }
}

/// Applies one Gateway's Service and EndpointSlice; the Service's
/// addresses, or `None` when it could not be written (logged).
async fn apply_pair(
    client: &Client,
    ns: &str,
    gateway: &str,
    svc: serde_json::Value,
    slice: serde_json::Value,
) -> Option<Vec<GatewayStatusAddress>> {
    let params = PatchParams::apply(MANAGER).force();
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let name = svc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Ok(Some(existing)) = services.get_opt(&name).await {
        let labels = existing.metadata.labels.unwrap_or_default();
        let ours = labels.get(GATEWAY_LABEL).map(String::as_str);
        if ours != svc["metadata"]["labels"][GATEWAY_LABEL].as_str() {
            tracing::warn!(%gateway, service = %name, "a Service of that name exists and is not the Gateway's; the Gateway gets no address of its own");
            return None;
        }
    }
    let applied = match services.patch(&name, &params, &Patch::Apply(&svc)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%gateway, service = %name, error = %e, "cannot write the Gateway's Service");
            return None;
        }
    };
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let slice_name = slice["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Err(e) = slices
        .patch(&slice_name, &params, &Patch::Apply(&slice))
        .await
    {
        tracing::warn!(%gateway, endpoint_slice = %slice_name, error = %e, "cannot write the Gateway's EndpointSlice");
    }
    Some(service_addresses(&applied))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::routing::GatewayPort;

    fn gateway(ns: &str, name: &str) -> Gateway {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"namespace": ns, "name": name, "uid": "u-1"},
            "spec": {"gatewayClassName": "jetbridge", "listeners": []}
        }))
        .unwrap()
    }

    fn listener(gateway: &str, port: u16, proxy_port: Option<u16>) -> ListenerOutcome {
        ListenerOutcome {
            namespace: "infra".into(),
            gateway: gateway.into(),
            listener: format!("l{port}"),
            gateway_port: proxy_port.map(|proxy_port| GatewayPort {
                proxy_port,
                gateway: format!("infra/{gateway}"),
                port,
                tls: false,
            }),
            attached_routes: 0,
            supported_kinds: Vec::new(),
            accepted: Ok(()),
            resolved_refs: Ok(()),
        }
    }

    #[test]
    fn service_names_are_valid_service_names_for_every_gateway_name() {
        assert_eq!(service_name("edge"), "jetbridge-edge");
        for name in ["a.b", &"x".repeat(60), "with.dots-and-9"] {
            let s = service_name(name);
            assert!(s.len() <= 63 && crate::names::is_label(&s), "{s}");
            assert_ne!(s, service_name("edge"));
        }
        assert_ne!(service_name("a.b"), service_name("a.c"));
    }

    #[test]
    fn the_service_maps_each_listener_port_to_its_proxy_port_and_is_owned_by_the_gateway() {
        let g = gateway("infra", "edge");
        let listeners = [
            listener("edge", 80, Some(21000)),
            listener("edge", 8080, Some(22000)),
            listener("edge", 9000, None),
            listener("other", 80, Some(23000)),
        ];
        let ports = ports_of(&listeners, "infra", "edge");
        assert_eq!(ports, BTreeMap::from([(80, 21000), (8080, 22000)]));
        let svc = desired_service(&g, &ports, "LoadBalancer").unwrap();
        assert_eq!(svc["spec"]["type"], "LoadBalancer");
        assert_eq!(svc["spec"]["ports"][0]["port"], 80);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 21000);
        assert_eq!(svc["spec"]["ports"][1]["targetPort"], 22000);
        assert!(svc["spec"].get("selector").is_none());
        assert_eq!(svc["metadata"]["ownerReferences"][0]["kind"], "Gateway");
        assert_eq!(svc["metadata"]["ownerReferences"][0]["uid"], "u-1");
        let slice = desired_slice(&g, &ports, &["10.0.0.7".into()]).unwrap();
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "jetbridge-edge"
        );
        assert_eq!(slice["endpoints"][0]["addresses"][0], "10.0.0.7");
        assert_eq!(slice["ports"][1]["name"], "port-8080");
        assert_eq!(slice["ports"][1]["port"], 22000);
    }

    #[test]
    fn a_service_shows_its_load_balancer_else_its_cluster_ip() {
        let mut svc: Service = serde_json::from_value(serde_json::json!({
            "spec": {"clusterIP": "10.96.0.9"},
            "status": {"loadBalancer": {}}
        }))
        .unwrap();
        assert_eq!(
            service_addresses(&svc),
            vec![address("IPAddress", "10.96.0.9")]
        );
        svc.status = serde_json::from_value(serde_json::json!({
            "loadBalancer": {"ingress": [{"hostname": "lb.example.net"}]}
        }))
        .unwrap();
        assert_eq!(
            service_addresses(&svc),
            vec![address("Hostname", "lb.example.net")]
        );
    }

    #[test]
    fn only_our_services_of_gateways_no_longer_served_are_stale() {
        let svc = |ns: &str, name: &str, gateway: &str, managed: &str, owner_kind: &str| {
            std::sync::Arc::new(
                serde_json::from_value::<Service>(serde_json::json!({
                    "metadata": {"namespace": ns, "name": name,
                        "labels": {GATEWAY_LABEL: gateway, "app.kubernetes.io/managed-by": managed},
                        "ownerReferences": [{"apiVersion": "gateway.networking.k8s.io/v1",
                            "kind": owner_kind, "name": gateway, "uid": "u"}]}
                }))
                .unwrap(),
            )
        };
        let services = vec![
            svc("infra", "jetbridge-kept", "kept", "jetbridge", "Gateway"),
            svc("infra", "jetbridge-moved", "moved", "jetbridge", "Gateway"),
            svc("other", "jetbridge-kept", "kept", "jetbridge", "Gateway"),
            svc(
                "infra",
                "jetbridge-theirs",
                "theirs",
                "someone-else",
                "Gateway",
            ),
            svc(
                "infra",
                "jetbridge-owned",
                "owned",
                "jetbridge",
                "Deployment",
            ),
        ];
        let keep = BTreeSet::from(["infra/kept".to_string()]);
        assert_eq!(
            stale(&services, &keep),
            vec![
                (
                    "infra".into(),
                    "jetbridge-moved".into(),
                    "infra/moved".into()
                ),
                ("other".into(), "jetbridge-kept".into(), "other/kept".into()),
            ]
        );
    }
}

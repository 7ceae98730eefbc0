//! What an Ingress shows about itself: the `jetbridge.dev/status`
//! annotation (an Ingress has no conditions) and `status.loadBalancer`.
//! Written by the Lease holder only (the `report` module).
//!
//! The annotation reads `Programmed`, `Programmed: <warning>…` or
//! `Invalid: <error>…`, one message per line. The annotation reader ignores
//! this key, so writing it never changes a route (and never loops).

use super::Options;
use super::report::{Problem, Reported};
use crate::model::Severity;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt as _};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

pub use crate::translate::cluster::STATUS_ANNOTATION;

/// The most bytes of messages the annotation carries.
const MAX_ANNOTATION: usize = 8 * 1024;

/// An Ingress's state as the annotation shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// Served (no errors; warnings may be listed).
    pub programmed: bool,
    /// One line per problem.
    pub messages: Vec<String>,
}

impl State {
    /// The state of an Ingress with these problems.
    pub(super) fn of(problems: &[&Problem]) -> State {
        State {
            programmed: !problems.iter().any(|p| p.severity == Severity::Error),
            messages: problems.iter().map(|p| p.message.clone()).collect(),
        }
    }

    /// The annotation value.
    pub fn to_annotation(&self) -> String {
        let word = if self.programmed {
            "Programmed"
        } else {
            "Invalid"
        };
        if self.messages.is_empty() {
            return word.to_string();
        }
        let text = format!("{word}: {}", self.messages.join("\n"));
        super::events::truncate(&text, MAX_ANNOTATION).to_string()
    }

    /// Reads an annotation value back (what a new Lease holder finds).
    pub fn parse(value: &str) -> State {
        let (word, rest) = value.split_once(": ").unwrap_or((value, ""));
        State {
            programmed: word.trim() == "Programmed",
            messages: rest
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// Sets the status annotation of Ingress `ns/name` (a refusal is logged).
pub(super) async fn write_annotation(client: &Client, ns: &str, name: &str, value: &str) {
    let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({"metadata": {"annotations": {STATUS_ANNOTATION: value}}});
    if let Err(e) = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(ingress = %format!("{ns}/{name}"), error = %e, "cannot write the status annotation");
    }
}

/// Where the published address comes from, as read now.
enum Address {
    /// The entries to publish.
    Entries(Vec<Value>),
    /// The publish Service is gone or being deleted: nothing to publish.
    Gone,
}

/// Brings `status.loadBalancer` of every watched Ingress up to date:
/// managed and `Programmed` ones get the address, `Invalid` ones none, and
/// ones no longer managed lose the address jetbridge wrote (`published`,
/// the last entries known). Returns the entries now published, if known.
pub(super) async fn publish(
    client: &Client,
    options: &Options,
    r: &Reported,
    problems: &BTreeMap<String, Vec<&Problem>>,
    published: &[Value],
) -> Option<Vec<Value>> {
    if options.publish_service.is_none() && options.publish_addresses.is_empty() {
        return None;
    }
    let address = desired_load_balancer(client, options).await?;
    let ours: &[Value] = match &address {
        Address::Entries(e) => e,
        Address::Gone => published,
    };
    let managed: HashSet<&str> = r.managed.iter().map(String::as_str).collect();
    for ing in &r.cluster.ingresses {
        let key = format!("{}/{}", ing.namespace().unwrap_or_default(), ing.name_any());
        let current = current_entries(ing);
        let desired = if managed.contains(key.as_str()) {
            let valid = problems.get(&key).is_none_or(|p| State::of(p).programmed);
            match &address {
                Address::Entries(e) if valid => e.clone(),
                _ => Vec::new(),
            }
        } else if !current.is_empty() && current == ours {
            Vec::new()
        } else {
            continue;
        };
        if current != desired {
            write_load_balancer(client, ing, &desired).await;
        }
    }
    match address {
        Address::Entries(e) => Some(e),
        Address::Gone => None,
    }
}

/// On shutdown: when the publish Service is gone or being deleted (the
/// release is being uninstalled), clears the address of every Ingress that
/// shows it, so none points at a Service that no longer exists. With the
/// Service still there, another replica carries on and nothing is cleared.
pub(super) async fn on_shutdown(
    client: &Client,
    options: &Options,
    r: &Reported,
    published: &[Value],
) {
    if options.publish_service.is_none() {
        return;
    }
    if !matches!(
        desired_load_balancer(client, options).await,
        Some(Address::Gone)
    ) {
        return;
    }
    let managed: HashSet<&str> = r.managed.iter().map(String::as_str).collect();
    let mut cleared = 0;
    for ing in &r.cluster.ingresses {
        let key = format!("{}/{}", ing.namespace().unwrap_or_default(), ing.name_any());
        let current = current_entries(ing);
        let ours = managed.contains(key.as_str()) || (!current.is_empty() && current == published);
        if ours && write_load_balancer(client, ing, &[]).await {
            cleared += 1;
        }
    }
    tracing::info!(
        ingresses = cleared,
        "publish Service gone: status.loadBalancer cleared on shutdown"
    );
}

/// An Ingress's `status.loadBalancer.ingress`, as JSON entries.
fn current_entries(ing: &Ingress) -> Vec<Value> {
    ing.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|v| {
            v.iter()
                .map(|e| serde_json::to_value(e).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `status.loadBalancer.ingress` of `ing` to `entries`; false when refused.
async fn write_load_balancer(client: &Client, ing: &Ingress, entries: &[Value]) -> bool {
    let (ns, name) = (ing.namespace().unwrap_or_default(), ing.name_any());
    let api: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": entries}}});
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            let what = if entries.is_empty() {
                "cleared"
            } else {
                "written"
            };
            tracing::info!(ingress = %format!("{ns}/{name}"), "status.loadBalancer {what}");
            true
        }
        Err(e) => {
            tracing::warn!(ingress = %format!("{ns}/{name}"), error = %e, "cannot write Ingress status");
            false
        }
    }
}

/// The address to publish: the publish Service's load balancer (else its
/// cluster IP), or the `--publish-address` list. `None` when the Service
/// cannot be read (nothing is written then).
async fn desired_load_balancer(client: &Client, options: &Options) -> Option<Address> {
    let entry = |a: &str| {
        if a.parse::<std::net::IpAddr>().is_ok() {
            serde_json::json!({"ip": a})
        } else {
            serde_json::json!({"hostname": a})
        }
    };
    let Some((ns, name)) = &options.publish_service else {
        let entries = options.publish_addresses.iter().map(|a| entry(a)).collect();
        return Some(Address::Entries(entries));
    };
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc = match api.get_opt(name).await {
        Ok(Some(s)) if s.metadata.deletion_timestamp.is_none() => s,
        Ok(_) => {
            tracing::warn!(service = %format!("{ns}/{name}"), "publish Service not found or being deleted; Ingresses get no address");
            return Some(Address::Gone);
        }
        Err(e) => {
            tracing::warn!(service = %format!("{ns}/{name}"), error = %e, "cannot read the publish Service");
            return None;
        }
    };
    let lb: Vec<Value> = svc
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i.ip.as_deref().or(i.hostname.as_deref()).map(entry))
        .collect();
    if !lb.is_empty() {
        return Some(Address::Entries(lb));
    }
    // No load balancer (yet): the Service's cluster IP, as ingress-nginx does for NodePort.
    let ips = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| !ip.is_empty() && ip != "None")
        .map(|ip| vec![entry(&ip)])
        .unwrap_or_default();
    Some(Address::Entries(ips))
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn the_status_annotation_reads_back_as_written() {
        let cases = [
            (true, vec![], "Programmed"),
            (
                true,
                vec!["a rule without host is not served"],
                "Programmed: a rule without host is not served",
            ),
            (false, vec!["one: x", "two"], "Invalid: one: x\ntwo"),
        ];
        for (programmed, messages, text) in cases {
            let state = State {
                programmed,
                messages: messages.iter().map(|m| m.to_string()).collect(),
            };
            assert_eq!(state.to_annotation(), text);
            assert_eq!(State::parse(text), state, "{text}");
        }
        // Anything else reads as not programmed (a new holder reports it again).
        assert!(!State::parse("").programmed);
    }
}

//! Pomerium's `PolicyFilter` kind (`gateway.pomerium.io/v1alpha1`),
//! watched only when the API server serves it and the controller may list
//! it (the chart grants it), like the Gateway API kinds; its `Valid`
//! condition written by the Lease holder. Also the `Attached` condition of
//! Policies that target Gateways.

use super::Stores;
use crate::crd::policy_filter::{GROUP, PolicyFilter};
use crate::crd::{Condition, Policy, WatchedPolicy};
use crate::translate::cluster::PolicyOutcome;
use crate::translate::gateway::{PolicyFilterOutcome, TargetOutcome};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt as _};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// Whether the API server serves PolicyFilters and this controller may
/// list them in every namespace it watches (`namespaces`; empty: all);
/// anything else (including a failure to ask) is "no", logged.
pub(super) async fn discover(client: &Client, namespaces: &[String]) -> bool {
    let served = client
        .list_api_group_resources(&format!("{GROUP}/v1alpha1"))
        .await
        .is_ok_and(|list| list.resources.iter().any(|r| r.name == "policyfilters"));
    if !served {
        return false;
    }
    let scopes: Vec<Option<&str>> = match namespaces.is_empty() {
        true => vec![None],
        false => namespaces.iter().map(|n| Some(n.as_str())).collect(),
    };
    let mut allowed = Ok(true);
    for ns in scopes {
        allowed = may_list(client, GROUP, "policyfilters", ns).await;
        if !matches!(allowed, Ok(true)) {
            break;
        }
    }
    match allowed {
        Ok(true) => true,
        Ok(false) => {
            tracing::warn!(
                "PolicyFilters are served, but this controller may not list them; they are not read"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot check access to PolicyFilters; they are not read");
            false
        }
    }
}

/// Whether this controller may list `resource` of `group` in `namespace`
/// (`None`: in every namespace), by a self subject access review, which
/// every identity may ask.
pub(super) async fn may_list(
    client: &Client,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> kube::Result<bool> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(resource.into()),
                verb: Some("list".into()),
                namespace: namespace.map(Into::into),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let r = api.create(&Default::default(), &review).await?;
    Ok(r.status.is_some_and(|s| s.allowed))
}

/// Starts the PolicyFilter watch when `served`.
pub(super) fn start(
    client: &Client,
    namespaces: &[String],
    served: bool,
    changed: &Arc<Notify>,
) -> Option<Stores<PolicyFilter>> {
    served.then(|| {
        Stores::start(
            super::apis(client, namespaces),
            watcher::Config::default(),
            changed.clone(),
            "PolicyFilter",
        )
    })
}

/// The condition of `type_` to write, or `None` when `old` already says
/// the same (the transition time is kept while the status stays).
pub(super) fn next_condition(
    old: &[Condition],
    type_: &str,
    (status, reason, message): (&str, &str, String),
    generation: Option<i64>,
) -> Option<Condition> {
    let current = old.iter().find(|c| c.type_ == type_);
    if current.is_some_and(|c| {
        c.status == status
            && c.reason == reason
            && c.message.as_deref() == Some(message.as_str())
            && c.observed_generation == generation
    }) {
        return None;
    }
    let transition = match current {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => None,
    }
    .or_else(|| {
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    Some(Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: Some(message),
        observed_generation: generation,
        last_transition_time: transition,
    })
}

/// Writes each PolicyFilter's `Valid` condition when it changed.
pub(super) async fn write_status(
    client: &Client,
    filters: &[Arc<PolicyFilter>],
    outcomes: &[PolicyFilterOutcome],
) {
    let by_key: HashMap<(String, String), &Arc<PolicyFilter>> = filters
        .iter()
        .map(|f| ((f.namespace().unwrap_or_default(), f.name_any()), f))
        .collect();
    for o in outcomes {
        let Some(f) = by_key.get(&(o.namespace.clone(), o.name.clone())) else {
            continue;
        };
        let valid = match &o.error {
            None => ("True", "Valid", "the rules compile".to_string()),
            Some(e) => ("False", "Invalid", e.clone()),
        };
        let old = f.status.as_ref().map(|s| s.conditions.as_slice());
        let Some(c) = next_condition(old.unwrap_or(&[]), "Valid", valid, o.generation) else {
            continue;
        };
        let api: Api<PolicyFilter> = Api::namespaced(client.clone(), &o.namespace);
        patch_conditions(&api, &o.name, vec![c]).await;
    }
}

/// Writes each Policy's conditions when they changed: `Accepted` (whether
/// the rules compile) and, for a Policy with `targetRefs`, `Attached`:
/// `True` naming the targets found, `False` (`TargetNotFound`) naming
/// those missing. Other conditions are kept.
pub(super) async fn write_policy_status(
    client: &Client,
    policies: &[Arc<WatchedPolicy>],
    outcomes: &[PolicyOutcome],
    targets: &[TargetOutcome],
) {
    let by_key: HashMap<(String, String), &Arc<WatchedPolicy>> = policies
        .iter()
        .map(|p| ((p.namespace().unwrap_or_default(), p.name_any()), p))
        .collect();
    for o in outcomes {
        let Some(p) = by_key.get(&(o.namespace.clone(), o.name.clone())) else {
            continue;
        };
        let old = p.status.as_ref().map(|s| s.conditions.as_slice());
        let old = old.unwrap_or(&[]);
        let target = targets
            .iter()
            .find(|t| t.namespace == o.namespace && t.name == o.name);
        let mut changed = Vec::new();
        changed.extend(next_condition(old, "Accepted", accepted(o), o.generation));
        changed.extend(
            target.and_then(|t| next_condition(old, "Attached", attached(t), o.generation)),
        );
        let stale = target.is_none() && old.iter().any(|c| c.type_ == "Attached");
        if changed.is_empty() && !stale {
            continue;
        }
        let mut conditions: Vec<Condition> = old
            .iter()
            .filter(|c| !changed.iter().any(|n| n.type_ == c.type_))
            .filter(|c| target.is_some() || c.type_ != "Attached")
            .cloned()
            .collect();
        conditions.extend(changed);
        let api: Api<Policy> = Api::namespaced(client.clone(), &o.namespace);
        patch_conditions(&api, &o.name, conditions).await;
    }
}

/// `Accepted`: the rules compile (with or without warnings), or not.
fn accepted(o: &PolicyOutcome) -> (&'static str, &'static str, String) {
    match (&o.error, o.warnings.as_slice()) {
        (None, []) => ("True", "Compiled", "the rules compile".to_string()),
        (None, w) => {
            let lines: Vec<String> = w.iter().map(ToString::to_string).collect();
            (
                "True",
                "CompiledWithWarnings",
                format!("the rules compile with warnings: {}", lines.join("; ")),
            )
        }
        (Some(e), _) => ("False", "InvalidPolicy", e.clone()),
    }
}

/// `Attached`: every target found, or the missing ones.
fn attached(t: &TargetOutcome) -> (&'static str, &'static str, String) {
    match (t.attached.as_slice(), t.missing.as_slice()) {
        (found, []) => (
            "True",
            "Attached",
            format!("attached to {}", found.join(", ")),
        ),
        (_, missing) => ("False", "TargetNotFound", missing.join("; ")),
    }
}

async fn patch_conditions<K>(api: &Api<K>, name: &str, conditions: Vec<Condition>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = serde_json::json!({"status": {"conditions": conditions}});
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        tracing::warn!(object = %name, error = %e, "cannot write the status");
    }
}

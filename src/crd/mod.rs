//! The `Policy` custom resource: reusable access rules that Ingresses
//! reference by name (`jetbridge.dev/policy_ref`), HTTPRoute rules name in
//! an `ExtensionRef` filter, and that may target Gateways as their baseline
//! (`targetRefs`). The doc comments here are what `kubectl explain policy`
//! shows.

pub mod gateway;
pub mod policy_filter;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Access rules in the Pomerium Policy Language (PPL), shared by every
/// Ingress in the same namespace that names this Policy in its
/// `jetbridge.dev/policy_ref` annotation, and every HTTPRoute rule there that
/// names it in an `ExtensionRef` filter. Access is granted when at least one
/// `allow` matches and no `deny` matches; an Ingress that references several
/// Policies is allowed by any of them and denied by any of them. Editing a
/// Policy changes the decision of every route that references it.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "jetbridge.dev",
    version = "v1",
    kind = "Policy",
    doc = "A reusable set of access rules (PPL) that Ingresses in the same namespace reference with the jetbridge.dev/policy_ref annotation and HTTPRoute rules name in an ExtensionRef filter; with targetRefs, the access of whole HTTPRoutes or GRPCRoutes and the baseline of Gateways. Its Accepted condition says whether the rules compile, Attached which targets were found.",
    plural = "policies",
    shortname = "jbpolicy",
    namespaced,
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct PolicySpec {
    /// One rule's allow action: operators (`and`, `or`, `not`, `nor`) over
    /// criteria, e.g. `{or: [{email: {is: alice@example.com}}]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "ppl_value")]
    pub allow: Option<serde_json::Value>,
    /// One rule's deny action: a match denies access even when an allow
    /// matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "ppl_value")]
    pub deny: Option<serde_json::Value>,
    /// Further rules, each an object with `allow` and/or `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "ppl_rules")]
    pub rules: Option<Vec<serde_json::Value>>,
    /// Gateway API objects in this Policy's namespace it applies to (policy
    /// attachment): an HTTPRoute or GRPCRoute, whose every rule it guards
    /// (its `deny` rules hold on each rule; its `allow` rules are the access
    /// of the rules that name no Policy in an `ExtensionRef` filter), or a
    /// Gateway, whose routes it guards as a baseline (its `deny` rules hold
    /// on every route attached to the Gateway; its `allow` rules are the
    /// access of the rules that name no Policy and whose route no Policy
    /// targets). The `Attached` condition says which targets were found.
    #[serde(default, rename = "targetRefs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub target_refs: Vec<PolicyTargetRef>,
    /// On the HTTPRoute rules that name this Policy in an `ExtensionRef`
    /// filter: `true` sends the upstream the signed identity assertion
    /// (`X-Pomerium-Jwt-Assertion`), as the `pass_identity_headers`
    /// annotation does for an Ingress (which sets it by annotation, not here).
    #[serde(
        default,
        rename = "passIdentityHeaders",
        skip_serializing_if = "Option::is_none"
    )]
    pub pass_identity_headers: Option<bool>,
    /// On the HTTPRoute rules that name this Policy in an `ExtensionRef`
    /// filter: request headers to fill with claims of the signed-in user,
    /// header name → claim name (e.g. `X-Email: email`), as the
    /// `jwt_claims_headers` annotation does for an Ingress.
    #[serde(
        default,
        rename = "jwtClaimsHeaders",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub jwt_claims_headers: BTreeMap<String, String>,
}

/// A Gateway, HTTPRoute or GRPCRoute this Policy applies to, in the Policy's
/// namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct PolicyTargetRef {
    /// The target's API group: `gateway.networking.k8s.io`.
    pub group: String,
    /// The target's kind: `Gateway`, `HTTPRoute` or `GRPCRoute`.
    pub kind: String,
    /// The target's name.
    pub name: String,
}

/// What the controller observed about this Policy.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct PolicyStatus {
    /// `Accepted`: `True` when the rules compile (reason `Compiled`, or
    /// `CompiledWithWarnings` with the warnings of `jetbridge policy check`
    /// in the message, e.g. a rule that can never match), `False` with the
    /// located compile error otherwise (routes that reference it then deny).
    /// `Attached`, for a Policy with `targetRefs`: `True` (reason
    /// `Attached`) naming the targets found, `False` (`TargetNotFound`)
    /// naming the targets that are missing: a Gateway jetbridge does not
    /// serve, a route no Gateway of jetbridge's accepts, another kind.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A status condition, as in the Kubernetes API conventions.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's name, e.g. `Accepted`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A short machine-readable reason: `Compiled`, `CompiledWithWarnings`
    /// or `InvalidPolicy` (`Accepted`); `Attached` or `TargetNotFound`
    /// (`Attached`).
    pub reason: String,
    /// A human-readable explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

// What the API server checks at admission. An action and a rule object keep
// their unknown keys (x-kubernetes-preserve-unknown-fields), so that a
// misspelt key reaches the controller, which reports it and denies, instead of
// being dropped by a client that does not ask for strict field validation.
// Inside such an object the API server's CEL sees no field ("undefined
// field"), and spelling the operator tree out level by level takes 4^depth
// schema nodes (measured on 1.37 with a CEL rule on each innermost object: 5
// levels, 0.5 MB, are accepted; 6, 2.1 MB, time out; 7, 8.4 MB, are over the
// 3 MiB request limit; the engine takes 16), so the operator depth limit
// (`MAX_OPERATOR_DEPTH`) and everything below an action's top stay the
// controller's. The top of `spec` keeps no unknown keys: `kubectl apply`
// refuses them.

/// The most keys an action holds: the operators `and`, `or`, `not`, `nor`
/// and Pomerium's `action`.
const ACTION_KEYS: usize = 5;

/// The most keys a rule object holds: `allow` and `deny`.
const RULE_KEYS: usize = 2;

fn ppl_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": ACTION_KEYS,
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn ppl_rules(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut action = |description: &str| {
        let mut schema = ppl_value(generator);
        schema.insert("description".into(), description.into());
        schema
    };
    let (allow, deny) = (
        action("This rule's allow action, as `spec.allow`."),
        action("This rule's deny action, as `spec.deny`."),
    );
    schemars::json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "maxProperties": RULE_KEYS,
            "properties": {"allow": allow, "deny": deny},
            "x-kubernetes-preserve-unknown-fields": true
        }
    })
}

impl PolicySpec {
    /// The rules as one PPL value (a list of rule objects), read by
    /// [`crate::policy::spec_rules`] as `jetbridge policy check` reads a
    /// `Policy` file: `allow`/`deny` form the first rule, then `rules`.
    pub fn ppl(&self) -> crate::policy::Result<serde_json::Value> {
        let mut spec = serde_json::Map::new();
        let fields = [("allow", &self.allow), ("deny", &self.deny)];
        for (key, value) in fields {
            if let Some(v) = value {
                spec.insert(key.into(), v.clone());
            }
        }
        if let Some(rules) = &self.rules {
            spec.insert("rules".into(), serde_json::Value::Array(rules.clone()));
        }
        crate::policy::spec_rules(&serde_json::Value::Object(spec))
    }
}

/// A Policy as the controller watches it. Reading one never fails on what
/// the object holds, so one hostile Policy cannot stop the others from being
/// read: `spec` and `status` are taken as raw JSON (skipped without
/// recursion) and parsed on their own, and the metadata keeps only what the
/// controller uses (`managedFields`, which mirrors the spec's nesting, is
/// skipped). A spec that cannot be parsed becomes this Policy's error.
#[derive(Clone, Debug)]
pub struct WatchedPolicy {
    pub metadata: ObjectMeta,
    /// The rules, or why they cannot be read.
    pub spec: Result<PolicySpec, SpecError>,
    pub status: Option<PolicyStatus>,
}

/// Why a watched Policy's `spec` cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Nested deeper than the reader follows.
    #[error(
        "spec is nested more than {depth} levels deep; jetbridge reads at most {depth} \
         (and operators at most {operators} inside one action)",
        depth = SPEC_DEPTH,
        operators = crate::policy::MAX_OPERATOR_DEPTH
    )]
    TooDeep,
    /// Not the shape of a Policy spec (the JSON reader's message).
    #[error("spec: {0}")]
    Invalid(String),
}

/// The parts of `metadata` the controller reads.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

impl<'de> Deserialize<'de> for WatchedPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            metadata: WireMeta,
            #[serde(default)]
            spec: Option<Box<RawValue>>,
            #[serde(default)]
            status: Option<Box<RawValue>>,
        }
        let w = Wire::deserialize(d)?;
        let m = w.metadata;
        let spec = match &w.spec {
            None => Ok(PolicySpec::default()),
            Some(raw) => serde_json::from_str::<PolicySpec>(raw.get()).map_err(|e| {
                let reason = e.to_string();
                if reason.starts_with("recursion limit exceeded") {
                    SpecError::TooDeep
                } else {
                    SpecError::Invalid(reason)
                }
            }),
        };
        Ok(WatchedPolicy {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                generation: m.generation,
                creation_timestamp: m.creation_timestamp,
                deletion_timestamp: m.deletion_timestamp,
                labels: m.labels,
                annotations: m.annotations,
                ..ObjectMeta::default()
            },
            spec,
            status: w
                .status
                .and_then(|raw| serde_json::from_str(raw.get()).ok()),
        })
    }
}

/// How deep a spec's JSON may nest (serde_json's own limit).
const SPEC_DEPTH: usize = 128;

impl kube::Resource for WatchedPolicy {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Policy::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Policy::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Policy::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Policy::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl From<Policy> for WatchedPolicy {
    fn from(p: Policy) -> Self {
        WatchedPolicy {
            metadata: p.metadata,
            spec: Ok(p.spec),
            status: p.status,
        }
    }
}

/// The CustomResourceDefinition YAML (what `jetbridge crds` prints and
/// `crds/` holds).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt as _;
    let crd = Policy::crd();
    let body = serde_saphyr::to_string(&crd).unwrap_or_default();
    format!(
        "# Generated by `jetbridge crds`; do not edit (a test fails when it drifts).\n---\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_with_one_deeply_nested_policy_still_reads_every_policy() {
        let deep = format!(
            "{}{}",
            "{\"a\": ".repeat(5000),
            "1".to_string() + &"}".repeat(5000)
        );
        let list = format!(
            r#"{{"apiVersion": "jetbridge.dev/v1", "kind": "PolicyList", "metadata": {{}}, "items": [
              {{"metadata": {{"name": "deep", "namespace": "t", "managedFields": [{{"fieldsV1": {deep}}}]}},
                "spec": {{"allow": {deep}}}}},
              {{"metadata": {{"name": "good", "namespace": "t", "generation": 2}},
                "spec": {{"allow": {{"or": [{{"email": {{"is": "a@example.com"}}}}]}}}},
                "status": {{"conditions": [{{"type": "Accepted", "status": "True", "reason": "Compiled"}}]}}}}
            ]}}"#
        );
        let l: kube::core::ObjectList<WatchedPolicy> = serde_json::from_str(&list).unwrap();
        assert_eq!(l.items.len(), 2);
        let e = l.items[0].spec.as_ref().unwrap_err().to_string();
        assert!(e.contains("nested more than 128 levels"), "{e}");
        assert!(e.len() < 300, "{e}");
        assert_eq!(l.items[0].metadata.managed_fields, None);
        let good = &l.items[1];
        assert_eq!(good.metadata.generation, Some(2));
        assert!(good.spec.as_ref().unwrap().allow.is_some());
        assert_eq!(
            good.status.as_ref().unwrap().conditions[0].reason,
            "Compiled"
        );
    }

    #[test]
    fn a_policy_spec_becomes_a_list_of_rules_that_compiles() {
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({
            "allow": {"or": [{"domain": {"is": "example.com"}}]},
            "rules": [{"deny": {"or": [{"email": {"is": "mallory@example.com"}}]}}]
        }))
        .unwrap();
        let v = spec.ppl().unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        crate::policy::compile_value(&v).unwrap();
        // An empty spec compiles to "no rules": nothing is allowed.
        assert_eq!(PolicySpec::default().ppl().unwrap(), serde_json::json!([]));
    }

    #[test]
    fn the_crd_is_namespaced_v1_with_status_and_columns() {
        let y = crd_yaml();
        for want in [
            "name: policies.jetbridge.dev",
            "group: jetbridge.dev",
            "kind: Policy",
            "scope: Namespaced",
            "x-kubernetes-preserve-unknown-fields: true",
            "Accepted",
            "status: {}",
        ] {
            assert!(y.contains(want), "{want} missing in:\n{y}");
        }
    }
}

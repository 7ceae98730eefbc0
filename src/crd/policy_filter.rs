//! Pomerium's `PolicyFilter` (`gateway.pomerium.io/v1alpha1`): access rules
//! in PPL that an HTTPRoute rule names with an `ExtensionRef` filter, read as
//! Pomerium's ingress controller defines them, so a route written for
//! Pomerium keeps its policy. jetbridge never installs this CRD: it reads
//! PolicyFilters only where the API server serves them.

use super::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The group of the `PolicyFilter` kind.
pub const GROUP: &str = "gateway.pomerium.io";

/// The `PolicyFilter` kind.
pub const KIND: &str = "PolicyFilter";

/// Access rules for the HTTPRoute rules that name this PolicyFilter in an
/// `ExtensionRef` filter (same namespace).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "gateway.pomerium.io",
    version = "v1alpha1",
    kind = "PolicyFilter",
    plural = "policyfilters",
    namespaced,
    status = "PolicyFilterStatus"
)]
pub struct PolicyFilterSpec {
    /// Policy rules in the Pomerium Policy Language (PPL), as YAML or JSON
    /// text: a rule object, a list of them, or `{rules: [...]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppl: Option<String>,
}

/// What the controller observed about this PolicyFilter.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct PolicyFilterStatus {
    /// `Valid`: `True` (reason `Valid`) when the rules compile, `False`
    /// (reason `Invalid`) with the compile error otherwise; routes naming
    /// it then deny.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

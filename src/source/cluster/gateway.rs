//! The Gateway API kinds, watched only when the API server serves them:
//! discovery at start asks for `gateway.networking.k8s.io/v1` (and
//! `v1beta1` ReferenceGrants, and GRPCRoutes when the `v1` group lists
//! them, and BackendTLSPolicies, with the ConfigMaps their CA references
//! name when this controller may list ConfigMaps); without the CRDs nothing is watched and the
//! controller runs on Ingresses alone, instead of retrying a watch that can
//! never succeed. Installing the CRDs later takes a restart.

use super::{Stores, apis};
use crate::crd::gateway::{
    BackendTlsPolicy, GROUP, Gateway, GatewayClass, GrpcRoute, HttpRoute, ReferenceGrant,
};
use crate::translate::gateway::GatewayObjects;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;
use std::sync::Arc;
use tokio::sync::Notify;

/// Which Gateway API kinds the API server serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// GatewayClass, Gateway and HTTPRoute (`v1`).
    pub v1: bool,
    /// ReferenceGrant (`v1beta1`).
    pub reference_grants: bool,
    /// GRPCRoute (`v1`).
    pub grpc_routes: bool,
    /// BackendTLSPolicy (`v1`).
    pub backend_tls: bool,
    /// ConfigMaps may be listed (BackendTLSPolicies' CA certificates).
    pub config_maps: bool,
}

/// Asks the API server which Gateway API kinds it serves. A failure to ask
/// counts as "not served" (logged): Ingresses keep working.
pub async fn discover(client: &Client) -> Served {
    let has = |list: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
               name: &str| list.resources.iter().any(|r| r.name == name);
    let (v1, grpc_routes, backend_tls) = match client
        .list_api_group_resources(&format!("{GROUP}/v1"))
        .await
    {
        Ok(list) => (
            ["gatewayclasses", "gateways", "httproutes"]
                .iter()
                .all(|n| has(&list, n)),
            has(&list, "grpcroutes"),
            has(&list, "backendtlspolicies"),
        ),
        Err(e) => {
            tracing::info!(error = %e, "Gateway API v1 is not served; watching Ingresses only");
            (false, false, false)
        }
    };
    let v1 = v1 && may_list(client, "gatewayclasses").await;
    let grpc_routes = v1 && grpc_routes && may_list(client, "grpcroutes").await;
    let backend_tls = v1 && backend_tls && may_list(client, "backendtlspolicies").await;
    let config_maps = backend_tls && may_list_config_maps(client).await;
    let reference_grants = v1
        && client
            .list_api_group_resources(&format!("{GROUP}/v1beta1"))
            .await
            .is_ok_and(|list| has(&list, "referencegrants"));
    Served {
        v1,
        reference_grants,
        grpc_routes,
        backend_tls,
        config_maps,
    }
}

/// Whether this controller may list ConfigMaps (BackendTLSPolicies' CA
/// certificates). Without it the policies are still watched, and those
/// naming ConfigMaps are not accepted: their backends answer 500, never
/// plain text.
async fn may_list_config_maps(client: &Client) -> bool {
    let allowed = super::policy_filter::may_list(client, "", "configmaps", None).await;
    if !matches!(allowed, Ok(true)) {
        tracing::warn!(
            "this controller may not list ConfigMaps: BackendTLSPolicies naming CA certificates in ConfigMaps are not accepted (chart value gatewayApi.backendTlsConfigMaps)"
        );
    }
    matches!(allowed, Ok(true))
}

/// Whether this controller may list a Gateway API `resource` (a self
/// subject access review, which every identity may ask): without the
/// chart's RBAC for it, its watch would never sync and hold up the first
/// snapshot, so the resource (for GatewayClasses: the whole Gateway API) is
/// then left alone.
async fn may_list(client: &Client, resource: &str) -> bool {
    match super::policy_filter::may_list(client, GROUP, resource, None).await {
        Ok(true) => true,
        Ok(false) => {
            tracing::warn!(
                resource,
                "Gateway API served, but this controller may not list it; not watching it"
            );
            false
        }
        Err(e) => {
            tracing::warn!(resource, error = %e, "cannot check access to the Gateway API; not watching it");
            false
        }
    }
}

/// The reflector stores of the Gateway API kinds (and of Namespaces, for
/// `allowedRoutes` selectors).
pub(super) struct GatewayStores {
    classes: Stores<GatewayClass>,
    gateways: Stores<Gateway>,
    routes: Stores<HttpRoute>,
    grpc_routes: Option<Stores<GrpcRoute>>,
    grants: Option<Stores<ReferenceGrant>>,
    namespaces: Stores<Namespace>,
    /// BackendTLSPolicies, and the ConfigMaps they may name when readable.
    backend_tls: Option<(Stores<BackendTlsPolicy>, Option<Stores<ConfigMap>>)>,
}

impl GatewayStores {
    /// Starts the watchers of what `served` says is there; `None` when the
    /// Gateway API is not served.
    pub(super) fn start(
        client: &Client,
        namespaces: &[String],
        served: Served,
        changed: &Arc<Notify>,
    ) -> Option<Self> {
        if !served.v1 {
            return None;
        }
        let all = watcher::Config::default;
        Some(GatewayStores {
            classes: Stores::start(
                vec![Api::all(client.clone())],
                all(),
                changed.clone(),
                "GatewayClass",
            ),
            gateways: Stores::start(apis(client, namespaces), all(), changed.clone(), "Gateway"),
            routes: Stores::start(
                apis(client, namespaces),
                all(),
                changed.clone(),
                "HTTPRoute",
            ),
            grpc_routes: served.grpc_routes.then(|| {
                Stores::start(
                    apis(client, namespaces),
                    all(),
                    changed.clone(),
                    "GRPCRoute",
                )
            }),
            grants: served.reference_grants.then(|| {
                Stores::start(
                    apis(client, namespaces),
                    all(),
                    changed.clone(),
                    "ReferenceGrant",
                )
            }),
            namespaces: Stores::start(
                vec![Api::all(client.clone())],
                all(),
                changed.clone(),
                "Namespace",
            ),
            backend_tls: served.backend_tls.then(|| {
                (
                    Stores::start(
                        apis(client, namespaces),
                        all(),
                        changed.clone(),
                        "BackendTLSPolicy",
                    ),
                    served.config_maps.then(|| {
                        Stores::start(
                            apis(client, namespaces),
                            all(),
                            changed.clone(),
                            "ConfigMap",
                        )
                    }),
                )
            }),
        })
    }

    /// Waits for every store's initial list.
    pub(super) async fn wait_until_ready(&self) {
        self.classes.wait_until_ready().await;
        self.gateways.wait_until_ready().await;
        self.routes.wait_until_ready().await;
        if let Some(r) = &self.grpc_routes {
            r.wait_until_ready().await;
        }
        if let Some(g) = &self.grants {
            g.wait_until_ready().await;
        }
        self.namespaces.wait_until_ready().await;
        if let Some((policies, maps)) = &self.backend_tls {
            policies.wait_until_ready().await;
            if let Some(maps) = maps {
                maps.wait_until_ready().await;
            }
        }
    }

    /// The objects as the stores hold them now.
    pub(super) fn objects(&self) -> GatewayObjects {
        GatewayObjects {
            classes: self.classes.state(),
            gateways: self.gateways.state(),
            http_routes: self.routes.state(),
            grpc_routes: self
                .grpc_routes
                .as_ref()
                .map(Stores::state)
                .unwrap_or_default(),
            grants: self.grants.as_ref().map(Stores::state).unwrap_or_default(),
            namespaces: self.namespaces.state(),
            backend_tls_policies: self
                .backend_tls
                .as_ref()
                .map(|(p, _)| p.state())
                .unwrap_or_default(),
            config_maps: self
                .backend_tls
                .as_ref()
                .and_then(|(_, m)| m.as_ref().map(Stores::state))
                .unwrap_or_default(),
            config_maps_unreadable: self.backend_tls.as_ref().is_some_and(|(_, m)| m.is_none()),
            ..GatewayObjects::default()
        }
    }
}

//! Cluster tier: Ingress objects translated (fixtures, annotation prefixes) and the controller against a real API server with pods that run.

mod admission;
mod annotation_prefixes;
mod cert_manager;
mod controller;
mod gateway;
mod gateway_addresses;
mod gateway_filters;
mod gateway_fixtures;
mod gateway_identity;
mod gateway_listeners;
mod gateway_ports;
mod gateway_route_policy;
mod grpc_route;
mod ingress_fixtures;
mod pods;
mod revocation;
mod rule_origins;

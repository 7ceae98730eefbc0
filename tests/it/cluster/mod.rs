//! Cluster tier: Ingress objects translated (fixtures, annotation prefixes) and the controller against a real API server.

mod annotation_prefixes;
mod controller;
mod gateway_fixtures;
mod ingress_fixtures;

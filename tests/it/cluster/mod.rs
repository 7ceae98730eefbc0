//! Cluster tier: Ingress objects translated (fixtures, annotation prefixes) and the controller against a real API server.

mod admission;
mod annotation_prefixes;
mod controller;
mod ingress_fixtures;

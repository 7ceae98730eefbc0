//! Translation that keeps what it built: each route input is remembered
//! with the route made from it, and the next translation takes that route
//! (the same `Arc`) instead of building it again when the input and the
//! global settings a route reads are equal. Building a route is a pure
//! function of those two, so the snapshot is the one a translation from
//! nothing gives (`translate::tests_incremental` checks it on random
//! sequences of object changes); only the work differs: a change rebuilds
//! the routes whose inputs it changed.

use super::{GlobalInputs, Inputs, RouteInput};
use crate::model::routing::RouteKey;
use crate::model::{Diagnostic, Route, Snapshot};
use std::collections::HashMap;
use std::sync::Arc;

/// A route as built from one input: the route (none when the input names
/// no host or path to match), the diagnostics building it found, and the
/// digest of its `Debug` text (the snapshot's fingerprint is made of these).
pub(super) struct Built {
    pub(super) route: Option<(Arc<Route>, RouteKey)>,
    pub(super) diagnostics: Vec<Diagnostic>,
    pub(super) digest: [u8; 32],
}

/// The routes of the last translation by input id, with the global
/// settings they were built under.
#[derive(Default)]
pub struct Memo {
    context: Option<RouteContext>,
    routes: HashMap<String, (RouteInput, Arc<Built>)>,
}

impl Memo {
    /// Translates `inputs`, taking every route whose input (and the global
    /// settings routes read) is unchanged from the last call, and
    /// remembering this call's routes for the next.
    pub fn translate(&mut self, inputs: &Inputs) -> Snapshot {
        let context = RouteContext::of(&inputs.global);
        if self.context.as_ref() != Some(&context) {
            self.routes.clear();
        }
        let mut last = std::mem::take(&mut self.routes);
        let mut next = HashMap::with_capacity(inputs.routes.len());
        let mut builder = super::RouteBuilder::new(&inputs.global);
        let built: Vec<Arc<Built>> = inputs
            .routes
            .iter()
            .map(|input| {
                let (kept, built) = match last.remove(&input.id) {
                    Some((kept, built)) if kept == *input => (kept, built),
                    _ => (input.clone(), Arc::new(builder.build(input))),
                };
                next.insert(input.id.clone(), (kept, built.clone()));
                built
            })
            .collect();
        self.routes = next;
        self.context = Some(context);
        super::assemble(inputs, built)
    }
}

/// The global settings a route is built from (everything else in
/// [`GlobalInputs`] concerns the snapshot as a whole: keys, certificates,
/// Gateway ports).
#[derive(PartialEq)]
struct RouteContext {
    text: String,
    auth: crate::model::AuthConfig,
}

impl RouteContext {
    fn of(g: &GlobalInputs) -> Self {
        // `AuthConfig`'s `Debug` hides its secrets, so it is compared
        // whole beside the text of the rest.
        RouteContext {
            text: format!(
                "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
                g.issuer_format,
                g.pass_identity_headers,
                g.jwt_claims_headers,
                g.set_response_headers,
                g.jwt_groups_filter,
                g.bearer_token_format,
                g.access_token_audiences,
                g.default_upstream_timeout,
                g.downstream_mtls,
                g.auth,
            ),
            auth: g.auth.clone(),
        }
    }
}

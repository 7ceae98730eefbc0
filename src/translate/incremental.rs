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

/// The routes of the last translation by input id, in input order, with
/// the global settings they were built under.
#[derive(Default)]
pub struct Memo {
    context: Option<RouteContext>,
    routes: HashMap<String, (RouteInput, Arc<Built>)>,
    /// The last translation's routes in input order.
    order: Vec<Arc<Built>>,
    /// The last translation's inputs before the caller's own list.
    base: Vec<RouteInput>,
}

impl Memo {
    /// Translates `inputs`, taking every route whose input (and the global
    /// settings routes read) is unchanged from the last call, and
    /// remembering this call's routes for the next.
    pub fn translate(&mut self, inputs: &Inputs) -> Snapshot {
        self.translate_with(inputs, &[], None)
    }

    /// Translates `inputs` with `more` routes after its own. `changed`:
    /// the positions in `more` whose input may differ from the last call's
    /// `more` (the caller knows every other is equal), so only those are
    /// looked at; `None`: every input is compared.
    pub fn translate_with(
        &mut self,
        inputs: &Inputs,
        more: &[RouteInput],
        changed: Option<&[usize]>,
    ) -> Snapshot {
        let context = RouteContext::of(&inputs.global);
        let quick = changed.filter(|_| {
            self.context.as_ref() == Some(&context)
                && self.order.len() == inputs.routes.len() + more.len()
                && self.base == inputs.routes
        });
        let built = match quick {
            Some(changed) => self.patch(&inputs.global, inputs.routes.len(), more, changed),
            None => {
                if self.context.as_ref() != Some(&context) {
                    self.routes.clear();
                }
                self.rebuild(&inputs.global, inputs.routes.iter().chain(more))
            }
        };
        self.context = Some(context);
        self.base.clone_from(&inputs.routes);
        super::assemble(
            &inputs.global,
            &inputs.diagnostics,
            inputs.routes.iter().chain(more),
            built,
        )
    }

    /// Every input compared with the one kept under its id.
    fn rebuild<'a>(
        &mut self,
        global: &GlobalInputs,
        inputs: impl Iterator<Item = &'a RouteInput>,
    ) -> Vec<Arc<Built>> {
        let mut last = std::mem::take(&mut self.routes);
        let mut next = HashMap::with_capacity(last.len());
        let mut builder = super::RouteBuilder::new(global);
        let built: Vec<Arc<Built>> = inputs
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
        self.order.clone_from(&built);
        built
    }

    /// The last translation's routes with those at `changed` (positions
    /// in the caller's list, after `base` of the memo's own) built again
    /// when their input differs.
    fn patch(
        &mut self,
        global: &GlobalInputs,
        base: usize,
        more: &[RouteInput],
        changed: &[usize],
    ) -> Vec<Arc<Built>> {
        let mut builder = super::RouteBuilder::new(global);
        for &at in changed {
            let input = &more[at];
            let reuse = self
                .routes
                .get(&input.id)
                .filter(|(kept, _)| kept == input)
                .map(|(_, built)| built.clone());
            let built = match reuse {
                Some(built) => built,
                None => {
                    let built = Arc::new(builder.build(input));
                    self.routes
                        .insert(input.id.clone(), (input.clone(), built.clone()));
                    built
                }
            };
            self.order[base + at] = built;
        }
        self.order.clone()
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

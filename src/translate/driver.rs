//! The one driver every configuration source goes through (the file
//! source's watcher, the cluster source, `demo` and the test harnesses): keys retired
//! so far are kept published, the inputs are translated, the snapshot is
//! published when the source accepts it and it differs from the running
//! one, and the diagnostics go back to the source to report where the user
//! looks.

use super::Inputs;
use super::incremental::Memo;
use crate::model::{Diagnostic, Snapshot};
use crate::snapshot::{KeyHistory, Publisher, SnapshotReader};

/// What one application of inputs did.
#[derive(Debug)]
pub struct Applied {
    /// The new generation, or `None` when the snapshot did not change.
    pub generation: Option<u64>,
    /// Every problem found, for Events, status and log lines.
    pub diagnostics: Vec<Diagnostic>,
}

/// Translate → check → publish-if-changed, with the signing-key history
/// and the routes of the last translation (a change rebuilds only the
/// routes whose inputs it changed).
#[derive(Default)]
pub struct Driver {
    publisher: Publisher,
    history: KeyHistory,
    memo: Memo,
}

impl Driver {
    pub fn new() -> Self {
        Self::default()
    }

    /// A reader of the published snapshots.
    pub fn reader(&self) -> SnapshotReader {
        self.publisher.reader()
    }

    /// Translates `inputs` and publishes the result unless `accept` refuses
    /// it (its error is returned and nothing changes, not even the key
    /// history). Keys dropped from the configuration stay published while
    /// assertions they signed can still be valid.
    pub fn apply<E>(
        &mut self,
        inputs: Inputs,
        now: i64,
        accept: impl FnOnce(&Snapshot) -> Result<(), E>,
    ) -> Result<Applied, E> {
        self.apply_with(inputs, &[], None, now, accept)
    }

    /// [`Driver::apply`] of `inputs` with `more` routes after its own;
    /// `changed`: the positions in `more` whose input may differ from the
    /// last call's `more` (every other is equal), so only those are
    /// looked at (`None`: all are).
    pub fn apply_with<E>(
        &mut self,
        mut inputs: Inputs,
        more: &[super::RouteInput],
        changed: Option<&[usize]>,
        now: i64,
        accept: impl FnOnce(&Snapshot) -> Result<(), E>,
    ) -> Result<Applied, E> {
        let mut history = self.history.clone();
        inputs.global.retired_keys = history.update(&inputs.global.keys, now);
        let snapshot = self.memo.translate_with(&inputs, more, changed);
        accept(&snapshot)?;
        self.history = history;
        let diagnostics = snapshot.diagnostics.clone();
        let generation = self.publisher.publish(snapshot);
        Ok(Applied {
            generation,
            diagnostics,
        })
    }

    /// [`Driver::apply`] for a source that accepts every snapshot (a bad
    /// object is only its own route's problem).
    pub fn publish(&mut self, inputs: Inputs, now: i64) -> Applied {
        match self.apply(inputs, now, |_| Ok::<(), std::convert::Infallible>(())) {
            Ok(applied) => applied,
            Err(never) => match never {},
        }
    }

    /// [`Driver::apply_with`] for a source that accepts every snapshot.
    pub fn publish_with(
        &mut self,
        inputs: Inputs,
        more: &[super::RouteInput],
        changed: Option<&[usize]>,
        now: i64,
    ) -> Applied {
        let accept = |_: &Snapshot| Ok::<(), std::convert::Infallible>(());
        match self.apply_with(inputs, more, changed, now, accept) {
            Ok(applied) => applied,
            Err(never) => match never {},
        }
    }

    /// Seconds until the next retired key stops being published, if any:
    /// the source re-applies then so the JWKS drops it.
    pub fn next_key_expiry(&self, now: i64) -> Option<i64> {
        self.history.next_expiry(now)
    }

    /// Counts a configuration that could not be applied (metrics, readiness).
    pub fn record_failure(&self) {
        self.publisher.record_failure();
    }

    /// Marks the last application as successful.
    pub fn record_success(&self) {
        self.publisher.record_success();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::KeySet;
    use crate::translate::GlobalInputs;
    use std::sync::Arc;

    fn inputs(global: &GlobalInputs) -> Inputs {
        Inputs {
            global: global.clone(),
            routes: Vec::new(),
            diagnostics: Vec::new(),
        }
    }

    #[test]
    fn a_refused_snapshot_changes_nothing_and_an_equal_one_is_not_republished() {
        let mut d = Driver::new();
        let g = GlobalInputs::for_test();
        let a = d.publish(inputs(&g), 0);
        assert_eq!(a.generation, Some(1));
        assert_eq!(d.publish(inputs(&g), 1).generation, None);

        // A refused application with a new key neither publishes nor
        // retires the running key.
        let mut other = g.clone();
        other.keys = Arc::new(KeySet::generate());
        let e = d.apply(inputs(&other), 2, |_| Err("no"));
        assert_eq!(e.unwrap_err(), "no");
        assert_eq!(d.reader().generation(), 1);
        assert_eq!(d.next_key_expiry(2), None);

        // Accepted: the old key is retired and stays published.
        let a = d.publish(inputs(&other), 3);
        assert_eq!(a.generation, Some(2));
        assert!(d.next_key_expiry(3).is_some());
        let jwks = d.reader().load().unwrap().identity.jwks.clone();
        let old = g.keys.keys()[0].kid().to_string();
        assert!(String::from_utf8_lossy(&jwks.body).contains(&old));
    }
}

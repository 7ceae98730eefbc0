//! Events (`events.k8s.io/v1`) about the objects the controller reads.
//!
//! Repeats of one Event are folded into a series (`series.count`,
//! `series.lastObservedTime`), as kube-runtime's `Recorder` does, but the
//! series is keyed on the message too: a second, different problem on the
//! same object with the same reason is a new Event carrying its own message,
//! so the newest Event on an object always says what is wrong now. The same
//! message seen again bumps its own series, which makes it the newest again.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;

/// How long a series stays open after its last observation (kube-runtime's
/// value); an older repeat starts a new Event.
const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);

/// The longest note the API server accepts (bytes).
const MAX_NOTE: usize = 1024;

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Normal,
    Warning,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "Normal",
            Kind::Warning => "Warning",
        }
    }
}

/// What one series is about: the object, the type, the reason and the message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    uid: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    type_: Kind,
    reason: String,
    note: String,
}

/// An open series: the Event's name and namespace, its count and last observation.
struct Series {
    name: String,
    namespace: String,
    count: i32,
    last: Timestamp,
}

/// Writes Events as `controller`/`instance`; one writer per process.
pub struct EventWriter {
    client: Client,
    controller: String,
    instance: String,
    open: HashMap<Key, Series>,
}

impl EventWriter {
    /// A writer reporting as `controller` (the Events' `reportingController`)
    /// from `instance` (this replica's name).
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        EventWriter {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            open: HashMap::new(),
        }
    }

    /// Records one Event about `regarding`: a new Event, or the next count
    /// of the open series with the same reason and message.
    pub async fn publish(
        &mut self,
        regarding: &ObjectReference,
        type_: Kind,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        self.open.retain(|_, s| s.last + SERIES_TTL > now);
        let note = truncate(note, MAX_NOTE);
        let key = Key {
            uid: regarding.uid.clone(),
            kind: regarding.kind.clone(),
            namespace: regarding.namespace.clone(),
            name: regarding.name.clone(),
            type_,
            reason: reason.to_string(),
            note: note.to_string(),
        };
        if let Some(series) = self.open.get_mut(&key) {
            match bump(&self.client, series, now).await {
                Ok(()) => return Ok(()),
                // Expired or deleted meanwhile: start again with a new Event.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.event(regarding, type_, reason, note, now);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let created = api.create(&PostParams::default(), &event).await?;
        let series = Series {
            name: created.metadata.name.unwrap_or_default(),
            namespace,
            count: 1,
            last: now,
        };
        self.open.insert(key, series);
        Ok(())
    }

    /// A new Event (its series, if any, starts with the second observation).
    fn event(
        &self,
        regarding: &ObjectReference,
        type_: Kind,
        reason: &str,
        note: &str,
        now: Timestamp,
    ) -> Event {
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let base = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{base}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(type_.as_str().to_string()),
            reason: Some(reason.to_string()),
            action: Some("Reconcile".to_string()),
            note: Some(note.to_string()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

/// Counts one more observation of an open series.
async fn bump(client: &Client, series: &mut Series, now: Timestamp) -> Result<(), kube::Error> {
    let next = EventSeries {
        count: series.count + 1,
        last_observed_time: MicroTime(now),
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &series.namespace);
    let patch = serde_json::json!({ "series": next });
    api.patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    series.count += 1;
    series.last = now;
    Ok(())
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        // "é" is two bytes: a cut in its middle steps back before it.
        assert_eq!(truncate("aé", 2), "a");
    }
}

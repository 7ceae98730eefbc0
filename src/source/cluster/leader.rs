//! Leader election over a `coordination.k8s.io/v1` Lease: the holder alone
//! writes to the API server on behalf of the controller (Events, Ingress
//! status and annotations, Policy status); every replica serves traffic
//! either way. Every replica takes part in the election, whatever its flags.
//!
//! Writers ask [`Leadership::is_leader`] before each write, or follow
//! [`Leadership::subscribe`] to act when this replica becomes (or stops
//! being) the holder: a new holder writes what is current, so a hand-over
//! loses nothing.
//!
//! A replica takes the Lease when it is absent or its holder has not renewed
//! it within `leaseDurationSeconds`, and renews it while it holds it. Every
//! write carries the `resourceVersion` it read, so two replicas racing for
//! an expired Lease cannot both win: the API server refuses the second.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Whether this replica holds the Lease right now; clones share one state.
#[derive(Clone)]
pub struct Leadership(Arc<watch::Sender<bool>>);

impl Default for Leadership {
    fn default() -> Self {
        Leadership(Arc::new(watch::Sender::new(false)))
    }
}

impl Leadership {
    /// True while this replica holds the Lease.
    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// A receiver that wakes whenever leadership is gained or lost.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }

    /// Records whether this replica holds the Lease; returns the old value.
    fn set(&self, held: bool) -> bool {
        self.0.send_replace(held)
    }
}

/// Lease timing.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews (and others look).
    pub renew: Duration,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Seconds since `t`, from this replica's clock.
fn age(t: &MicroTime) -> f64 {
    let d = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
    d.as_secs_f64()
}

/// Runs the election loop until `shutdown`, keeping `leadership` current;
/// then gives the Lease up if held.
pub async fn run(
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    leadership: Leadership,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let held = match try_acquire_or_renew(&api, &name, &identity, timing).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(lease = %name, error = %e, "leader election: cannot read or write the Lease");
                false
            }
        };
        let was = leadership.set(held);
        if held != was {
            if held {
                tracing::info!(lease = %name, identity = %identity, "leader: this replica now writes Events and status");
            } else {
                tracing::info!(lease = %name, identity = %identity, "no longer leader: Event and status writes stop");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                if leadership.is_leader() {
                    release(&api, &name, &identity).await;
                }
                leadership.set(false);
                return;
            }
            _ = tokio::time::sleep(timing.renew) => {}
        }
    }
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    timing: Timing,
) -> Result<bool, kube::Error> {
    let secs = timing.duration.as_secs().max(1) as i32;
    let Some(mut lease) = api.get_opt(name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.to_string()),
                lease_duration_seconds: Some(secs),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let valid_for = spec.lease_duration_seconds.unwrap_or(secs) as f64;
    let expired = spec.renew_time.as_ref().is_none_or(|t| age(t) > valid_for);
    if holder != identity && !holder.is_empty() && !expired {
        return Ok(false);
    }
    if holder != identity {
        spec.holder_identity = Some(identity.to_string());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(secs);
    // replace() sends the resourceVersion read above: a concurrent writer wins, we lose.
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up on shutdown so another replica takes over at once.
async fn release(api: &Api<Lease>, name: &str, identity: &str) {
    if let Ok(Some(mut lease)) = api.get_opt(name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(identity)
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        let _ = api.replace(name, &PostParams::default(), &lease).await;
    }
}

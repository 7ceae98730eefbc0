//! Request mirroring (`mirror_to`, a Gateway API `RequestMirror`): a copy
//! of a prepared request goes to one of the route's mirror targets (round
//! robin), fire-and-forget. The copy carries exactly the head the upstream
//! gets (filters, identity headers and all), is sent on its own task, and
//! its answer is dropped: the forwarded request never waits for it.
//!
//! Only requests without a body are copied (a body is streamed once, to
//! the upstream, and never buffered for a mirror); at most
//! [`MAX_IN_FLIGHT`] copies are in flight per process, and each is given
//! up after the route's timeout (at most [`MAX_WAIT`]).

use super::body::empty;
use super::prepare::Prepared;
use super::upstream::Upstreams;
use crate::model::{LoadBalancing, Upstream, UpstreamScheme};
use http::{HeaderValue, Request, Uri, header};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Copies in flight at most; beyond, requests are not mirrored.
pub const MAX_IN_FLIGHT: usize = 256;
/// The longest a copy is waited for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts a copy in flight until dropped.
struct InFlight;

impl InFlight {
    fn take() -> Option<InFlight> {
        match IN_FLIGHT.fetch_add(1, Ordering::Relaxed) < MAX_IN_FLIGHT {
            true => Some(InFlight),
            false => {
                IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sends a copy of `p` to one of its route's mirror targets, if it has
/// any and `p` has no body. Returns at once.
pub(crate) fn spawn(upstreams: &Upstreams, p: &Prepared<'_>, id: &str) {
    let route = p.route;
    if route.mirror_to.is_empty() {
        return;
    }
    if !p.retryable {
        tracing::debug!(request_id = %id, route = %route.id, "request with a body or an upgrade: not mirrored");
        return;
    }
    let key = format!("{}#mirror", route.id);
    let targets = upstreams.order_by(&key, &route.mirror_to, LoadBalancing::RoundRobin, "", 0);
    let Some(up) = targets.first().copied() else {
        return;
    };
    let (Some(req), Ok(client)) = (
        copy(p, up),
        upstreams.client(up, &route.compiled.upstream_tls),
    ) else {
        return;
    };
    let Some(slot) = InFlight::take() else {
        tracing::debug!(request_id = %id, route = %route.id, "too many mirrored requests in flight: not mirrored");
        return;
    };
    let wait = route.timeout.min(MAX_WAIT);
    let (id, route_id) = (id.to_string(), route.id.clone());
    tokio::spawn(async move {
        let _slot = slot;
        match tokio::time::timeout(wait, client.request(req)).await {
            Ok(Ok(_answer)) => {}
            Ok(Err(e)) => {
                tracing::debug!(request_id = %id, route = %route_id, error = %e, "mirrored request failed")
            }
            Err(_) => {
                tracing::debug!(request_id = %id, route = %route_id, "mirrored request timed out")
            }
        }
    });
}

/// The copy of `p`'s head for the mirror target `up`, with an empty body.
fn copy(p: &Prepared<'_>, up: &Upstream) -> Option<Request<super::body::Body>> {
    let uri: Uri = format!(
        "{}://{}{}",
        up.scheme.wire(),
        up.authority,
        p.path_and_query
    )
    .parse()
    .ok()?;
    let mut head = p.parts.clone();
    head.uri = uri;
    head.version = match up.scheme {
        UpstreamScheme::H2c => http::Version::HTTP_2,
        _ => http::Version::HTTP_11,
    };
    let host = match &p.host {
        Some(h) => h.clone(),
        None => HeaderValue::from_str(&up.authority).ok()?,
    };
    head.headers.insert(header::HOST, host);
    Some(Request::from_parts(head, empty()))
}

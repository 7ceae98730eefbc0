//! The response/request body type used throughout the proxy.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Boxed error type of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A boxed body.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body with the given bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A response jetbridge writes itself: `content_type`, never cached nor
/// sniffed, with the request id when there is one.
pub fn own_response(
    status: http::StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
    request_id: Option<&str>,
) -> http::Response<Body> {
    use http::{HeaderValue, header};
    let mut r = http::Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(v) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        h.insert("x-request-id", v);
    }
    r
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// Boxes any body.
pub fn boxed<B>(b: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed()
}

/// A request body whose trailers pass through `clean` on their way to the
/// upstream; data frames are untouched.
pub struct CleanTrailers<B, F> {
    inner: B,
    clean: F,
}

impl<B, F> CleanTrailers<B, F> {
    /// Wraps `inner`.
    pub fn new(inner: B, clean: F) -> Self {
        CleanTrailers { inner, clean }
    }
}

impl<B, F> http_body::Body for CleanTrailers<B, F>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    F: Fn(&mut http::HeaderMap) + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        std::pin::Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map_ok(|frame| match frame.into_trailers() {
                Ok(mut trailers) => {
                    (this.clean)(&mut trailers);
                    http_body::Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A body that fails if no frame arrives for `idle` (the route's
/// `idle_timeout`), so a stalled upstream cannot hold a client forever.
pub struct IdleTimeout<B> {
    inner: B,
    idle: std::time::Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, idle: std::time::Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("upstream response body idle for longer than the route's idle_timeout")]
pub struct BodyIdle;

impl<B> http_body::Body for IdleTimeout<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.idle;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdle)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The route's `idle_timeout`, carried on a response to the listener: how
/// long a response body may go without handing a frame to the client. A
/// silent upstream ends the body itself ([`IdleTimeout`]); a client that
/// takes nothing (a zero flow-control window, a socket it stopped reading)
/// loses its connection, so the body stops holding its upstream.
#[derive(Clone, Copy, Debug)]
pub struct SendIdle(pub std::time::Duration);

/// What a [`Guarded`] body reports about its sending.
pub trait Progress: Unpin {
    /// A frame went to the client (or the body ended).
    fn sent(&self);
}

/// A body that holds `guard` until it is dropped: whatever the guard stands
/// for (a request counted as in flight) lasts exactly as long as the body,
/// and the guard hears of every frame handed on.
pub struct Guarded<G> {
    inner: Body,
    guard: G,
}

impl<G> Guarded<G> {
    pub fn new(inner: Body, guard: G) -> Self {
        Guarded { inner, guard }
    }
}

impl<G: Progress> http_body::Body for Guarded<G> {
    type Data = Bytes;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_ready() {
            this.guard.sent();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

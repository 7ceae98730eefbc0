//! The worker's own HTTP/1.1 client for requests without a body to plain
//! `http://` targets: the request head written once from the prepared
//! head, the response read with [`super::wire`] from one read buffer kept
//! with the connection, and the body passed through as it arrives. A
//! connection goes back to this worker's pool (thread-local: no lock, no
//! task, no channel) when its response body has ended cleanly; it is never
//! shared while a response is being read.
//!
//! An idle pooled connection the target closed is found before it is used
//! (a read that does not wait); a request that still meets a closed
//! connection before any byte of its answer came is sent again on a new one
//! when its method is idempotent.

use super::super::body::BoxError;
use super::CONNECT_TIMEOUT;
use super::h1::H1Error;
use super::wire::{self, Chunked, Decoded, Framing, WireError};
use bytes::BytesMut;
use http::{HeaderMap, Method, Request, Response};
use http_body::Frame;
use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Idle connections are dropped when met after this long.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Connections kept per target and worker; more are closed after use.
const MAX_PER_TARGET: usize = 256;
/// How much room a read asks for.
const READ_CHUNK: usize = 16 * 1024;
/// A read buffer that grew beyond this (a large head) is not kept.
const KEEP_BUFFER: usize = 64 * 1024;

/// Whether requests may take this path (`JETBRIDGE_H1_FAST=0` turns it off,
/// leaving every request to hyper's client; read once).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("JETBRIDGE_H1_FAST").map_or(true, |v| v != "0"))
}

/// One connection to a target and its buffers.
pub struct Conn {
    io: TcpStream,
    /// Read but not yet consumed.
    buf: BytesMut,
    /// The request head being written (kept for its capacity).
    out: Vec<u8>,
    /// Room for where a response head's fields lie (kept likewise).
    fields: Vec<wire::Field>,
    /// The pool key (`host:port`), shared by the connection's uses.
    key: Arc<str>,
    /// When it was last given back.
    used: Instant,
}

thread_local! {
    /// This worker's idle connections by target, boxed: a connection
    /// moves between the pool and a response body without being copied
    /// or allocated again.
    #[allow(clippy::vec_box, reason = "the box moves out of the pool and back")]
    static POOL: RefCell<HashMap<Arc<str>, Vec<Box<Conn>>>> = RefCell::new(HashMap::new());
}

/// Sends the bodiless `req` (origin-form URI, `Host` set) to `authority`.
/// The request's header map, once written out, takes the response's.
pub async fn send(authority: &str, req: Request<()>) -> Result<Response<OwnBody>, H1Error> {
    let (parts, ()) = req.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let head_request = parts.method == Method::HEAD;
    let mut headers = parts.headers;
    let mut written = None;
    if let Some(mut conn) = checkout(authority) {
        wire::encode_request(&parts.method, target, &headers, &mut conn.out);
        match exchange(&mut conn, head_request, &mut headers).await {
            Ok(head) => return Ok(respond(conn, head)),
            // Closed under the request before any answer: again on a new
            // connection when the method allows it.
            Err(Failure::Closed) if parts.method.is_idempotent() => {
                written = Some(std::mem::take(&mut conn.out));
            }
            Err(f) => return Err(f.into()),
        }
    }
    let mut conn = connect(authority).await?;
    match written {
        Some(out) => conn.out = out,
        None => wire::encode_request(&parts.method, target, &headers, &mut conn.out),
    }
    let head = exchange(&mut conn, head_request, &mut headers).await?;
    Ok(respond(conn, head))
}

/// How an exchange failed.
enum Failure {
    /// The connection closed or reset before any byte of the answer.
    Closed,
    /// Anything else.
    Io(std::io::Error),
    /// The answer is malformed.
    Wire(WireError),
}

impl From<Failure> for H1Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Closed => H1Error::Wire(WireError::Incomplete),
            Failure::Io(e) => H1Error::Io(e),
            Failure::Wire(e) => H1Error::Wire(e),
        }
    }
}

/// Writes the request head (in `conn.out`) and reads the response head,
/// its fields into `spare`.
async fn exchange(
    conn: &mut Conn,
    head_request: bool,
    spare: &mut HeaderMap,
) -> Result<wire::Head, Failure> {
    if let Err(e) = conn.io.write_all(&conn.out).await {
        return Err(closed_or(e));
    }
    conn.buf.clear();
    loop {
        if !conn.buf.is_empty() {
            match wire::parse_response(&mut conn.buf, head_request, spare, &mut conn.fields) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => return Err(Failure::Wire(e)),
            }
        }
        let before = conn.buf.len();
        conn.buf.reserve(READ_CHUNK);
        match tokio::io::AsyncReadExt::read_buf(&mut conn.io, &mut conn.buf).await {
            Ok(0) if before == 0 => return Err(Failure::Closed),
            Ok(0) => return Err(Failure::Wire(WireError::Incomplete)),
            Ok(_) => {}
            Err(e) if before == 0 => return Err(closed_or(e)),
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}

/// A reset or broken pipe is a closed connection; other errors are not.
fn closed_or(e: std::io::Error) -> Failure {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof => Failure::Closed,
        _ => Failure::Io(e),
    }
}

/// The response for `head`, its body reading on from `conn`.
fn respond(conn: Box<Conn>, head: wire::Head) -> Response<OwnBody> {
    let mut resp = Response::new(OwnBody {
        conn: None,
        framing: head.framing,
        chunked: Chunked::default(),
        keep_alive: head.keep_alive,
        failed: None,
    });
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    *resp.headers_mut() = head.headers;
    if let Some(r) = head
        .reason
        .and_then(|r| hyper::ext::ReasonPhrase::try_from(r).ok())
    {
        resp.extensions_mut().insert(r);
    }
    let body = resp.body_mut();
    body.conn = Some(conn);
    body.finish_if_done();
    resp
}

/// A response body read from an own connection.
pub struct OwnBody {
    /// `None` once the body has ended (the connection back in the pool, or
    /// closed).
    conn: Option<Box<Conn>>,
    framing: Framing,
    chunked: Chunked,
    keep_alive: bool,
    /// An error held back for one turn (see [`OwnBody::poll_frame`]).
    failed: Option<BoxError>,
}

impl OwnBody {
    /// Ends the body if nothing is left to read: the connection goes back
    /// to the pool when it may carry another request.
    fn finish_if_done(&mut self) {
        let done = match self.framing {
            Framing::Length(n) => n == 0,
            Framing::Chunked => self.chunked.is_done(),
            Framing::Close => false,
        };
        if !done {
            return;
        }
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
        {
            give_back(conn);
        }
    }

    /// Reads more from the connection; `Ok(false)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, std::io::Error>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(false));
        };
        conn.buf.reserve(READ_CHUNK);
        let n = ready!(poll_read_buf(&mut conn.io, cx, &mut conn.buf))?;
        Poll::Ready(Ok(n > 0))
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<FrameResult>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let frame = match self.framing {
                Framing::Length(0) => None,
                Framing::Length(n) if !conn.buf.is_empty() => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(conn.buf.len());
                    self.framing = Framing::Length(n - take as u64);
                    Some(Frame::data(conn.buf.split_to(take).freeze()))
                }
                Framing::Close if !conn.buf.is_empty() => {
                    Some(Frame::data(conn.buf.split().freeze()))
                }
                Framing::Chunked => match self.chunked.decode(&mut conn.buf) {
                    Ok(Decoded::Data(d)) => Some(Frame::data(d)),
                    Ok(Decoded::End(Some(t))) => Some(Frame::trailers(t)),
                    Ok(Decoded::End(None)) => None,
                    Ok(Decoded::More) => {
                        if let Some(r) = self.fill_or_end(cx) {
                            return r;
                        }
                        continue;
                    }
                    Err(e) => {
                        self.conn = None;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                _ => {
                    if let Some(r) = self.fill_or_end(cx) {
                        return r;
                    }
                    continue;
                }
            };
            self.finish_if_done();
            if frame.is_none() {
                self.conn = None;
            }
            return Poll::Ready(frame.map(Ok));
        }
    }

    /// Reads more: `None` to go on decoding, or what to return (pending,
    /// the end of a close-delimited body, an error).
    fn fill_or_end(&mut self, cx: &mut Context<'_>) -> Option<Poll<Option<FrameResult>>> {
        let read = match self.poll_fill(cx) {
            Poll::Pending => return Some(Poll::Pending),
            Poll::Ready(r) => r,
        };
        let end = match read {
            Ok(true) => return None,
            Ok(false) if self.framing == Framing::Close => None,
            Ok(false) => Some(Err(WireError::Incomplete.into())),
            Err(e) => Some(Err(e.into())),
        };
        self.conn = None;
        Some(Poll::Ready(end))
    }
}

/// A body frame or its error.
type FrameResult = Result<Frame<bytes::Bytes>, BoxError>;

impl http_body::Body for OwnBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    /// An error met right after data is held back for one turn, so the
    /// server writes out the data it was given (and the head) before it
    /// ends the response: the client sees the body cut short, as it would
    /// had the error come a moment later.
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match this.poll_next(cx) {
            Poll::Ready(Some(Err(e))) => {
                this.failed = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && (self.conn.is_none() || self.framing == Framing::Length(0))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.framing {
            Framing::Length(n) => http_body::SizeHint::with_exact(n),
            _ => http_body::SizeHint::default(),
        }
    }
}

/// Reads into `buf`'s spare room.
fn poll_read_buf(
    io: &mut TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// A pooled idle connection to `authority`, if one is still open.
fn checkout(authority: &str) -> Option<Box<Conn>> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let list = pool.get_mut(authority)?;
        let now = Instant::now();
        while let Some(mut conn) = list.pop() {
            if now.duration_since(conn.used) < POOL_IDLE && still_open(&mut conn) {
                return Some(conn);
            }
        }
        None
    })
}

/// Whether an idle connection is still open: a read that does not wait
/// finds nothing to read (anything, or the end, means it cannot be used).
fn still_open(conn: &mut Conn) -> bool {
    let mut probe = [0u8; 1];
    matches!(conn.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Keeps `conn` for the next request to its target.
fn give_back(mut conn: Box<Conn>) {
    if conn.buf.capacity() > KEEP_BUFFER {
        conn.buf = BytesMut::new();
    }
    conn.used = Instant::now();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let now = conn.used;
        let list = match pool.get_mut(&*conn.key) {
            Some(list) => list,
            None => pool.entry(conn.key.clone()).or_default(),
        };
        list.retain(|c| now.duration_since(c.used) < POOL_IDLE);
        if list.len() < MAX_PER_TARGET {
            list.push(conn);
        }
    });
}

/// A new connection to `authority`.
async fn connect(authority: &str) -> Result<Box<Conn>, H1Error> {
    let io = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority))
        .await
        .map_err(|_| H1Error::ConnectTimeout(authority.to_owned()))?
        .map_err(|e| H1Error::Connect(authority.to_owned(), e))?;
    let _ = io.set_nodelay(true);
    Ok(Box::new(Conn {
        io,
        buf: BytesMut::with_capacity(READ_CHUNK),
        out: Vec::with_capacity(1024),
        fields: Vec::with_capacity(wire::MAX_HEADERS),
        key: Arc::from(authority),
        used: Instant::now(),
    }))
}

#[cfg(test)]
#[path = "own_tests.rs"]
mod tests;

//! The worker's own HTTP/1.1 connections to plain `http://` targets: kept
//! per worker thread, in a thread-local pool (no lock, no shared map), and
//! driven by the request that uses them (no task per connection, no
//! hand-off between tasks).
//!
//! A request takes an idle connection out of its target's list, and hyper's
//! connection future is polled by the request's own task: together with the
//! response future until the head arrives, then by the response body
//! ([`Driven`]) as the client reads it. When the body has ended the
//! connection goes back into the list if hyper says it is ready for the next
//! request; otherwise (closed, or still writing a request body the upstream
//! did not wait for) it is dropped, which closes it. An idle connection is
//! not polled: what came in while it waited (the upstream closing it) is
//! taken in when it is next met, by one poll that does not wait. Closed
//! connections and ones idle for longer than [`POOL_IDLE`] are dropped when
//! met, and every [`SWEEP_EVERY`] across all targets while requests come. A
//! request that a pooled connection could not even start (closed under it)
//! is sent again on a new connection, as hyper-util's pool does.

use super::super::body::Body;
use super::CONNECT_TIMEOUT;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections are dropped when met after this long.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Connections kept per target and worker; more are used once and closed.
const MAX_PER_TARGET: usize = 256;

/// hyper's side of one upstream connection: what reads and writes it.
type Connection = http1::Connection<TokioIo<TcpStream>, Body>;

/// One upstream connection: the handle requests are sent through and the
/// connection future that does the reading and writing.
struct Conn {
    /// The target (`host:port`), for giving the connection back.
    authority: String,
    sender: SendRequest<Body>,
    /// `None` once hyper has finished with the connection.
    conn: Option<Connection>,
    /// When it was last given back.
    used: Instant,
}

impl Conn {
    /// Polls the connection future; once it has finished (closed, failed)
    /// it is dropped, which fails whatever was still waiting on it.
    fn drive(&mut self, cx: &mut Context<'_>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if let Poll::Ready(result) = Pin::new(conn).poll(cx) {
            if let Err(e) = result {
                tracing::debug!(upstream = %self.authority, error = %e, "upstream connection ended");
            }
            self.conn = None;
        }
    }

    /// Takes in what has come in without waiting; true while the connection
    /// can take a request.
    fn settle(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()));
        self.conn.is_some() && self.sender.is_ready()
    }
}

/// How often the whole pool is swept of closed and idle connections (those
/// of targets no longer asked for included).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// One worker's idle connections by target authority (`host:port`).
struct Pool {
    #[allow(
        clippy::vec_box,
        reason = "a connection is boxed once and moved by pointer between the pool and its requests"
    )]
    targets: HashMap<String, Vec<Box<Conn>>>,
    swept: Instant,
}

impl Pool {
    /// Drops closed and idle connections of every target, at most every
    /// [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.swept) < SWEEP_EVERY {
            return;
        }
        self.swept = now;
        self.targets.retain(|_, list| {
            list.retain_mut(|c| usable(c, now));
            !list.is_empty()
        });
    }
}

/// Open, ready and not idle for too long.
fn usable(c: &mut Conn, now: Instant) -> bool {
    now.duration_since(c.used) < POOL_IDLE && c.settle()
}

thread_local! {
    /// This worker's idle connections.
    static POOL: RefCell<Pool> = RefCell::new(Pool {
        targets: HashMap::new(),
        swept: Instant::now(),
    });
}

/// Why a request on an own connection failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// The TCP connection could not be opened in time.
    #[error("connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// The TCP connection attempt timed out.
    #[error("connect to {0}: timed out")]
    ConnectTimeout(String),
    /// A new connection closed before the request could be written.
    #[error("connection to {0} closed before the request was sent")]
    Closed(String),
    /// hyper refused the connection or the exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

impl H1Error {
    /// The target could not be reached: another target may be tried.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            H1Error::Connect(..) | H1Error::ConnectTimeout(_) | H1Error::Closed(_)
        )
    }
}

/// What an exchange came to when it brought no response.
enum Failed {
    /// The request was never written: it may be sent again.
    NotStarted(Box<Request<Body>>),
    /// The exchange failed.
    Http(hyper::Error),
}

/// Sends `req` (origin-form URI, `Host` set) to `authority` over a pooled
/// connection, or a new one.
pub async fn send(authority: &str, req: Request<Body>) -> Result<Response<Driven>, H1Error> {
    let req = match checkout(authority) {
        Some(conn) => match exchange(conn, req).await {
            Ok(resp) => return Ok(resp),
            // Not started: the connection closed under it.
            Err(Failed::NotStarted(req)) => *req,
            Err(Failed::Http(e)) => return Err(e.into()),
        },
        None => req,
    };
    let conn = connect(authority).await?;
    exchange(conn, req).await.map_err(|e| match e {
        Failed::NotStarted(_) => H1Error::Closed(authority.to_owned()),
        Failed::Http(e) => H1Error::Http(e),
    })
}

/// Sends `req` on `c`, polling the connection on this task until the
/// response head has come; the connection then travels with the body.
async fn exchange(mut c: Box<Conn>, req: Request<Body>) -> Result<Response<Driven>, Failed> {
    let sent = c.sender.try_send_request(req);
    let mut sent = std::pin::pin!(sent);
    let answer = std::future::poll_fn(|cx| {
        c.drive(cx);
        sent.as_mut().poll(cx)
    })
    .await;
    match answer {
        Ok(resp) => Ok(resp.map(|incoming| Driven {
            incoming,
            conn: Some(c),
            ended: false,
            failed: None,
        })),
        Err(mut e) => match e.take_message() {
            Some(req) => Err(Failed::NotStarted(Box::new(req))),
            None => Err(Failed::Http(e.into_error())),
        },
    }
}

/// A response body from an own connection, which it drives while it is
/// read and gives back to the pool once it has ended.
pub struct Driven {
    incoming: Incoming,
    /// Boxed once per connection: moved with every request, not copied.
    conn: Option<Box<Conn>>,
    /// The last frame has been read.
    ended: bool,
    /// The body's failure, held back for one poll (see `poll_frame`).
    failed: Option<hyper::Error>,
}

impl http_body::Body for Driven {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        if let Some(c) = this.conn.as_mut() {
            c.drive(cx);
        }
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            // The failure (a reset, a close mid-body) was read in the same
            // poll as the data before it: it is given one poll later, so
            // the server writes out what it has first, as it would with the
            // connection read by a task of its own.
            Poll::Ready(Some(Err(e))) => {
                this.failed = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            frame => frame,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        // A body dropped before its end leaves the connection mid-response:
        // dropping the connection closes it.
        if let Some(c) = self.conn.take()
            && (self.ended || http_body::Body::is_end_stream(&self.incoming))
        {
            give_back(c);
        }
    }
}

/// A pooled connection to `authority` ready for a request, if there is one.
fn checkout(authority: &str) -> Option<Box<Conn>> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let list = pool.targets.get_mut(authority)?;
        let now = Instant::now();
        list.retain_mut(|c| usable(c, now));
        list.pop()
    })
}

/// Keeps `c` for the next requests to its target if it is ready for one
/// (and the target does not have its fill of connections); else it is
/// dropped, which closes it.
fn give_back(mut c: Box<Conn>) {
    if !c.settle() {
        return;
    }
    // A thread being torn down has no pool left: the connection closes.
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        let now = Instant::now();
        pool.sweep(now);
        c.used = now;
        let list = match pool.targets.get_mut(c.authority.as_str()) {
            Some(list) => list,
            None => pool.targets.entry(c.authority.clone()).or_default(),
        };
        if list.len() < MAX_PER_TARGET {
            list.push(c);
        }
    });
}

/// A new connection to `authority`.
async fn connect(authority: &str) -> Result<Box<Conn>, H1Error> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority))
        .await
        .map_err(|_| H1Error::ConnectTimeout(authority.to_owned()))?
        .map_err(|e| H1Error::Connect(authority.to_owned(), e))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(tcp)).await?;
    Ok(Box::new(Conn {
        authority: authority.to_owned(),
        sender,
        conn: Some(conn),
        used: Instant::now(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream answering every request on a connection with `ok` (the
    /// body a moment after the head), counting the connections it accepted.
    async fn upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        upstream_answering(usize::MAX).await
    }

    /// The same, closing each connection after `per_conn` answers (without
    /// saying so in the response).
    async fn upstream_answering(
        per_conn: usize,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let conns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    for _ in 0..per_conn {
                        let Ok(n) = s.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n";
                        if s.write_all(head).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if s.write_all(b"ok").await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, conns)
    }

    fn get(authority: &str) -> Request<Body> {
        Request::builder()
            .uri("/")
            .header("host", authority)
            .body(super::super::super::body::empty())
            .unwrap()
    }

    async fn body(resp: Response<Driven>) -> Vec<u8> {
        use http_body_util::BodyExt;
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sequential_requests_share_one_connection() {
        let (addr, conns) = upstream().await;
        for _ in 0..5 {
            let resp = send(&addr, get(&addr)).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(body(resp).await, b"ok");
        }
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_busy_connection_is_passed_over() {
        let (addr, conns) = upstream().await;
        // Two responses held unread: each needs a connection of its own.
        let a = send(&addr, get(&addr)).await.unwrap();
        let b = send(&addr, get(&addr)).await.unwrap();
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(body(a).await, b"ok");
        assert_eq!(body(b).await, b"ok");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_connection_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let Err(e) = send(&addr, get(&addr)).await else {
            panic!("a refused connection answered");
        };
        assert!(e.is_connect(), "{e}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_the_upstream_closed_while_idle_is_not_reused() {
        let (addr, conns) = upstream_answering(1).await;
        for _ in 0..3 {
            let resp = send(&addr, get(&addr)).await.unwrap();
            assert_eq!(body(resp).await, b"ok");
            // The upstream's close reaches this side while the connection idles.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_response_dropped_before_its_end_closes_its_connection() {
        let (addr, conns) = upstream().await;
        // The head arrives, the body 50 ms later: dropped in between.
        drop(send(&addr, get(&addr)).await.unwrap());
        let resp = send(&addr, get(&addr)).await.unwrap();
        assert_eq!(body(resp).await, b"ok");
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
        // A response read to its end leaves its connection for the next one.
        let resp = send(&addr, get(&addr)).await.unwrap();
        assert_eq!(body(resp).await, b"ok");
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}

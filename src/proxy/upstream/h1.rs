//! The worker's own HTTP/1.1 connections to plain `http://` targets: kept
//! per worker thread, in a thread-local pool (no lock, no shared map, no
//! pool task), and driven by hyper's connection API.
//!
//! A connection goes back into its target's list as soon as its request is
//! handed to it; while the response is still being read it is not ready,
//! and a request looking for a connection passes over it. A connection is
//! taken when hyper says it is ready for the next request; closed ones and
//! ones idle for longer than [`POOL_IDLE`] are dropped when met, and every
//! [`SWEEP_EVERY`] across all targets while requests come. A request
//! that a pooled connection could not even start (closed under it) is sent
//! again on a new connection, as hyper-util's pool does.

use super::super::body::Body;
use super::CONNECT_TIMEOUT;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections are dropped when met after this long.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Connections kept per target and worker; more are used once and closed.
const MAX_PER_TARGET: usize = 256;

/// A pooled connection and when it was last handed a request.
struct Pooled {
    sender: SendRequest<Body>,
    used: Instant,
}

/// How often the whole pool is swept of closed and idle connections (those
/// of targets no longer asked for included).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// One worker's connections by target authority (`host:port`).
struct Pool {
    targets: HashMap<String, Vec<Pooled>>,
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
            list.retain(|p| usable(p, now));
            !list.is_empty()
        });
    }
}

/// Open and not idle for too long.
fn usable(p: &Pooled, now: Instant) -> bool {
    !p.sender.is_closed() && now.duration_since(p.used) < POOL_IDLE
}

thread_local! {
    /// This worker's connections.
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
    /// hyper refused the connection or the exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// The answer on an own connection is malformed or cut short.
    #[error(transparent)]
    Wire(#[from] super::wire::WireError),
    /// Writing to or reading from an own connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl H1Error {
    /// The target could not be reached: another target may be tried.
    pub fn is_connect(&self) -> bool {
        matches!(self, H1Error::Connect(..) | H1Error::ConnectTimeout(_))
    }
}

/// Sends `req` (origin-form URI, `Host` set) to `authority` over a pooled
/// connection, or a new one.
pub async fn send(authority: &str, req: Request<Body>) -> Result<Response<Incoming>, H1Error> {
    let req = match checkout(authority) {
        Some(mut sender) => {
            let sent = sender.try_send_request(req);
            give_back(authority, sender);
            match sent.await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    // Not started: the connection closed under it.
                    Some(req) => req,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        None => req,
    };
    let mut sender = connect(authority).await?;
    let sent = sender.send_request(req);
    give_back(authority, sender);
    Ok(sent.await?)
}

/// A pooled connection to `authority` ready for a request, if there is one.
fn checkout(authority: &str) -> Option<SendRequest<Body>> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let list = pool.targets.get_mut(authority)?;
        let now = Instant::now();
        list.retain(|p| usable(p, now));
        let i = list.iter().position(|p| p.sender.is_ready())?;
        Some(list.swap_remove(i).sender)
    })
}

/// Keeps `sender` for the next requests to `authority` (unless the target
/// has its fill of connections).
fn give_back(authority: &str, sender: SendRequest<Body>) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let now = Instant::now();
        pool.sweep(now);
        let list = match pool.targets.get_mut(authority) {
            Some(list) => list,
            None => pool.targets.entry(authority.to_owned()).or_default(),
        };
        if list.len() < MAX_PER_TARGET {
            list.push(Pooled { sender, used: now });
        }
    });
}

/// A new connection to `authority`, its hyper task spawned on this worker.
async fn connect(authority: &str) -> Result<SendRequest<Body>, H1Error> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority))
        .await
        .map_err(|_| H1Error::ConnectTimeout(authority.to_owned()))?
        .map_err(|e| H1Error::Connect(authority.to_owned(), e))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream answering every request on a connection with `ok` (the
    /// body a moment after the head), counting the connections it accepted.
    async fn upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
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
                    while let Ok(n) = s.read(&mut buf).await {
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

    async fn body(resp: Response<Incoming>) -> Vec<u8> {
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
        let e = send(&addr, get(&addr)).await.unwrap_err();
        assert!(e.is_connect(), "{e}");
    }
}

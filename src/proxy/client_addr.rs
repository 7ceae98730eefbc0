//! The client's address: the TCP peer, or what a trusted front says it is.
//!
//! Two fronts are trusted only when the operator says so:
//! - a load balancer that speaks the PROXY protocol (`use_proxy_protocol`):
//!   every connection starts with a v1 or v2 header (parsed by `ppp`), whose
//!   source address is the connection's client; a connection without one,
//!   or with a malformed one, is closed;
//! - HTTP proxies that append to `X-Forwarded-For` (`xff_num_trusted_hops`
//!   = N): the client is the entry N from the right, Envoy's and Pomerium's
//!   rule. With N = 0 the header is the client's own claim and never read.
//!
//! The access log, the `source_ip` policy criterion, `X-Forwarded-For` /
//! `X-Real-IP` sent upstream and consistent hashing all read the one
//! address decided here ([`super::request::ConnInfo::client`]).

use super::request::ConnInfo;
use http::{HeaderMap, HeaderValue};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long a connection may take to send its whole PROXY header.
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest PROXY header read (v1's are at most 107 bytes; v2's carry
/// their addresses and a few TLVs).
pub const MAX_PROXY_HEADER: usize = 4096;

/// The v2 header's signature.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 header's start.
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// The longest v1 header, `\r\n` included.
const V1_MAX: usize = 107;

/// Which fronts the proxy trusts to name the client (global settings; a
/// change needs a restart, like the listener addresses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientAddrSettings {
    /// Every connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Proxies in front that append to `X-Forwarded-For`.
    pub xff_trusted_hops: u32,
    /// With trusted hops, forward `X-Forwarded-For` as received.
    pub skip_xff_append: bool,
}

/// Why a connection's PROXY header was refused (the label of
/// `jetbridge_proxy_protocol_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The connection starts with something else (plain HTTP, TLS).
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    /// It starts like one, but is not a valid v1 or v2 header.
    #[error("malformed PROXY protocol header")]
    Malformed,
    /// Longer than [`MAX_PROXY_HEADER`].
    #[error("PROXY protocol header longer than {MAX_PROXY_HEADER} bytes")]
    TooLong,
    /// Not complete within [`PROXY_HEADER_TIMEOUT`].
    #[error("no complete PROXY protocol header within {PROXY_HEADER_TIMEOUT:?}")]
    Timeout,
    /// Closed (or failed) before the header was complete.
    #[error("connection closed before its PROXY protocol header was complete")]
    Closed,
}

impl Refused {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [Refused; 5] = [
        Refused::Missing,
        Refused::Malformed,
        Refused::TooLong,
        Refused::Timeout,
        Refused::Closed,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Missing => "missing",
            Refused::Malformed => "malformed",
            Refused::TooLong => "too_long",
            Refused::Timeout => "timeout",
            Refused::Closed => "closed",
        }
    }
}

/// A stream whose first bytes were read ahead (past the PROXY header) and
/// are handed out again before the rest.
pub struct Prefixed<S> {
    ahead: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// The stream the bytes were read from.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.ahead.len() {
            let n = buf.remaining().min(this.ahead.len() - this.at);
            buf.put_slice(&this.ahead[this.at..this.at + n]);
            this.at += n;
            if this.at == this.ahead.len() {
                this.ahead = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a complete header says: the client's address, or `None` to keep
/// the TCP peer (a v2 `LOCAL` command, as load balancers send for their
/// health checks; v1 `UNKNOWN`; a v2 address family other than TCP over
/// IPv4/IPv6).
pub type HeaderSource = Option<SocketAddr>;

/// The outcome of parsing the bytes a connection sent so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// A complete header of this many bytes.
    Done(usize, HeaderSource),
    /// More bytes are needed.
    More,
    /// Not a header, or not one to accept.
    Refused(Refused),
}

/// Whether `buf` can still be the start of a v1 or v2 header.
fn starts_like_header(buf: &[u8]) -> bool {
    let like = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    like(V1_SIGNATURE) || like(V2_SIGNATURE)
}

/// Parses the bytes a connection sent so far with `ppp` (the fuzz target
/// `proxy_header` holds it to `ppp` on whole inputs).
pub fn parse(buf: &[u8]) -> Parse {
    use ppp::PartialResult as _;
    if !starts_like_header(buf) {
        return Parse::Refused(Refused::Missing);
    }
    // A v1 header is one line: `ppp` reads a line cut short as a bad
    // address or port, so it is handed the line once it has ended (`ppp`
    // takes the line to the byte after the first `\r`).
    let v1 = buf.starts_with(V1_SIGNATURE);
    let line_ended = v1
        && buf
            .iter()
            .position(|c| *c == b'\r')
            .is_some_and(|i| buf.len() > i + 1);
    if v1 && !line_ended && buf.len() < V1_MAX {
        return Parse::More;
    }
    let parsed = ppp::HeaderResult::parse(buf);
    if parsed.is_incomplete() {
        // An ended line that `ppp` still finds incomplete never completes.
        return match (line_ended, buf.len() < MAX_PROXY_HEADER) {
            (true, _) => Parse::Refused(Refused::Malformed),
            (false, true) => Parse::More,
            (false, false) => Parse::Refused(Refused::TooLong),
        };
    }
    match parsed {
        // `ppp` lets an `UNKNOWN` line end without `\r\n`; the protocol does not.
        ppp::HeaderResult::V1(Ok(h)) if !h.header.ends_with("\r\n") => {
            Parse::Refused(Refused::Malformed)
        }
        ppp::HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
                ppp::v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
                ppp::v1::Addresses::Unknown => None,
            };
            Parse::Done(h.header.len(), source)
        }
        ppp::HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => Some((a.source_address, a.source_port).into()),
                (_, ppp::v2::Addresses::IPv6(a)) => Some((a.source_address, a.source_port).into()),
                (_, _) => None,
            };
            Parse::Done(h.len(), source)
        }
        ppp::HeaderResult::V1(Err(_)) | ppp::HeaderResult::V2(Err(_)) => {
            Parse::Refused(Refused::Malformed)
        }
    }
}

/// Reads the PROXY header a connection starts with, within
/// [`PROXY_HEADER_TIMEOUT`]: the stream (with any bytes read past the
/// header handed out again) and the client's address the header names
/// (`None`: keep the TCP peer).
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: S,
) -> Result<(Prefixed<S>, HeaderSource), Refused> {
    read_proxy_header_within(stream, PROXY_HEADER_TIMEOUT).await
}

async fn read_proxy_header_within<S: AsyncRead + Unpin>(
    stream: S,
    limit: Duration,
) -> Result<(Prefixed<S>, HeaderSource), Refused> {
    tokio::time::timeout(limit, read_header(stream))
        .await
        .unwrap_or(Err(Refused::Timeout))
}

async fn read_header<S: AsyncRead + Unpin>(
    mut stream: S,
) -> Result<(Prefixed<S>, HeaderSource), Refused> {
    let mut buf = vec![0u8; MAX_PROXY_HEADER];
    let mut len = 0;
    loop {
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|_| Refused::Closed)?;
        if n == 0 {
            return Err(Refused::Closed);
        }
        len += n;
        match parse(&buf[..len]) {
            Parse::More => continue,
            Parse::Refused(r) => return Err(r),
            Parse::Done(header, source) => {
                buf.truncate(len);
                buf.drain(..header);
                let stream = Prefixed {
                    ahead: buf,
                    at: 0,
                    inner: stream,
                };
                return Ok((stream, source));
            }
        }
    }
}

/// The request's client address under `settings`: with trusted hops, the
/// `X-Forwarded-For` entry that many from the right (the connection's
/// client when the header has fewer entries or that entry is not an
/// address), and the `X-Forwarded-For` to send upstream. Without trusted
/// hops, `conn` as it is: the header is never read.
pub fn resolve(settings: &ClientAddrSettings, conn: &mut ConnInfo, headers: &HeaderMap) {
    let hops = settings.xff_trusted_hops as usize;
    if hops == 0 {
        return;
    }
    let chain: Vec<&str> = headers
        .get_all(http::header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if chain.is_empty() {
        return;
    }
    let from = conn.client;
    if let Some(ip) = chain
        .len()
        .checked_sub(hops)
        .and_then(|i| parse_entry(chain[i]))
    {
        conn.client = ip;
    }
    let mut sent = chain.join(", ");
    if !settings.skip_xff_append {
        sent.push_str(", ");
        sent.push_str(&from.to_string());
    }
    conn.forwarded_for = HeaderValue::from_str(&sent).ok();
}

/// One `X-Forwarded-For` entry as an address: `192.0.2.1`, `2001:db8::1`,
/// and the forms with a port some proxies write (`192.0.2.1:5000`,
/// `[2001:db8::1]:5000`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
#[path = "client_addr_tests.rs"]
mod tests;

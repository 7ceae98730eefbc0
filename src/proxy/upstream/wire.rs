//! HTTP/1.1 on the worker's own upstream connections, without I/O: the
//! request head written once into one buffer, the response head parsed with
//! `httparse` from the connection's read buffer, and the response body's
//! framing (`Content-Length`, chunked, or read to the close) decided and
//! decoded by the rules hyper's client applies, so a response either client
//! takes is framed the same (`fuzz/fuzz_targets/h1_response.rs` holds the
//! two to that).

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};

/// Header lines a response head may carry (hyper's default, as the hyper
/// client used elsewhere).
pub const MAX_HEADERS: usize = 100;
/// The most a response head may take before it is refused (hyper's default
/// read buffer limit).
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// Bytes of chunk extensions a body may carry (hyper's limit).
const CHUNK_EXTENSIONS_LIMIT: u64 = 16 * 1024;
/// Bytes of trailer fields a chunked body may carry (hyper's limit).
const TRAILER_LIMIT: usize = 16 * 1024;

/// Why a response cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The head is malformed (`httparse`'s reason).
    #[error("invalid response head: {0}")]
    Head(#[from] httparse::Error),
    /// The head is larger than [`MAX_HEAD_BYTES`].
    #[error("response head too large")]
    TooLarge,
    /// A status code outside 100–999.
    #[error("invalid response status")]
    Status,
    /// `Content-Length` values that are not one decimal number.
    #[error("invalid content-length")]
    ContentLength,
    /// `Transfer-Encoding` on an HTTP/1.0 response.
    #[error("transfer-encoding on an HTTP/1.0 response")]
    TransferEncoding,
    /// An upgrade nobody asked for on this connection.
    #[error("upstream switched protocols")]
    Switched,
    /// The chunked body is malformed.
    #[error("invalid chunked body: {0}")]
    Chunk(&'static str),
    /// The connection ended before the message did.
    #[error("connection closed before the message ended")]
    Incomplete,
}

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// This many bytes (0: no body).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Read until the connection closes.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    /// The status (never 1xx).
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header fields, in order.
    pub headers: HeaderMap,
    /// A reason phrase other than the status's canonical one.
    pub reason: Option<Bytes>,
    /// How the body is framed.
    pub framing: Framing,
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
}

/// Writes the request head for `method` `target` with `headers` into
/// `out` (cleared first): for a request without a body, so any
/// `Transfer-Encoding` is left out (as hyper does for an empty body).
pub fn encode_request(method: &Method, target: &str, headers: &HeaderMap, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses the response head at the start of `buf` (informational 1xx heads
/// are skipped), removing it from `buf`; `Ok(None)`: more bytes are needed.
/// `head_request`: the request was `HEAD`, so the response has no body.
/// The header fields go into `spare` (cleared first; the request's map,
/// so its room is used again), which is taken; `fields` is room kept
/// between calls (nothing is zeroed or allocated per head).
pub fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
    spare: &mut HeaderMap,
    fields: &mut Vec<Field>,
) -> Result<Option<Head>, WireError> {
    loop {
        let Some(head) = parse_one(buf, head_request, spare, fields)? else {
            return Ok(None);
        };
        if let Some(head) = head {
            return Ok(Some(head));
        }
        if buf.is_empty() {
            return Ok(None);
        }
    }
}

/// Where a header field's name and value lie in the head's bytes.
pub type Field = (usize, usize, usize, usize);

/// One head: `Some(None)` for a skipped informational one. Header values
/// are slices of the head's bytes (no copy).
fn parse_one(
    buf: &mut BytesMut,
    head_request: bool,
    spare: &mut HeaderMap,
    fields: &mut Vec<Field>,
) -> Result<Option<Option<Head>>, WireError> {
    fields.clear();
    let (len, status, version, reason) = {
        let mut slots =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, buf, &mut slots);
        let len = match parsed? {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial if buf.len() >= MAX_HEAD_BYTES => {
                return Err(WireError::TooLarge);
            }
            httparse::Status::Partial => return Ok(None),
        };
        let code = res.code.ok_or(WireError::Status)?;
        let status = StatusCode::from_u16(code).map_err(|_| WireError::Status)?;
        let version = match res.version {
            Some(1) => Version::HTTP_11,
            _ => Version::HTTP_10,
        };
        let reason = res
            .reason
            .filter(|r| Some(*r) != status.canonical_reason())
            .map(|r| Bytes::copy_from_slice(r.as_bytes()));
        let base = buf.as_ptr() as usize;
        for h in res.headers.iter() {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            fields.push((name, name + h.name.len(), value, value + h.value.len()));
        }
        (len, status, version, reason)
    };
    let count = fields.len();
    let bytes = buf.split_to(len).freeze();
    let mut headers = std::mem::take(spare);
    headers.clear();
    headers.reserve(count);
    let mut keep_alive = version == Version::HTTP_11;
    let mut close = false;
    for &(ns, ne, vs, ve) in fields.iter() {
        let name =
            HeaderName::from_bytes(&bytes[ns..ne]).map_err(|_| httparse::Error::HeaderName)?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(vs..ve))
            .map_err(|_| httparse::Error::HeaderValue)?;
        if name == header::CONNECTION {
            if close || has_token(&value, "close") {
                close = true;
                keep_alive = false;
            } else if !keep_alive {
                keep_alive = has_token(&value, "keep-alive");
            }
        }
        headers.append(name, value);
    }
    let framing = match framing(status, version, &headers, head_request)? {
        Some(f) => f,
        None => return Ok(Some(None)),
    };
    Ok(Some(Some(Head {
        status,
        version,
        headers,
        reason,
        framing,
        keep_alive,
    })))
}

/// How a response's body is framed (RFC 9112 §6.3, as hyper's client reads
/// it); `None`: an informational head, with a final one to follow.
fn framing(
    status: StatusCode,
    version: Version,
    h: &HeaderMap,
    head_request: bool,
) -> Result<Option<Framing>, WireError> {
    match status.as_u16() {
        101 => return Err(WireError::Switched),
        100..=199 => return Ok(None),
        204 | 304 => return Ok(Some(Framing::Length(0))),
        _ if head_request => return Ok(Some(Framing::Length(0))),
        _ => {}
    }
    if h.contains_key(header::TRANSFER_ENCODING) {
        if version == Version::HTTP_10 {
            return Err(WireError::TransferEncoding);
        }
        let chunked = h
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .is_some_and(|v| last_token_is(v, "chunked"));
        return Ok(Some(if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }));
    }
    match content_length(h) {
        Some(Some(n)) => Ok(Some(Framing::Length(n))),
        Some(None) => Err(WireError::ContentLength),
        None => Ok(Some(Framing::Close)),
    }
}

/// The `Content-Length`: `None` when absent, `Some(None)` when its values
/// (comma lists and repeated fields included) are not all the same number.
pub fn content_length(h: &HeaderMap) -> Option<Option<u64>> {
    let mut values = h.get_all(header::CONTENT_LENGTH).iter().peekable();
    values.peek()?;
    let mut n: Option<u64> = None;
    for v in values {
        let Ok(line) = v.to_str() else {
            return Some(None);
        };
        for part in line.split(',') {
            let Some(d) = digits(part.trim().as_bytes()) else {
                return Some(None);
            };
            if n.is_some_and(|n| n != d) {
                return Some(None);
            }
            n = Some(d);
        }
    }
    Some(n)
}

/// A non-empty run of decimal digits (no sign), without overflow.
fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| match c {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(c - b'0')),
        _ => None,
    })
}

/// Whether the comma list `v` holds `token` (ASCII case aside).
fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.to_str()
        .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Whether the last element of the comma list `v` is `token`.
fn last_token_is(v: &HeaderValue, token: &str) -> bool {
    v.to_str().is_ok_and(|s| {
        s.rsplit(',')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

/// What a chunked decoder step produced.
#[derive(Debug)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The buffer is used up: read more.
    More,
    /// The body ended, with its trailers if it had any.
    End(Option<HeaderMap>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Body,
    BodyCr,
    BodyLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
    End,
}

/// A chunked body's decoder: the states and limits of hyper's.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    size: u64,
    extensions: u64,
    trailers: Option<BytesMut>,
    trailer_count: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Start,
            size: 0,
            extensions: 0,
            trailers: None,
            trailer_count: 0,
        }
    }
}

impl Chunked {
    /// Whether the terminating chunk and trailers were read.
    pub fn is_done(&self) -> bool {
        self.state == State::End
    }

    /// Decodes from `buf` (consuming what it reads) until body bytes, the
    /// end, or an empty buffer.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            if self.state == State::End {
                let count = self.trailer_count;
                let trailers = self.trailers.take();
                return Ok(Decoded::End(
                    trailers.map(|t| decode_trailers(t, count)).transpose()?,
                ));
            }
            if buf.is_empty() {
                return Ok(Decoded::More);
            }
            if self.state == State::Body {
                let n = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let data = buf.split_to(n).freeze();
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = State::BodyCr;
                }
                return Ok(Decoded::Data(data));
            }
            let b = buf[0];
            buf.advance(1);
            self.state = self.step(b)?;
        }
    }

    /// One byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<State, WireError> {
        use State::*;
        let bad = |why| Err(WireError::Chunk(why));
        match (self.state, b) {
            (Start | Size, b) if hex(b).is_some() => {
                let d = u64::from(hex(b).unwrap_or(0));
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(d))
                    .ok_or(WireError::Chunk("chunk size overflow"))?;
                Ok(Size)
            }
            (Start, _) => bad("missing chunk size digit"),
            (Size | SizeLws, b'\t' | b' ') => Ok(SizeLws),
            (Size | SizeLws, b';') => Ok(Extension),
            (Size | SizeLws, b'\r') => Ok(SizeLf),
            (Size, _) => bad("invalid chunk size"),
            (SizeLws, _) => bad("invalid chunk size whitespace"),
            (Extension, b'\r') => Ok(SizeLf),
            (Extension, b'\n') => bad("chunk extension contains newline"),
            (Extension, _) => {
                self.extensions += 1;
                if self.extensions >= CHUNK_EXTENSIONS_LIMIT {
                    return bad("chunk extensions over limit");
                }
                Ok(Extension)
            }
            (SizeLf, b'\n') if self.size == 0 => Ok(EndCr),
            (SizeLf, b'\n') => Ok(Body),
            (SizeLf, _) => bad("invalid chunk size line feed"),
            (BodyCr, b'\r') => Ok(BodyLf),
            (BodyCr, _) => bad("missing CR after chunk data"),
            (BodyLf, b'\n') => Ok(Start),
            (BodyLf, _) => bad("missing LF after chunk data"),
            (Trailer, b) => {
                self.push_trailer(b)?;
                Ok(if b == b'\r' { TrailerLf } else { Trailer })
            }
            (TrailerLf, b'\n') => {
                if self.trailer_count >= MAX_HEADERS {
                    return bad("too many trailers");
                }
                self.trailer_count += 1;
                self.push_trailer(b)?;
                Ok(EndCr)
            }
            (TrailerLf, _) => bad("invalid trailer line feed"),
            (EndCr, b'\r') => {
                if self.trailers.is_some() {
                    self.push_trailer(b)?;
                }
                Ok(EndLf)
            }
            (EndCr, b) => {
                self.trailers
                    .get_or_insert_with(|| BytesMut::with_capacity(64));
                self.push_trailer(b)?;
                Ok(Trailer)
            }
            (EndLf, b'\n') => {
                if self.trailers.is_some() {
                    self.push_trailer(b)?;
                }
                Ok(End)
            }
            (EndLf, _) => bad("invalid chunked body end"),
            (Body | End, _) => Ok(self.state),
        }
    }

    fn push_trailer(&mut self, b: u8) -> Result<(), WireError> {
        let t = self.trailers.get_or_insert_with(BytesMut::new);
        if t.len() >= TRAILER_LIMIT {
            return Err(WireError::Chunk("trailers over limit"));
        }
        t.extend_from_slice(&[b]);
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The trailer fields read after the last chunk: as many as CRLF-ended
/// lines were counted (hyper's rule; a field more, behind a bare LF, is
/// refused).
fn decode_trailers(buf: BytesMut, count: usize) -> Result<HeaderMap, WireError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let slots = &mut slots[..count.min(MAX_HEADERS)];
    let fields = match httparse::parse_headers(&buf, slots)? {
        httparse::Status::Complete((_, fields)) => fields,
        httparse::Status::Partial => return Err(WireError::Chunk("partial trailers")),
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| WireError::Chunk("invalid trailer name"))?;
        let value = HeaderValue::from_bytes(f.value)
            .map_err(|_| WireError::Chunk("invalid trailer value"))?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;

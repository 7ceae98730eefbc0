//! Request-path normalisation.
//!
//! One canonical form of the request path is computed once per request and is
//! then used for route matching, for policy (`http_path`) and as the path sent
//! upstream. Because all three see the same string, a path cannot be spelt one
//! way to pass the policy and another way to reach a different resource on the
//! upstream.
//!
//! The canonical form, for a raw path that starts with `/`:
//!
//! 1. Percent-escapes are validated. An escape of an *unreserved* character
//!    (RFC 3986 §2.3: `A-Z a-z 0-9 - . _ ~`) is decoded (`%41` → `A`,
//!    `%7e` → `~`, `%2E` → `.`); every other escape is kept with its hex
//!    digits upper-cased (`%c3%a9` → `%C3%A9`). Escapes of `/`, `\` and NUL
//!    (`%2F`, `%5C`, `%00`) are rejected, because an upstream may decode them
//!    into separators the router never saw.
//! 2. Raw `\` and raw control characters (U+0000–U+001F, U+007F) are rejected.
//!    Any other character not allowed raw in a path (space, `"`, `<`, `>`,
//!    `` ` ``, `{`, `}`, `|`, `^`, `[`, `]`, `#`, non-ASCII) is percent-encoded
//!    as UTF-8, so the result is always a valid `path-absolute` to send
//!    upstream.
//! 3. Runs of `/` are merged into one (`/a//b` → `/a/b`). Pomerium leaves
//!    this off by default (its Envoy listener sets `normalize_path` only);
//!    jetbridge merges because it forwards the canonical path itself, and
//!    many upstreams (nginx, Tomcat, most frameworks) merge slashes on their
//!    own, which would otherwise let `//admin` dodge a policy on `/admin`.
//! 4. Dot segments are removed as in RFC 3986 §5.2.4, after decoding, so `%2e`
//!    and `%2E%2e` count as `.` and `..`. A `..` that would climb above the
//!    root is an error, not clamped to `/`. A dot segment carrying path
//!    parameters (`..;x`, `.;`) is rejected too, since servlet containers
//!    treat it as a dot segment and it would otherwise bypass step 4. So is
//!    a segment that is nothing but parameters (`/;/admin`, `/;x=1/admin`):
//!    servlet containers drop it, so `/;/admin` would reach `/admin` there
//!    while it does not start with `/admin` here.
//! 5. A trailing slash is kept (`/a/` stays `/a/`; `/a/.` and `/a/b/..`
//!    become `/a/`).
//!
//! Case is never changed outside escape hex digits: paths are case-sensitive.
//! The function is idempotent: normalising its own output returns it unchanged.

use std::fmt::Write as _;

/// Why a request path was refused. Each one means answering `400 Bad Request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (this includes `*` and the empty string).
    #[error("request path must start with '/'")]
    NotAbsolute,
    /// A `%` was not followed by two hexadecimal digits.
    #[error("invalid percent-escape in request path")]
    InvalidEscape,
    /// `%2F` or `%2f` appeared in the path.
    #[error("encoded slash (%2F) in request path")]
    EncodedSlash,
    /// `%5C` or `%5c` appeared in the path.
    #[error("encoded backslash (%5C) in request path")]
    EncodedBackslash,
    /// `%00` appeared in the path.
    #[error("encoded NUL (%00) in request path")]
    EncodedNul,
    /// A raw `\` appeared in the path.
    #[error("backslash in request path")]
    Backslash,
    /// A raw control character appeared in the path.
    #[error("control character in request path")]
    ControlChar,
    /// A `..` segment would go above the root.
    #[error("request path escapes above the root")]
    EscapesRoot,
    /// A `.` or `..` segment carried `;` parameters.
    #[error("dot segment with parameters in request path")]
    DotSegmentWithParams,
    /// A segment was empty apart from `;` parameters.
    #[error("empty segment with parameters in request path")]
    EmptySegmentWithParams,
}

/// A request path in canonical form; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalizedPath {
    /// The canonical path: starts with `/`, no query, valid to send upstream.
    pub path: String,
}

impl NormalizedPath {
    /// The canonical path as a string slice.
    pub fn as_str(&self) -> &str {
        &self.path
    }
}

/// Splits a request-target (origin form) into its path and query.
///
/// The query is whatever follows the first `?`, without the `?`; it is
/// `Some("")` for a target ending in `?`.
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// Normalises the path part of a request-target; see the [module docs](self).
pub fn normalize_path(raw: &str) -> Result<NormalizedPath, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = canonical_escapes(raw)?;
    let path = remove_dot_segments(&decoded)?;
    Ok(NormalizedPath { path })
}

/// Steps 1 and 2: validates characters and escapes, decodes unreserved
/// escapes, upper-cases the rest, percent-encodes characters not allowed raw.
fn canonical_escapes(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => (hex_val(h), hex_val(l)),
                    _ => return Err(PathError::InvalidEscape),
                };
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::InvalidEscape);
                };
                let v = hi << 4 | lo;
                match v {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    0 => return Err(PathError::EncodedNul),
                    _ if is_unreserved(v) => out.push(char::from(v)),
                    _ => push_escape(&mut out, v),
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            0x00..=0x1F | 0x7F => return Err(PathError::ControlChar),
            _ if b == b'/' || is_pchar_raw(b) => {
                out.push(char::from(b));
                i += 1;
            }
            _ => {
                // Not allowed raw (space, '"', '#', non-ASCII, ...): encode.
                push_escape(&mut out, b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Steps 3 to 5 on an already escape-canonical path starting with `/`.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    // Segments after the leading '/'. The last one decides the trailing slash.
    let mut segments = path[1..].split('/').peekable();
    let mut stack: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "" => trailing_slash = last,
            "." => trailing_slash = last,
            ".." => {
                if stack.pop().is_none() {
                    return Err(PathError::EscapesRoot);
                }
                trailing_slash = last;
            }
            _ => {
                let head = seg.split(';').next().unwrap_or(seg);
                if head == "." || head == ".." {
                    return Err(PathError::DotSegmentWithParams);
                }
                if head.is_empty() {
                    return Err(PathError::EmptySegmentWithParams);
                }
                stack.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &stack {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3 unreserved characters.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` minus pct-encoded: unreserved, sub-delims, ':' and '@'.
fn is_pchar_raw(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn push_escape(out: &mut String, b: u8) {
    // Writing to a String cannot fail.
    let _ = write!(out, "%{b:02X}");
}

#[cfg(test)]
#[path = "pathnorm_tests.rs"]
mod tests;

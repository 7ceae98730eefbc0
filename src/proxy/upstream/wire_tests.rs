use super::*;

fn parse(raw: &str, head_request: bool) -> Result<Option<Head>, WireError> {
    let mut buf = BytesMut::from(raw.as_bytes());
    parse_response(
        &mut buf,
        head_request,
        &mut HeaderMap::new(),
        &mut Vec::new(),
    )
}

fn framing_of(raw: &str) -> Result<Framing, WireError> {
    Ok(parse(raw, false)?.expect("a complete head").framing)
}

/// The body bytes, trailers and what was left of `raw` after a chunked body.
fn dechunk(raw: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>, usize), WireError> {
    // Fed one byte at a time: decoding must not depend on how reads split.
    let mut d = Chunked::default();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    loop {
        match d.decode(&mut buf)? {
            Decoded::Data(b) => body.extend_from_slice(&b),
            Decoded::More if fed < raw.len() => {
                buf.extend_from_slice(&raw[fed..fed + 1]);
                fed += 1;
            }
            Decoded::More => return Err(WireError::Incomplete),
            Decoded::End(t) => return Ok((body, t, raw.len() - fed + buf.len())),
        }
    }
}

#[test]
fn content_length_frames_the_body() {
    let raw = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
    let mut buf = BytesMut::from(raw.as_bytes());
    let head = parse_response(&mut buf, false, &mut HeaderMap::new(), &mut Vec::new())
        .unwrap()
        .unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.framing, Framing::Length(5));
    assert!(head.keep_alive);
    assert_eq!(&buf[..], b"hello");
    assert!(head.reason.is_none());
}

#[test]
fn repeated_content_lengths_count_only_when_they_agree() {
    let same = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n";
    assert_eq!(framing_of(same).unwrap(), Framing::Length(3));
    let list = "HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n";
    assert_eq!(framing_of(list).unwrap(), Framing::Length(3));
    for bad in [
        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
    ] {
        assert!(
            matches!(framing_of(bad), Err(WireError::ContentLength)),
            "{bad:?}"
        );
    }
}

#[test]
fn transfer_encoding_wins_over_content_length() {
    let both = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n";
    assert_eq!(framing_of(both).unwrap(), Framing::Chunked);
    let gzip_chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n";
    assert_eq!(framing_of(gzip_chunked).unwrap(), Framing::Chunked);
    // chunked not last: the body runs to the close.
    let not_last = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n";
    assert_eq!(framing_of(not_last).unwrap(), Framing::Close);
    let old = "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
    assert!(matches!(framing_of(old), Err(WireError::TransferEncoding)));
}

#[test]
fn bodiless_statuses_and_head_answers_have_no_body() {
    for s in ["204 No Content", "304 Not Modified"] {
        let raw = format!("HTTP/1.1 {s}\r\ncontent-length: 10\r\n\r\n");
        assert_eq!(framing_of(&raw).unwrap(), Framing::Length(0));
    }
    let raw = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n";
    assert_eq!(
        parse(raw, true).unwrap().unwrap().framing,
        Framing::Length(0)
    );
    let no_length = "HTTP/1.1 200 OK\r\n\r\n";
    assert_eq!(framing_of(no_length).unwrap(), Framing::Close);
}

#[test]
fn informational_heads_are_skipped_and_a_switch_is_refused() {
    let raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
    assert_eq!(parse(raw, false).unwrap().unwrap().status, 201);
    // Only the informational head arrived so far.
    assert!(
        parse("HTTP/1.1 100 Continue\r\n\r\n", false)
            .unwrap()
            .is_none()
    );
    let switch = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n";
    assert!(matches!(parse(switch, false), Err(WireError::Switched)));
}

#[test]
fn malformed_heads_are_refused() {
    for bad in [
        "HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nbad name: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-a : 1\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-a: \x01\r\n\r\n",
    ] {
        assert!(parse(bad, false).is_err(), "{bad:?}");
    }
}

#[test]
fn a_partial_head_waits_until_it_is_too_large() {
    assert!(
        parse("HTTP/1.1 200 OK\r\nx-a: 1\r\n", false)
            .unwrap()
            .is_none()
    );
    let big = format!("HTTP/1.1 200 OK\r\nx-a: {}", "a".repeat(MAX_HEAD_BYTES));
    assert!(matches!(parse(&big, false), Err(WireError::TooLarge)));
}

#[test]
fn keep_alive_follows_version_and_connection() {
    let ka = |raw: &str| parse(raw, false).unwrap().unwrap().keep_alive;
    assert!(ka("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
    assert!(!ka(
        "HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n"
    ));
    assert!(!ka(
        "HTTP/1.1 200 OK\r\nconnection: close\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
    ));
    assert!(!ka("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
    assert!(ka(
        "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
    ));
}

#[test]
fn a_custom_reason_is_kept() {
    let h = parse("HTTP/1.1 200 Fine\r\ncontent-length: 0\r\n\r\n", false)
        .unwrap()
        .unwrap();
    assert_eq!(h.reason.as_deref(), Some(&b"Fine"[..]));
}

#[test]
fn chunked_bodies_decode_with_extensions_and_trailers() {
    let (body, t, left) = dechunk(b"5\r\nhello\r\n6;a=b \t\r\n world\r\n0\r\n\r\nNEXT").unwrap();
    assert_eq!(body, b"hello world");
    assert!(t.is_none());
    assert_eq!(left, 4);
    let (body, t, _) = dechunk(b"A \r\n0123456789\r\n0\r\nx-sum: 1\r\nx-b: 2\r\n\r\n").unwrap();
    assert_eq!(body, b"0123456789");
    let t = t.unwrap();
    assert_eq!(t["x-sum"], "1");
    assert_eq!(t["x-b"], "2");
}

#[test]
fn malformed_chunks_are_refused() {
    for bad in [
        &b"\r\nhello\r\n0\r\n\r\n"[..],
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5 5\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\r\nhello\r0\r\n\r\n",
        b"5;a\nb\r\nhello\r\n0\r\n\r\n",
        b"10000000000000000\r\n",
        b"0\r\n\r\r",
        b"0\r\nx-a: 1\r\r",
        // A trailer line ended by a bare LF is one more field than the
        // CRLF lines counted (found by the h1_response fuzz target).
        b"0\r\nx-a: 1\nx-b: 2\r\n\r\n",
    ] {
        assert!(dechunk(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn chunk_extensions_and_trailers_are_bounded() {
    let mut long_ext = b"1;".to_vec();
    long_ext.extend(std::iter::repeat_n(b'a', CHUNK_EXTENSIONS_LIMIT as usize));
    long_ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert!(dechunk(&long_ext).is_err());
    let mut many = b"0\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(dechunk(&many).is_err());
}

#[test]
fn the_request_head_is_written_once_without_transfer_encoding() {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("up:80"));
    h.append("x-a", HeaderValue::from_static("1"));
    h.append("x-a", HeaderValue::from_static("2"));
    h.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    let mut out = Vec::new();
    encode_request(&Method::GET, "/p?q=1", &h, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET /p?q=1 HTTP/1.1\r\nhost: up:80\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
    );
}

//! The own HTTP/1.1 client's response reading (`proxy::upstream::wire`)
//! against hyper's client reading the same bytes from a connection. The
//! first input byte picks the request method (`HEAD` when odd, else `GET`);
//! the rest is what the upstream sends before it closes. Both must agree on
//! whether the answer is taken, on its status and headers count, and on
//! its body: the same bytes and trailers, or both refusing it. A 101 is
//! counted as refused on hyper's side (the proxy answers 502 to a switch
//! nobody asked for).
#![no_main]

use bytes::BytesMut;
use http_body_util::BodyExt;
use jetbridge::proxy::upstream::wire::{self, Chunked, Decoded, Framing};
use libfuzzer_sys::fuzz_target;

/// What a client made of the bytes: `None` when it refused them.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: usize,
    body: Option<(Vec<u8>, Option<http::HeaderMap>)>,
}

/// The own client's reading, the whole input at once.
fn own(head_request: bool, data: &[u8]) -> Option<Answer> {
    let mut buf = BytesMut::from(data);
    let head = wire::parse_response(&mut buf, head_request, &mut http::HeaderMap::new(), &mut Vec::new()).ok()??;
    let body = match head.framing {
        Framing::Length(n) => {
            let n = usize::try_from(n).ok()?;
            (buf.len() >= n).then(|| (buf[..n].to_vec(), None))
        }
        Framing::Close => Some((buf.to_vec(), None)),
        Framing::Chunked => {
            let mut d = Chunked::default();
            let mut out = Vec::new();
            loop {
                match d.decode(&mut buf) {
                    Ok(Decoded::Data(b)) => out.extend_from_slice(&b),
                    Ok(Decoded::End(t)) => break Some((out, t)),
                    Ok(Decoded::More) | Err(_) => break None,
                }
            }
        }
    };
    Some(Answer {
        status: head.status.as_u16(),
        headers: head.headers.len(),
        body,
    })
}

/// hyper's client reading the same bytes from a connection.
async fn hyper_reads(head_request: bool, data: Vec<u8>) -> Option<Answer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(
        hyper_util::rt::TokioIo::new(client),
    )
    .await
    .ok()?;
    tokio::spawn(conn);
    tokio::spawn(async move {
        let mut sink = [0u8; 1024];
        let _ = server.read(&mut sink).await;
        let _ = server.write_all(&data).await;
        let _ = server.shutdown().await;
        // Keep reading so the client's writes never block.
        while matches!(server.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let method = if head_request { http::Method::HEAD } else { http::Method::GET };
    let req = http::Request::builder()
        .method(method)
        .uri("/")
        .header("host", "up")
        .body(http_body_util::Empty::new())
        .ok()?;
    let resp = send.send_request(req).await.ok()?;
    if resp.status() == 101 {
        return None;
    }
    let status = resp.status().as_u16();
    let headers = resp.headers().len();
    let body = match resp.into_body().collect().await {
        Ok(c) => {
            let t = c.trailers().cloned();
            Some((c.to_bytes().to_vec(), t))
        }
        Err(_) => None,
    };
    Some(Answer { status, headers, body })
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, data)) = input.split_first() else {
        return;
    };
    let head_request = pick & 1 == 1;
    let ours = own(head_request, data);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let theirs = rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            hyper_reads(head_request, data.to_vec()),
        )
        .await
        .ok()
        .flatten()
    });
    assert_eq!(ours, theirs, "input {:?}", String::from_utf8_lossy(data));
});

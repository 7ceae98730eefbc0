use super::*;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncReadExt;

/// An upstream that answers each request head on a connection with the
/// next of `answers` (then closes the connection when `close_after` is
/// set), counting the connections it accepted.
async fn upstream(answers: Vec<&'static [u8]>, close_after: bool) -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut next = 0;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let a = answers[next % answers.len()];
                        next += 1;
                        if s.write_all(a).await.is_err() {
                            return;
                        }
                        if close_after {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, conns)
}

fn get(authority: &str, method: Method) -> Request<()> {
    Request::builder()
        .method(method)
        .uri("/")
        .header("host", authority)
        .body(())
        .unwrap()
}

async fn collect(resp: Response<OwnBody>) -> Result<(Vec<u8>, Option<HeaderMap>), BoxError> {
    let c = resp.into_body().collect().await?;
    let trailers = c.trailers().cloned();
    Ok((c.to_bytes().to_vec(), trailers))
}

#[tokio::test(flavor = "current_thread")]
async fn sequential_requests_share_one_connection() {
    let (addr, conns) = upstream(
        vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-t: 1\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ],
        false,
    )
    .await;
    for i in 0..6 {
        let resp = send(&addr, get(&addr, Method::GET)).await.unwrap();
        let status = resp.status();
        let (body, trailers) = collect(resp).await.unwrap();
        match i % 3 {
            2 => assert_eq!((status.as_u16(), &body[..]), (204, &b""[..])),
            1 => {
                assert_eq!(body, b"ok");
                assert_eq!(trailers.unwrap()["x-t"], "1");
            }
            _ => assert_eq!(body, b"ok"),
        }
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_the_target_closed_is_not_reused() {
    let (addr, conns) = upstream(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
        true,
    )
    .await;
    for _ in 0..3 {
        let resp = send(&addr, get(&addr, Method::GET)).await.unwrap();
        assert_eq!(collect(resp).await.unwrap().0, b"ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(conns.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn connection_close_and_close_delimited_bodies_are_not_reused() {
    let (addr, conns) = upstream(
        vec![b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"],
        false,
    )
    .await;
    for _ in 0..2 {
        let resp = send(&addr, get(&addr, Method::GET)).await.unwrap();
        assert_eq!(collect(resp).await.unwrap().0, b"ok");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 2);
    let (addr, conns) = upstream(vec![b"HTTP/1.1 200 OK\r\n\r\nuntil the end"], true).await;
    for _ in 0..2 {
        let resp = send(&addr, get(&addr, Method::GET)).await.unwrap();
        assert_eq!(collect(resp).await.unwrap().0, b"until the end");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_cut_short_or_misframed_is_an_error() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ] {
        let (addr, _) = upstream(vec![answer], true).await;
        let resp = send(&addr, get(&addr, Method::GET)).await.unwrap();
        assert!(collect(resp).await.is_err(), "{answer:?}");
    }
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"[..],
        b"HTTP/1.1 200 OK\r\nx: a\r\n b\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-le",
    ] {
        let (addr, _) = upstream(vec![answer], true).await;
        assert!(
            send(&addr, get(&addr, Method::GET)).await.is_err(),
            "{answer:?}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_head_answer_has_no_body_and_keeps_the_connection() {
    let (addr, conns) = upstream(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n"],
        false,
    )
    .await;
    for _ in 0..3 {
        let resp = send(&addr, get(&addr, Method::HEAD)).await.unwrap();
        assert_eq!(resp.headers()["content-length"], "50");
        assert!(http_body::Body::is_end_stream(resp.body()));
        assert_eq!(collect(resp).await.unwrap().0, b"");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_connection_is_a_connect_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let Err(e) = send(&addr, get(&addr, Method::GET)).await else {
        panic!("a refused connection answered");
    };
    assert!(e.is_connect(), "{e}");
}

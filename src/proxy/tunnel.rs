//! An upgraded connection (WebSocket, SPDY, …): bytes copied both ways
//! between the client and the upstream until either closes or nothing
//! moves for the route's idle timeout.

use std::time::{Duration, Instant};

/// Waits for both sides of an upgrade, then copies between them.
pub(crate) async fn splice<B>(
    client: hyper::upgrade::OnUpgrade,
    upstream: http::Response<B>,
    idle: Duration,
) {
    let (Ok(client), Ok(upstream)) = (client.await, hyper::upgrade::on(upstream).await) else {
        return;
    };
    let client = hyper_util::rt::TokioIo::new(client);
    let upstream = hyper_util::rt::TokioIo::new(upstream);
    pipe_with_idle_timeout(client, upstream, idle).await;
}

/// Copies both ways until either side closes or nothing moves for `idle`.
async fn pipe_with_idle_timeout<A, B>(a: A, b: B, idle: Duration)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    use std::sync::atomic::{AtomicU64, Ordering};
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let idle_ms = idle.as_millis().max(1) as u64;
    let watchdog = async {
        let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            tokio::time::sleep(tick).await;
            let now = start.elapsed().as_millis() as u64;
            if now.saturating_sub(last.load(Ordering::Relaxed)) >= idle_ms {
                break;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(copy_half(&mut ar, &mut bw, &last, start), copy_half(&mut br, &mut aw, &last, start)) } => {}
        _ = watchdog => tracing::debug!("upgraded connection idle; closing"),
    }
}

/// Copies one direction, noting the time of each write in `last`.
async fn copy_half<R, W>(r: &mut R, w: &mut W, last: &std::sync::atomic::AtomicU64, start: Instant)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
        last.store(
            start.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    let _ = w.shutdown().await;
}

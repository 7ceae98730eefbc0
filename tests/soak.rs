//! A minute at saturation: the real binary under two `wrk` loads at once (a
//! public route and an authenticated route with identity headers), while a
//! bystander keeps making fresh-connection requests and the process's
//! resident memory is sampled. What must hold: every answer is a 2xx, the
//! bystander is always served, the process lives, and memory stays flat
//! once warm. The throughput is printed, never asserted.

mod attack_common;
mod e2e_common;

use attack_common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const OPEN: &str = "open.test";
const SIGNED: &str = "signed.test";
/// The whole run, and the warm-up after which memory must stay flat.
const RUN: Duration = Duration::from_secs(60);
const WARM: Duration = Duration::from_secs(15);
/// How much resident memory may grow between the end of the warm-up and
/// the end of the run.
const FLAT_KIB: u64 = 24 * 1024;

/// A keep-alive upstream answering every request with 200 "ok", keeping
/// nothing.
async fn ok_upstream() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut pending = Vec::new();
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Starts `wrk` for `secs` seconds with `headers` (one per line); returns the
/// child whose stdout holds its report.
fn wrk(
    port: u16,
    headers: &[String],
    secs: u64,
    dir: &std::path::Path,
    name: &str,
) -> std::process::Child {
    let script = dir.join(format!("{name}.lua"));
    let lines: String = headers
        .iter()
        .filter_map(|h| h.split_once(": "))
        .map(|(k, v)| format!("wrk.headers[\"{k}\"] = \"{v}\"\n"))
        .collect();
    std::fs::write(&script, lines).unwrap();
    std::process::Command::new("wrk")
        .args(["-t1", "-c32", &format!("-d{secs}s"), "-s"])
        .arg(&script)
        .arg(format!("https://127.0.0.1:{port}/soak"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("wrk (./scripts/test installs it): {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_at_saturation_keeps_answers_right_bystanders_served_and_memory_flat() {
    let up = ok_upstream().await;
    let j = Jetbridge::start(&format!(
        "access_log: false\nroutes:\n\
         \x20 - from: https://{OPEN}\n    to: http://{up}\n    allow_public_unauthenticated_access: true\n\
         \x20 - from: https://{SIGNED}\n    to: http://{up}\n    pass_identity_headers: true\n    allowed_users: [soak@example.com]\n"
    ))
    .await;
    let cookie = j.mint_session(SIGNED, "soak", "soak@example.com");
    let dir = tempfile::tempdir().unwrap();
    let public = wrk(
        j.https,
        &[format!("Host: {OPEN}")],
        RUN.as_secs(),
        dir.path(),
        "public",
    );
    let signed = wrk(
        j.https,
        &[format!("Host: {SIGNED}"), format!("Cookie: {cookie}")],
        RUN.as_secs(),
        dir.path(),
        "signed",
    );

    let started = Instant::now();
    let mut rss = Vec::new();
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    while started.elapsed() < RUN {
        let (status, took) = probe(j.https, OPEN, "/bystander").await;
        assert_eq!(status, Some(200), "bystander at {:?}", started.elapsed());
        worst = worst.max(took);
        probes += 1;
        rss.push((started.elapsed(), j.rss_kib().expect("the process lives")));
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let reports: Vec<String> = [public, signed]
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "wrk: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    for (name, report) in ["public", "signed"].iter().zip(&reports) {
        println!("{name}:\n{report}");
        assert!(
            !report.contains("Non-2xx"),
            "{name}: answers other than 2xx under load:\n{report}"
        );
        let done: u64 = report
            .lines()
            .find_map(|l| l.trim().split_once(" requests in"))
            .and_then(|(n, _)| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(done > 0, "{name}: nothing served:\n{report}");
    }
    let warm = rss
        .iter()
        .find(|(t, _)| *t >= WARM)
        .map(|(_, kib)| *kib)
        .unwrap();
    let end = rss.last().map(|(_, kib)| *kib).unwrap();
    let peak = rss.iter().map(|(_, kib)| *kib).max().unwrap();
    println!(
        "RSS: {} MiB after warm-up, {} MiB at the end, {} MiB peak; {probes} bystander requests, slowest {worst:?}",
        warm / 1024,
        end / 1024,
        peak / 1024
    );
    assert!(
        end.saturating_sub(warm) < FLAT_KIB,
        "memory grew {} KiB after warm-up: {rss:?}",
        end - warm
    );
    assert!(j.alive());
}

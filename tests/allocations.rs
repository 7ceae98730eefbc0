//! Heap allocations the proxy makes per request on the public keep-alive
//! path, counted by a global allocator that sees every allocation of the
//! process.
//!
//! Its own test binary: the counting allocator is process-wide. Only the
//! proxy's threads are counted: the test's own thread (the client, the echo
//! upstream and the test runtime's tasks) marks itself excluded. The bound
//! is today's count, so a change that adds an allocation to every request
//! fails here; lower it when a change removes one.

#[allow(
    dead_code,
    unused_imports,
    reason = "the config builders of the it binary's harness"
)]
#[path = "it/harness/config.rs"]
mod config;
#[allow(
    dead_code,
    reason = "the proxy harness serves the it binary; this binary uses its start-up, client and echo upstream"
)]
#[path = "it/harness/proxy.rs"]
mod proxy;
#[allow(dead_code, reason = "the TLS helpers of the it binary's harness")]
#[path = "it/harness/tls.rs"]
mod tls;

use proxy::{H1Conn, Harness, config, echo_http1, public_route, request, tls_connect};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Heap allocations (and reallocations) the proxy may make for one public
/// keep-alive HTTP/1.1 request after warm-up: today's count (35.06 with the
/// worker's own HTTP/1.1 client, rounded up).
const MAX_ALLOCATIONS_PER_REQUEST: u64 = 36;
/// The same with the own client turned off (`JETBRIDGE_H1_FAST=0`: hyper's
/// client on the worker's connections; 39.06).
const MAX_ALLOCATIONS_PER_REQUEST_HYPER: u64 = 40;

/// The system allocator, counting allocations of threads not excluded.
struct Counting;

static COUNTED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // A thread being torn down has no thread-locals left: not counted.
    if !EXCLUDED.try_with(Cell::get).unwrap_or(true) {
        COUNTED.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `n` requests on one kept-alive connection; every one must answer 200.
async fn requests(conn: &mut H1Conn, host: &str, n: usize) {
    for _ in 0..n {
        let resp = conn.send(request("GET", host, "/", &[])).await;
        assert_eq!(resp.status, 200);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_public_keep_alive_request_allocates_no_more_than_the_committed_bound() {
    EXCLUDED.with(|e| e.set(true));
    let host = "public.example.com";
    let upstream = echo_http1("upstream").await;
    let yaml = config([public_route(
        host,
        &format!("http://{}", upstream.authority()),
    )]);
    let proxy = Harness::start(&yaml).await;
    let tls = tls_connect(proxy.https, host, &[b"http/1.1"]).await;
    let mut conn = H1Conn::over(tls).await;
    // Warm-up: the upstream connection pooled, per-worker caches filled.
    requests(&mut conn, host, 200).await;

    const N: u64 = 1000;
    let before = COUNTED.load(Ordering::SeqCst);
    requests(&mut conn, host, N as usize).await;
    let per_request = (COUNTED.load(Ordering::SeqCst) - before) as f64 / N as f64;

    println!("heap allocations per public keep-alive request: {per_request:.2}");
    let bound = match std::env::var("JETBRIDGE_H1_FAST").as_deref() {
        Ok("0") => MAX_ALLOCATIONS_PER_REQUEST_HYPER,
        _ => MAX_ALLOCATIONS_PER_REQUEST,
    };
    assert!(
        per_request <= bound as f64,
        "{per_request:.2} allocations per request, more than the bound {bound}"
    );
    // One upstream connection carried every request.
    assert_eq!(upstream.connections(), 1);
}

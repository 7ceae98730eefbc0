//! The `jetbridge` binary: the allocator, the TLS crypto provider, and the
//! command line ([`cli`], one module per subcommand).

mod cli;

/// mimalloc: the request path allocates and frees many small buffers across
/// worker threads; glibc's allocator spent about a tenth of the proxy's CPU
/// time on them (perf, public route under wrk).
///
/// The `system-alloc` feature keeps the system allocator, for heap profilers
/// that hook malloc (heaptrack, valgrind's massif).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns the pages mimalloc keeps after frees (it purges them lazily, on
/// later activity of the thread that freed them): called after each
/// configuration is applied, so a reload's transient memory does not stay
/// resident.
#[cfg(not(feature = "system-alloc"))]
fn release_memory() {
    // SAFETY: `mi_collect` only walks and purges mimalloc's own free lists;
    // it takes no pointers and is safe to call from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

fn main() -> std::process::ExitCode {
    #[cfg(not(feature = "system-alloc"))]
    jetbridge::memory::set_release(release_memory);
    // One crypto provider for every TLS client and server in the process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    cli::run()
}

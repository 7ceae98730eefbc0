//! `jetbridge standalone`: the proxy fed by a config file, hot-reloaded.

use super::runtime::{init_tracing, run_async, serve_data_plane, shutdown_signal};
use anyhow::{Result, bail};
use jetbridge::source::file as standalone;
use jetbridge::translate::config::Generated;
use jetbridge::translate::driver::Driver;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// Path of config.yaml.
    #[arg(long, short)]
    config: String,
    /// A revocation file shared with `jetbridge revoke --file` (and other
    /// proxies on the same file): sign-outs are written to it, revocations
    /// read from it within a second. Without it, sign-outs live in the process.
    #[arg(long)]
    revocations_file: Option<String>,
}

/// Serves the config file until a shutdown signal.
pub fn run(args: Args, log_format: Option<String>) -> ExitCode {
    run_async(serve(args, log_format))
}

/// Reads and publishes the file once, then serves it and watches it.
async fn serve(args: Args, log_format: Option<String>) -> Result<()> {
    let path = args.config;
    let reading = standalone::Reading::read(&path);
    let (listeners, lifetime) = match &reading.parsed {
        Ok((cfg, _)) => {
            init_tracing(log_format.as_deref(), cfg)?;
            let lifetime = cfg
                .cookie_expire
                .unwrap_or(jetbridge::translate::config::DEFAULT_COOKIE_EXPIRE);
            (
                standalone::addresses(cfg).map_err(anyhow::Error::msg)?,
                lifetime.as_secs() as i64,
            )
        }
        Err(e) => bail!("{e}"),
    };
    let mut driver = Driver::new();
    let mut generated = Generated::default();
    let now = jetbridge::proxy::clock::unix_now();
    let (generation, warnings) =
        standalone::apply(&path, &reading, &mut driver, &mut generated, now)
            .map_err(anyhow::Error::msg)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    if generation.is_none() {
        bail!("{path}: no configuration published");
    }
    let fingerprint = reading.fingerprint;
    // The parsed file is not kept while serving (with 10 000 routes it is
    // tens of megabytes); the watch reads the file again when it changes.
    drop(reading);
    jetbridge::memory::release();
    let reader = driver.reader();
    let shutdown = shutdown_signal();
    let (name, stop) = (path.clone(), shutdown.clone());
    let source = standalone::watch(name, fingerprint, driver, generated, stop);
    let revoked = Arc::new(jetbridge::identity::revocation::Revocations::default());
    if let Some(file) = args.revocations_file {
        tokio::spawn(standalone::revocation_file::sync(
            file,
            revoked.clone(),
            lifetime,
            jetbridge::identity::revocation::DEFAULT_MAX_BYTES,
            shutdown.clone(),
        ));
    }
    serve_data_plane(&listeners, reader, revoked, &path, shutdown, source).await
}

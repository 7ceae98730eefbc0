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
}

/// Serves the config file until a shutdown signal.
pub fn run(args: Args, log_format: Option<String>) -> ExitCode {
    run_async(serve(args.config, log_format))
}

/// Reads and publishes the file once, then serves it and watches it.
async fn serve(path: String, log_format: Option<String>) -> Result<()> {
    let reading = standalone::Reading::read(&path);
    let listeners = match &reading.parsed {
        Ok((cfg, _)) => {
            init_tracing(log_format.as_deref(), cfg)?;
            standalone::addresses(cfg).map_err(anyhow::Error::msg)?
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
    serve_data_plane(&listeners, reader, revoked, &path, shutdown, source).await
}

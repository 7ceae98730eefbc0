//! What the long-running subcommands share: the Tokio runtime, logging,
//! the shutdown signal and serving the data plane.

use anyhow::Result;
use jetbridge::proxy::dataplane::{self, DataPlane};
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs `fut` on a multi-threaded runtime: exit 0 when it succeeds, 1 with
/// the error on stderr when it fails.
pub fn run_async(fut: impl std::future::Future<Output = Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Installs logging. The format comes from `--log-format`, then the config
/// file, then whether stdout is a terminal.
pub fn init_tracing(flag: Option<&str>, cfg: &jetbridge::settings::ConfigFile) -> Result<()> {
    use jetbridge::telemetry::{self, LogFormat};
    let format = match flag.or(cfg.log_format.as_deref()) {
        Some(f) => LogFormat::parse(f).map_err(anyhow::Error::msg)?,
        None => LogFormat::default_for_stdout(),
    };
    telemetry::init(
        format,
        cfg.log_level.as_deref(),
        cfg.access_log.unwrap_or(true),
    );
    cfg.apply_decision_log();
    init_traces(cfg)
}

/// Starts exporting spans when the config file (or the environment) asks
/// for it; a setting that cannot be used stops the start.
fn init_traces(cfg: &jetbridge::settings::ConfigFile) -> Result<()> {
    let Some(settings) = cfg.traces().settings()? else {
        return Ok(());
    };
    jetbridge::traces::init(&settings)?;
    tracing::info!(
        endpoint = %settings.traces_url,
        sample_rate = settings.sample_rate,
        "exporting traces by OTLP"
    );
    Ok(())
}

/// A token cancelled on Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
        tracing::info!("shutting down: draining connections");
        t.cancel();
    });
    token
}

/// Binds and serves the data plane (HTTPS workers, the HTTP redirect and
/// internal listeners) with the configuration source until `shutdown`.
pub async fn serve_data_plane(
    listeners: &dataplane::Addresses,
    reader: jetbridge::snapshot::SnapshotReader,
    revoked: Arc<jetbridge::identity::revocation::Revocations>,
    source_name: &str,
    shutdown: CancellationToken,
    source: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let workers = dataplane::default_workers();
    let plane = DataPlane::bind(*listeners, workers).await?;
    let https = plane.https_addr();
    let running = plane
        .public_https_port(listeners.public_https_port)
        .start(reader, revoked, shutdown, source)?;
    let kind = if listeners.insecure {
        "plain-HTTP listener (insecure_server)"
    } else {
        "HTTPS listener"
    };
    tracing::info!(address = %listeners.https, port = https.port(), workers, config = %source_name, "{kind}");
    running.wait().await;
    // The spans still queued are exported before the process ends.
    let _ = tokio::task::spawn_blocking(jetbridge::traces::shutdown).await;
    Ok(())
}

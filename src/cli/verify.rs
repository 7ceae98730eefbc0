//! `jetbridge verify`: the Verify app, an upstream that checks the assertion
//! and shows the claims.

use super::runtime::{init_tracing, run_async, shutdown_signal};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// JWKS URL, e.g. http://jetbridge.jetbridge.svc/.well-known/pomerium/jwks.json
    #[arg(long, env = "JWKS_ENDPOINT")]
    jwks_url: String,
    /// Required `iss` (the route host).
    #[arg(long, env = "EXPECTED_JWT_ISSUER")]
    expected_issuer: Option<String>,
    /// Required `aud` (the route host).
    #[arg(long, env = "EXPECTED_JWT_AUDIENCE")]
    expected_audience: Option<String>,
}

/// Serves the Verify app until a shutdown signal.
pub fn run(args: Args, log_format: Option<String>) -> ExitCode {
    run_async(serve(args, log_format))
}

async fn serve(args: Args, log_format: Option<String>) -> Result<()> {
    init_tracing(log_format.as_deref(), &Default::default())?;
    let jwks_url = args.jwks_url;
    let url = url::Url::parse(&jwks_url).with_context(|| format!("--jwks-url {jwks_url:?}"))?;
    let mut cfg = jetbridge::verify::VerifierConfig::new(url);
    cfg.expected_issuer = args.expected_issuer;
    cfg.expected_audience = args.expected_audience;
    let shutdown = shutdown_signal();
    let listen = args.listen;
    tracing::info!(%listen, jwks = %jwks_url, "Verify app");
    jetbridge::verify::app::run(listen, cfg, async move { shutdown.cancelled().await }).await?;
    Ok(())
}

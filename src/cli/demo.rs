//! `jetbridge demo`: everything on loopback with a development identity
//! provider, or (`--idp-only`) just that provider.

use super::runtime::{init_tracing, run_async, shutdown_signal};
use anyhow::Result;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct Args {
    /// HTTPS port of the proxy.
    #[arg(long, default_value_t = 8443)]
    port: u16,
    /// Loopback address to bind (the demo refuses anything else).
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,
    /// Port of the development identity provider (0: any free port).
    #[arg(long, default_value_t = 0)]
    idp_port: u16,
    /// Port of the Verify app (0: any free port).
    #[arg(long, default_value_t = 0)]
    verify_port: u16,
    /// Port of the internal listener with the JWKS (0: any free port).
    #[arg(long, default_value_t = 0)]
    internal_port: u16,
    /// DEVELOPMENT ONLY: serve just the development identity provider (on
    /// --idp-port), for a `standalone` config on this machine. Anyone who
    /// reaches it signs in as any demo user without a password.
    #[arg(long)]
    idp_only: bool,
    /// With --idp-only: the client it knows (the config's idp_client_id).
    #[arg(long, default_value = "")]
    client_id: String,
    /// With --idp-only: that client's secret (the config's idp_client_secret).
    #[arg(long, default_value = "")]
    client_secret: String,
    /// With --idp-only: a redirect URI of that client (repeatable):
    /// the config's authenticate_service_url + /oauth2/callback.
    #[arg(long)]
    redirect_uri: Vec<String>,
    /// With --idp-only: where it may send the browser after signing out (repeatable):
    /// the config's authenticate_service_url + /.pomerium/signed_out.
    #[arg(long)]
    post_logout_redirect_uri: Vec<String>,
}

/// Runs the demo until a shutdown signal.
pub fn run(args: Args, log_format: Option<String>) -> ExitCode {
    run_async(serve(args, log_format))
}

async fn serve(args: Args, log_format: Option<String>) -> Result<()> {
    init_tracing(log_format.as_deref(), &Default::default())?;
    let shutdown = shutdown_signal();
    if args.idp_only {
        start_idp_only(args, &shutdown).await?;
    } else {
        start_demo(args, &shutdown).await?;
    }
    shutdown.cancelled().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Ok(())
}

/// Starts the development identity provider alone and prints how to use it.
async fn start_idp_only(args: Args, shutdown: &CancellationToken) -> Result<()> {
    let client = jetbridge::demo::idp::DevClient {
        id: args.client_id,
        secret: args.client_secret,
        redirect_uris: args.redirect_uri,
        post_logout_redirect_uris: args.post_logout_redirect_uri,
    };
    let opts = jetbridge::demo::IdpOnlyOptions {
        ip: args.address,
        port: args.idp_port,
        client: client.clone(),
    };
    let issuer = jetbridge::demo::start_idp_only(opts, shutdown.clone()).await?;
    println!("{}", jetbridge::demo::idp_only_banner(&issuer, &client));
    Ok(())
}

/// Starts the whole demo and prints its banner.
async fn start_demo(args: Args, shutdown: &CancellationToken) -> Result<()> {
    let opts = jetbridge::demo::DemoOptions {
        ip: args.address,
        port: args.port,
        idp_port: args.idp_port,
        verify_port: args.verify_port,
        internal_port: args.internal_port,
    };
    let handle = jetbridge::demo::start(opts, shutdown.clone()).await?;
    println!("{}", jetbridge::demo::banner(&handle));
    Ok(())
}

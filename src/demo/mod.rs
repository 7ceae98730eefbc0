//! `jetbridge demo`: everything on loopback in one process — the proxy with a
//! generated certificate, a built-in development OpenID Connect provider, and
//! the Verify app as the upstream — so a newcomer sees a verified identity
//! header in one command. For demonstrations only: it binds loopback only.

pub mod idp;

use crate::identity::secrets::Secrets;
use crate::proxy::dataplane::{Addresses, DataPlane};
use crate::settings::ConfigFile;
use crate::translate::config::{Files, Generated, inputs_with_secrets};
use crate::translate::driver::Driver;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Errors starting the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo binds loopback only; {0} is not a loopback address")]
    NotLoopback(IpAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Other(String),
}

/// Demo settings. A port of 0 is any free one.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Loopback address to listen on.
    pub ip: IpAddr,
    /// HTTPS port of the proxy.
    pub port: u16,
    /// Port of the development identity provider (its issuer is
    /// `http://<ip>:<idp_port>`).
    pub idp_port: u16,
    /// Port of the Verify app (the upstream).
    pub verify_port: u16,
    /// Port of the internal listener (JWKS, health, metrics).
    pub internal_port: u16,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8443,
            idp_port: 0,
            verify_port: 0,
            internal_port: 0,
        }
    }
}

/// `demo --idp-only`: the development identity provider alone, for a
/// `standalone` config (or any OpenID Connect client) on the same machine.
#[derive(Clone, Debug)]
pub struct IdpOnlyOptions {
    /// Loopback address to listen on.
    pub ip: IpAddr,
    /// Its port (0: any free one).
    pub port: u16,
    /// The one client it knows: the config's `idp_client_id`,
    /// `idp_client_secret` and `<authenticate_service_url>/oauth2/callback`.
    pub client: idp::DevClient,
}

/// Starts the development identity provider alone; returns its issuer URL.
/// It runs until `shutdown` is cancelled.
pub async fn start_idp_only(
    opts: IdpOnlyOptions,
    shutdown: CancellationToken,
) -> Result<String, DemoError> {
    if !opts.ip.is_loopback() {
        return Err(DemoError::NotLoopback(opts.ip));
    }
    if opts.client.id.is_empty() || opts.client.secret.is_empty() {
        return Err(DemoError::Config(
            "--idp-only needs --client-id and --client-secret (the config's idp_client_id and idp_client_secret)".into(),
        ));
    }
    if opts.client.redirect_uris.is_empty() {
        return Err(DemoError::Config(
            "--idp-only needs --redirect-uri (the config's authenticate_service_url + /oauth2/callback)".into(),
        ));
    }
    let (listener, issuer) = bind_idp(opts.ip, opts.port).await?;
    tracing::warn!(
        %issuer,
        client_id = %opts.client.id,
        "development identity provider: anyone who reaches it signs in as any demo user, without a password; never expose it"
    );
    let cfg = idp::DevIdpConfig {
        issuer: issuer.clone(),
        clients: vec![opts.client],
        users: Vec::new(),
    };
    spawn_idp(listener, cfg, shutdown);
    Ok(issuer)
}

/// Binds the identity provider's listener; returns it and the issuer URL.
async fn bind_idp(ip: IpAddr, port: u16) -> Result<(TcpListener, String), DemoError> {
    let listener = bind(SocketAddr::new(ip, port)).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| DemoError::Other(e.to_string()))?;
    Ok((listener, format!("http://{addr}")))
}

fn spawn_idp(listener: TcpListener, cfg: idp::DevIdpConfig, shutdown: CancellationToken) {
    tokio::spawn(async move {
        if let Err(e) = idp::serve(listener, cfg, shutdown).await {
            tracing::error!(error = %e, "demo identity provider stopped");
        }
    });
}

/// The banner printed by `jetbridge demo --idp-only`.
pub fn idp_only_banner(issuer: &str, client: &idp::DevClient) -> String {
    format!(
        "\n*** DEVELOPMENT IDENTITY PROVIDER — NOT FOR REAL USE ***\n\
         Anyone who can reach it signs in as any demo user, without a password.\n\n\
         \x20 Issuer:         {issuer}   (idp_provider_url)\n\
         \x20 Client:         {id}   (idp_client_id; idp_client_secret as given)\n\
         \x20 Redirect URIs:  {uris}\n\n\
         Press Ctrl-C to stop.\n",
        id = client.id,
        uris = client.redirect_uris.join(", "),
    )
}

/// What a running demo exposes (for tests and the banner).
pub struct DemoHandle {
    pub verify_url: String,
    pub authenticate_url: String,
    pub issuer: String,
    pub internal: SocketAddr,
    pub https: SocketAddr,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, DemoError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DemoError::Bind { addr, source })
}

/// Starts the demo; it runs until `shutdown` is cancelled.
pub async fn start(
    opts: DemoOptions,
    shutdown: CancellationToken,
) -> Result<DemoHandle, DemoError> {
    if !opts.ip.is_loopback() {
        return Err(DemoError::NotLoopback(opts.ip));
    }
    let plane = bind_plane(&opts).await?;
    let https_addr = plane.https_addr();
    let internal_addr = plane
        .internal_addr()
        .ok_or_else(|| DemoError::Other("no internal listener".into()))?;
    let port = https_addr.port();
    let (idp_listener, issuer) = bind_idp(opts.ip, opts.idp_port).await?;
    let verify_listener = bind(SocketAddr::new(opts.ip, opts.verify_port)).await?;
    let verify_addr = verify_listener
        .local_addr()
        .map_err(|e| DemoError::Other(e.to_string()))?;

    let authenticate_url = format!("https://authenticate.localhost:{port}");
    let verify_url = format!("https://verify.localhost:{port}");
    let client_secret = crate::identity::oidc::random_token();
    let idp_cfg = demo_idp(&issuer, &authenticate_url, &client_secret);
    spawn_idp(idp_listener, idp_cfg, shutdown.clone());

    let cfg = demo_config(&authenticate_url, &issuer, &client_secret, verify_addr)?;
    let driver = publish(&cfg)?;
    spawn_verify(verify_listener, internal_addr, shutdown.clone())?;
    let reader = driver.reader();
    // The driver lives as long as the data plane: it is the configuration source.
    let keep = shutdown.clone();
    plane
        .start(
            reader,
            Arc::new(crate::identity::revocation::Revocations::default()),
            shutdown.clone(),
            async move {
                keep.cancelled().await;
                drop(driver);
            },
        )
        .map_err(|e| DemoError::Other(e.to_string()))?;
    Ok(DemoHandle {
        verify_url,
        authenticate_url,
        issuer,
        internal: internal_addr,
        https: https_addr,
    })
}

/// Binds the proxy's listeners (HTTPS and internal) on loopback.
async fn bind_plane(opts: &DemoOptions) -> Result<DataPlane, DemoError> {
    DataPlane::bind(
        Addresses {
            https: SocketAddr::new(opts.ip, opts.port),
            http_redirect: None,
            internal: Some(SocketAddr::new(opts.ip, opts.internal_port)),
            insecure: false,
            public_https_port: None,
            client_addr: Default::default(),
        },
        1,
    )
    .await
    .map_err(|e| DemoError::Bind {
        addr: e.addr,
        source: e.source,
    })
}

/// The development identity provider, knowing the proxy as its one client.
fn demo_idp(issuer: &str, authenticate_url: &str, client_secret: &str) -> idp::DevIdpConfig {
    idp::DevIdpConfig {
        issuer: issuer.to_string(),
        clients: vec![idp::DevClient {
            id: "jetbridge-demo".into(),
            secret: client_secret.to_string(),
            redirect_uris: vec![format!("{authenticate_url}/oauth2/callback")],
            post_logout_redirect_uris: vec![format!("{authenticate_url}/.pomerium/signed_out")],
        }],
        users: Vec::new(),
    }
}

/// The demo's configuration: an authenticated and a public route to the
/// Verify app, signing in with the development identity provider.
fn demo_config(
    authenticate_url: &str,
    issuer: &str,
    client_secret: &str,
    verify_addr: SocketAddr,
) -> Result<ConfigFile, DemoError> {
    let yaml = format!(
        "authenticate_service_url: {authenticate_url}\n\
         idp_provider: oidc\n\
         idp_provider_url: {issuer}\n\
         idp_client_id: jetbridge-demo\n\
         idp_client_secret: {client_secret}\n\
         idp_scopes: [openid, email, profile, groups]\n\
         jwt_claims_headers: [email, groups]\n\
         routes:\n\
         \x20 - from: https://verify.localhost\n\
         \x20   to: http://{verify_addr}\n\
         \x20   pass_identity_headers: true\n\
         \x20   allow_any_authenticated_user: true\n\
         \x20 - from: https://public.localhost\n\
         \x20   to: http://{verify_addr}\n\
         \x20   allow_public_unauthenticated_access: true\n"
    );
    ConfigFile::parse("demo", &yaml).map_err(|e| DemoError::Config(e.to_string()))
}

/// Translates the demo's configuration with fresh secrets for this process
/// and publishes it; any diagnostic refuses it. Warnings are logged.
fn publish(cfg: &ConfigFile) -> Result<Driver, DemoError> {
    let mut warnings = Vec::new();
    let inputs = inputs_with_secrets(
        cfg,
        &Files::new(),
        Secrets::generate(),
        &mut Generated::default(),
        &mut warnings,
    )
    .map_err(|e| DemoError::Config(e.to_string()))?;
    for w in warnings {
        tracing::info!(config = "demo", "{w}");
    }
    let mut driver = Driver::new();
    driver
        .apply(
            inputs,
            crate::proxy::clock::unix_now(),
            |snapshot| match snapshot.diagnostics.first() {
                Some(d) => Err(d.to_string()),
                None => Ok(()),
            },
        )
        .map_err(DemoError::Config)?;
    Ok(driver)
}

/// Serves the Verify app (the demo's upstream), verifying assertions
/// against the proxy's JWKS.
fn spawn_verify(
    listener: TcpListener,
    internal_addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<(), DemoError> {
    let jwks_url = url::Url::parse(&format!(
        "http://{internal_addr}/.well-known/pomerium/jwks.json"
    ))
    .map_err(|e| DemoError::Other(e.to_string()))?;
    let mut vcfg = crate::verify::VerifierConfig::new(jwks_url);
    vcfg.expected_issuer = Some("verify.localhost".into());
    vcfg.expected_audience = Some("verify.localhost".into());
    let verifier =
        crate::verify::Verifier::new(vcfg).map_err(|e| DemoError::Other(e.to_string()))?;
    tokio::spawn(async move {
        let _ = crate::verify::app::serve(
            listener,
            verifier,
            async move { shutdown.cancelled().await },
        )
        .await;
    });
    Ok(())
}

/// The banner printed by `jetbridge demo`.
pub fn banner(h: &DemoHandle) -> String {
    format!(
        "\njetbridge demo is running (loopback only; development identity provider — not for real use)\n\n\
         \x20 Open:      {verify}/\n\
         \x20            sign in as a demo user; the Verify app shows the identity header it verified\n\
         \x20 Who am I:  {verify}/.pomerium/\n\
         \x20 JWKS:      http://{internal}/.well-known/pomerium/jwks.json\n\
         \x20 IdP:       {issuer}\n\n\
         The certificate is self-signed: accept the browser warning (twice: verify.localhost and authenticate.localhost).\n\
         *.localhost resolves to loopback in browsers; for curl use --resolve or -k with --connect-to.\n\
         Press Ctrl-C to stop.\n",
        verify = h.verify_url,
        internal = h.internal,
        issuer = h.issuer,
    )
}

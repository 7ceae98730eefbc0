//! The `jetbridge` binary: CLI → settings, telemetry, listeners, graceful shutdown.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use jetbridge::identity::secrets::Bootstrap;
use jetbridge::proxy::dataplane::{self, DataPlane};
use jetbridge::source::file as standalone;
use jetbridge::translate::config::Generated;
use jetbridge::translate::driver::Driver;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "jetbridge",
    version,
    about = "Kubernetes ingress controller with an identity-aware proxy"
)]
struct Cli {
    /// Log format: `json` or `text` (default: text on a terminal, JSON
    /// otherwise; `standalone` also reads `log_format` from its config).
    #[arg(long, global = true, env = "JETBRIDGE_LOG_FORMAT")]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy from a Pomerium-style config file (hot-reloaded).
    Standalone {
        /// Path of config.yaml.
        #[arg(long, short)]
        config: String,
    },
    /// Run everything on loopback with a built-in development identity provider.
    Demo {
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
    },
    /// Print fresh bootstrap secrets (signing key, cookie and shared secrets).
    GenSecrets {
        #[arg(long, default_value = "jetbridge")]
        namespace: String,
        #[arg(long, default_value = "jetbridge-bootstrap")]
        name: String,
        /// `secret` (a Kubernetes Secret manifest) or `config` (config-file keys).
        #[arg(long, default_value = "secret")]
        format: String,
    },
    /// Run the Verify app: an upstream that verifies X-Pomerium-Jwt-Assertion and shows the claims.
    Verify {
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
    },
    /// Mint a session cookie value for a host from a config file's cookie_secret
    /// (for benchmarks and debugging; anyone holding cookie_secret can do this).
    MintSession {
        #[arg(long, short)]
        config: String,
        #[arg(long)]
        host: String,
        #[arg(long)]
        sub: String,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Print this many cookies, one per line, each its own session
        /// (subjects `<sub>-0`, `<sub>-1`, …; one cookie, for `<sub>`, by default).
        #[arg(long)]
        count: Option<u32>,
    },
    /// Run the Kubernetes ingress controller and the proxy it feeds.
    Controller(Box<ControllerArgs>),
    /// Print the CustomResourceDefinition YAML of the `Policy` kind.
    Crds,
    /// Evaluate or lint policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// Config file with global settings (same keys as `standalone`).
    #[arg(long, short, env = "JETBRIDGE_CONFIG")]
    config: Option<String>,
    /// kubeconfig file (default: in-cluster, then $KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<String>,
    /// Namespaces to watch (comma-separated; default: all).
    #[arg(long, value_delimiter = ',', env = "JETBRIDGE_NAMESPACES")]
    namespaces: Vec<String>,
    /// The bootstrap Secret (namespace/name).
    #[arg(
        long,
        default_value = "jetbridge/jetbridge-bootstrap",
        env = "JETBRIDGE_BOOTSTRAP_SECRET"
    )]
    bootstrap_secret: String,
    /// Annotation prefixes (default: jetbridge.dev and ingress.pomerium.io).
    #[arg(long, value_delimiter = ',', env = "JETBRIDGE_ANNOTATION_PREFIX")]
    annotation_prefix: Vec<String>,
    /// `spec.controller` of the IngressClasses to serve.
    #[arg(long, default_value = jetbridge::translate::cluster::CONTROLLER)]
    controller_name: String,
    /// HTTPS listen address (overrides the config file).
    #[arg(long, env = "JETBRIDGE_ADDRESS")]
    address: Option<String>,
    /// Internal listener (JWKS, health, metrics).
    #[arg(long, env = "JETBRIDGE_INTERNAL_ADDRESS")]
    internal_address: Option<String>,
    /// HTTP listener that redirects to HTTPS.
    #[arg(long, env = "JETBRIDGE_HTTP_REDIRECT_ADDRESS")]
    http_redirect_address: Option<String>,
    /// The HTTPS port users reach (the proxy Service's or load balancer's),
    /// named by the HTTP→HTTPS redirect; overrides the config file's
    /// `public_https_port`. Default 443.
    #[arg(long, env = "JETBRIDGE_PUBLIC_HTTPS_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    public_https_port: Option<u16>,
    /// Quiet time after a change before publishing (milliseconds).
    #[arg(long, default_value_t = 50)]
    debounce_ms: u64,
    /// Allow Ingress backends on loopback addresses. Only for a controller
    /// run outside the cluster (tests, development): in a pod, loopback is
    /// jetbridge itself, so such backends are refused by default.
    #[arg(long, env = "JETBRIDGE_ALLOW_LOOPBACK_BACKENDS")]
    allow_loopback_backends: bool,
    /// Copy Ingress status.loadBalancer from this Service (namespace/name);
    /// cleared when the Service is gone (e.g. the release was uninstalled).
    #[arg(long, env = "JETBRIDGE_PUBLISH_SERVICE")]
    publish_service: Option<String>,
    /// Or publish these addresses (IPs or host names, comma-separated).
    #[arg(long, value_delimiter = ',', env = "JETBRIDGE_PUBLISH_ADDRESS")]
    publish_address: Vec<String>,
    /// Name of the Lease that elects the replica writing Events and status.
    #[arg(long, default_value = "jetbridge-leader")]
    leader_election_id: String,
    /// Lease duration in seconds (a crashed leader is replaced after this).
    #[arg(long, default_value_t = 15)]
    lease_duration_secs: u64,
    /// Reserve hosts for namespaces: HOST=NAMESPACE[,NAMESPACE...], HOST
    /// being a name, *.domain (every name below it) or * (every host); the
    /// most specific rule decides. Repeat for several rules. Hosts no rule
    /// names go to the first namespace to claim them.
    #[arg(
        long = "host-namespaces",
        env = "JETBRIDGE_HOST_NAMESPACES",
        value_delimiter = ';'
    )]
    host_namespaces: Vec<String>,
    /// How long a host stays with its namespace after the namespace's last
    /// Ingress naming it is deleted (seconds).
    #[arg(long, default_value_t = jetbridge::translate::cluster::DEFAULT_CLAIM_GRACE_SECONDS)]
    host_claim_grace_secs: i64,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Evaluate a policy against one request: prints allow/deny and the deciding rule.
    /// Exit 0 allow, 1 deny, 2 invalid input.
    Eval {
        /// PPL YAML/JSON or a Policy object; `-` for stdin.
        #[arg(long)]
        policy: String,
        /// Request facts as JSON; `-` for stdin.
        #[arg(long)]
        input: String,
    },
    /// Check a policy file for errors and warnings. Exit 0 ok, 1 warnings, 2 invalid.
    Check {
        /// PPL YAML/JSON or a Policy object; `-` for stdin.
        file: String,
    },
}

fn read_arg(path: &str) -> Result<String> {
    if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
    }
}

/// Session cookie values for `host`, one per line: `count` sessions with
/// subjects `<sub>-<i>`, or one for `sub`.
fn mint_session(
    config: &str,
    host: &str,
    sub: String,
    email: String,
    groups: Vec<String>,
    count: Option<u32>,
) -> Result<String> {
    let cfg = jetbridge::settings::ConfigFile::load(config)?;
    let secret = cfg
        .cookie_secret
        .as_deref()
        .context("the config file has no cookie_secret")?;
    let secret = jetbridge::identity::secrets::Secret32::parse("cookie_secret", secret)?;
    let codec = jetbridge::identity::session::SessionCodec::new(&secret.0);
    let now = jetbridge::proxy::unix_now();
    let subjects: Vec<String> = match count {
        None => vec![sub],
        Some(n) => (0..n).map(|i| format!("{sub}-{i}")).collect(),
    };
    let lines: Vec<String> = subjects
        .into_iter()
        .map(|sub| {
            let session = jetbridge::identity::session::Session {
                id: jetbridge::identity::oidc::random_token()[..22].to_string(),
                sub,
                email: email.clone(),
                name: String::new(),
                groups: groups.clone(),
                claims: Default::default(),
                truncated: false,
                iat: now,
                exp: now + 14 * 3600,
                refresh_token: None,
                refresh_at: 0,
                idp_tokens: None,
                idp: String::new(),
            };
            codec.seal(host, &session)
        })
        .collect();
    Ok(lines.join("\n"))
}

/// Installs logging. The format comes from `--log-format`, then the config
/// file, then whether stdout is a terminal.
fn init_tracing(flag: Option<&str>, cfg: &jetbridge::settings::ConfigFile) -> Result<()> {
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
    Ok(())
}

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
    let cli = Cli::parse();
    let log_format = cli.log_format.clone();
    match cli.command {
        Command::GenSecrets {
            namespace,
            name,
            format,
        } => {
            let b = Bootstrap::generate();
            match format.as_str() {
                "secret" => match b.to_secret_yaml(&namespace, &name) {
                    Ok(y) => print!("{y}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return std::process::ExitCode::from(2);
                    }
                },
                "config" => print!("{}", b.to_config_yaml()),
                other => {
                    eprintln!("error: --format {other:?}: expected secret or config");
                    return std::process::ExitCode::from(2);
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Command::Policy { command } => {
            let (code, out) = match command {
                PolicyCommand::Eval { policy, input } => {
                    match (read_arg(&policy), read_arg(&input)) {
                        (Ok(p), Ok(i)) => jetbridge::policy::cli::eval_command(
                            &p,
                            &i,
                            time::OffsetDateTime::now_utc(),
                        ),
                        (Err(e), _) | (_, Err(e)) => (2, format!("error: {e:#}")),
                    }
                }
                PolicyCommand::Check { file } => match read_arg(&file) {
                    Ok(p) => jetbridge::policy::cli::check_command(&p),
                    Err(e) => (2, format!("error: {e:#}")),
                },
            };
            if code == 2 {
                eprintln!("{out}")
            } else {
                println!("{out}")
            }
            std::process::ExitCode::from(code as u8)
        }
        Command::Standalone { config } => run_async(run_standalone(config, log_format)),
        Command::Controller(args) => run_async(run_controller(*args, log_format)),
        Command::Crds => {
            print!("{}", jetbridge::crd::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
        Command::Demo {
            port,
            address,
            idp_port,
            verify_port,
            internal_port,
            idp_only,
            client_id,
            client_secret,
            redirect_uri,
            post_logout_redirect_uri,
        } => run_async(async move {
            init_tracing(log_format.as_deref(), &Default::default())?;
            let shutdown = shutdown_signal();
            if idp_only {
                let client = jetbridge::demo::idp::DevClient {
                    id: client_id,
                    secret: client_secret,
                    redirect_uris: redirect_uri,
                    post_logout_redirect_uris: post_logout_redirect_uri,
                };
                let opts = jetbridge::demo::IdpOnlyOptions {
                    ip: address,
                    port: idp_port,
                    client: client.clone(),
                };
                let issuer = jetbridge::demo::start_idp_only(opts, shutdown.clone()).await?;
                println!("{}", jetbridge::demo::idp_only_banner(&issuer, &client));
            } else {
                let opts = jetbridge::demo::DemoOptions {
                    ip: address,
                    port,
                    idp_port,
                    verify_port,
                    internal_port,
                };
                let handle = jetbridge::demo::start(opts, shutdown.clone()).await?;
                println!("{}", jetbridge::demo::banner(&handle));
            }
            shutdown.cancelled().await;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Ok(())
        }),
        Command::Verify {
            listen,
            jwks_url,
            expected_issuer,
            expected_audience,
        } => run_async(async move {
            init_tracing(log_format.as_deref(), &Default::default())?;
            let url =
                url::Url::parse(&jwks_url).with_context(|| format!("--jwks-url {jwks_url:?}"))?;
            let mut cfg = jetbridge::verify::VerifierConfig::new(url);
            cfg.expected_issuer = expected_issuer;
            cfg.expected_audience = expected_audience;
            let shutdown = shutdown_signal();
            tracing::info!(%listen, jwks = %jwks_url, "Verify app");
            jetbridge::verify::app::run(listen, cfg, async move { shutdown.cancelled().await })
                .await?;
            Ok(())
        }),
        Command::MintSession {
            config,
            host,
            sub,
            email,
            groups,
            count,
        } => match mint_session(&config, &host, sub, email, groups, count) {
            Ok(v) => {
                println!("{v}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::from(2)
            }
        },
    }
}

fn run_async(fut: impl std::future::Future<Output = Result<()>>) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn shutdown_signal() -> CancellationToken {
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

async fn run_standalone(path: String, log_format: Option<String>) -> Result<()> {
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
    let (generation, warnings) = standalone::apply(
        &path,
        &reading,
        &mut driver,
        &mut generated,
        jetbridge::proxy::unix_now(),
    )
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
    let source = standalone::watch(
        path.clone(),
        fingerprint,
        driver,
        generated,
        shutdown.clone(),
    );
    let revoked = Arc::new(jetbridge::identity::revocation::Revocations::default());
    serve_data_plane(&listeners, reader, revoked, &path, shutdown, source).await
}

/// Binds and serves the data plane (HTTPS workers, the HTTP redirect and
/// internal listeners) with the configuration source until `shutdown`.
async fn serve_data_plane(
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
    Ok(())
}

/// `jetbridge controller`: global settings from the optional config file
/// (the same keys as `standalone`; its routes are served too), routes from
/// the cluster, keys from the bootstrap Secret.
async fn run_controller(args: ControllerArgs, log_format: Option<String>) -> Result<()> {
    let cfg = match &args.config {
        Some(path) => match standalone::Reading::read(path).parsed {
            Ok((cfg, _)) => cfg,
            Err(e) => bail!("{e}"),
        },
        None => jetbridge::settings::ConfigFile::default(),
    };
    init_tracing(log_format.as_deref(), &cfg)?;
    if let Some(w) = cfg
        .idp_provider_url
        .as_deref()
        .and_then(jetbridge::identity::oidc::plain_http_issuer_warning)
    {
        tracing::warn!("{w}");
    }
    let mut listeners = standalone::addresses(&cfg).map_err(anyhow::Error::msg)?;
    if let Some(a) = &args.address {
        listeners.https = standalone::parse_address(a).map_err(anyhow::Error::msg)?;
    }
    if let Some(a) = &args.internal_address {
        listeners.internal = Some(standalone::parse_address(a).map_err(anyhow::Error::msg)?);
    }
    if let Some(a) = &args.http_redirect_address {
        listeners.http_redirect = Some(standalone::parse_address(a).map_err(anyhow::Error::msg)?);
    }
    // In a cluster the proxy sits behind a Service: users reach 443.
    listeners.public_https_port = args
        .public_https_port
        .or(listeners.public_https_port)
        .or(Some(443));
    let (bootstrap_namespace, bootstrap_name) = args
        .bootstrap_secret
        .split_once('/')
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .context("--bootstrap-secret: expected namespace/name")?;
    jetbridge::names::check_label("--bootstrap-secret namespace", &bootstrap_namespace)
        .map_err(anyhow::Error::msg)?;
    jetbridge::names::check_subdomain("--bootstrap-secret name", &bootstrap_name)
        .map_err(anyhow::Error::msg)?;
    let mut prefixes: Vec<String> = args
        .annotation_prefix
        .iter()
        .map(|p| format!("{}/", p.trim_end_matches('/')))
        .collect();
    if prefixes.is_empty() {
        prefixes = jetbridge::translate::cluster::DEFAULT_PREFIXES
            .iter()
            .map(|p| p.to_string())
            .collect();
    }
    let options = jetbridge::source::cluster::Options {
        namespaces: args.namespaces.clone(),
        bootstrap_namespace,
        bootstrap_name,
        cluster: jetbridge::translate::cluster::ClusterSettings {
            prefixes,
            controller: args.controller_name.clone(),
            allow_loopback_backends: args.allow_loopback_backends,
            host_rules: jetbridge::translate::hosts::HostRules::parse(&args.host_namespaces)?,
            claim_grace_seconds: args.host_claim_grace_secs.max(0),
        },
        instance: std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("jetbridge-{}", std::process::id())),
        debounce: std::time::Duration::from_millis(args.debounce_ms),
        publish_service: match &args.publish_service {
            Some(s) => Some(
                s.split_once('/')
                    .map(|(n, s)| (n.to_string(), s.to_string()))
                    .context("--publish-service: expected namespace/name")?,
            ),
            None => None,
        },
        publish_addresses: args.publish_address.clone(),
        lease_name: args.leader_election_id.clone(),
        revocations_name: format!(
            "{}-revocations",
            args.leader_election_id.trim_end_matches("-leader")
        ),
        claims_name: format!(
            "{}-host-claims",
            args.leader_election_id.trim_end_matches("-leader")
        ),
        lease: jetbridge::source::cluster::leader::Timing {
            duration: std::time::Duration::from_secs(args.lease_duration_secs.max(2)),
            renew: std::time::Duration::from_secs((args.lease_duration_secs / 3).max(1)),
        },
    };
    let client = jetbridge::source::cluster::client(args.kubeconfig.as_deref()).await?;
    let driver = Driver::new();
    let reader = driver.reader();
    let shutdown = shutdown_signal();
    let stop = shutdown.clone();
    let revoked = Arc::new(jetbridge::identity::revocation::Revocations::default());
    let shared = revoked.clone();
    let source = async move {
        if let Err(e) =
            jetbridge::source::cluster::run(client, options, cfg, driver, shared, stop.clone())
                .await
        {
            tracing::error!(error = %e, "controller stopped");
            stop.cancel();
        }
    };
    serve_data_plane(&listeners, reader, revoked, "cluster", shutdown, source).await
}

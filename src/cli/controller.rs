//! `jetbridge controller`: global settings from the optional config file
//! (the same keys as `standalone`; its routes are served too), routes from
//! the cluster, keys from the bootstrap Secret.

use super::runtime::{init_tracing, run_async, serve_data_plane, shutdown_signal};
use anyhow::{Context, Result, bail};
use jetbridge::proxy::dataplane::Addresses;
use jetbridge::settings::ConfigFile;
use jetbridge::source::cluster::{Options, leader};
use jetbridge::source::file as standalone;
use jetbridge::translate::cluster::{self, ClusterSettings};
use jetbridge::translate::driver::Driver;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

// No doc comment: clap would show it as the subcommand's description.
#[derive(clap::Args)]
pub struct Args {
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
    #[arg(long, default_value = cluster::CONTROLLER)]
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
    /// Every connection to the proxy's listeners starts with a PROXY
    /// protocol v1/v2 header (a load balancer's); overrides the config
    /// file's `use_proxy_protocol`.
    #[arg(long, env = "JETBRIDGE_USE_PROXY_PROTOCOL")]
    use_proxy_protocol: Option<bool>,
    /// Proxies in front that append to X-Forwarded-For; overrides the
    /// config file's `xff_num_trusted_hops`.
    #[arg(long, env = "JETBRIDGE_XFF_NUM_TRUSTED_HOPS")]
    xff_num_trusted_hops: Option<u32>,
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
    /// The most bytes of data the revocation ConfigMap is given; past it
    /// the users with most signed-out sessions are compacted into one
    /// not-before entry each (a Warning Event at 80 %).
    #[arg(long, default_value_t = jetbridge::identity::revocation::DEFAULT_MAX_BYTES)]
    revocations_max_bytes: usize,
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
    #[arg(long, default_value_t = cluster::DEFAULT_CLAIM_GRACE_SECONDS)]
    host_claim_grace_secs: i64,
}

/// Runs the controller and its proxy until a shutdown signal.
pub fn run(args: Args, log_format: Option<String>) -> ExitCode {
    run_async(serve(args, log_format))
}

/// Reads the settings, starts the cluster source and serves what it publishes.
async fn serve(args: Args, log_format: Option<String>) -> Result<()> {
    let cfg = read_config(args.config.as_deref())?;
    init_tracing(log_format.as_deref(), &cfg)?;
    if let Some(w) = cfg
        .idp_provider_url
        .as_deref()
        .and_then(jetbridge::identity::oidc::plain_http_issuer_warning)
    {
        tracing::warn!("{w}");
    }
    let listeners = listeners(&args, &cfg)?;
    let options = options(&args)?;
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

/// The global settings: the config file when one is named, else defaults.
fn read_config(path: Option<&str>) -> Result<ConfigFile> {
    let Some(path) = path else {
        return Ok(ConfigFile::default());
    };
    match standalone::Reading::read(path).parsed {
        Ok((cfg, _)) => Ok(cfg),
        Err(e) => bail!("{e}"),
    }
}

/// The config file's listeners with the flags' overrides. In a cluster the
/// proxy sits behind a Service: users reach 443 unless told otherwise.
fn listeners(args: &Args, cfg: &ConfigFile) -> Result<Addresses> {
    let parse = |a: &str| standalone::parse_address(a).map_err(anyhow::Error::msg);
    let mut listeners = standalone::addresses(cfg).map_err(anyhow::Error::msg)?;
    if let Some(a) = &args.address {
        listeners.https = parse(a)?;
    }
    if let Some(a) = &args.internal_address {
        listeners.internal = Some(parse(a)?);
    }
    if let Some(a) = &args.http_redirect_address {
        listeners.http_redirect = Some(parse(a)?);
    }
    if let Some(on) = args.use_proxy_protocol {
        listeners.client_addr.proxy_protocol = on;
    }
    if let Some(hops) = args.xff_num_trusted_hops {
        listeners.client_addr.xff_trusted_hops = hops;
    }
    listeners.public_https_port = args
        .public_https_port
        .or(listeners.public_https_port)
        .or(Some(443));
    Ok(listeners)
}

/// The controller's options from the flags (and the pod's name).
fn options(args: &Args) -> Result<Options> {
    let (bootstrap_namespace, bootstrap_name) = bootstrap_secret(&args.bootstrap_secret)?;
    let base = args.leader_election_id.trim_end_matches("-leader");
    Ok(Options {
        namespaces: args.namespaces.clone(),
        bootstrap_namespace,
        bootstrap_name,
        cluster: cluster_settings(args)?,
        instance: std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("jetbridge-{}", std::process::id())),
        debounce: Duration::from_millis(args.debounce_ms),
        publish_service: match &args.publish_service {
            Some(s) => {
                Some(namespace_and_name(s).context("--publish-service: expected namespace/name")?)
            }
            None => None,
        },
        publish_addresses: args.publish_address.clone(),
        lease_name: args.leader_election_id.clone(),
        revocations_name: format!("{base}-revocations"),
        revocations_max_bytes: args.revocations_max_bytes,
        claims_name: format!("{base}-host-claims"),
        lease: leader::Timing {
            duration: Duration::from_secs(args.lease_duration_secs.max(2)),
            renew: Duration::from_secs((args.lease_duration_secs / 3).max(1)),
        },
    })
}

/// `--bootstrap-secret` as a checked namespace and name.
fn bootstrap_secret(flag: &str) -> Result<(String, String)> {
    let (namespace, name) =
        namespace_and_name(flag).context("--bootstrap-secret: expected namespace/name")?;
    jetbridge::names::check_label("--bootstrap-secret namespace", &namespace)
        .map_err(anyhow::Error::msg)?;
    jetbridge::names::check_subdomain("--bootstrap-secret name", &name)
        .map_err(anyhow::Error::msg)?;
    Ok((namespace, name))
}

/// Splits `namespace/name` at its first slash.
fn namespace_and_name(s: &str) -> Option<(String, String)> {
    s.split_once('/')
        .map(|(n, s)| (n.to_string(), s.to_string()))
}

/// How Ingresses are read: annotation prefixes, IngressClass controller,
/// loopback backends and host reservations.
fn cluster_settings(args: &Args) -> Result<ClusterSettings> {
    let mut prefixes: Vec<String> = args
        .annotation_prefix
        .iter()
        .map(|p| format!("{}/", p.trim_end_matches('/')))
        .collect();
    if prefixes.is_empty() {
        prefixes = cluster::DEFAULT_PREFIXES
            .iter()
            .map(|p| p.to_string())
            .collect();
    }
    Ok(ClusterSettings {
        prefixes,
        controller: args.controller_name.clone(),
        allow_loopback_backends: args.allow_loopback_backends,
        host_rules: jetbridge::translate::hosts::HostRules::parse(&args.host_namespaces)?,
        claim_grace_seconds: args.host_claim_grace_secs.max(0),
        gateway_controller: jetbridge::translate::gateway::CONTROLLER.to_string(),
    })
}

//! `jetbridge revoke`: refuses every session of a user issued until now (or
//! one session of theirs) on every replica, through the store the proxy
//! shares: the revocation ConfigMap in a cluster, the revocation file in
//! the config-file mode. Audited: a log line, and in a cluster an Event on
//! the ConfigMap naming the user and who ran the command.

use super::runtime::{init_tracing, run_async};
use anyhow::{Context, Result, bail};
use jetbridge::identity::revocation::{self, Revoke};
use jetbridge::source::cluster::revocations::Store;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The user: the subject (`sub`) or the email, as the identity provider
    /// reports it.
    #[arg(long)]
    user: String,
    /// Only this session of the user (its `sid`, as in the assertion and the
    /// access log).
    #[arg(long)]
    session: Option<String>,
    /// Why; recorded in the Event and the log line.
    #[arg(long)]
    reason: Option<String>,
    /// Config-file mode: the revocation file `jetbridge standalone
    /// --revocations-file` reads (instead of the cluster).
    #[arg(long)]
    file: Option<String>,
    /// The kubeconfig (default: in-cluster or `KUBECONFIG`).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<String>,
    /// The revocation ConfigMap the controller keeps (namespace/name: the
    /// bootstrap Secret's namespace and `<leader-election-id>-revocations`
    /// without `-leader`).
    #[arg(long, default_value = "jetbridge/jetbridge-revocations")]
    configmap: String,
    /// The settings file of the proxy, for `cookie_expire` (how long the
    /// revocation is kept; default 14h, Pomerium's).
    #[arg(long, short)]
    config: Option<String>,
}

/// Revokes; exit 0 when stored, 1 with the reason otherwise.
pub fn run(args: Args, log_format: Option<String>) -> ExitCode {
    run_async(revoke(args, log_format))
}

async fn revoke(args: Args, log_format: Option<String>) -> Result<()> {
    let cfg = match &args.config {
        Some(path) => jetbridge::settings::ConfigFile::load(path)?,
        None => Default::default(),
    };
    init_tracing(log_format.as_deref(), &cfg)?;
    if args.user.trim().is_empty() {
        bail!("--user: empty");
    }
    let lifetime = cfg
        .cookie_expire
        .unwrap_or(jetbridge::translate::config::DEFAULT_COOKIE_EXPIRE)
        .as_secs() as i64;
    let what = Revoke {
        user: args.user.clone(),
        session: args.session.clone(),
        reason: args.reason.clone(),
    };
    match &args.file {
        Some(path) => revoke_in_file(path, &what, lifetime),
        None => {
            let (namespace, name) = args
                .configmap
                .split_once('/')
                .context("--configmap: expected namespace/name")?;
            let store = Store {
                namespace: namespace.to_string(),
                name: name.to_string(),
                lifetime,
                max_bytes: revocation::DEFAULT_MAX_BYTES,
            };
            let client = jetbridge::source::cluster::client(args.kubeconfig.as_deref()).await?;
            let note = jetbridge::source::cluster::revocations::revoke(client, &store, &what)
                .await
                .with_context(|| format!("cannot revoke in ConfigMap {}", args.configmap))?;
            println!("{note}");
            Ok(())
        }
    }
}

/// Writes the revocation into the config-file mode's revocation file.
fn revoke_in_file(path: &str, what: &Revoke, lifetime: i64) -> Result<()> {
    let entry = what.entry(jetbridge::proxy::clock::unix_now(), lifetime);
    jetbridge::source::file::revocation_file::update(path, |current| {
        revocation::entry_changes(current, &entry)
    })
    .with_context(|| format!("cannot write {path}"))?;
    let who = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .map(|u| format!("local user {u}"))
        .unwrap_or_else(|_| "an unknown local user".into());
    let note = what.note(&who);
    tracing::info!(user = %what.user, session = ?what.session, by = %who, file = %path, "{note}");
    println!("{note}");
    Ok(())
}

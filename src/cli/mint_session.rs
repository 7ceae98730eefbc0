//! `jetbridge mint-session`: session cookie values sealed with a config
//! file's `cookie_secret`.

use anyhow::{Context, Result};
use jetbridge::identity::session::{Session, SessionCodec};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
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
}

/// Prints the cookie values; exit 2 when the config cannot give a secret.
pub fn run(args: Args) -> ExitCode {
    match mint(&args) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Session cookie values for the host, one per line: `count` sessions with
/// subjects `<sub>-<i>`, or one for `sub`.
fn mint(args: &Args) -> Result<String> {
    let cfg = jetbridge::settings::ConfigFile::load(&args.config)?;
    let secret = cfg
        .cookie_secret
        .as_deref()
        .context("the config file has no cookie_secret")?;
    let secret = jetbridge::identity::secrets::Secret32::parse("cookie_secret", secret)?;
    let codec = SessionCodec::new(&secret.0);
    let now = jetbridge::proxy::clock::unix_now();
    let subjects: Vec<String> = match args.count {
        None => vec![args.sub.clone()],
        Some(n) => (0..n).map(|i| format!("{}-{i}", args.sub)).collect(),
    };
    let lines: Vec<String> = subjects
        .into_iter()
        .map(|sub| codec.seal(&args.host, &session(args, sub, now)))
        .collect();
    Ok(lines.join("\n"))
}

/// A fresh session of `sub` with the flags' email and groups, valid 14 hours.
fn session(args: &Args, sub: String, now: i64) -> Session {
    Session {
        id: jetbridge::identity::oidc::random_token()[..22].to_string(),
        sub,
        email: args.email.clone(),
        name: String::new(),
        groups: args.groups.clone(),
        claims: Default::default(),
        truncated: false,
        iat: now,
        exp: now + 14 * 3600,
        refresh_token: None,
        refresh_at: 0,
        idp_tokens: None,
        idp: String::new(),
    }
}

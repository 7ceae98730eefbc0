//! The command line: one module per subcommand, each parsing its own flags
//! and calling the library. Errors are `anyhow` here and only here; each
//! subcommand turns its outcome into the process exit code.

mod controller;
mod crds;
mod demo;
mod gen_secrets;
mod mint_session;
mod policy;
mod revoke;
mod runtime;
mod standalone;
mod verify;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
    Standalone(standalone::Args),
    /// Run everything on loopback with a built-in development identity provider.
    Demo(demo::Args),
    /// Print fresh bootstrap secrets (signing key, cookie and shared secrets).
    GenSecrets(gen_secrets::Args),
    /// Run the Verify app: an upstream that verifies X-Pomerium-Jwt-Assertion and shows the claims.
    Verify(verify::Args),
    /// Mint a session cookie value for a host from a config file's cookie_secret
    /// (for benchmarks and debugging; anyone holding cookie_secret can do this).
    MintSession(mint_session::Args),
    /// Run the Kubernetes ingress controller and the proxy it feeds.
    Controller(Box<controller::Args>),
    /// Print the CustomResourceDefinition YAML of the `Policy` kind.
    Crds,
    /// Evaluate or lint policies.
    Policy(policy::Args),
    /// Revoke every session of a user (or one session) on every replica.
    Revoke(revoke::Args),
}

/// Parses the command line and runs the chosen subcommand.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    match cli.command {
        Command::Standalone(args) => standalone::run(args, log_format),
        Command::Demo(args) => demo::run(args, log_format),
        Command::GenSecrets(args) => gen_secrets::run(args),
        Command::Verify(args) => verify::run(args, log_format),
        Command::MintSession(args) => mint_session::run(args),
        Command::Controller(args) => controller::run(*args, log_format),
        Command::Crds => crds::run(),
        Command::Policy(args) => policy::run(args),
        Command::Revoke(args) => revoke::run(args, log_format),
    }
}

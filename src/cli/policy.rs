//! `jetbridge policy eval|check`: the PPL engine on the command line.

use anyhow::{Context, Result};
use std::io::Read as _;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
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

/// Runs the policy subcommand: its report on stdout (errors on stderr),
/// its verdict as the exit code.
pub fn run(args: Args) -> ExitCode {
    let (code, out) = match args.command {
        Command::Eval { policy, input } => match (read_arg(&policy), read_arg(&input)) {
            (Ok(p), Ok(i)) => {
                jetbridge::policy::cli::eval_command(&p, &i, time::OffsetDateTime::now_utc())
            }
            (Err(e), _) | (_, Err(e)) => (2, format!("error: {e:#}")),
        },
        Command::Check { file } => match read_arg(&file) {
            Ok(p) => jetbridge::policy::cli::check_command(&p),
            Err(e) => (2, format!("error: {e:#}")),
        },
    };
    if code == 2 {
        eprintln!("{out}")
    } else {
        println!("{out}")
    }
    ExitCode::from(code as u8)
}

/// The text of a file, or of stdin for `-`.
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

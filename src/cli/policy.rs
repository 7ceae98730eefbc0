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
        #[arg(long, required_unless_present = "log_line")]
        input: Option<String>,
        /// Replay a decision instead: a decision-log line (JSON, as
        /// `jetbridge::authorize` writes it) whose user, groups, request and
        /// time are the facts; prints the logged decision beside the new one.
        #[arg(long, conflicts_with = "input")]
        log_line: Option<String>,
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
        Command::Eval {
            policy,
            input,
            log_line,
        } => eval(&policy, input.as_deref(), log_line.as_deref()),
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

/// `policy eval`: against `input`, or replaying the decision of `log_line`
/// (a decision-log line, or `-` for stdin).
fn eval(policy: &str, input: Option<&str>, log_line: Option<&str>) -> (i32, String) {
    use jetbridge::policy::cli::{eval_command, input_from_log_line};
    let now = time::OffsetDateTime::now_utc();
    let policy = match read_arg(policy) {
        Ok(p) => p,
        Err(e) => return (2, format!("error: {e:#}")),
    };
    let Some(line) = log_line else {
        return match read_arg(input.unwrap_or("-")) {
            Ok(i) => eval_command(&policy, &i, now),
            Err(e) => (2, format!("error: {e:#}")),
        };
    };
    let line = match line {
        "-" => read_arg(line),
        text => Ok(text.to_string()),
    };
    match line
        .map_err(|e| format!("{e:#}"))
        .and_then(|l| input_from_log_line(&l))
    {
        Ok((input, logged)) => {
            let (code, out) = eval_command(&policy, &input, now);
            (code, format!("{out}\nlogged: {logged}"))
        }
        Err(e) => (2, format!("error: {e}")),
    }
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

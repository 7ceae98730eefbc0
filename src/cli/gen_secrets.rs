//! `jetbridge gen-secrets`: prints fresh bootstrap secrets.

use jetbridge::identity::secrets::Bootstrap;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "jetbridge")]
    namespace: String,
    #[arg(long, default_value = "jetbridge-bootstrap")]
    name: String,
    /// `secret` (a Kubernetes Secret manifest) or `config` (config-file keys).
    #[arg(long, default_value = "secret")]
    format: String,
}

/// Prints the secrets in the asked format; exit 2 on a bad format or name.
pub fn run(args: Args) -> ExitCode {
    let b = Bootstrap::generate();
    let text = match args.format.as_str() {
        "secret" => b
            .to_secret_yaml(&args.namespace, &args.name)
            .map_err(|e| e.to_string()),
        "config" => Ok(b.to_config_yaml()),
        other => Err(format!("--format {other:?}: expected secret or config")),
    };
    match text {
        Ok(y) => {
            print!("{y}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

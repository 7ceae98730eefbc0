//! `jetbridge crds`: prints the CustomResourceDefinition YAML.

use std::process::ExitCode;

/// Prints the CRD of the `Policy` kind.
pub fn run() -> ExitCode {
    print!("{}", jetbridge::crd::crd_yaml());
    ExitCode::SUCCESS
}

//! `greenfd demo` (not implemented yet).

use crate::CliResult;

/// Options of `greenfd demo`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `greenfd demo`.
pub fn run(_args: Args) -> CliResult {
    Err("`greenfd demo` is not implemented yet".into())
}

//! `greenfd probe` (not implemented yet).

use crate::CliResult;

/// Options of `greenfd probe`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `greenfd probe`.
pub fn run(_args: Args) -> CliResult {
    Err("`greenfd probe` is not implemented yet".into())
}

//! `greenfd serve` (not implemented yet).

use crate::CliResult;

/// Options of `greenfd serve`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `greenfd serve`.
pub fn run(_args: Args) -> CliResult {
    Err("`greenfd serve` is not implemented yet".into())
}

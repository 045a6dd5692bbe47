//! `greenfd tap` (not implemented yet).

use crate::CliResult;

/// Options of `greenfd tap`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `greenfd tap`.
pub fn run(_args: Args) -> CliResult {
    Err("`greenfd tap` is not implemented yet".into())
}

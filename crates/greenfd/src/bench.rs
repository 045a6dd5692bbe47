//! `greenfd bench` (not implemented yet).

use crate::CliResult;

/// Options of `greenfd bench`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `greenfd bench`.
pub fn run(_args: Args) -> CliResult {
    Err("`greenfd bench` is not implemented yet".into())
}

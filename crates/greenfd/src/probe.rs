//! `greenfd probe`: which vpoll backends work here, why the others do not, and which one
//! a new vpoll fd would use.

use crate::CliResult;
use greenfd_vpoll::{BACKEND_ENV, Backend, Builder, Error};
use std::io::Write;

/// Options of `greenfd probe`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `greenfd probe`: one line per backend in order of preference, then the choice.
pub fn run(_args: Args) -> CliResult {
    let mut out = std::io::stdout().lock();
    for b in Backend::ALL {
        match b.probe() {
            Ok(()) => writeln!(out, "{:<9} available", b.name())?,
            // The backend's name is already at the start of the line.
            Err(Error::Unavailable { reason, .. }) => {
                writeln!(out, "{:<9} unavailable: {reason}", b.name())?
            }
            Err(e) => writeln!(out, "{:<9} unavailable: {e}", b.name())?,
        }
    }
    let forced = std::env::var(BACKEND_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    match Builder::new().resolve_backend() {
        Ok(b) => match &forced {
            Some(_) => writeln!(out, "chosen: {b} (forced by {BACKEND_ENV})")?,
            None => writeln!(out, "chosen: {b} (best available)")?,
        },
        Err(e) => {
            writeln!(out, "chosen: none")?;
            return Err(e.into());
        }
    }
    Ok(())
}

//! `greenfd probe`: which vpoll backends work here, why the others do not, which FUSE
//! route the Fuse backend uses (and why every other route is unavailable), and which
//! backend a new vpoll fd would use.

use crate::CliResult;
use greenfd_vpoll::{BACKEND_ENV, Backend, Builder, Error, FUSE_ROUTE_ENV, FuseRoute};
use std::io::Write;

/// Options of `greenfd probe`.
#[derive(clap::Args)]
pub struct Args {}

/// The reason inside an error, without the "vpoll backend X unavailable" prefix.
fn reason(e: &Error) -> String {
    match e {
        Error::Unavailable { reason, .. } => reason.clone(),
        e => e.to_string(),
    }
}

/// The value of environment variable `name`, if set and not blank.
fn forced(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Runs `greenfd probe`: one line per backend in order of preference (the Fuse backend
/// followed by one line per route), then the choice.
pub fn run(_args: Args) -> CliResult {
    let mut out = std::io::stdout().lock();
    for b in Backend::ALL {
        match b.probe() {
            Ok(()) if b == Backend::Fuse => match greenfd_vpoll::fuse_route() {
                Ok(r) => writeln!(out, "{:<9} available (route {r})", b.name())?,
                Err(e) => writeln!(out, "{:<9} available ({e})", b.name())?,
            },
            Ok(()) => writeln!(out, "{:<9} available", b.name())?,
            Err(e) => writeln!(out, "{:<9} unavailable: {}", b.name(), reason(&e))?,
        }
        if b == Backend::Fuse {
            fuse_routes(&mut out)?;
        }
    }
    let forced_backend = forced(BACKEND_ENV);
    match Builder::new().resolve_backend() {
        Ok(b) => {
            let why = match &forced_backend {
                Some(_) => format!("forced by {BACKEND_ENV}"),
                None => "best available".into(),
            };
            match b {
                Backend::Fuse => {
                    let route = greenfd_vpoll::fuse_route()?;
                    writeln!(out, "chosen: {b} ({why}), route {route}")?
                }
                _ => writeln!(out, "chosen: {b} ({why})")?,
            }
        }
        Err(e) => {
            writeln!(out, "chosen: none")?;
            return Err(e.into());
        }
    }
    Ok(())
}

/// One line per FUSE route: the one in use, and for every other route why it is
/// unavailable (or that it works but comes later).
fn fuse_routes(out: &mut impl Write) -> CliResult {
    let in_use = greenfd_vpoll::fuse_route().ok();
    let forced_route = forced(FUSE_ROUTE_ENV);
    for r in FuseRoute::ALL {
        let label = format!("  route {}", r.name());
        if Some(r) == in_use {
            match &forced_route {
                Some(v) => writeln!(out, "{label:<19} in use (forced by {FUSE_ROUTE_ENV}={v})")?,
                None => writeln!(out, "{label:<19} in use")?,
            }
            continue;
        }
        match r.probe() {
            Ok(()) => match (&forced_route, in_use) {
                (Some(v), _) => writeln!(
                    out,
                    "{label:<19} available, not used ({FUSE_ROUTE_ENV}={v})"
                )?,
                (None, Some(first)) => {
                    writeln!(out, "{label:<19} available, not used ({first} comes first)")?
                }
                (None, None) => writeln!(out, "{label:<19} available")?,
            },
            Err(e) => writeln!(out, "{label:<19} unavailable: {}", reason(&e))?,
        }
    }
    Ok(())
}

//! How the Fuse backend gets its FUSE connection: the three routes, and how one is chosen.

use crate::{Error, Result};

/// Environment variable that forces a FUSE route: `direct`, `userns`, `fusermount`, or
/// `legacy` (the direct route with the classic `mount(2)` instead of `fsopen`/`fsmount`).
pub const FUSE_ROUTE_ENV: &str = "GREENFD_VPOLL_FUSE_ROUTE";

/// How the [`Backend::Fuse`](crate::Backend::Fuse) filesystem of a process is mounted.
///
/// Tried in this order when none is forced; each process mounts at most one filesystem
/// per route, the first time a vpoll fd needs it, and no mount is ever left attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FuseRoute {
    /// Root or `CAP_SYS_ADMIN`: `fsopen`/`fsmount` in this process, never attached
    /// (falls back to `mount(2)` on a private directory detached at once).
    Direct,
    /// Any user, where unprivileged user namespaces are allowed: a short-lived helper
    /// child mounts inside a new user and mount namespace and passes the mount back.
    Userns,
    /// Any user, with the setuid `fusermount3` (package fuse3): mounted on a private
    /// directory and lazily unmounted as soon as the mount's root is open (visible for
    /// a few milliseconds).
    Fusermount,
}

impl FuseRoute {
    /// Every route, in order of preference.
    pub const ALL: [FuseRoute; 3] = [FuseRoute::Direct, FuseRoute::Userns, FuseRoute::Fusermount];

    /// The lower-case name used by `GREENFD_VPOLL_FUSE_ROUTE` and `greenfd probe`.
    pub fn name(self) -> &'static str {
        match self {
            FuseRoute::Direct => "direct",
            FuseRoute::Userns => "userns",
            FuseRoute::Fusermount => "fusermount",
        }
    }

    /// Position in [`FuseRoute::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Checks whether this route works here by mounting this process's filesystem for it
    /// (as the first vpoll fd on it would); the error says why not. The answer is
    /// computed once per process.
    pub fn probe(self) -> Result<()> {
        crate::backend::probe_route(self)
    }
}

impl std::str::FromStr for FuseRoute {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        FuseRoute::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::UnknownRoute(s.to_owned()))
    }
}

impl std::fmt::Display for FuseRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `GREENFD_VPOLL_FUSE_ROUTE` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RouteChoice {
    /// The forced route, if any.
    pub(crate) route: Option<FuseRoute>,
    /// `legacy`: the direct route mounts with `mount(2)` rather than `fsmount`.
    pub(crate) legacy_mount: bool,
}

/// Reads `GREENFD_VPOLL_FUSE_ROUTE` (unset or empty: automatic choice).
pub(crate) fn from_env() -> Result<RouteChoice> {
    let Some(v) = std::env::var_os(FUSE_ROUTE_ENV) else {
        return Ok(RouteChoice {
            route: None,
            legacy_mount: false,
        });
    };
    let v = v.to_string_lossy();
    let v = v.trim();
    if v.is_empty() {
        return Ok(RouteChoice {
            route: None,
            legacy_mount: false,
        });
    }
    if v.eq_ignore_ascii_case("legacy") {
        return Ok(RouteChoice {
            route: Some(FuseRoute::Direct),
            legacy_mount: true,
        });
    }
    Ok(RouteChoice {
        route: Some(v.parse()?),
        legacy_mount: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for r in FuseRoute::ALL {
            assert_eq!(r.name().parse::<FuseRoute>().unwrap(), r);
            assert_eq!(FuseRoute::ALL[r.index()], r);
        }
        assert!(matches!(
            "mount".parse::<FuseRoute>(),
            Err(Error::UnknownRoute(_))
        ));
    }
}

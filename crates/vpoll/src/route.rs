//! How the Fuse backend gets its FUSE connection: the three routes, and how one is chosen.

use crate::Result;

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

crate::names::named_enum! {
    FuseRoute, "route", "GREENFD_VPOLL_FUSE_ROUTE", UnknownRoute;
    Direct => "direct",
    Userns => "userns",
    Fusermount => "fusermount",
}

/// The name `GREENFD_VPOLL_FUSE_ROUTE` also accepts: the direct route, mounted with the
/// classic `mount(2)` instead of `fsopen`/`fsmount`.
pub(crate) const LEGACY: &str = "legacy";

impl FuseRoute {
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
    if v.eq_ignore_ascii_case(LEGACY) {
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
    use crate::Error;

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

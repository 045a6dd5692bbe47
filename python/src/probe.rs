//! `greenfd.probe()`: which vpoll backends work in this process, and why the others do not.

use greenfd_vpoll::{Backend, Builder, FuseRoute};
use pyo3::prelude::*;

/// One backend (or FUSE route) as `probe()` found it.
#[pyclass(module = "greenfd", name = "Availability", frozen, get_all)]
#[derive(Clone, Debug)]
pub(crate) struct Availability {
    /// "backend" for a vpoll backend, "fuse-route" for a way to get the FUSE connection.
    kind: &'static str,
    /// Its name ("kernel", "device", "fuse", "emulated"; a route's name).
    name: String,
    /// Whether it can be used here.
    available: bool,
    /// Why it cannot be used (None when available).
    reason: Option<String>,
    /// Whether `Vpoll()` with no backend argument would use it now (for a route: whether
    /// the fuse backend would get its filesystem that way).
    selected: bool,
}

#[pymethods]
impl Availability {
    /// `<greenfd.Availability backend fuse: available, selected>` or with the reason.
    fn __repr__(&self) -> String {
        let state = match (&self.reason, self.selected) {
            (Some(reason), _) => format!("unavailable: {reason}"),
            (None, true) => "available, selected".to_owned(),
            (None, false) => "available".to_owned(),
        };
        format!(
            "<greenfd.Availability {} {}: {state}>",
            self.kind, self.name
        )
    }
}

/// Probes every vpoll backend, then every FUSE route, each in order of preference,
/// without the GIL. Probing the Fuse backend or a route mounts this process's filesystem
/// for it (never attached anywhere), as the first vpoll fd on it would.
fn probe_all() -> Vec<Availability> {
    let selected = Builder::new().resolve_backend().ok();
    let backends = Backend::ALL.into_iter().map(|backend| {
        let reason = backend.probe().err().map(|e| e.to_string());
        Availability {
            kind: "backend",
            name: backend.name().to_owned(),
            available: reason.is_none(),
            reason,
            selected: selected == Some(backend),
        }
    });
    let route = greenfd_vpoll::fuse_route().ok();
    let routes = FuseRoute::ALL.into_iter().map(|r| {
        let reason = r.probe().err().map(|e| e.to_string());
        Availability {
            kind: "fuse-route",
            name: r.name().to_owned(),
            available: reason.is_none(),
            reason,
            selected: route == Some(r),
        }
    });
    backends.chain(routes).collect()
}

/// The vpoll backends, then the FUSE routes (how the fuse backend gets its filesystem:
/// "direct", "userns", "fusermount"), each in order of preference: which are available
/// here, the reason for each that is not, and which one `Vpoll()` would use
/// (`GREENFD_VPOLL_BACKEND` and `GREENFD_VPOLL_FUSE_ROUTE` included). Probing the fuse
/// backend or a route mounts this process's filesystem for it, never attached anywhere.
#[pyfunction]
pub(crate) fn probe(py: Python<'_>) -> Vec<Availability> {
    py.detach(probe_all)
}

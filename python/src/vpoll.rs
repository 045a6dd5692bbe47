//! `greenfd.Vpoll`: a file descriptor whose readiness Python code sets by hand.
//!
//! The object holds the Rust [`VpollFd`] behind an `Arc` in a mutex that is held only to
//! clone or take the `Arc`, never across a system call. Each operation clones the `Arc`,
//! releases the GIL and runs; `close()` takes the `Arc` out, so a concurrent operation
//! finishes on the still-open descriptor (its number cannot be reused under it) and the
//! descriptor closes when the last operation ends. Because the lock is only taken while
//! holding the GIL, and `os.fork()` needs the GIL, a fork never copies it locked.
//!
//! After `os.fork()` the child's copy of the object controls the same vpoll fd: the
//! backend notices that the child does not own the FUSE server (it stays in the parent)
//! and writes the control word to the fd instead, which the parent's server applies.

use crate::error::{closed, invalid, vpoll_error};
use greenfd_vpoll::{Backend, Builder, Events, FuseRoute, Op, VpollFd};
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Converts a Python int of any size to [`Events`], refusing bits outside the six vpoll
/// bits with `InvalidArgument` (a non-int raises `TypeError`).
pub(crate) fn events_arg(value: &Bound<'_, PyAny>) -> PyResult<Events> {
    let bits = match value.extract::<i64>() {
        Ok(v) => u32::try_from(v).ok().and_then(Events::from_bits),
        Err(e) if e.is_instance_of::<PyOverflowError>(value.py()) => None,
        Err(e) => return Err(e),
    };
    bits.ok_or_else(|| {
        invalid(format!(
            "events {value} has bits outside IN|PRI|OUT|ERR|HUP|RDHUP ({:#x})",
            Events::all().bits()
        ))
    })
}

/// A file descriptor whose readiness is set by hand (a vpoll fd).
///
/// `Vpoll(events=0, backend=None, *, fuse_route=None)` creates one with `events` set.
/// `backend` is one of "kernel", "device", "fuse", "emulated", or None for the best
/// available one (or the one `GREENFD_VPOLL_BACKEND` forces). `fuse_route` ("direct",
/// "userns", "fusermount") forces how the fuse backend mounts its filesystem, as
/// `GREENFD_VPOLL_FUSE_ROUTE` does; it does not choose the backend. Register `fileno()` with `select.epoll`,
/// `select.poll`, `select.select`, `selectors`, asyncio's `add_reader`, trio's
/// `wait_readable` or eventlet's `trampoline`; `add`, `delete` and `set` change what they
/// report. Errors are `OSError` with an errno; bad arguments raise
/// `greenfd.InvalidArgument` (`OSError` with `EINVAL` and `ValueError`).
#[pyclass(module = "greenfd", name = "Vpoll", frozen)]
pub(crate) struct Vpoll {
    /// The fd while open; `None` after `close()`.
    fd: Mutex<Option<Arc<VpollFd>>>,
    /// The backend serving the fd.
    backend: Backend,
}

impl Vpoll {
    /// The open-fd slot (a poisoned lock still holds a valid `Option`).
    fn slot(&self) -> MutexGuard<'_, Option<Arc<VpollFd>>> {
        self.fd.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The open fd, or the `ValueError` of a closed object.
    fn open_fd(&self) -> PyResult<Arc<VpollFd>> {
        self.slot().clone().ok_or_else(|| closed("Vpoll"))
    }

    /// Applies `op` with `events`, without the GIL.
    fn ctl(&self, op: Op, arg: &Bound<'_, PyAny>) -> PyResult<()> {
        let events = events_arg(arg)?;
        let fd = self.open_fd()?;
        arg.py()
            .detach(move || fd.ctl(op, events))
            .map_err(vpoll_error)
    }
}

#[pymethods]
impl Vpoll {
    /// Creates a vpoll fd with `events` set, served by `backend` (None: the best one).
    #[new]
    #[pyo3(
        signature = (events = None, backend = None, *, fuse_route = None),
        text_signature = "(events=0, backend=None, *, fuse_route=None)"
    )]
    fn new(
        py: Python<'_>,
        events: Option<&Bound<'_, PyAny>>,
        backend: Option<&str>,
        fuse_route: Option<&str>,
    ) -> PyResult<Self> {
        let events = match events {
            Some(e) => events_arg(e)?,
            None => Events::empty(),
        };
        let mut builder = Builder::new().events(events);
        if let Some(name) = backend {
            let backend: Backend = name.parse().map_err(vpoll_error)?;
            builder = builder.backend(backend);
        }
        if let Some(name) = fuse_route {
            let route: FuseRoute = name.parse().map_err(vpoll_error)?;
            builder = builder.fuse_route(route);
        }
        // Creation may mount the process's FUSE filesystem: no GIL meanwhile.
        let fd = py.detach(move || builder.build()).map_err(vpoll_error)?;
        Ok(Vpoll {
            backend: fd.backend(),
            fd: Mutex::new(Some(Arc::new(fd))),
        })
    }

    /// The descriptor number, for select, poll, epoll and event loops.
    fn fileno(&self) -> PyResult<RawFd> {
        Ok(self.open_fd()?.as_raw_fd())
    }

    /// Sets `events` in addition to those already set.
    fn add(&self, events: &Bound<'_, PyAny>) -> PyResult<()> {
        self.ctl(Op::Add, events)
    }

    /// Clears `events`.
    fn delete(&self, events: &Bound<'_, PyAny>) -> PyResult<()> {
        self.ctl(Op::Del, events)
    }

    /// Replaces the whole mask with `events`.
    fn set(&self, events: &Bound<'_, PyAny>) -> PyResult<()> {
        self.ctl(Op::Set, events)
    }

    /// The events poll(2) reports for the fd now, as an int of EPOLL* bits.
    fn events(&self, py: Python<'_>) -> PyResult<u32> {
        let fd = self.open_fd()?;
        let events = py.detach(move || fd.events()).map_err(vpoll_error)?;
        Ok(events.bits())
    }

    /// The backend serving this fd: "kernel", "device", "fuse" or "emulated".
    #[getter]
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    /// How the fuse backend's filesystem serving this fd was mounted ("direct", "userns",
    /// "fusermount"); None for other backends.
    #[getter]
    fn fuse_route(&self) -> PyResult<Option<&'static str>> {
        Ok(self.open_fd()?.fuse_route().map(FuseRoute::name))
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.slot().is_none()
    }

    /// Closes the fd (again: no effect). An error of close(2) is raised as OSError.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let Some(fd) = self.slot().take() else {
            return Ok(());
        };
        match Arc::try_unwrap(fd) {
            Ok(fd) => py.detach(move || fd.close()).map_err(vpoll_error),
            // An operation in another thread still uses it: it closes when that ends.
            Err(shared) => {
                drop(shared);
                Ok(())
            }
        }
    }

    /// Returns self; the `with` block closes it.
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the fd at the end of a `with` block; exceptions propagate.
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    /// `<greenfd.Vpoll fd=N backend='...'>`, or `closed` instead of the fd.
    fn __repr__(&self) -> String {
        match self.slot().as_ref() {
            Some(fd) => format!(
                "<greenfd.Vpoll fd={} backend='{}'>",
                fd.as_raw_fd(),
                self.backend.name()
            ),
            None => format!("<greenfd.Vpoll closed backend='{}'>", self.backend.name()),
        }
    }
}

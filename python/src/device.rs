//! `greenfd.TapDevice` and `greenfd.TunDevice`: non-blocking packet devices.
//!
//! The device is created by greenfd-rt's constructor (which owns the `TUNSETIFF` code),
//! and this object keeps a duplicate of its descriptor: the duplicate names the same
//! open file, so it stays bound to the interface and non-blocking after greenfd-rt's
//! wrapper is dropped (which also drops its registration with greenfd's reactor, so no
//! epoll instance of greenfd's follows the device's traffic; no thread is started). Python then waits
//! with its own event loop (selectors, asyncio, trio, eventlet) and calls `recv`/`send`,
//! which never block: `EAGAIN` is raised as `BlockingIOError`.

use crate::error::{closed, invalid, io_error, os_error};
use greenfd_rt::DeviceError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Largest `bufsize` accepted by `recv` (a TAP frame is at most 64 KiB plus headers).
const MAX_RECV: usize = 1 << 20;
/// Default `bufsize` of `recv`: the largest frame a TUN/TAP device can deliver.
pub(crate) const DEFAULT_RECV: usize = 65_536 + 64;

/// Which kind of device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Layer 3: IP packets.
    Tun,
    /// Layer 2: Ethernet frames.
    Tap,
}

/// The body shared by both Python classes.
#[derive(Debug)]
pub(crate) struct Device {
    /// The queue descriptor (non-blocking) while open; `None` after `close()`.
    fd: Mutex<Option<Arc<OwnedFd>>>,
    /// The interface name the kernel assigned.
    name: String,
    /// Whether it was opened as one queue of a multi-queue interface.
    multi_queue: bool,
    /// For messages: "TapDevice" or "TunDevice".
    class: &'static str,
}

/// Maps a device-creation error to the exception Python users expect.
fn creation_error(e: DeviceError) -> PyErr {
    match &e {
        DeviceError::InvalidName(_) => invalid(e.to_string()),
        DeviceError::Open(source)
        | DeviceError::Create { source, .. }
        | DeviceError::Io { source, .. } => match source.raw_os_error() {
            Some(errno) => os_error(errno, e.to_string()),
            None => io_error("cannot create device", source),
        },
        DeviceError::Vanished(_) => os_error(libc::EBADFD, e.to_string()),
    }
}

impl Device {
    /// Creates (or attaches to) interface `name` of `kind`.
    fn open(py: Python<'_>, kind: Kind, name: &str, multi_queue: bool) -> PyResult<Device> {
        let class = match kind {
            Kind::Tun => "TunDevice",
            Kind::Tap => "TapDevice",
        };
        let opened = py.detach(|| match (kind, multi_queue) {
            (Kind::Tap, false) => greenfd_rt::TapDevice::new(name).map(|d| dup_named(&d, d.name())),
            (Kind::Tap, true) => {
                greenfd_rt::TapDevice::new_multi_queue(name).map(|d| dup_named(&d, d.name()))
            }
            (Kind::Tun, false) => greenfd_rt::TunDevice::new(name).map(|d| dup_named(&d, d.name())),
            (Kind::Tun, true) => {
                greenfd_rt::TunDevice::new_multi_queue(name).map(|d| dup_named(&d, d.name()))
            }
        });
        let (fd, name) = opened.map_err(creation_error)?;
        let fd =
            fd.map_err(|e| io_error(&format!("device {name:?}: cannot duplicate its fd"), &e))?;
        Ok(Device {
            fd: Mutex::new(Some(Arc::new(fd))),
            name,
            multi_queue,
            class,
        })
    }

    /// The open-fd slot (a poisoned lock still holds a valid `Option`).
    fn slot(&self) -> MutexGuard<'_, Option<Arc<OwnedFd>>> {
        self.fd.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The open fd, or the `ValueError` of a closed device.
    fn open_fd(&self) -> PyResult<Arc<OwnedFd>> {
        self.slot().clone().ok_or_else(|| closed(self.class))
    }

    /// The exception for a failed read or write.
    fn io_failure(&self, errno: rustix::io::Errno) -> PyErr {
        let code = errno.raw_os_error();
        if code == libc::EBADFD {
            os_error(
                code,
                format!(
                    "device {:?} vanished (the interface was deleted)",
                    self.name
                ),
            )
        } else {
            os_error(
                code,
                format!("device {:?}: {}", self.name, std::io::Error::from(errno)),
            )
        }
    }

    /// The descriptor number.
    pub(crate) fn fileno(&self) -> PyResult<RawFd> {
        Ok(self.open_fd()?.as_raw_fd())
    }

    /// The interface name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is one queue of a multi-queue interface.
    pub(crate) fn multi_queue(&self) -> bool {
        self.multi_queue
    }

    /// Whether `close()` was called.
    pub(crate) fn closed(&self) -> bool {
        self.slot().is_none()
    }

    /// Reads one packet of at most `bufsize` bytes; `BlockingIOError` if none is queued.
    pub(crate) fn recv<'py>(&self, py: Python<'py>, bufsize: i64) -> PyResult<Bound<'py, PyBytes>> {
        let size = usize::try_from(bufsize)
            .ok()
            .filter(|n| (1..=MAX_RECV).contains(n))
            .ok_or_else(|| invalid(format!("bufsize {bufsize} is not in 1..={MAX_RECV}")))?;
        let fd = self.open_fd()?;
        let mut buf = vec![0u8; size];
        let read = py.detach(|| retry(|| rustix::io::read(fd.as_fd(), &mut buf[..])));
        let n = read.map_err(|e| self.io_failure(e))?;
        Ok(PyBytes::new(py, &buf[..n]))
    }

    /// Writes one packet; `BlockingIOError` if the device's queue is full.
    pub(crate) fn send(&self, py: Python<'_>, packet: &[u8]) -> PyResult<usize> {
        let fd = self.open_fd()?;
        py.detach(|| retry(|| rustix::io::write(fd.as_fd(), packet)))
            .map_err(|e| self.io_failure(e))
    }

    /// Closes the descriptor (again: no effect).
    pub(crate) fn close(&self, py: Python<'_>) -> PyResult<()> {
        let Some(fd) = self.slot().take() else {
            return Ok(());
        };
        if let Ok(fd) = Arc::try_unwrap(fd) {
            // close(2) of a TUN/TAP fd may detach the interface: no GIL meanwhile.
            // Its error is unreportable in a useful way (the fd is gone either way).
            py.detach(move || drop(fd));
        }
        Ok(())
    }

    /// `<greenfd.TapDevice name='tap0' fd=5>`.
    pub(crate) fn repr(&self) -> String {
        match self.slot().as_ref() {
            Some(fd) => format!(
                "<greenfd.{} name={:?} fd={}>",
                self.class,
                self.name,
                fd.as_raw_fd()
            ),
            None => format!("<greenfd.{} name={:?} closed>", self.class, self.name),
        }
    }
}

/// A duplicate of `dev`'s descriptor (the same open file) and the device's name.
fn dup_named(dev: &impl AsFd, name: &str) -> (std::io::Result<OwnedFd>, String) {
    (dev.as_fd().try_clone_to_owned(), name.to_owned())
}

/// Runs a system call again while a signal interrupts it: Python's own signal handlers
/// run once the call returns to the interpreter.
fn retry<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match call() {
            Err(rustix::io::Errno::INTR) => continue,
            result => return result,
        }
    }
}

/// Defines one Python device class over [`Device`].
macro_rules! device_class {
    ($(#[$doc:meta])* $ty:ident, $kind:expr) => {
        $(#[$doc])*
        #[pyclass(module = "greenfd._greenfd", subclass, frozen)]
        #[derive(Debug)]
        pub(crate) struct $ty {
            /// The device.
            dev: Device,
        }

        #[pymethods]
        impl $ty {
            /// Creates (or attaches to) the interface `name`; needs CAP_NET_ADMIN.
            #[new]
            #[pyo3(signature = (name, multi_queue = false))]
            fn new(py: Python<'_>, name: &str, multi_queue: bool) -> PyResult<Self> {
                Ok(Self { dev: Device::open(py, $kind, name, multi_queue)? })
            }

            /// The descriptor number (non-blocking), for select, poll and event loops.
            fn fileno(&self) -> PyResult<RawFd> {
                self.dev.fileno()
            }

            /// The interface name the kernel assigned.
            #[getter]
            fn name(&self) -> &str {
                self.dev.name()
            }

            /// Whether this fd is one queue of a multi-queue interface.
            #[getter]
            fn multi_queue(&self) -> bool {
                self.dev.multi_queue()
            }

            /// Whether `close()` was called.
            #[getter]
            fn closed(&self) -> bool {
                self.dev.closed()
            }

            /// Reads one packet (at most `bufsize` bytes); raises BlockingIOError if none is queued.
            #[pyo3(signature = (bufsize = DEFAULT_RECV as i64), text_signature = "(self, /, bufsize=65600)")]
            fn recv<'py>(&self, py: Python<'py>, bufsize: i64) -> PyResult<Bound<'py, PyBytes>> {
                self.dev.recv(py, bufsize)
            }

            /// Writes one packet; returns its length; raises BlockingIOError if the queue is full.
            fn send(&self, py: Python<'_>, packet: &[u8]) -> PyResult<usize> {
                self.dev.send(py, packet)
            }

            /// Closes the descriptor (again: no effect).
            fn close(&self, py: Python<'_>) -> PyResult<()> {
                self.dev.close(py)
            }

            /// Returns self; the `with` block closes it.
            fn __enter__(slf: Py<Self>) -> Py<Self> {
                slf
            }

            /// Closes the device at the end of a `with` block; exceptions propagate.
            #[pyo3(signature = (*_exc))]
            fn __exit__(
                &self,
                py: Python<'_>,
                _exc: &Bound<'_, pyo3::types::PyTuple>,
            ) -> PyResult<bool> {
                self.dev.close(py)?;
                Ok(false)
            }

            /// `<greenfd.TapDevice name='tap0' fd=5>`.
            fn __repr__(&self) -> String {
                self.dev.repr()
            }
        }
    };
}

device_class!(
    /// A TAP device (Ethernet frames), non-blocking; the package's `greenfd.TapDevice`
    /// adds asyncio helpers.
    TapDevice,
    Kind::Tap
);
device_class!(
    /// A TUN device (IP packets), non-blocking; the package's `greenfd.TunDevice` adds
    /// asyncio helpers.
    TunDevice,
    Kind::Tun
);

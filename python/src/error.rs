//! How Rust errors become Python exceptions.
//!
//! Every failure of a system call or of an argument check is an `OSError` carrying the
//! errno the C library would report, so `except OSError as e: e.errno` works as with
//! `os.read`. Python maps the errno to its subclass when the exception is built
//! (`EAGAIN` becomes `BlockingIOError`, `EPERM` `PermissionError`, ...). Bad arguments
//! raise `greenfd.InvalidArgument`, which is both an `OSError` (errno `EINVAL`) and a
//! `ValueError`, as `io.UnsupportedOperation` is both an `OSError` and a `ValueError`.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use std::io;

/// The `greenfd.InvalidArgument` class, made once per interpreter.
static INVALID_ARGUMENT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Docstring of `greenfd.InvalidArgument`.
const INVALID_ARGUMENT_DOC: &str =
    "A bad argument: an OSError with errno EINVAL that is also a ValueError.";

/// The `greenfd.InvalidArgument` type: `class InvalidArgument(OSError, ValueError)`.
pub(crate) fn invalid_argument_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    let ty = INVALID_ARGUMENT.get_or_try_init(py, || -> PyResult<Py<PyType>> {
        let bases = (py.get_type::<PyOSError>(), py.get_type::<PyValueError>());
        let namespace = PyDict::new(py);
        namespace.set_item("__module__", "greenfd")?;
        namespace.set_item("__doc__", INVALID_ARGUMENT_DOC)?;
        let ty = py
            .get_type::<PyType>()
            .call1(("InvalidArgument", bases, namespace))?;
        Ok(ty.cast_into::<PyType>()?.unbind())
    })?;
    Ok(ty.bind(py))
}

/// A `greenfd.InvalidArgument` (errno `EINVAL`) with `message`.
pub(crate) fn invalid(message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| match invalid_argument_type(py) {
        Ok(ty) => PyErr::from_type(ty.clone(), (libc::EINVAL, message)),
        Err(e) => e,
    })
}

/// An `OSError` (or the subclass Python picks for `errno`) with `message`.
pub(crate) fn os_error(errno: i32, message: impl Into<String>) -> PyErr {
    PyOSError::new_err((errno, message.into()))
}

/// An `OSError` from an `io::Error`, keeping its errno and adding `context`.
pub(crate) fn io_error(context: &str, e: &io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(errno) => os_error(errno, format!("{context}: {e}")),
        None => PyOSError::new_err(format!("{context}: {e}")),
    }
}

/// The exception for a vpoll error.
pub(crate) fn vpoll_error(e: greenfd_vpoll::Error) -> PyErr {
    use greenfd_vpoll::Error;
    match &e {
        Error::Invalid(_) | Error::UnknownBackend(_) | Error::UnknownRoute(_) => {
            invalid(e.to_string())
        }
        _ => os_error(e.raw_os_error(), e.to_string()),
    }
}

/// The `ValueError` for an operation on a closed object, worded as Python's files word it.
pub(crate) fn closed(what: &str) -> PyErr {
    PyValueError::new_err(format!("I/O operation on closed {what}"))
}

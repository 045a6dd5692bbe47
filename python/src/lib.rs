//! The extension module `greenfd._greenfd` behind the Python package `greenfd`.
//!
//! - [`Vpoll`](vpoll::Vpoll): a vpoll fd (greenfd-vpoll) whose readiness Python sets by
//!   hand, exact through `select.epoll`, `select.poll` and `select.select`.
//! - `probe()`: the vpoll backends available here and why the others are not.
//! - `TapDevice`/`TunDevice`: non-blocking packet devices (greenfd-rt's constructor);
//!   the Python package adds coroutine helpers for asyncio on top.
//!
//! Every call that may wait on the kernel (a FUSE round trip, a device read) runs with
//! the GIL released. The package's Python part (`greenfd/__init__.py`) re-exports these.

#![forbid(unsafe_code)]

mod device;
mod error;
mod probe;
mod vpoll;

use greenfd_vpoll::Events;
use pyo3::prelude::*;

/// Synthetic-event file descriptors (vpoll) and non-blocking TUN/TAP devices.
#[pymodule]
fn _greenfd(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<vpoll::Vpoll>()?;
    m.add_class::<probe::Availability>()?;
    m.add_class::<device::TapDevice>()?;
    m.add_class::<device::TunDevice>()?;
    m.add_function(wrap_pyfunction!(probe::probe, m)?)?;
    m.add(
        "InvalidArgument",
        error::invalid_argument_type(m.py())?.clone(),
    )?;
    for (name, bits) in [
        ("IN", Events::IN),
        ("PRI", Events::PRI),
        ("OUT", Events::OUT),
        ("ERR", Events::ERR),
        ("HUP", Events::HUP),
        ("RDHUP", Events::RDHUP),
    ] {
        m.add(name, bits.bits())?;
    }
    m.add("ALL_EVENTS", Events::all().bits())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

//! The Device backend: `/dev/vpoll`, from the vpoll kernel module.
//!
//! Each `open` of the device is a new vpoll fd; `ioctl(fd, _IO('^', op), events)`
//! changes its mask (op 1 ADD, 2 DEL, 3 SET) and `poll` reports it exactly. An fd is
//! ours when it is a character device with the same device number as `/dev/vpoll`.

use super::{close_checked, poll_now, retry, unavailable};
use crate::{Backend, Error, Events, Op, Result};
use rustix::fs::{FileType, Mode, OFlags, open, stat};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

const THIS: Backend = Backend::Device;

/// Where the vpoll module's device node lives.
const PATH: &str = "/dev/vpoll";

/// The ioctl magic of the vpoll module (`_IO('^', op)`).
const MAGIC: u8 = b'^';

/// The probe's outcome, computed once: the device's number if it opens.
static PROBE: OnceLock<std::result::Result<u64, String>> = OnceLock::new();

/// `_IO(MAGIC, op)`: no direction, no size, so just type and number.
fn request(op: Op) -> libc::c_ulong {
    (libc::c_ulong::from(MAGIC) << 8) | op as libc::c_ulong
}

pub(crate) fn probe() -> Result<()> {
    rdev().map(drop)
}

/// The device number of `/dev/vpoll`, if the device exists and opens.
fn rdev() -> Result<u64> {
    PROBE
        .get_or_init(|| {
            let st = stat(PATH).map_err(|e| format!("{PATH}: {e}"))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::CharacterDevice {
                return Err(format!("{PATH} is not a character device"));
            }
            retry(|| open(PATH, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()))
                .map_err(|e| format!("cannot open {PATH}: {e}"))?;
            Ok(st.st_rdev)
        })
        .clone()
        .map_err(|why| unavailable(THIS, why))
}

pub(crate) fn create(init: Events, cloexec: bool) -> Result<OwnedFd> {
    probe()?;
    let mut flags = OFlags::RDWR;
    if cloexec {
        flags |= OFlags::CLOEXEC;
    }
    let fd = retry(|| open(PATH, flags, Mode::empty()))?;
    if !init.is_empty() {
        ctl(std::os::fd::AsFd::as_fd(&fd), Op::Set, init)?;
    }
    tracing::trace!(fd = fd.as_raw_fd(), ?init, "device vpoll create");
    Ok(fd)
}

/// Whether a file with `fstat` result `st` is a `/dev/vpoll` fd.
pub(crate) fn owns_stat(st: &rustix::fs::Stat) -> bool {
    let Some(Ok(dev)) = PROBE.get() else {
        return false;
    };
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == *dev
}

pub(crate) fn ctl(fd: BorrowedFd<'_>, op: Op, events: Events) -> Result<()> {
    loop {
        // SAFETY: the vpoll ioctls take the event mask by value, not a pointer, so the
        // kernel reads no memory of ours; an fd of another kind rejects the request.
        let r = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                request(op) as _,
                libc::c_ulong::from(events.bits()),
            )
        };
        if r >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(Error::Io(e));
        }
    }
}

pub(crate) fn events(fd: BorrowedFd<'_>) -> Result<Events> {
    poll_now(fd)
}

pub(crate) fn close(fd: OwnedFd) -> Result<()> {
    close_checked(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_module() {
        // _IO('^', 1) == 0x5e01 as in the vpoll module's header.
        assert_eq!(request(Op::Add), 0x5e01);
        assert_eq!(request(Op::Del), 0x5e02);
        assert_eq!(request(Op::Set), 0x5e03);
    }
}

//! TUN (IP packets) and TAP (Ethernet frames) devices with async packet IO.
//!
//! A device is an fd on `/dev/net/tun` bound to an interface with `TUNSETIFF`
//! (`IFF_NO_PI`: packets carry no extra header; optionally `IFF_MULTI_QUEUE`, so
//! several fds — queues — serve one interface). Each `recv` returns one packet and each
//! `send` writes one. When the interface is deleted under us the kernel answers
//! `EBADFD`, which becomes [`DeviceError::Vanished`]: only the task serving that device
//! sees an error.

use crate::async_fd::{Async, sys_read, sys_write};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// `TUNSETIFF` = `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// Layer-3 device.
const IFF_TUN: libc::c_short = 0x0001;
/// Layer-2 device.
const IFF_TAP: libc::c_short = 0x0002;
/// No packet-information header.
const IFF_NO_PI: libc::c_short = 0x1000;
/// Several queues (fds) per interface.
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
/// Interface names are at most 15 bytes plus NUL.
const IFNAMSIZ: usize = 16;

/// `struct ifreq` as `TUNSETIFF` reads it: the name and the flags, padded to 40 bytes.
#[repr(C)]
struct IfReq {
    /// NUL-terminated interface name (empty: the kernel picks one).
    name: [u8; IFNAMSIZ],
    /// `IFF_*` flags.
    flags: libc::c_short,
    /// The rest of the kernel's union.
    _pad: [u8; 22],
}

/// The Internet checksum (RFC 1071) that IPv4, ICMP and UDP headers carry: the
/// ones'-complement of the ones'-complement sum of `data`'s big-endian 16-bit words (an
/// odd last byte padded with zero). Computed over a header whose checksum field holds
/// the sum, it is 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Errors of TUN and TAP devices.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The name does not fit `IFNAMSIZ` or contains NUL.
    #[error("invalid interface name {0:?} (1 to 15 bytes, no NUL)")]
    InvalidName(String),
    /// `/dev/net/tun` cannot be opened (missing module, no permission).
    #[error("cannot open /dev/net/tun: {0}")]
    Open(#[source] io::Error),
    /// `TUNSETIFF` failed (name in use with other flags, not permitted, ...).
    #[error("cannot create device {name:?}: {source}")]
    Create {
        /// The requested name.
        name: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The interface was deleted while the fd was open.
    #[error("device {0:?} vanished (the interface was deleted)")]
    Vanished(String),
    /// Another IO error.
    #[error("device {name:?}: {source}")]
    Io {
        /// The device.
        name: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl From<DeviceError> for io::Error {
    fn from(e: DeviceError) -> io::Error {
        let kind = match &e {
            DeviceError::InvalidName(_) => io::ErrorKind::InvalidInput,
            DeviceError::Vanished(_) => io::ErrorKind::NotConnected,
            DeviceError::Open(s)
            | DeviceError::Create { source: s, .. }
            | DeviceError::Io { source: s, .. } => s.kind(),
        };
        io::Error::new(kind, e)
    }
}

/// The shared body of [`TunDevice`] and [`TapDevice`].
#[derive(Debug)]
struct Device {
    /// The queue fd, cooperative.
    io: Async<OwnedFd>,
    /// The interface name the kernel assigned.
    name: String,
}

impl Device {
    /// Opens `/dev/net/tun` and binds it to interface `name` with `kind` flags.
    fn open(name: &str, kind: libc::c_short, multi_queue: bool) -> Result<Device, DeviceError> {
        if name.len() >= IFNAMSIZ || name.as_bytes().contains(&0) {
            return Err(DeviceError::InvalidName(name.to_owned()));
        }
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            "/dev/net/tun",
            OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| DeviceError::Open(e.into()))?;
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            flags: kind | IFF_NO_PI | if multi_queue { IFF_MULTI_QUEUE } else { 0 },
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        tracing::trace!(
            fd = fd.as_raw_fd(),
            name,
            flags = req.flags,
            "ioctl TUNSETIFF"
        );
        // SAFETY: `fd` is an open /dev/net/tun fd and `req` is a live, properly laid out
        // `struct ifreq` the kernel reads and writes (the assigned name) during the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
        if rc < 0 {
            return Err(DeviceError::Create {
                name: name.to_owned(),
                source: io::Error::last_os_error(),
            });
        }
        let len = req.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        let name = String::from_utf8_lossy(&req.name[..len]).into_owned();
        let io = Async::new(fd).map_err(|source| DeviceError::Io {
            name: name.clone(),
            source,
        })?;
        Ok(Device { io, name })
    }

    /// Maps a syscall error, recognising a deleted interface.
    fn error(&self, e: io::Error) -> DeviceError {
        if e.raw_os_error() == Some(libc::EBADFD) {
            DeviceError::Vanished(self.name.clone())
        } else {
            DeviceError::Io {
                name: self.name.clone(),
                source: e,
            }
        }
    }

    /// Receives one packet into `buf`; returns its length.
    async fn recv(&self, buf: &mut [u8]) -> Result<usize, DeviceError> {
        self.io
            .read_with(|fd| sys_read(fd.as_fd(), &mut *buf))
            .await
            .map_err(|e| self.error(e))
    }

    /// Sends one packet.
    async fn send(&self, packet: &[u8]) -> Result<usize, DeviceError> {
        self.io
            .write_with(|fd| sys_write(fd.as_fd(), packet))
            .await
            .map_err(|e| self.error(e))
    }
}

macro_rules! device_type {
    ($(#[$doc:meta])* $ty:ident, $flag:expr, $unit:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $ty {
            /// The device.
            dev: Device,
        }

        impl $ty {
            #[doc = concat!("Creates (or attaches to) the interface `name`; needs `CAP_NET_ADMIN`. An empty name lets the kernel choose.")]
            pub fn new(name: &str) -> Result<$ty, DeviceError> {
                Ok($ty { dev: Device::open(name, $flag, false)? })
            }

            /// Opens one queue of a multi-queue interface (call again for more queues).
            pub fn new_multi_queue(name: &str) -> Result<$ty, DeviceError> {
                Ok($ty { dev: Device::open(name, $flag, true)? })
            }

            /// The interface name.
            pub fn name(&self) -> &str {
                &self.dev.name
            }

            #[doc = concat!("Receives one ", $unit, " into `buf`, parking until one arrives.")]
            pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, DeviceError> {
                self.dev.recv(buf).await
            }

            #[doc = concat!("Sends one ", $unit, ".")]
            pub async fn send(&self, packet: &[u8]) -> Result<usize, DeviceError> {
                self.dev.send(packet).await
            }
        }

        impl AsFd for $ty {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.dev.io.as_fd()
            }
        }
    };
}

device_type!(
    /// A TUN device: reads and writes IP packets.
    TunDevice,
    IFF_TUN,
    "IP packet"
);
device_type!(
    /// A TAP device: reads and writes Ethernet frames.
    TapDevice,
    IFF_TAP,
    "Ethernet frame"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internet_checksum_matches_rfc_1071_and_verifies_to_zero() {
        // RFC 1071 section 3's example: the words sum to 0x2ddf0, folded 0xddf2.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // An odd last byte counts as the high byte of a word.
        assert_eq!(internet_checksum(&[0x01]), !0x0100);
        // An IPv4 header (192.168.0.1 -> 192.168.0.199, UDP) with its checksum field
        // zeroed; filled in, the header verifies to zero.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let sum = internet_checksum(&header);
        assert_eq!(sum, 0xb861);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(internet_checksum(&header), 0);
    }
}

//! The Emulated backend: a Unix stream socketpair whose private peer end carries the state.
//!
//! The user holds one end (the *vpoll end*); this process keeps the other (the
//! *peer*) in the [`registry`](super::registry), found from the vpoll fd's number and
//! verified by its socket cookie. Every bit of state lives in the kernel's socket objects,
//! never in a per-process copy, so operations are idempotent and a forked child that
//! inherited both descriptors can control the fd and the parent sees the result.
//!
//! | bit | how it is produced | what poll(2) sees |
//! |---|---|---|
//! | IN | one byte from the peer per ADD; DEL drains the vpoll end's queue | IN, exact |
//! | OUT | DEL puts one buffer in flight from the vpoll end (whose send buffer is minimal); ADD reads it at the peer | OUT, exact |
//! | PRI | an out-of-band byte from the peer (`MSG_OOB`, kept at the head of the queue) | PRI\|IN |
//! | RDHUP | `shutdown(peer, SHUT_WR)`; cannot be cleared | RDHUP\|IN |
//! | HUP | `shutdown(peer, SHUT_RDWR)`; cannot be cleared | HUP\|IN\|RDHUP |
//! | ERR | not representable: ADD ERR fails with [`Error::Invalid`] | — |
//!
//! So IN is *visible* whenever PRI, RDHUP or HUP is set, whatever ADD/DEL IN did; DEL IN
//! still clears the IN the caller added, which shows once PRI is cleared. Requests the
//! socket cannot represent fail with [`Error::Invalid`] (EINVAL) and change nothing:
//! ADD ERR, clearing RDHUP or HUP once set, ADD PRI after RDHUP/HUP, and clearing OUT
//! after HUP (the vpoll end can no longer send to fill its buffer). One deviation is
//! silent: after RDHUP/HUP a plain DEL IN (the one-`recv` hot path, which cannot know
//! the state) also clears a pending PRI, because the hung-up peer cannot send the
//! urgent byte again; every other request leaves PRI alone after a hang-up. Nothing ever raises
//! SIGPIPE: every send uses `MSG_NOSIGNAL`, and every other failed syscall is returned.
//!
//! The hot path (ADD IN → wait → DEL IN) is one `send` and one `recv`, the same
//! syscalls as a bare socketpair, plus a lock-free table lookup. The lookup trusts the
//! descriptor number (a `VpollFd` owns its fd; `ctl_fd` verifies it by cookie first), and
//! the peer's number is trusted too: a program that closes descriptors it does not own
//! by number (closefrom in a forked child while keeping the vpoll fd) breaks it.
//!
//! A `dup` of a vpoll fd is found by its cookie and works like the original; closing the
//! original (through this crate) closes the peer, so the dup then shows HUP|IN|RDHUP
//! (plus OUT|ERR if OUT was clear: the peer died with the fill unread). Across `exec`
//! the peer is not inherited: the new program can wait on the fd, and sees the same
//! hang-up once every process holding the peer has closed it or exited.
//!
//! Concurrent operations on one fd from several threads or processes are each safe for
//! IN and OUT (the kernel serialises the sends and receives); PRI interleaved with
//! concurrent IN changes may leave IN set spuriously until the next DEL IN.
//!
//! PRI detail: the vpoll end gets `SO_OOBINLINE` with its first PRI, so the urgent byte
//! sits in the data stream and a read that reaches it clears PRI. ADD PRI first moves
//! any queued IN byte behind the urgent byte, so the urgent byte is always first in the
//! queue; DEL IN reads the whole queue in one `recv`, and if it swallowed the urgent
//! byte, puts it back. (Without `SO_OOBINLINE`, a read that passes the mark drops PRI
//! silently, and a read before it stops short, leaving IN behind.)

use super::{close_checked, close_raw, poll_now, registry, retry, unavailable};
use crate::{Backend, Error, Events, Op, Result};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, Shutdown, SocketFlags, SocketType, recv, send, shutdown,
    socketpair, sockopt,
};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::OnceLock;

const THIS: Backend = Backend::Emulated;

/// The in-band byte one ADD IN queues.
const IN_BYTE: u8 = b'i';
/// The out-of-band byte that carries PRI.
const PRI_BYTE: u8 = b'p';
/// Room for one drain: the queue holds at most a few hundred bytes (IN bytes are capped
/// by the peer's send buffer, and EAGAIN means IN is already set).
const DRAIN: usize = 512;
/// Most bytes one send may put in flight to clear OUT (see `fill_len`).
const FILL: usize = 8192;

/// Flags of every send: never block, never SIGPIPE.
fn send_flags() -> SendFlags {
    SendFlags::DONTWAIT | SendFlags::NOSIGNAL
}

/// The probe's outcome, computed once (creation must stay cheap).
static PROBE: OnceLock<std::result::Result<(), String>> = OnceLock::new();

pub(crate) fn probe() -> Result<()> {
    // The backend needs only AF_UNIX stream socketpairs; check once that they work.
    PROBE
        .get_or_init(|| {
            new_pair(true)
                .map(drop)
                .map_err(|e| format!("socketpair(AF_UNIX, SOCK_STREAM) failed: {e}"))
        })
        .clone()
        .map_err(|why| unavailable(THIS, why))
}

/// A fresh socketpair: (vpoll end, peer).
fn new_pair(cloexec: bool) -> rustix::io::Result<(OwnedFd, OwnedFd)> {
    // The peer is private, so it never outlives an exec; the vpoll end follows `cloexec`.
    let (vpoll, peer) = retry(|| {
        socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
    })?;
    if !cloexec {
        rustix::io::fcntl_setfd(&vpoll, rustix::io::FdFlags::empty())?;
    }
    Ok((vpoll, peer))
}

/// Bytes that one send puts in flight to clear OUT: just over a quarter of the
/// (minimal) send buffer. A Unix socket is writable while four times the memory its
/// sent buffers hold is at most its send buffer size, and a buffer holds at least
/// its data, so this one send always makes the vpoll end unwritable; smaller is
/// cheaper to allocate. Measured once: the minimum depends only on the kernel.
fn fill_len(vpoll: BorrowedFd<'_>) -> Result<usize> {
    static FILL_LEN: OnceLock<usize> = OnceLock::new();
    if let Some(n) = FILL_LEN.get() {
        return Ok(*n);
    }
    let sndbuf = retry(|| sockopt::socket_send_buffer_size(vpoll))?;
    let n = sndbuf / 4 + 1;
    if n > FILL {
        // Only a kernel that ignores the minimal SO_SNDBUF could get here.
        return Err(Error::Io(Errno::NOBUFS.into()));
    }
    Ok(*FILL_LEN.get_or_init(|| n))
}

pub(crate) fn create(init: Events, cloexec: bool) -> Result<OwnedFd> {
    check(Events::empty(), Events::empty(), init)?;
    let (vpoll, peer) = new_pair(cloexec)?;
    // A minimal send buffer makes "not writable" one small send away.
    retry(|| sockopt::set_socket_send_buffer_size(&vpoll, 1))?;
    let id = registry::cookie(vpoll.as_fd())?;
    let peer_raw = peer.as_raw_fd();
    match registry::insert(vpoll.as_raw_fd(), id, peer_raw) {
        None => return Err(Error::Io(Errno::MFILE.into())),
        Some(Some(stale)) => {
            // The number's previous vpoll fd was closed with close(2), behind our back.
            // Its peer is leaked rather than closed: its number may have been closed and
            // reused too (closefrom in a child), and closing someone else's descriptor
            // is worse than a leak that correct callers (`close`, `close_fd`,
            // `vpoll_close`) never cause.
            tracing::debug!(
                fd = vpoll.as_raw_fd(),
                stale_peer = stale,
                "emulated: stale peer leaked"
            );
        }
        Some(None) => {}
    }
    // The table now owns the peer descriptor.
    let _ = peer.into_raw_fd();
    let pair = Pair {
        vpoll: vpoll.as_fd(),
        // SAFETY: `peer_raw` stays open while its record exists; it is ours.
        peer: unsafe { BorrowedFd::borrow_raw(peer_raw) },
    };
    // A new socket shows OUT only; SET the caller's mask from there.
    if let Err(e) = pair.change(Events::OUT, Events::all() - init, init) {
        let _ = close(vpoll);
        return Err(e);
    }
    tracing::trace!(
        fd = pair.vpoll.as_raw_fd(),
        peer = peer_raw,
        ?init,
        "emulated create"
    );
    Ok(vpoll)
}

/// Whether a registry record is an Emulated one (it has a peer).
fn is_ours(e: &registry::Entry) -> bool {
    e.peer >= 0
}

pub(crate) fn owns(fd: BorrowedFd<'_>) -> bool {
    registry::cookie(fd)
        .ok()
        .and_then(|id| registry::find(fd, id, is_ours))
        .is_some()
}

/// Whether `fd` is the Emulated fd the registry recorded under its number: one
/// `getsockopt(SO_COOKIE)` (EBADF for a closed number, ENOTSOCK for another kind of file).
pub(crate) fn verify(fd: BorrowedFd<'_>) -> rustix::io::Result<bool> {
    let Some(e) = registry::get(fd.as_raw_fd()).filter(is_ours) else {
        return Ok(false);
    };
    Ok(registry::cookie(fd)? == e.ino)
}

/// The vpoll end and its peer.
struct Pair<'a> {
    /// The descriptor the user polls.
    vpoll: BorrowedFd<'a>,
    /// The private end that produces IN, PRI, RDHUP and HUP and absorbs OUT.
    peer: BorrowedFd<'a>,
}

/// The pair of `fd`: by number (callers pass a `VpollFd`'s own fd or one that
/// `identify` just verified), else by cookie for a `dup` of a vpoll fd.
fn pair(fd: BorrowedFd<'_>) -> Result<Pair<'_>> {
    let entry = match registry::get(fd.as_raw_fd()).filter(is_ours) {
        Some(e) => e,
        None => {
            let id = registry::cookie(fd).map_err(|_| Error::NotVpoll)?;
            registry::find(fd, id, is_ours).ok_or(Error::NotVpoll)?
        }
    };
    Ok(Pair {
        vpoll: fd,
        // SAFETY: the peer stays open while its record exists, and the record lives as
        // long as the vpoll fd, which the caller borrows for this call.
        peer: unsafe { BorrowedFd::borrow_raw(entry.peer) },
    })
}

pub(crate) fn ctl(fd: BorrowedFd<'_>, op: Op, events: Events) -> Result<()> {
    let p = pair(fd)?;
    // The hot path needs no knowledge of the current state.
    match (op, events) {
        (Op::Add, Events::IN) => return p.add_in(),
        (Op::Del, Events::IN) => return p.del_in(),
        _ => {}
    }
    let (del, add) = match op {
        Op::Add => (Events::empty(), events),
        Op::Del => (events, Events::empty()),
        Op::Set => (Events::all() - events, events),
    };
    p.change(poll_now(p.vpoll)?, del, add)
}

pub(crate) fn events(fd: BorrowedFd<'_>) -> Result<Events> {
    poll_now(fd)
}

pub(crate) fn close(fd: OwnedFd) -> Result<()> {
    // Callers pass a `VpollFd`'s own fd or one `identify` verified, so the record under
    // this number is this fd's (a `dup` has none and leaves the peer to the original).
    let peer = registry::get(fd.as_raw_fd())
        .and_then(|e| registry::remove(fd.as_raw_fd(), e.ino))
        .map(|e| e.peer);
    let raw = fd.as_raw_fd();
    // Close the user's end first: a peer closed before it would flash HUP at watchers.
    let first = close_checked(fd);
    let second = match peer {
        Some(p) if p >= 0 => close_raw(p),
        _ => Ok(()),
    };
    tracing::trace!(fd = raw, ?peer, "emulated close");
    first.and(second)
}

/// Rejects, before anything changes, a request the socketpair cannot represent.
fn check(current: Events, del: Events, add: Events) -> Result<()> {
    let invalid = |why| Err(Error::Invalid(why));
    if add.contains(Events::ERR) {
        return invalid("the emulated vpoll backend cannot signal ERR");
    }
    if del.contains(Events::HUP) && current.contains(Events::HUP) {
        return invalid("the emulated vpoll backend cannot clear HUP");
    }
    // HUP implies RDHUP, so keeping HUP keeps RDHUP.
    if del.contains(Events::RDHUP) && current.contains(Events::RDHUP) && !add.contains(Events::HUP)
    {
        return invalid("the emulated vpoll backend cannot clear RDHUP");
    }
    let hung_up = current.intersects(Events::RDHUP | Events::HUP);
    if add.contains(Events::PRI) && hung_up && !current.contains(Events::PRI) {
        return invalid("the emulated vpoll backend cannot set PRI after RDHUP or HUP");
    }
    if del.contains(Events::OUT) && current.contains(Events::HUP | Events::OUT) {
        return invalid("the emulated vpoll backend cannot clear OUT after HUP");
    }
    Ok(())
}

impl Pair<'_> {
    /// Clears the bits in `del` and sets those in `add`, given the `current` visible
    /// mask: clearing before setting, hanging up last (after HUP the vpoll end can no
    /// longer send). Bits are handled one by one, not by diffing visible masks, because
    /// visible IN may come from PRI, RDHUP or HUP while the caller's IN is separate.
    fn change(&self, current: Events, del: Events, add: Events) -> Result<()> {
        check(current, del, add)?;
        if del.contains(Events::PRI) && current.contains(Events::PRI) {
            self.del_pri()?;
        }
        // After a hang-up IN shows for good, and a drain would take the urgent byte,
        // which a hung-up peer cannot send again: leave the queue alone.
        let hung_up = current.intersects(Events::RDHUP | Events::HUP);
        if del.contains(Events::IN) && current.contains(Events::IN) && !hung_up {
            self.del_in()?;
        }
        if del.contains(Events::OUT) && current.contains(Events::OUT) {
            self.del_out()?;
        }
        if add.contains(Events::OUT) && !current.contains(Events::OUT) {
            self.add_out()?;
        }
        if add.contains(Events::IN) {
            self.add_in()?;
        }
        if add.contains(Events::PRI) && !current.contains(Events::PRI) {
            self.add_pri()?;
        }
        if add.contains(Events::HUP) {
            self.shut(Shutdown::Both)?;
        } else if add.contains(Events::RDHUP) {
            self.shut(Shutdown::Write)?;
        }
        Ok(())
    }

    /// Queues one IN byte. A full queue (EAGAIN) already shows IN, and so does a peer
    /// shut for writing (EPIPE, RDHUP/HUP set): both count as success.
    fn add_in(&self) -> Result<()> {
        match retry(|| send(self.peer, &[IN_BYTE], send_flags())) {
            Ok(_) | Err(Errno::AGAIN) | Err(Errno::PIPE) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Drains the vpoll end's queue; restores PRI if the drain swallowed its byte.
    fn del_in(&self) -> Result<()> {
        let mut lost_pri = false;
        // Uninitialised: this is the hot path, and zeroing the buffer would show.
        let mut buf = [MaybeUninit::<u8>::uninit(); DRAIN];
        loop {
            // EINTR is retried here rather than through `retry`, whose closure could
            // not hand out the borrowed bytes.
            let got = loop {
                match recv(self.vpoll, &mut buf, RecvFlags::DONTWAIT) {
                    Ok(((data, _), _)) => break Ok((data.len(), data.contains(&PRI_BYTE))),
                    Err(Errno::INTR) => continue,
                    Err(e) => break Err(e),
                }
            };
            match got {
                Ok((n, pri)) => {
                    lost_pri |= pri;
                    if n < DRAIN {
                        break;
                    }
                }
                Err(Errno::AGAIN) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if lost_pri {
            match self.send_pri() {
                Ok(()) => {}
                // Hung up (RDHUP/HUP): the peer cannot send the urgent byte again, so
                // PRI is gone with the drain, as documented.
                Err(Errno::PIPE) => {
                    tracing::trace!(fd = ?self.vpoll, "emulated DEL IN after a hang-up cleared PRI");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Sets PRI: moves any queued IN behind a new urgent byte, so that byte comes first.
    fn add_pri(&self) -> Result<()> {
        // Set here, not at creation, to keep creation cheap; it is socket state, so it
        // holds for every process sharing the fd from now on.
        retry(|| sockopt::set_socket_oobinline(self.vpoll, true))?;
        let had_in = self.drain_vpoll()?.1;
        self.send_pri().map_err(|e| match e {
            Errno::PIPE => {
                Error::Invalid("the emulated vpoll backend cannot combine PRI with RDHUP or HUP")
            }
            Errno::OPNOTSUPP | Errno::INVAL => Error::Invalid(
                "the emulated vpoll backend cannot set PRI: this kernel lacks AF_UNIX MSG_OOB",
            ),
            e => e.into(),
        })?;
        if had_in {
            self.add_in()?;
        }
        Ok(())
    }

    /// Clears PRI: reads the urgent byte with whatever follows and puts back one IN
    /// byte if the caller's IN was set.
    fn del_pri(&self) -> Result<()> {
        let had_in = self.drain_vpoll()?.1;
        if had_in {
            self.add_in()?;
        }
        Ok(())
    }

    /// Sends the urgent byte.
    fn send_pri(&self) -> rustix::io::Result<()> {
        retry(|| send(self.peer, &[PRI_BYTE], send_flags() | SendFlags::OOB)).map(drop)
    }

    /// Reads the vpoll end's queue empty; returns whether it held the PRI byte and
    /// whether it held IN bytes.
    fn drain_vpoll(&self) -> Result<(bool, bool)> {
        let (mut pri, mut inb) = (false, false);
        loop {
            let mut buf = [0u8; DRAIN];
            match retry(|| recv(self.vpoll, &mut buf, RecvFlags::DONTWAIT)) {
                Ok((_, 0)) | Err(Errno::AGAIN) => return Ok((pri, inb)),
                Ok((n, _)) => {
                    pri |= buf[..n].contains(&PRI_BYTE);
                    inb |= buf[..n].contains(&IN_BYTE);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Clears OUT by putting one buffer in flight from the vpoll end (the peer never
    /// reads it, so the vpoll end stays unwritable).
    fn del_out(&self) -> Result<()> {
        /// What the fill carries: never read, so any bytes do; static, so no memset.
        static ZEROS: [u8; FILL] = [0; FILL];
        let n = fill_len(self.vpoll)?;
        match retry(|| send(self.vpoll, &ZEROS[..n], send_flags())) {
            // EAGAIN: the buffer is already full.
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(Errno::PIPE) => Err(Error::Invalid(
                "the emulated vpoll backend cannot clear OUT after HUP",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets OUT by reading at the peer what `del_out` sent, in one `recv`: a Unix
    /// stream `recv` takes every queued byte that fits, and `FILL` holds all fills the
    /// minimal send buffer admits. One call, not a loop to EAGAIN: a loop would also eat
    /// a fill that a concurrent DEL OUT (another process sharing the fd) queued after
    /// this ADD took effect, turning OUT back on behind its back.
    fn add_out(&self) -> Result<()> {
        let mut buf = [0u8; FILL];
        match retry(|| recv(self.peer, &mut buf, RecvFlags::DONTWAIT)) {
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Shuts the peer down, which the vpoll end sees as RDHUP (write) or HUP (both).
    fn shut(&self, how: Shutdown) -> Result<()> {
        Ok(retry(|| shutdown(self.peer, how))?)
    }
}

//! The connection table: a slab of slots with generations. A [`ConnId`] names one slot
//! at one generation, so an id kept after its connection closed never reaches the
//! connection that reuses the slot; lookups hand out `&mut Conn` directly.

use crate::error::DisconnectReason;
use crate::framing::ParseState;
use crate::handle::GEN_MASK;
use crate::outbuf::OutBuf;
use std::io;
use std::os::fd::OwnedFd;

/// Identifies one connection for its whole life; never reused while the engine runs
/// long enough for 16 million connections to come and go through the same slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// Builds the id of slot `index` at generation `generation`.
    pub(crate) fn new(index: usize, generation: u32) -> ConnId {
        ConnId((u64::from(generation) << 32) | index as u64)
    }

    /// The slot in the engine's connection table.
    pub(crate) fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// The generation of that slot this id belongs to.
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The id an epoll token carries (tokens are [`ConnId::as_u64`]).
    pub(crate) fn from_token(token: u64) -> ConnId {
        ConnId(token)
    }

    /// The raw value (for logs and maps).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}.{}", self.index(), self.generation())
    }
}

/// One connection, owned by the reactor thread.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The accepted socket (non-blocking).
    pub(crate) fd: OwnedFd,
    /// Its id (slot and generation).
    pub(crate) id: ConnId,
    /// Tail of a partial frame (empty most of the time).
    pub(crate) inbuf: Vec<u8>,
    /// How far the framing got in that partial frame (boxed, and only while a frame
    /// is partly parsed, so an idle connection pays one pointer for it).
    pub(crate) parse: Option<Box<ParseState>>,
    /// Output not yet accepted by the kernel.
    pub(crate) out: OutBuf,
    /// An edge was reported and the socket has not been read to empty since.
    pub(crate) readable: bool,
    /// The peer's hang-up was reported: read until end of stream, not just a short read.
    pub(crate) rdhup: bool,
    /// Buffered frames were left unparsed because output was over the high-water mark.
    pub(crate) stalled: bool,
    /// `EPOLLOUT` is currently registered.
    pub(crate) want_write: bool,
    /// On the ready list.
    pub(crate) in_ready: bool,
    /// On the flush list.
    pub(crate) in_flush: bool,
    /// Close once the output is flushed, with this reason.
    pub(crate) closing: Option<DisconnectReason>,
    /// The socket's `SO_RCVLOWAT` (1 unless a large partial frame is pending).
    pub(crate) lowat: u32,
}

impl Conn {
    /// A fresh connection on `fd`, nothing read or queued yet.
    fn new(fd: OwnedFd, id: ConnId) -> Conn {
        Conn {
            fd,
            id,
            inbuf: Vec::new(),
            parse: None,
            out: OutBuf::default(),
            readable: false,
            rdhup: false,
            stalled: false,
            want_write: false,
            in_ready: false,
            in_flush: false,
            closing: None,
            lowat: 1,
        }
    }
}

/// One slot of the table.
#[derive(Debug, Default)]
struct Slot {
    /// Generation of the connection in the slot, or of the last one (if vacant).
    generation: u32,
    /// The connection, if the slot is taken.
    conn: Option<Conn>,
}

/// Every open connection of one engine.
#[derive(Debug, Default)]
pub(crate) struct ConnTable {
    /// Slots, indexed by [`ConnId::index`].
    slots: Vec<Slot>,
    /// Vacant slots, reused last-freed first.
    free: Vec<usize>,
    /// Open connections.
    live: usize,
}

impl ConnTable {
    /// Open connections.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The open connection with exactly this id (not a newer one in its slot).
    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.slots
            .get(id.index())?
            .conn
            .as_ref()
            .filter(|c| c.id == id)
    }

    /// The open connection with exactly this id, mutably.
    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slots
            .get_mut(id.index())?
            .conn
            .as_mut()
            .filter(|c| c.id == id)
    }

    /// Ids of every open connection (a snapshot: the table may change meanwhile).
    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .filter_map(|s| s.conn.as_ref().map(|c| c.id))
            .collect()
    }

    /// Takes a slot for `fd` at the slot's next generation. `register` runs with the
    /// new id first (epoll registration); if it fails the slot stays vacant.
    pub(crate) fn insert(
        &mut self,
        fd: OwnedFd,
        register: impl FnOnce(&OwnedFd, ConnId) -> io::Result<()>,
    ) -> io::Result<ConnId> {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            self.slots.len() - 1
        });
        let mut generation = (self.slots[index].generation + 1) & GEN_MASK;
        if generation == 0 {
            generation = 1;
        }
        let id = ConnId::new(index, generation);
        if let Err(e) = register(&fd, id) {
            self.free.push(index);
            return Err(e);
        }
        let slot = &mut self.slots[index];
        slot.generation = generation;
        slot.conn = Some(Conn::new(fd, id));
        self.live += 1;
        Ok(id)
    }

    /// Takes the connection `id` out of the table (dropping it closes the socket).
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.conn.as_ref().is_none_or(|c| c.id != id) {
            return None;
        }
        let conn = slot.conn.take()?;
        self.free.push(id.index());
        self.live -= 1;
        Some(conn)
    }
}

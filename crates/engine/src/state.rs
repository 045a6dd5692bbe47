//! [`Core`]: everything the loop mutates except the handler, the framing and the read
//! buffer, so a [`Ctx`](crate::Ctx) can borrow it while a frame borrowed from the read
//! buffer is alive.

use crate::conn::{Conn, ConnId, ConnTable};
use crate::error::SendError;
use crate::handle::{PENDING_BITS, Queued, Shared, Stats};
use bytes::Bytes;
use greenfd_reactor::{Interest, Mode, Poller};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;

/// The loop's state that callbacks may touch.
pub(crate) struct Core {
    /// The epoll instance.
    pub(crate) poller: Poller,
    /// Shared with handles.
    pub(crate) shared: Arc<Shared>,
    /// A sender for handles made from inside callbacks.
    pub(crate) tx: Sender<Queued>,
    /// The open connections.
    pub(crate) conns: ConnTable,
    /// Connections with input to process (stale ids are skipped).
    pub(crate) ready: VecDeque<ConnId>,
    /// Connections with output to write (stale ids are skipped).
    pub(crate) flush: Vec<ConnId>,
    /// Read pausing threshold (half the output bound).
    pub(crate) high_water: u64,
    /// Set when a connection closed (an fd was freed): retry a paused accept now.
    pub(crate) fd_freed: bool,
}

impl Core {
    /// The open connection with this exact id.
    pub(crate) fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id)
    }

    /// Puts a connection on the flush list once.
    pub(crate) fn schedule_flush(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id)
            && !conn.in_flush
        {
            conn.in_flush = true;
            self.flush.push(id);
        }
    }

    /// Puts a connection on the ready list once.
    pub(crate) fn schedule_read(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id)
            && !conn.in_ready
        {
            conn.in_ready = true;
            self.ready.push_back(id);
        }
    }

    /// Reserves room and appends `bytes` to `id`'s output.
    pub(crate) fn queue_output(&mut self, id: ConnId, bytes: &[u8]) -> Result<(), SendError> {
        if let Some(conn) = self.reserve_output(id, bytes.len())? {
            conn.out.push(bytes);
            self.schedule_flush(id);
        }
        Ok(())
    }

    /// Reserves room and appends a shared buffer to `id`'s output (by reference when
    /// it is large).
    pub(crate) fn queue_shared(&mut self, id: ConnId, bytes: Bytes) -> Result<(), SendError> {
        if let Some(conn) = self.reserve_output(id, bytes.len())? {
            conn.out.push_shared(bytes);
            self.schedule_flush(id);
        }
        Ok(())
    }

    /// The connection that may take `len` more bytes of output, with the room reserved;
    /// `None` when there is nothing to queue. Fails if it is gone, closing, or full.
    fn reserve_output(&mut self, id: ConnId, len: usize) -> Result<Option<&mut Conn>, SendError> {
        let conn = self.conns.get_mut(id).ok_or(SendError::Closed)?;
        if len == 0 {
            return Ok(None);
        }
        if conn.closing.is_some() {
            return Err(SendError::Closed);
        }
        self.shared.reserve(id, len)?;
        Ok(Some(conn))
    }

    /// Whether parsing more frames of `id` should go on after a callback.
    pub(crate) fn may_parse(&self, id: ConnId) -> bool {
        self.conns.get(id).is_some_and(|c| {
            c.closing.is_none() && self.shared.queued(id.index()) < self.high_water
        })
    }

    /// Registers a freshly accepted socket.
    pub(crate) fn insert(&mut self, fd: OwnedFd) -> io::Result<ConnId> {
        let poller = &self.poller;
        let id = self.conns.insert(fd, |fd, id| {
            poller.add(fd.as_fd(), id.as_u64(), Interest::READABLE, Mode::Edge)
        })?;
        self.claim_slot(id);
        Ok(id)
    }

    /// Starts `id`'s output accounting (its slot word: its generation, nothing queued).
    pub(crate) fn claim_slot(&self, id: ConnId) {
        self.shared.slots[id.index()].store(
            u64::from(id.generation()) << PENDING_BITS,
            Ordering::Release,
        );
    }

    /// Removes a connection, closing its socket; returns whether it was open.
    pub(crate) fn remove(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conns.remove(id) else {
            return false;
        };
        // Slot word to generation 0: every outstanding id of this slot is now stale,
        // and bytes still in the queue for it are dropped when drained.
        self.shared.slots[id.index()].store(0, Ordering::Release);
        self.fd_freed = true;
        Stats::add(&self.shared.stats.closed, 1);
        tracing::trace!(fd = conn.fd.as_raw_fd(), id = %id, "close");
        // Dropping the fd closes it, which also removes it from the epoll set (we never
        // dup connection sockets).
        drop(conn);
        true
    }
}

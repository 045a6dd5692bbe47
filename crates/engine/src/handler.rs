//! The application side: the [`Handler`] callbacks and the [`Ctx`] they act through.

use crate::conn::ConnId;
use crate::error::{DisconnectReason, SendError};
use crate::framing::{Frame, FrameError};
use crate::handle::EngineHandle;
use crate::state::Core;
use bytes::Bytes;
use std::sync::Arc;

/// Application callbacks, all called on the reactor thread.
pub trait Handler {
    /// A connection was accepted.
    fn on_connect(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = (ctx, id);
    }

    /// A complete frame arrived, with the parts its framing found
    /// ([`Frame::payload`], [`Frame::parts`]).
    fn on_message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, frame: Frame<'_>);

    /// The connection sent bytes its framing rejects. Whatever the handler queues now
    /// (an error reply) is sent, then the connection closes with
    /// [`DisconnectReason::Invalid`].
    fn on_invalid(&mut self, ctx: &mut Ctx<'_>, id: ConnId, error: &FrameError) {
        let _ = (ctx, id, error);
    }

    /// A connection ended; `ctx` can still reach the other connections.
    fn on_disconnect(&mut self, ctx: &mut Ctx<'_>, id: ConnId, reason: &DisconnectReason) {
        let _ = (ctx, id, reason);
    }
}

/// What a callback can do: reply, close, reach other connections, get a handle.
pub struct Ctx<'a> {
    /// The loop's state.
    pub(crate) core: &'a mut Core,
    /// The connection the callback is about, unless it is gone.
    pub(crate) current: Option<ConnId>,
}

impl Ctx<'_> {
    /// The connection this callback is about (`None` in `on_disconnect`).
    pub fn id(&self) -> Option<ConnId> {
        self.current
    }

    /// Replies to the current connection, directly into its output buffer (no queue,
    /// no wake-up). Fails with [`SendError::Full`] past the output bound.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        let id = self.current.ok_or(SendError::Closed)?;
        self.core.queue_output(id, bytes)
    }

    /// Replies with a shared buffer, queued by reference when it is large (no copy of
    /// a stored value, however large). Counts against the output bound like
    /// [`Ctx::send`].
    pub fn send_shared(&mut self, bytes: Bytes) -> Result<(), SendError> {
        let id = self.current.ok_or(SendError::Closed)?;
        self.core.queue_shared(id, bytes)
    }

    /// How many more bytes the current connection's output bound takes now: a reply
    /// larger than this would fail with [`SendError::Full`], so build it only this far.
    pub fn room(&self) -> usize {
        let max = self.core.shared.max_output as usize;
        max.saturating_sub(self.queued())
    }

    /// Sends to any connection of this engine, directly.
    pub fn send_to(&mut self, id: ConnId, bytes: &[u8]) -> Result<(), SendError> {
        self.core.queue_output(id, bytes)
    }

    /// Closes the current connection once its queued output has been written.
    pub fn close(&mut self) {
        if let Some(id) = self.current {
            self.close_conn(id);
        }
    }

    /// Closes connection `id` once its queued output has been written.
    pub fn close_conn(&mut self, id: ConnId) {
        if let Some(conn) = self.core.conn_mut(id) {
            conn.closing.get_or_insert(DisconnectReason::Closed);
            self.core.schedule_flush(id);
        }
    }

    /// Bytes queued for the current connection.
    pub fn queued(&self) -> usize {
        self.current
            .map_or(0, |id| self.core.shared.queued(id.index()) as usize)
    }

    /// A handle to this engine, for other threads.
    pub fn handle(&self) -> EngineHandle {
        EngineHandle {
            tx: self.core.tx.clone(),
            shared: Arc::clone(&self.core.shared),
        }
    }
}

/// Borrow helper so handlers can be shared references where convenient.
impl<H: Handler + ?Sized> Handler for Box<H> {
    fn on_connect(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        (**self).on_connect(ctx, id)
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, frame: Frame<'_>) {
        (**self).on_message(ctx, id, frame)
    }
    fn on_invalid(&mut self, ctx: &mut Ctx<'_>, id: ConnId, error: &FrameError) {
        (**self).on_invalid(ctx, id, error)
    }
    fn on_disconnect(&mut self, ctx: &mut Ctx<'_>, id: ConnId, reason: &DisconnectReason) {
        (**self).on_disconnect(ctx, id, reason)
    }
}

/// Sends every frame back unchanged (the `echo` and `lines` modes of `greenfd serve`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, frame: Frame<'_>) {
        if let Err(e) = ctx.send(frame.bytes()) {
            // The peer is not reading its echoes: drop it rather than buffer forever.
            tracing::debug!(id = %id, error = %e, "echo does not fit; closing");
            ctx.close();
        }
    }
}

//! The engine handler: each request's arguments (found by the framing as it parsed)
//! go through the command table; the reply is built against the connection's output
//! budget and queued with large values by reference.

use crate::client::Client;
use crate::command::{After, dispatch};
use crate::frame::{Piece, Reply};
use crate::store::Db;
use greenfd_engine::{ConnId, Ctx, Frame, FrameError, Handler};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Hashes a [`ConnId`] (already unique and well spread in its low bits) as itself.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Slot index in the low bits, generation in the high ones: mix them.
        self.0 = n ^ (n >> 32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Per-connection state by connection id.
type Clients = HashMap<ConnId, Client, BuildHasherDefault<IdHasher>>;

/// The engine handler of the Redis-protocol server.
#[derive(Debug)]
pub struct RespServer {
    /// The shared store.
    db: Arc<Db>,
    /// Per-connection state (name, protocol, transaction) of the connections that
    /// have any; the others use `fresh`.
    clients: Clients,
    /// The state of a connection without an entry, reset before each use.
    fresh: Client,
    /// The reply being built, reused across requests.
    reply: Reply,
}

impl RespServer {
    /// A server over `db`.
    pub fn new(db: Arc<Db>) -> RespServer {
        RespServer {
            db,
            clients: Clients::default(),
            fresh: Client::default(),
            reply: Reply::default(),
        }
    }

    /// Queues the finished reply; false if the connection must close.
    fn send_reply(&self, ctx: &mut Ctx<'_>, id: ConnId) -> bool {
        for piece in self.reply.pieces() {
            let sent = match piece {
                Piece::Copied(b) => ctx.send(b),
                Piece::Shared(b) => ctx.send_shared(b.clone()),
            };
            if let Err(e) = sent {
                tracing::warn!(id = %id, error = %e, "closing client: its reply cannot be queued");
                return false;
            }
        }
        true
    }
}

impl Handler for RespServer {
    fn on_connect(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId) {
        self.db.clients.fetch_add(1, Ordering::Relaxed);
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, frame: Frame<'_>) {
        if frame.part_count() == 0 {
            return;
        }
        // Up to 8 arguments on the stack (nearly every request), more in a vector.
        let mut small: [&[u8]; 8] = [&[]; 8];
        let large: Vec<&[u8]>;
        let args: &[&[u8]] = if frame.part_count() <= small.len() {
            for (slot, part) in small.iter_mut().zip(frame.parts()) {
                *slot = part;
            }
            &small[..frame.part_count()]
        } else {
            large = frame.parts().collect();
            &large
        };
        let stored = self.clients.get_mut(&id);
        let fresh = stored.is_none();
        let client = match stored {
            Some(client) => client,
            None => &mut self.fresh,
        };
        self.reply.reset(ctx.room(), client.resp3);
        let after = dispatch(&self.db, client, args, &mut self.reply);
        if fresh {
            if !self.fresh.is_default() {
                // The command gave this connection state of its own (a name, RESP3,
                // MULTI, an id).
                self.clients.insert(id, std::mem::take(&mut self.fresh));
            }
        } else if self.clients.get(&id).is_some_and(Client::is_default) {
            self.clients.remove(&id);
        }
        if self.reply.overflowed() {
            // Checked while building: nothing past the budget was ever allocated.
            tracing::warn!(
                id = %id,
                budget = self.reply.budget(),
                "closing client: reply exceeds its output bound"
            );
            ctx.close();
            return;
        }
        if !self.send_reply(ctx, id) || after == After::Close {
            ctx.close();
        }
        if self.reply.len() > 64 * 1024 {
            // A large reply's buffers are not kept for the next one.
            self.reply.reset(0, false);
        }
    }

    fn on_invalid(&mut self, ctx: &mut Ctx<'_>, _id: ConnId, error: &FrameError) {
        let text = match error {
            FrameError::Protocol(text) => text.clone(),
            FrameError::TooLarge { len, max } => {
                format!("request of {len} bytes exceeds the maximum of {max}")
            }
        };
        // As redis: the error, then the connection closes once it is sent.
        let _ = ctx.send(format!("-ERR Protocol error: {text}\r\n").as_bytes());
    }

    fn on_disconnect(
        &mut self,
        _ctx: &mut Ctx<'_>,
        id: ConnId,
        _reason: &greenfd_engine::DisconnectReason,
    ) {
        self.clients.remove(&id);
        self.db.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

//! The engine handler: each request's arguments (found by the framing as it parsed)
//! go through the command table; the reply is built against the connection's output
//! budget and queued with large values by reference.

use crate::client::Client;
use crate::command::{After, dispatch};
use crate::frame::{Piece, Reply};
use crate::store::Db;
use greenfd_engine::{ConnId, Ctx, Frame, FrameError, Handler};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The engine handler of the Redis-protocol server.
#[derive(Debug)]
pub struct RespServer {
    /// The shared store.
    db: Arc<Db>,
    /// Per-connection state (name, protocol, transaction).
    clients: HashMap<ConnId, Client>,
    /// The reply being built, reused across requests.
    reply: Reply,
}

impl RespServer {
    /// A server over `db`.
    pub fn new(db: Arc<Db>) -> RespServer {
        RespServer {
            db,
            clients: HashMap::new(),
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
    fn on_connect(&mut self, _ctx: &mut Ctx<'_>, id: ConnId) {
        self.clients
            .insert(id, Client::new(self.db.new_client_id()));
        self.db.clients.fetch_add(1, Ordering::Relaxed);
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, frame: Frame<'_>) {
        if frame.part_count() == 0 {
            return;
        }
        let args: Vec<&[u8]> = frame.parts().collect();
        let db = &self.db;
        let client = self
            .clients
            .entry(id)
            .or_insert_with(|| Client::new(db.new_client_id()));
        self.reply.reset(ctx.room(), client.resp3);
        let after = dispatch(&self.db, client, &args, &mut self.reply);
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
        // A large reply's buffer is not kept for the next one.
        self.reply.reset(0, false);
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
        if self.clients.remove(&id).is_some() {
            self.db.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

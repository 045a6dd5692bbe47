//! The engine handler: each RESP frame is split into its arguments, executed through
//! the command table, and answered through the engine's [`Ctx`].

use crate::command::{After, execute};
use crate::frame::{Reply, command_args};
use crate::store::Db;
use greenfd_engine::{ConnId, Ctx, Handler};
use std::sync::Arc;

/// The engine handler of the Redis-protocol server.
#[derive(Debug)]
pub struct RespServer {
    /// The shared store.
    db: Arc<Db>,
    /// Reply scratch buffer, reused across requests.
    reply: Vec<u8>,
}

impl RespServer {
    /// A server over `db`.
    pub fn new(db: Arc<Db>) -> RespServer {
        RespServer {
            db,
            reply: Vec::with_capacity(256),
        }
    }
}

impl Handler for RespServer {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, frame: &[u8]) {
        let mut args = Vec::new();
        self.reply.clear();
        let after = match command_args(frame, &mut args) {
            Ok(()) => execute(&self.db, &args, &mut self.reply),
            Err(e) => {
                // The framing already validated the frame, so this is a bug; answer and
                // close rather than panic.
                Reply(&mut self.reply).error(&format!("ERR Protocol error: {e}"));
                After::Close
            }
        };
        if let Err(e) = ctx.send(&self.reply) {
            tracing::debug!(id = %id, error = %e, "reply does not fit; closing");
            ctx.close();
            return;
        }
        if after == After::Close {
            ctx.close();
        }
    }
}

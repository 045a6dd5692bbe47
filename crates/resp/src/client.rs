//! One connection's state: its id and name, the protocol it speaks, and the commands
//! it queued inside MULTI.

use crate::store::Db;
use bytes::Bytes;

/// Most bytes of commands one client may queue inside MULTI.
const MAX_QUEUED_BYTES: usize = 64 << 20;

/// A transaction being queued.
#[derive(Debug, Default)]
pub(crate) struct Multi {
    /// The queued commands' arguments.
    pub(crate) queue: Vec<Vec<Bytes>>,
    /// Their size in bytes.
    bytes: usize,
    /// A queued command was refused (unknown, wrong arity): EXEC must abort.
    pub(crate) dirty: bool,
}

/// One connection's state. A connection whose state is still the default one has no
/// entry of its own (idle connections stay small); see [`Client::is_default`].
#[derive(Debug, Default)]
pub(crate) struct Client {
    /// CLIENT ID, given on first use (0: not yet).
    id: u64,
    /// CLIENT SETNAME.
    pub(crate) name: Option<Bytes>,
    /// CLIENT SETINFO LIB-NAME.
    pub(crate) lib_name: Option<Bytes>,
    /// CLIENT SETINFO LIB-VER.
    pub(crate) lib_ver: Option<Bytes>,
    /// Speaks RESP3 (after `HELLO 3`).
    pub(crate) resp3: bool,
    /// Inside MULTI.
    pub(crate) multi: Option<Multi>,
}

impl Client {
    /// CLIENT ID: unique over the store's engines, given when first asked for.
    pub(crate) fn id(&mut self, db: &Db) -> u64 {
        if self.id == 0 {
            self.id = db.new_client_id();
        }
        self.id
    }

    /// Whether nothing distinguishes this connection from a new one.
    pub(crate) fn is_default(&self) -> bool {
        self.id == 0
            && self.name.is_none()
            && self.lib_name.is_none()
            && self.lib_ver.is_none()
            && !self.resp3
            && self.multi.is_none()
    }

    /// Whether commands are being queued.
    pub(crate) fn in_transaction(&self) -> bool {
        self.multi.is_some()
    }

    /// Marks the open transaction (if any) as failed.
    pub(crate) fn flag_transaction_error(&mut self) {
        if let Some(m) = self.multi.as_mut() {
            m.dirty = true;
        }
    }

    /// Queues a command inside MULTI.
    pub(crate) fn queue(&mut self, args: &[&[u8]]) -> Result<(), &'static str> {
        let Some(m) = self.multi.as_mut() else {
            return Err("ERR no transaction");
        };
        let size: usize = args.iter().map(|a| a.len() + 16).sum();
        if m.bytes + size > MAX_QUEUED_BYTES {
            m.dirty = true;
            return Err("ERR MULTI queue too large");
        }
        m.bytes += size;
        m.queue
            .push(args.iter().map(|a| Bytes::copy_from_slice(a)).collect());
        Ok(())
    }
}

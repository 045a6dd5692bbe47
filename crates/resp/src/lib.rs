//! A Redis-compatible key/value server (RESP2 and RESP3) on the greenfd engine: the
//! commands `redis-cli`, `redis-benchmark` and client libraries such as redis-py use
//! with their default settings, with Redis 7 semantics and error texts.
//!
//! - [`Resp`] splits the byte stream into requests and finds their arguments as it
//!   goes, resuming where it stopped when a request arrives in pieces; [`Reply`]
//!   encodes answers, referencing large stored values instead of copying them and
//!   stopping at the connection's output budget;
//! - the command table ([`commands`], [`lookup`], [`execute`]) holds each command's
//!   name, arity, flags, key positions and function, like redis' `commands.def`;
//! - [`Db`] is the key space: strings, lists, sets, hashes and sorted sets, with lazy
//!   and active expiry, sharded so several engines can share it;
//! - [`RespServer`] is the engine [`Handler`](greenfd_engine::Handler) tying them
//!   together, with per-connection state (HELLO protocol, CLIENT name, MULTI queue).
//!
//! ```
//! use greenfd_resp::{Db, execute};
//!
//! let db = Db::new(1);
//! let mut out = Vec::new();
//! execute(&db, &[b"SET", b"k", b"v"], &mut out);
//! execute(&db, &[b"GET", b"k"], &mut out);
//! assert_eq!(out, b"+OK\r\n$1\r\nv\r\n");
//! ```

#![forbid(unsafe_code)]

mod client;
mod command;
mod commands;
mod frame;
mod server;
mod store;

pub use command::{After, Command, Flags, KeySpec, commands, execute, lookup};
pub use frame::{Piece, RESP_DEFAULT_MAX, Reply, Resp, command_args, encode_command};
pub use server::RespServer;
pub use store::Db;

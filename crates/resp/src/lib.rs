//! A small Redis-compatible key/value server (RESP2) on the greenfd engine: enough of
//! Redis for `redis-cli` and `redis-benchmark` to use it unmodified.
//!
//! - [`Resp`] splits the byte stream into requests (arrays of bulk strings and inline
//!   commands); [`command_args`] splits a request into its arguments, [`Reply`]
//!   encodes answers;
//! - the command table ([`commands`], [`lookup`], [`execute`]) holds each command's
//!   name, arity, flags and function, like redis' `commands.def`;
//! - [`Db`] is the key space, sharded so several engines can share it;
//! - [`RespServer`] is the engine [`Handler`](greenfd_engine::Handler) tying them
//!   together.
//!
//! Commands: PING, ECHO, SET, GET, DEL, INCR, MGET, MSET, EXISTS, DBSIZE, FLUSHALL,
//! COMMAND (`COMMAND DOCS` and friends answer an empty array), CONFIG GET (`save` and
//! `appendonly`, so `redis-benchmark` starts quietly), SELECT 0, QUIT. Replies and
//! error texts follow Redis 7, e.g. `-ERR unknown command 'FOO', with args beginning
//! with: `, `-ERR wrong number of arguments for 'get' command`.
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

mod command;
mod frame;
mod server;
mod store;

pub use command::{After, Command, Flags, commands, execute, lookup};
pub use frame::{RESP_DEFAULT_MAX, Reply, Resp, command_args, encode_command};
pub use server::RespServer;
pub use store::Db;

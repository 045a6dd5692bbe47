//! A TCP server engine on one epoll reactor thread, with pluggable framing.
//!
//! Most people who reach for epoll want a server: accept, read, split the byte stream
//! into messages, reply, and send from worker threads without locks on the hot path.
//! Doing that well takes a handful of rules that are easy to get subtly wrong, and this
//! crate keeps them in one loop you can read in one sitting ([`Engine`]):
//!
//! - edge-triggered reads until the socket is drained, into one shared read buffer;
//! - `EPOLLOUT` registered only while a connection has unsent output;
//! - cross-thread sends through an MPSC queue plus an eventfd wake-up
//!   ([`EngineHandle::send`] is `Send + Sync`), bounded per connection: past
//!   [`Config::max_output`] it fails with [`SendError::Full`] instead of growing memory;
//! - framing as a strategy ([`Framing`]: [`Lines`], [`LengthPrefixed`], [`Raw`], and
//!   the Redis protocol in the `greenfd-resp` crate), each with a maximum frame size;
//!   each connection keeps its parse progress ([`ParseState`]), so a frame arriving in
//!   many reads is examined once, and the handler gets the parts the framing found
//!   ([`Frame`]); an invalid frame drops that client only, after the handler's answer
//!   ([`Handler::on_invalid`]);
//! - replies may reference shared buffers ([`Ctx::send_shared`], `bytes::Bytes`) that
//!   go out by vectored writes without a copy;
//! - `accept` under `EMFILE` pauses instead of spinning, and resumes when fds free up;
//! - scale-out with `SO_REUSEPORT`: N engines on N threads ([`Group`]).
//!
//! The source is laid out like redis' `ae.c` and `networking.c`: the loop itself
//! (`event_loop.rs`), the I/O steps it calls (`steps.rs`: accept, read, flush, close), the
//! connection table (`conn.rs`), the cross-thread handle (`handle.rs`) and the
//! application's side (`handler.rs`).
//!
//! ```
//! use greenfd_engine::{ConnId, Ctx, Engine, Frame, Handler, Lines};
//! use std::io::{BufRead, BufReader, Write};
//!
//! /// Replies to each line with its length.
//! struct Count;
//! impl Handler for Count {
//!     fn on_message(&mut self, ctx: &mut Ctx<'_>, _id: ConnId, frame: Frame<'_>) {
//!         let n = frame.payload().len();
//!         if ctx.send(format!("{n}\n").as_bytes()).is_err() {
//!             ctx.close(); // the client stopped reading its replies
//!         }
//!     }
//! }
//!
//! let engine = Engine::bind("127.0.0.1:0".parse()?, Lines::default(), Count)?;
//! let (addr, handle) = (engine.local_addr(), engine.handle());
//! let reactor = std::thread::spawn(move || engine.run());
//!
//! let mut client = std::net::TcpStream::connect(addr)?;
//! client.write_all(b"hello\nworld!\n")?;
//! let mut lines = BufReader::new(client).lines();
//! assert_eq!(lines.next().unwrap()?, "5");
//! assert_eq!(lines.next().unwrap()?, "6");
//!
//! handle.shutdown();
//! reactor.join().unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]

mod config;
mod conn;
mod error;
mod event_loop;
mod framing;
mod group;
mod handle;
mod handler;
mod outbuf;
mod state;
mod steps;

pub use config::Config;
pub use conn::ConnId;
pub use error::{DisconnectReason, EngineError, SendError};
pub use event_loop::Engine;
pub use framing::{
    DEFAULT_MAX_FRAME, Frame, FrameError, Framing, LengthPrefixed, Lines, ParseState, Parsed,
    Prefix, Raw, split_frames,
};
pub use group::Group;
pub use handle::{EngineHandle, StatsSnapshot};
pub use handler::{Ctx, Echo, Handler};

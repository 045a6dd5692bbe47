//! Thread-per-core scale-out: N engines on N threads sharing one port through
//! `SO_REUSEPORT`, so the kernel spreads incoming connections across them and no lock
//! or queue is shared between the loops.
//!
//! The group also says when an engine stops on its own (an error, a panic): its
//! [`Group::stopped_fd`] becomes readable, so a supervising thread can wait for that and
//! for its own signals in one blocking `poll`, with no timeout to wake it in between.

use crate::framing::Framing;
use crate::{Config, Engine, EngineError, EngineHandle, Handler, IoDriver};
use greenfd_reactor::Waker;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

/// N running engines on one port.
#[derive(Debug)]
pub struct Group {
    /// One handle per engine, in thread order.
    handles: Vec<EngineHandle>,
    /// The reactor threads.
    threads: Vec<JoinHandle<Result<(), EngineError>>>,
    /// The shared address (with the real port when bound to port 0).
    local_addr: SocketAddr,
    /// The I/O driver the engines run on.
    io: IoDriver,
    /// Written by each engine thread as it ends ([`Group::stopped_fd`]).
    stopped: Arc<Waker>,
}

/// Wakes the group's stop notifier when an engine thread ends, however it ends: a drop
/// guard, so a panicking handler is reported too.
struct NotifyOnExit(Arc<Waker>);

impl Drop for NotifyOnExit {
    fn drop(&mut self) {
        if let Err(e) = self.0.wake() {
            tracing::warn!(error = %e, "cannot report an engine's end");
        }
    }
}

impl Group {
    /// Binds `threads` engines to `addr` (the first one picks the port if it is 0) and
    /// runs each on its own thread. `make(i)` builds engine `i`'s framing and handler.
    pub fn spawn<F, H>(
        threads: usize,
        addr: SocketAddr,
        config: Config,
        mut make: impl FnMut(usize) -> (F, H),
    ) -> Result<Group, EngineError>
    where
        F: Framing + 'static,
        H: Handler + Send + 'static,
    {
        let threads = threads.max(1);
        let config = Config {
            reuse_port: config.reuse_port || threads > 1,
            ..config
        };
        let mut engines = Vec::with_capacity(threads);
        let mut bind_addr = addr;
        for i in 0..threads {
            let (framing, handler) = make(i);
            let engine = Engine::bind_with(bind_addr, framing, handler, config.clone())?;
            bind_addr = engine.local_addr();
            engines.push(engine);
        }
        let local_addr = bind_addr;
        let io = engines.first().map_or(IoDriver::Epoll, Engine::io_driver);
        let handles: Vec<EngineHandle> = engines.iter().map(Engine::handle).collect();
        let stopped = Arc::new(Waker::new()?);
        let mut spawned = Vec::with_capacity(threads);
        for (i, engine) in engines.into_iter().enumerate() {
            let notify = NotifyOnExit(Arc::clone(&stopped));
            let t = std::thread::Builder::new()
                .name(format!("greenfd-engine-{i}"))
                .spawn(move || {
                    let _notify = notify;
                    engine.run()
                });
            match t {
                Ok(t) => spawned.push(t),
                Err(e) => {
                    let group = Group {
                        handles,
                        threads: spawned,
                        local_addr,
                        io,
                        stopped,
                    };
                    if let Err(join_err) = group.shutdown_and_join() {
                        tracing::warn!(error = %join_err, "engine failed while unwinding a spawn error");
                    }
                    return Err(EngineError::Io(e));
                }
            }
        }
        Ok(Group {
            handles,
            threads: spawned,
            local_addr,
            io,
            stopped,
        })
    }

    /// The address every engine listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The I/O driver the engines run on (all the same: one [`Config`]).
    pub fn io_driver(&self) -> IoDriver {
        self.io
    }

    /// The engines' handles.
    pub fn handles(&self) -> &[EngineHandle] {
        &self.handles
    }

    /// An eventfd that becomes readable once any engine of the group has stopped, for
    /// whatever reason: [`Group::shutdown`], an error, or a panic in its handler. It
    /// stays readable (do not read it); poll it next to other fds to notice an engine
    /// that died without waking up to check [`EngineHandle::is_stopped`].
    pub fn stopped_fd(&self) -> BorrowedFd<'_> {
        self.stopped.as_fd()
    }

    /// Asks every engine to stop.
    pub fn shutdown(&self) {
        for h in &self.handles {
            h.shutdown();
        }
    }

    /// Stops every engine and waits for its thread; the first error wins.
    pub fn shutdown_and_join(self) -> Result<(), EngineError> {
        self.shutdown();
        self.join()
    }

    /// Waits for every engine thread to return.
    pub fn join(self) -> Result<(), EngineError> {
        let mut result = Ok(());
        for t in self.threads {
            let r = t.join().unwrap_or(Err(EngineError::Panicked));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

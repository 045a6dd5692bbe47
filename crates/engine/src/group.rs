//! Thread-per-core scale-out: N engines on N threads sharing one port through
//! `SO_REUSEPORT`, so the kernel spreads incoming connections across them and no lock
//! or queue is shared between the loops.

use crate::framing::Framing;
use crate::{Config, Engine, EngineError, EngineHandle, Handler};
use std::net::SocketAddr;
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
        let handles: Vec<EngineHandle> = engines.iter().map(Engine::handle).collect();
        let mut spawned = Vec::with_capacity(threads);
        for (i, engine) in engines.into_iter().enumerate() {
            let t = std::thread::Builder::new()
                .name(format!("greenfd-engine-{i}"))
                .spawn(move || engine.run());
            match t {
                Ok(t) => spawned.push(t),
                Err(e) => {
                    let group = Group {
                        handles,
                        threads: spawned,
                        local_addr,
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
        })
    }

    /// The address every engine listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The engines' handles.
    pub fn handles(&self) -> &[EngineHandle] {
        &self.handles
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

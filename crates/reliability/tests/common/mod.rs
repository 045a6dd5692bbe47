//! Fixtures shared by the reliability test binaries.

use greenfd_engine::{Config, Engine, EngineError, EngineHandle, Framing, Handler};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;

pub use greenfd_test_support::PATIENCE;

/// A running engine on its own thread.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its cross-thread handle.
    pub handle: EngineHandle,
    /// The reactor thread (taken by `stop`).
    pub thread: Option<JoinHandle<Result<(), EngineError>>>,
}

impl Running {
    /// Binds an engine on a free loopback port and runs it on a new thread.
    pub fn start<F: Framing + 'static, H: Handler + Send + 'static>(
        framing: F,
        handler: H,
    ) -> Running {
        let engine = Engine::bind_with(
            "127.0.0.1:0".parse().unwrap(),
            framing,
            handler,
            Config::default(),
        )
        .unwrap();
        Running {
            addr: engine.local_addr(),
            handle: engine.handle(),
            thread: Some(std::thread::spawn(move || engine.run())),
        }
    }

    /// A client connection with `PATIENCE` timeouts and Nagle off.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.set_write_timeout(Some(PATIENCE)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// Shuts the engine down and checks that it ended cleanly.
    pub fn stop(mut self) {
        self.handle.shutdown();
        let t = self.thread.take().unwrap();
        t.join()
            .expect("engine thread panicked")
            .expect("engine failed");
    }
}

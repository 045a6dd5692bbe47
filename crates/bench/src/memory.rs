//! Idle memory: a server process holding many open, idle connections.

use crate::process::ChildGuard;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Opens `conns` connections to the echo server `server` listens on, proves each one
/// is served with one 1-byte echo, and returns the server's RSS in KiB while they idle.
pub fn idle_rss_kib(server: &ChildGuard, addr: SocketAddr, conns: usize) -> io::Result<u64> {
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"x")?;
        streams.push(s);
    }
    let mut byte = [0u8; 1];
    for s in &mut streams {
        s.read_exact(&mut byte)?;
    }
    server.rss_kib()
}

/// Raises this process's open-file soft limit to its hard limit; returns the new limit.
pub fn raise_nofile() -> io::Result<u64> {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: lim.maximum,
        maximum: lim.maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, raised)?;
    Ok(lim.maximum.unwrap_or(u64::MAX))
}

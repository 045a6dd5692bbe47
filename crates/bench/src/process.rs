//! Servers run as child processes (RESP and memory scenarios), killed when dropped.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    /// The running child.
    child: Child,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout/stderr discarded and waits until `addr` accepts TCP.
    pub fn spawn_listening(mut cmd: Command, addr: SocketAddr) -> io::Result<ChildGuard> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut guard = ChildGuard { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(guard);
            }
            if let Some(status) = guard.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "{cmd:?} exited with {status} before listening"
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{cmd:?} did not listen on {addr}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the child to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> io::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("process {} did not exit", self.child.id()),
                ));
            }
            // Polling the exit status: no fd to wait on that honours a deadline.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the child, in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> io::Result<u64> {
        rss_kib(self.pid())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
}

/// The children of process `pid` (from `/proc/PID/task/*/children`).
pub fn children(pid: u32) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let list = std::fs::read_to_string(task?.path().join("children"))?;
        out.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    Ok(out)
}

/// A free loopback port (bound, read, released: good enough for a child to take next).
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Whether `program` can be found on `PATH`.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_of_self_is_positive() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}

//! [`Async<T>`]: any fd made cooperative.
//!
//! Construction sets `O_NONBLOCK` and registers the fd persistently (edge-triggered,
//! no syscall per wait) with the runtime's reactor. A read or write that says `EAGAIN`
//! parks the task until the reactor reports readiness, then retries. Regular files
//! (and anything else epoll refuses with `EPERM`) are always "ready" yet may block on
//! the disk, so they fall back to the blocking pool: the loop never blocks.
//!
//! Dropping an `Async` (or [`Async::close`]) first calls the reactor's
//! `notify_closing` (any waiter on the number wakes with `Closed`, and the kernel
//! registration is deleted while the number still names this file), then forgets the
//! persistent registration (its waiters, if any, also wake with `Closed`), then closes.
//! While an `Async` owns an fd, borrowed-fd waits on that number are refused with
//! `BusyResource` rather than allowed to turn its registration one-shot.

use crate::blocking::{Unblock, unblock};
use futures_io::{AsyncRead, AsyncWrite};
use greenfd_reactor::{Interest, Reactor, Registration};
use rustix::io::Errno;
use std::future::{Future as _, poll_fn};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Largest single read or write handed to the blocking pool.
const BLOCKING_CHUNK: usize = 128 * 1024;

/// How an `Async` waits.
#[derive(Debug)]
enum Backend {
    /// Readiness from the reactor.
    Reactor {
        /// The reactor it is registered with.
        reactor: Reactor,
        /// The persistent registration; `None` once deregistered.
        registration: Option<Registration>,
    },
    /// Regular-file fallback: each read/write runs on the blocking pool.
    Blocking(BlockingFile),
}

/// An fd made cooperative. See the module docs.
#[derive(Debug)]
pub struct Async<T: AsFd> {
    /// The IO object; `None` only during `into_inner`/drop.
    io: Option<T>,
    /// How it waits.
    backend: Backend,
}

impl<T: AsFd> Async<T> {
    /// Makes `io` non-blocking and registers it with the process-wide reactor
    /// ([`Reactor::global`]; falling back to the blocking pool for regular files). Works
    /// in any executor: greenfd-rt's drives the reactor, under tokio or smol its fallback
    /// thread does.
    ///
    /// `O_NONBLOCK` belongs to the open file description: it is shared with dups and
    /// other processes holding the same description (e.g. an inherited terminal), and it
    /// stays set after [`Async::into_inner`].
    ///
    /// Fails if the reactor cannot be created, or if `fcntl`/`epoll_ctl` fail (e.g.
    /// `EEXIST` if this fd number is already registered with the reactor).
    pub fn new(io: T) -> io::Result<Async<T>> {
        let reactor = Reactor::global()?;
        let fd = io.as_fd();
        let flags = rustix::fs::fcntl_getfl(fd)?;
        rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
        tracing::trace!(fd = fd.as_raw_fd(), "set O_NONBLOCK");
        let backend = match reactor.register(fd) {
            Ok(registration) => Backend::Reactor {
                reactor,
                registration: Some(registration),
            },
            Err(greenfd_reactor::Error::Io(e)) if Errno::from_io_error(&e) == Some(Errno::PERM) => {
                tracing::trace!(fd = fd.as_raw_fd(), "epoll EPERM: blocking-pool fallback");
                Backend::Blocking(BlockingFile::new(fd)?)
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Async {
            io: Some(io),
            backend,
        })
    }

    /// The IO object.
    pub fn get_ref(&self) -> &T {
        self.io.as_ref().expect("io is present until drop")
    }

    /// The IO object, mutably (do not close or replace its fd).
    pub fn get_mut(&mut self) -> &mut T {
        self.io.as_mut().expect("io is present until drop")
    }

    /// Whether reads and writes go through the blocking pool (regular files).
    pub fn uses_blocking_pool(&self) -> bool {
        matches!(self.backend, Backend::Blocking(_))
    }

    /// The persistent registration; `None` with the blocking-pool fallback and once
    /// deregistered.
    fn registration(&self) -> Option<&Registration> {
        match &self.backend {
            Backend::Reactor { registration, .. } => registration.as_ref(),
            Backend::Blocking(_) => None,
        }
    }

    /// Waits until readable (always at once for the blocking-pool fallback).
    pub async fn readable(&self) -> io::Result<()> {
        if let Some(r) = self.registration() {
            r.readable().await?;
        }
        Ok(())
    }

    /// Waits until writable (always at once for the blocking-pool fallback).
    pub async fn writable(&self) -> io::Result<()> {
        if let Some(r) = self.registration() {
            r.writable().await?;
        }
        Ok(())
    }

    /// Runs a non-blocking read-side operation until it stops saying `WouldBlock`,
    /// parking between attempts. (With the blocking-pool fallback `op` runs inline:
    /// use [`Async::read`] for regular files.)
    pub async fn read_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.poll_with(Interest::READABLE, &mut op).await
    }

    /// Runs a non-blocking write-side operation until it stops saying `WouldBlock`.
    pub async fn write_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.poll_with(Interest::WRITABLE, &mut op).await
    }

    /// Shared body of `read_with`/`write_with`.
    async fn poll_with<R>(
        &self,
        interest: Interest,
        op: &mut impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        let io = self.get_ref();
        match &self.backend {
            Backend::Reactor {
                registration: Some(r),
                ..
            } => poll_fn(|cx| r.poll_io(cx, interest, || op(io))).await,
            Backend::Reactor {
                registration: None, ..
            } => Err(closed()),
            Backend::Blocking(_) => op(io),
        }
    }

    /// Reads into `buf`, parking on `EAGAIN`.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| Pin::new(&mut *self).poll_read(cx, buf)).await
    }

    /// Writes from `buf`, parking on `EAGAIN`.
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| Pin::new(&mut *self).poll_write(cx, buf)).await
    }

    /// Notifies the reactor, deregisters and returns the IO object (still non-blocking).
    pub fn into_inner(mut self) -> io::Result<T> {
        let result = self.shutdown();
        let io = self.io.take().expect("io is present until drop");
        result.map(|()| io)
    }

    /// Notifies the reactor, deregisters and closes the fd.
    pub fn close(self) -> io::Result<()> {
        self.into_inner().map(drop)
    }

    /// `notify_closing` + deregister; idempotent.
    fn shutdown(&mut self) -> io::Result<()> {
        let Some(io) = self.io.as_ref() else {
            return Ok(());
        };
        let fd = io.as_fd();
        match &mut self.backend {
            Backend::Reactor {
                reactor,
                registration,
            } => {
                let notified = reactor.notify_closing(fd);
                let deregistered = match registration.take() {
                    Some(r) => r.deregister(fd),
                    None => Ok(()),
                };
                notified?;
                deregistered?;
                Ok(())
            }
            Backend::Blocking(_) => Ok(()),
        }
    }
}

// `Async` never pins its contents (IO goes through the fd), so it can move freely.
impl<T: AsFd> Unpin for Async<T> {}

impl<T: AsFd> Drop for Async<T> {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl<T: AsFd> AsFd for Async<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl<T: AsFd> AsRawFd for Async<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// `read(2)`, traced.
pub(crate) fn sys_read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len();
    let r = rustix::io::read(fd, buf);
    tracing::trace!(fd = fd.as_raw_fd(), len, result = ?r, "read");
    Ok(r?)
}

/// `write(2)`, traced.
pub(crate) fn sys_write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    let r = rustix::io::write(fd, buf);
    tracing::trace!(fd = fd.as_raw_fd(), len = buf.len(), result = ?r, "write");
    Ok(r?)
}

/// The error for IO on an `Async` after `close`.
fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, greenfd_reactor::Error::Closed)
}

impl<T: AsFd> AsyncRead for Async<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(io) = this.io.as_ref() else {
            return Poll::Ready(Err(closed()));
        };
        match &mut this.backend {
            Backend::Reactor {
                registration: Some(r),
                ..
            } => r.poll_io(cx, Interest::READABLE, || sys_read(io.as_fd(), &mut *buf)),
            Backend::Reactor {
                registration: None, ..
            } => Poll::Ready(Err(closed())),
            Backend::Blocking(file) => file.poll_read(cx, buf),
        }
    }
}

impl<T: AsFd> AsyncWrite for Async<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(io) = this.io.as_ref() else {
            return Poll::Ready(Err(closed()));
        };
        match &mut this.backend {
            Backend::Reactor {
                registration: Some(r),
                ..
            } => r.poll_io(cx, Interest::WRITABLE, || sys_write(io.as_fd(), buf)),
            Backend::Reactor {
                registration: None, ..
            } => Poll::Ready(Err(closed())),
            Backend::Blocking(file) => file.poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.backend {
            Backend::Blocking(file) => file.poll_flush(cx),
            Backend::Reactor { .. } => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Backend::Blocking(file) = &mut self.backend {
            return file.poll_flush(cx);
        }
        // Sockets: send end-of-stream; other fds have no half-close.
        let Some(io) = self.io.as_ref() else {
            return Poll::Ready(Ok(()));
        };
        match rustix::net::shutdown(io.as_fd(), rustix::net::Shutdown::Write) {
            Ok(()) | Err(Errno::NOTSOCK) | Err(Errno::NOTCONN) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
}

/// Regular-file IO on the blocking pool, through a dup of the fd so a job that
/// outlives a cancelled future never touches a closed or reused number.
#[derive(Debug)]
struct BlockingFile {
    /// A dup sharing the file offset with the caller's fd.
    fd: Arc<OwnedFd>,
    /// A read in flight.
    reading: Option<Unblock<io::Result<Vec<u8>>>>,
    /// Bytes a finished read returned beyond what the caller took.
    leftover: Vec<u8>,
    /// A write in flight (writes are write-behind: reported at the next write/flush).
    writing: Option<Unblock<io::Result<()>>>,
}

impl BlockingFile {
    /// Dups `fd` for the pool.
    fn new(fd: BorrowedFd<'_>) -> io::Result<BlockingFile> {
        Ok(BlockingFile {
            fd: Arc::new(fd.try_clone_to_owned()?),
            reading: None,
            leftover: Vec::new(),
            writing: None,
        })
    }

    /// Serves leftover bytes, else runs one `read` on the pool.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if !self.leftover.is_empty() {
            let n = buf.len().min(self.leftover.len());
            buf[..n].copy_from_slice(&self.leftover[..n]);
            self.leftover.drain(..n);
            return Poll::Ready(Ok(n));
        }
        if let Poll::Ready(Err(e)) = self.poll_flush(cx) {
            return Poll::Ready(Err(e));
        }
        if self.writing.is_some() {
            return Poll::Pending;
        }
        let job = self.reading.get_or_insert_with(|| {
            let fd = Arc::clone(&self.fd);
            let len = buf.len().min(BLOCKING_CHUNK);
            unblock(move || {
                let mut v = vec![0u8; len];
                let n = sys_read(fd.as_fd(), &mut v)?;
                v.truncate(n);
                Ok(v)
            })
        });
        let data = match Pin::new(job).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => {
                self.reading = None;
                r?
            }
        };
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        self.leftover.extend_from_slice(&data[n..]);
        Poll::Ready(Ok(n))
    }

    /// Waits for the previous write, then hands a copy of `buf` to the pool.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.poll_flush(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        let data = buf[..buf.len().min(BLOCKING_CHUNK)].to_vec();
        let n = data.len();
        let fd = Arc::clone(&self.fd);
        self.writing = Some(unblock(move || {
            let mut rest = &data[..];
            while !rest.is_empty() {
                let k = sys_write(fd.as_fd(), rest)?;
                if k == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                rest = &rest[k..];
            }
            Ok(())
        }));
        Poll::Ready(Ok(n))
    }

    /// Waits for the write in flight, reporting its error.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(job) = self.writing.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match Pin::new(job).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                self.writing = None;
                Poll::Ready(r)
            }
        }
    }
}

//! The ring and the memory the kernel reads or writes on its behalf. Every `unsafe` of
//! the io_uring driver is in this file, and each rests on one rule: memory an operation
//! points at stays allocated and untouched until that operation's last completion has
//! been reaped.
//!
//! - Receive buffers are one allocation carved into equal buffers, published to the
//!   kernel through a provided-buffer ring. A completion hands one buffer to us; the
//!   kernel does not write it again until we put it back ([`Ring::recycle`]).
//! - A send owns its output ([`OutBuf`]), its iovec array and its `msghdr` in a
//!   [`SendOp`] that sits in [`Ring`]'s table from submission until its completion.
//! - Accept, multishot recv, poll and cancel submissions point at no memory of ours.
//! - Dropping the ring first cancels and reaps whatever is still in flight; if the
//!   kernel does not finish within the patience, the memory is leaked, never freed
//!   under it.

use crate::outbuf::OutBuf;
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use rustix::io::Errno;
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The provided-buffer group every multishot recv draws from.
const BGID: u16 = 0;
/// Most chunks one `sendmsg` takes.
const MAX_IOV: usize = 64;
/// User data: the operation kind in the top byte, a connection id below.
const KIND_SHIFT: u32 = 56;
/// Mask of the connection id part of user data.
const KEY_MASK: u64 = (1 << KIND_SHIFT) - 1;
/// Operation kinds.
const ACCEPT: u64 = 1;
/// Multishot recv of one connection.
const RECV: u64 = 2;
/// `sendmsg` of one connection.
const SEND: u64 = 3;
/// Multishot poll of the cross-thread waker.
const WAKER: u64 = 4;
/// A cancellation (its own completion carries nothing we need).
const CANCEL: u64 = 5;

/// One reaped completion, decoded.
#[derive(Debug)]
pub(super) enum Completion {
    /// The multishot accept produced a socket or failed.
    Accept {
        /// The accepted socket, or why not.
        result: Result<OwnedFd, Errno>,
        /// The accept stays armed.
        more: bool,
    },
    /// A connection's multishot recv produced bytes, end of stream, or an error.
    Recv {
        /// The connection (a [`ConnId`](crate::ConnId) as `u64`).
        key: u64,
        /// Bytes received (0: end of stream), or why not.
        result: Result<usize, Errno>,
        /// The provided buffer holding them; give it back with [`Ring::recycle`].
        buf: Option<u16>,
        /// The recv stays armed.
        more: bool,
    },
    /// A connection's send finished.
    Send {
        /// The connection.
        key: u64,
        /// Bytes the kernel took, or why not.
        result: Result<usize, Errno>,
        /// The output the send was made from, nothing consumed yet.
        out: OutBuf,
    },
    /// The waker's eventfd became readable.
    Waker {
        /// The poll stays armed.
        more: bool,
    },
}

/// One entry of the provided-buffer ring (`struct io_uring_buf`). The ring's tail
/// overlays the `resv` field of entry 0 (`struct io_uring_buf_ring`).
#[repr(C)]
struct RingEntry {
    /// Buffer address.
    addr: u64,
    /// Buffer length.
    len: u32,
    /// Buffer id, reported back in completions.
    bid: u16,
    /// Reserved (entry 0: the ring's tail).
    resv: u16,
}

/// Receive buffers and the ring that publishes them to the kernel.
struct BufRing {
    /// `count` ring entries, page-aligned.
    entries: NonNull<RingEntry>,
    /// `count * size` bytes of buffers.
    data: NonNull<u8>,
    /// Number of buffers (a power of two).
    count: u16,
    /// Bytes per buffer.
    size: u32,
    /// Our tail: entries before it are published.
    tail: u16,
}

impl BufRing {
    /// The layouts of the ring and of the buffers.
    fn layouts(count: u16, size: u32) -> (Layout, Layout) {
        let ring = Layout::from_size_align(usize::from(count) * size_of::<RingEntry>(), 4096);
        let data = Layout::from_size_align(usize::from(count) * size as usize, 4096);
        (
            ring.expect("ring layout fits"),
            data.expect("buffer layout fits"),
        )
    }

    /// `count` buffers of `size` bytes, all published.
    fn new(count: u16, size: u32) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && size > 0);
        let (ring_layout, data_layout) = Self::layouts(count, size);
        // SAFETY: both layouts have a non-zero size (count and size are non-zero).
        let entries = NonNull::new(unsafe { alloc_zeroed(ring_layout) }.cast::<RingEntry>());
        // SAFETY: as above.
        let data = NonNull::new(unsafe { alloc_zeroed(data_layout) });
        let (entries, data) = match (entries, data) {
            (Some(e), Some(d)) => (e, d),
            (e, d) => {
                if let Some(e) = e {
                    // SAFETY: allocated just above with this layout.
                    unsafe { dealloc(e.as_ptr().cast(), ring_layout) };
                }
                if let Some(d) = d {
                    // SAFETY: allocated just above with this layout.
                    unsafe { dealloc(d.as_ptr(), data_layout) };
                }
                return Err(io::ErrorKind::OutOfMemory.into());
            }
        };
        let mut ring = BufRing {
            entries,
            data,
            count,
            size,
            tail: 0,
        };
        for bid in 0..count {
            ring.write_entry(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Writes buffer `bid` into the entry at our tail and advances it (unpublished).
    fn write_entry(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.data.as_ptr() as u64 + u64::from(bid) * u64::from(self.size);
        // SAFETY: `index < count`, inside the entries allocation. The kernel reads only
        // entries between its head and the published tail, and this one is at the tail.
        // Raw field writes: entry 0's `resv` (the tail the kernel reads) is not touched.
        unsafe {
            let entry = self.entries.as_ptr().add(index);
            ptr::addr_of_mut!((*entry).addr).write(addr);
            ptr::addr_of_mut!((*entry).len).write(self.size);
            ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes every entry written so far.
    fn publish(&self) {
        // SAFETY: the tail is the aligned u16 at entry 0's `resv`, inside the ring
        // allocation; the kernel reads it with acquire ordering and never writes it.
        let tail = unsafe { AtomicU16::from_ptr(ptr::addr_of_mut!((*self.entries.as_ptr()).resv)) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid`, which a completion handed to us.
    fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            bid < self.count && len <= self.size as usize,
            "buffer {bid}/{len}"
        );
        let offset = usize::from(bid) * self.size as usize;
        // SAFETY: in bounds (checked above). The kernel filled `len` bytes of this
        // buffer and took it off the ring; it writes it again only after `recycle`
        // republishes it, which needs `&mut self`, so this borrow has ended by then.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr().add(offset), len) }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        let (ring_layout, data_layout) = Self::layouts(self.count, self.size);
        // SAFETY: allocated in `new` with these layouts. `Ring` drops a `BufRing` only
        // once no recv is in flight and the ring is unregistered (or leaks it).
        unsafe {
            dealloc(self.entries.as_ptr().cast(), ring_layout);
            dealloc(self.data.as_ptr(), data_layout);
        }
    }
}

/// One connection's send: the output and the `msghdr`/iovecs pointing into it.
struct SendOp {
    /// The bytes being sent (chunks are not touched while the send is in flight).
    out: OutBuf,
    /// One iovec per chunk (at most [`MAX_IOV`]).
    iov: Vec<libc::iovec>,
    /// The message header the submission points at.
    msg: Box<libc::msghdr>,
}

impl SendOp {
    /// An empty op (reused from send to send).
    fn new() -> SendOp {
        SendOp {
            out: OutBuf::default(),
            iov: Vec::with_capacity(MAX_IOV),
            // SAFETY: an all-zero msghdr is valid: null pointers, zero lengths.
            msg: Box::new(unsafe { std::mem::zeroed() }),
        }
    }

    /// Points the header at `out`'s chunks and builds the submission.
    fn entry(&mut self, fd: BorrowedFd<'_>, user_data: u64) -> squeue::Entry {
        self.iov.clear();
        self.iov
            .extend(self.out.slices(MAX_IOV).map(|s| libc::iovec {
                iov_base: s.as_ptr().cast_mut().cast(),
                iov_len: s.len(),
            }));
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = self.iov.len() as _;
        let msg: *const libc::msghdr = &*self.msg;
        opcode::SendMsg::new(Fd(fd.as_raw_fd()), msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(user_data)
    }
}

/// The io_uring instance, its receive buffers and its in-flight sends.
pub(super) struct Ring {
    /// The ring.
    uring: IoUring,
    /// Receive buffers (`None` once leaked).
    bufs: Option<BufRing>,
    /// Sends in flight, by connection.
    sends: HashMap<u64, SendOp>,
    /// Finished send ops kept for reuse (no allocation per send).
    spare: Vec<SendOp>,
    /// Submitted operations whose last completion has not been reaped.
    inflight: usize,
    /// Raw completions, reused between reaps.
    raw: Vec<(u64, i32, u32)>,
}

/// How the ring was set up (for the log).
const SETUPS: [&str; 3] = ["defer_taskrun", "coop_taskrun", "plain"];

impl Ring {
    /// A ring of `entries` submissions, `bufs` receive buffers of `buf_size` bytes.
    /// It starts disabled, so it can be made when the engine binds (taking its fd
    /// then, like the epoll driver's) and run on another thread: [`Ring::enable`]
    /// makes the calling thread its only submitter.
    pub(super) fn new(entries: u32, bufs: u16, buf_size: u32) -> io::Result<Ring> {
        let mut last = None;
        let mut uring = None;
        for (i, setup) in SETUPS.iter().enumerate() {
            let mut b = IoUring::builder();
            b.setup_cqsize(entries * 4).setup_r_disabled();
            match i {
                0 => {
                    b.setup_single_issuer().setup_defer_taskrun();
                }
                1 => {
                    b.setup_coop_taskrun().setup_taskrun_flag();
                }
                _ => {}
            }
            match b.build(entries) {
                Ok(u) => {
                    tracing::debug!(setup, entries, "io_uring ring");
                    uring = Some(u);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(uring) = uring else {
            return Err(last.unwrap_or_else(|| io::ErrorKind::Unsupported.into()));
        };
        let bufs = BufRing::new(bufs, buf_size)?;
        // SAFETY: the ring memory stays allocated while registered: `Ring::drop`
        // unregisters it before `BufRing` frees it, or leaks it.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                bufs.entries.as_ptr() as u64,
                bufs.count,
                BGID,
                0,
            )?;
        }
        Ok(Ring {
            uring,
            bufs: Some(bufs),
            sends: HashMap::new(),
            spare: Vec::new(),
            inflight: 0,
            raw: Vec::new(),
        })
    }

    /// Enables the ring; the calling thread becomes its submitter.
    pub(super) fn enable(&mut self) -> io::Result<()> {
        self.uring.submitter().register_enable_rings()
    }

    /// Queues one submission, handing full batches to the kernel as needed.
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry pushed here is built in this file. Accept, multishot
            // recv (kernel-picked buffers), poll and cancel point at no memory of ours;
            // a send points into its `SendOp`, which stays in `self.sends` (its heap
            // parts unmoved) until `reap` sees its completion.
            if unsafe { self.uring.submission().push(&entry) }.is_ok() {
                self.inflight += 1;
                return Ok(());
            }
            // The queue is full: hand it to the kernel. A signal or pending task work
            // can interrupt the enter before it consumed anything; just try again.
            match self.uring.submit() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Arms a multishot accept on `listener` (new sockets are close-on-exec).
    pub(super) fn accept(&mut self, listener: BorrowedFd<'_>) -> io::Result<()> {
        let e = opcode::AcceptMulti::new(Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(ACCEPT << KIND_SHIFT);
        self.push(e)
    }

    /// Arms a multishot recv on connection `key` into the provided buffers.
    pub(super) fn recv(&mut self, fd: BorrowedFd<'_>, key: u64) -> io::Result<()> {
        let e = opcode::RecvMulti::new(Fd(fd.as_raw_fd()), BGID)
            .build()
            .user_data(RECV << KIND_SHIFT | key);
        self.push(e)
    }

    /// Arms a multishot poll for readability of the waker's eventfd.
    pub(super) fn poll_waker(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let e = opcode::PollAdd::new(Fd(fd.as_raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(WAKER << KIND_SHIFT);
        self.push(e)
    }

    /// Sends `out` on connection `key` (at most one send per connection in flight).
    pub(super) fn send(&mut self, fd: BorrowedFd<'_>, key: u64, out: OutBuf) -> io::Result<()> {
        let mut op = self.spare.pop().unwrap_or_else(SendOp::new);
        op.out = out;
        let entry = op.entry(fd, SEND << KIND_SHIFT | key);
        // Moving the op moves no memory the entry points at (all of it is on the heap).
        let earlier = self.sends.insert(key, op);
        debug_assert!(earlier.is_none(), "two sends in flight on one connection");
        self.push(entry)
    }

    /// Cancels connection `key`'s recv.
    pub(super) fn cancel_recv(&mut self, key: u64) -> io::Result<()> {
        self.cancel(RECV << KIND_SHIFT | key)
    }

    /// Cancels connection `key`'s send (its completion still returns the output).
    pub(super) fn cancel_send(&mut self, key: u64) -> io::Result<()> {
        self.cancel(SEND << KIND_SHIFT | key)
    }

    /// Cancels the multishot accept.
    pub(super) fn cancel_accept(&mut self) -> io::Result<()> {
        self.cancel(ACCEPT << KIND_SHIFT)
    }

    /// Cancels the operation with this user data.
    fn cancel(&mut self, user_data: u64) -> io::Result<()> {
        let e = opcode::AsyncCancel::new(user_data)
            .build()
            .user_data(CANCEL << KIND_SHIFT);
        self.push(e)
    }

    /// Cancels everything in flight.
    fn cancel_everything(&mut self) -> io::Result<()> {
        let e = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(CANCEL << KIND_SHIFT);
        self.push(e)
    }

    /// Submits what is queued and waits for at least one completion, at most `timeout`
    /// (`Some(ZERO)`: only collects what is ready).
    pub(super) fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let result = match timeout {
            None => self.uring.submit_and_wait(1),
            Some(Duration::ZERO) => self.submit_and_poll(),
            Some(t) => {
                let ts = Timespec::from(t);
                let args = SubmitArgs::new().timespec(&ts);
                self.uring.submitter().submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            // Timed out, interrupted, or completions must be reaped before more fit.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Submits what is queued and runs the deferred task work (which makes ready
    /// completions visible), never sleeping: an enter with `GETEVENTS` and no minimum.
    /// A zero timeout with a minimum of one would arm a timer and go through the
    /// scheduler whenever nothing is ready, which is what a busy poll hits each time.
    fn submit_and_poll(&mut self) -> io::Result<usize> {
        let queued = self.uring.submission().len() as u32;
        // SAFETY: no argument is passed (the size of an unused pointer type), and
        // every queued entry is valid (see `push`).
        unsafe {
            self.uring.submitter().enter::<libc::sigset_t>(
                queued,
                0,
                io_uring::EnterFlags::GETEVENTS.bits(),
                None,
            )
        }
    }

    /// Moves every available completion into `out`.
    pub(super) fn reap(&mut self, out: &mut Vec<Completion>) {
        self.raw.extend(
            self.uring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let raw = std::mem::take(&mut self.raw);
        for &(user_data, res, flags) in &raw {
            let kind = user_data >> KIND_SHIFT;
            let key = user_data & KEY_MASK;
            let more = cqueue::more(flags);
            let last = match kind {
                ACCEPT | RECV | WAKER => !more,
                _ => true,
            };
            if last {
                self.inflight -= 1;
            }
            let errno = || Errno::from_raw_os_error(-res);
            match kind {
                ACCEPT => out.push(Completion::Accept {
                    result: if res >= 0 {
                        // SAFETY: a successful accept completion is a new fd the kernel
                        // installed for us; nothing else owns it.
                        Ok(unsafe { OwnedFd::from_raw_fd(res) })
                    } else {
                        Err(errno())
                    },
                    more,
                }),
                RECV => out.push(Completion::Recv {
                    key,
                    result: if res >= 0 {
                        Ok(res as usize)
                    } else {
                        Err(errno())
                    },
                    buf: cqueue::buffer_select(flags),
                    more,
                }),
                SEND => {
                    let Some(mut op) = self.sends.remove(&key) else {
                        tracing::error!(key, "send completion without its op");
                        continue;
                    };
                    let out_buf = std::mem::take(&mut op.out);
                    op.iov.clear();
                    self.spare.push(op);
                    out.push(Completion::Send {
                        key,
                        result: if res >= 0 {
                            Ok(res as usize)
                        } else {
                            Err(errno())
                        },
                        out: out_buf,
                    });
                }
                WAKER => out.push(Completion::Waker { more }),
                _ => {}
            }
        }
        self.raw = raw;
        self.raw.clear();
    }

    /// The first `len` bytes of provided buffer `bid` (from a [`Completion::Recv`]).
    pub(super) fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        match &self.bufs {
            Some(b) => b.buffer(bid, len),
            None => &[],
        }
    }

    /// Gives buffer `bid` back to the kernel.
    pub(super) fn recycle(&mut self, bid: u16) {
        if let Some(b) = &mut self.bufs {
            b.write_entry(bid);
            b.publish();
        }
    }

    /// Whether completions are waiting to be reaped.
    pub(super) fn ready(&mut self) -> bool {
        !self.uring.completion().is_empty()
    }

    /// Operations still in flight.
    pub(super) fn inflight(&self) -> usize {
        self.inflight
    }

    /// Cancels everything and reaps until nothing is in flight or `patience` runs out;
    /// the completions go to `out`.
    pub(super) fn quiesce(&mut self, patience: Duration, out: &mut Vec<Completion>) {
        if self.inflight == 0 {
            return;
        }
        if let Err(e) = self.cancel_everything() {
            tracing::warn!(error = %e, "io_uring cancel");
        }
        let deadline = Instant::now() + patience;
        while self.inflight > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Err(e) = self.submit_and_wait(Some(left.min(Duration::from_millis(50)))) {
                tracing::warn!(error = %e, "io_uring wait while stopping");
                break;
            }
            self.reap(out);
        }
    }
}

// SAFETY: the raw pointers in `BufRing` and `SendOp` point at memory the `Ring` owns
// alone. A ring moves between threads only before `enable` (the engine is built on one
// thread and run on another), when no operation is in flight and no send op exists;
// after that it stays on the thread that enabled it, the only one the kernel lets
// submit (single-issuer rings).
#[allow(unsafe_code)]
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        let mut rest = Vec::new();
        self.quiesce(Duration::from_secs(2), &mut rest);
        for c in rest {
            if let Completion::Recv { buf: Some(bid), .. } = c {
                self.recycle(bid);
            }
        }
        if self.inflight > 0 {
            // The kernel may still write into the receive buffers or read the sends:
            // leak them rather than free memory under it.
            tracing::error!(
                inflight = self.inflight,
                "io_uring operations outlived the engine; leaking their buffers"
            );
            std::mem::forget(self.bufs.take());
            std::mem::forget(std::mem::take(&mut self.sends));
            return;
        }
        if let Err(e) = self.uring.submitter().unregister_buf_ring(BGID) {
            tracing::debug!(error = %e, "unregister provided buffers");
        }
    }
}

/// Whether this kernel runs everything the driver uses; `Err` names what is missing.
pub(super) fn probe() -> Result<(), String> {
    let uring = IoUring::new(8).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    if !uring.params().is_feature_ext_arg() {
        return Err("no IORING_FEAT_EXT_ARG (wait timeouts, Linux 5.11)".into());
    }
    if !uring.params().is_feature_nodrop() {
        return Err("no IORING_FEAT_NODROP (Linux 5.5)".into());
    }
    let mut probe = io_uring::Probe::new();
    uring
        .submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("IORING_REGISTER_PROBE failed: {e}"))?;
    let needed = [
        (opcode::AcceptMulti::CODE, "ACCEPT"),
        (opcode::RecvMulti::CODE, "RECV"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        // Multishot recv came with Linux 6.0, the release that added SEND_ZC; the
        // multishot flag itself cannot be probed.
        (opcode::SendZc::CODE, "SEND_ZC (Linux 6.0: multishot recv)"),
    ];
    for (code, name) in needed {
        if !probe.is_supported(code) {
            return Err(format!("the kernel lacks IORING_OP_{name}"));
        }
    }
    let bufs = BufRing::new(1, 64).map_err(|e| format!("buffer ring: {e}"))?;
    // SAFETY: registered only while `bufs` is alive: unregistered (or the ring
    // destroyed, with no operation submitted) before it is dropped.
    let registered = unsafe {
        uring
            .submitter()
            .register_buf_ring_with_flags(bufs.entries.as_ptr() as u64, 1, BGID, 0)
    };
    registered.map_err(|e| format!("provided-buffer rings (Linux 5.19): {e}"))?;
    let unregistered = uring.submitter().unregister_buf_ring(BGID);
    // The ring goes first, so the buffers are never freed while registered.
    drop(uring);
    drop(bufs);
    unregistered.map_err(|e| format!("unregister provided buffers: {e}"))?;
    Ok(())
}

//! 10 000 tasks each waiting on its own socketpair (borrowed-fd waits) all complete.
//!
//! 10 000 pairs are 20 000 fds, more than a default fd limit (and containers may
//! forbid raising the hard limit even to root). The writing ends therefore wait "in
//! flight": they are sent over a unix socket with `SCM_RIGHTS` and closed here, which
//! keeps their files (and so the pairs) alive without occupying our fd table; they are
//! received back in batches when it is time to write. The tasks wait on the 10 000
//! reading ends in this process the whole time.

use greenfd_rt::{block_on, current_reactor, spawn};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

const TASKS: usize = 10_000;
/// Fds per `SCM_RIGHTS` message (the kernel's maximum is 253).
const BATCH: usize = 250;

/// Raises RLIMIT_NOFILE to at least `need`; returns why not if impossible.
fn raise_nofile(need: u64) -> Result<(), String> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    if cur.current.is_none_or(|c| c >= need) {
        return Ok(());
    }
    let max = cur.maximum.map_or(need, |m| m.max(need));
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(need),
            maximum: Some(max),
        },
    )
    .map_err(|e| format!("cannot raise RLIMIT_NOFILE to {need}: {e}"))
}

/// Parks `fds` in the vault socket.
fn park(vault: &UnixStream, fds: &[OwnedFd]) {
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    assert!(cmsg.push(SendAncillaryMessage::ScmRights(&borrowed)));
    sendmsg(vault, &[IoSlice::new(b"x")], &mut cmsg, SendFlags::empty()).unwrap();
}

/// Takes the next batch of parked fds back, in the order they were parked.
fn unpark(vault: &UnixStream) -> Vec<OwnedFd> {
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    recvmsg(
        vault,
        &mut [IoSliceMut::new(&mut byte)],
        &mut cmsg,
        RecvFlags::CMSG_CLOEXEC,
    )
    .unwrap();
    let mut out = Vec::new();
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            out.extend(fds);
        }
    }
    out
}

#[test]
fn ten_thousand_tasks_on_ten_thousand_socketpairs_all_complete() {
    if let Err(why) = raise_nofile((TASKS + 2 * BATCH + 256) as u64) {
        eprintln!("skip: {why}");
        return;
    }
    let done = block_on(async {
        let (vault_in, vault_out) = UnixStream::pair().unwrap();
        let mut handles = Vec::with_capacity(TASKS);
        let mut pending = Vec::with_capacity(BATCH);
        for i in 0..TASKS {
            let (a, b) = UnixStream::pair().unwrap();
            pending.push(OwnedFd::from(a));
            if pending.len() == BATCH {
                park(&vault_in, &pending);
                pending.clear();
            }
            handles.push(spawn(async move {
                let reactor = current_reactor().unwrap();
                reactor.wait_readable(b.as_fd()).await.unwrap();
                let mut byte = [0u8; 1];
                (&b).read_exact(&mut byte).unwrap();
                assert_eq!(byte[0], (i % 256) as u8, "task {i} got its own byte");
                1usize
            }));
        }
        assert!(pending.is_empty());
        // Let every task park, then check they all wait.
        futures_lite::future::yield_now().await;
        let stats = current_reactor().unwrap().statistics();
        assert_eq!(stats.tasks_waiting_read, TASKS);
        assert_eq!(stats.armed_fds, TASKS);
        let mut i = 0;
        while i < TASKS {
            for a in unpark(&vault_out) {
                UnixStream::from(a).write_all(&[(i % 256) as u8]).unwrap();
                i += 1;
            }
        }
        let mut done = 0;
        for h in handles {
            done += h.await.unwrap();
        }
        let stats = current_reactor().unwrap().statistics();
        assert_eq!((stats.tasks_waiting_read, stats.armed_fds), (0, 0));
        done
    })
    .unwrap();
    assert_eq!(done, TASKS);
}

//! The fusermount3 route: FUSE for any user through the setuid helper of package fuse3.
//!
//! `fusermount3` mounts on a directory the user owns and hands back the `/dev/fuse` fd
//! over the socket named by `_FUSE_COMMFD` (libfuse's own protocol). Steps:
//!
//! 1. a fresh private directory (mode 0700) in the temp dir;
//! 2. `fusermount3 -o nosuid,nodev,noexec,fsname=greenfd-vpoll -- DIR` with `_FUSE_COMMFD`
//!    set to one end of a socketpair; receive the `/dev/fuse` fd (`SCM_RIGHTS`);
//! 3. start serving, `open(DIR, O_PATH | O_DIRECTORY)`;
//! 4. `fusermount3 -u -z -q DIR` (lazy: the mount stays alive, detached, for our fd), and
//!    `rmdir DIR`; files are then opened with `openat(dirfd, …)`.
//!
//! **The setup window.** Between steps 2 and 4 (a few milliseconds, once per process) the
//! mount is attached at `DIR` and visible in `/proc/*/mountinfo`. A process killed inside
//! that window leaves a stale mount (`Transport endpoint is not connected`) and its
//! directory behind: `fusermount3 -u DIR && rmdir DIR` removes them. Exit, panics and
//! kills at any other time leave nothing. The user-namespace route has no such window.
//!
//! `fusermount3` opens `/dev/fuse` with the caller's permissions, so it does not help when
//! the node is not accessible (mode 0600); it refuses `allow_other` unless
//! `/etc/fuse.conf` has `user_allow_other`, and it is not asked for it.

use super::mount::{Connection, Detach, MountPoint, Root, open_dev, recv_fds};
use super::{THIS, unavailable};
use crate::Result;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The helper's name.
const FUSERMOUNT: &str = "fusermount3";

/// Where `fusermount3` is: on `PATH`, else in the usual system directories.
pub(super) fn find() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(FUSERMOUNT));
    let system = ["/usr/bin", "/bin", "/usr/local/bin"]
        .into_iter()
        .map(|d| Path::new(d).join(FUSERMOUNT));
    from_path.chain(system).find(|p| p.is_file())
}

/// Why a `fusermount3` run failed, from its exit status and stderr.
fn failure(what: &str, status: std::process::ExitStatus, stderr: &[u8]) -> crate::Error {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    unavailable(
        THIS,
        format!(
            "the fusermount route: `{what}` failed ({status}){}{}",
            if text.is_empty() { "" } else { ": " },
            text
        ),
    )
}

/// Gets a connection through `fusermount3`.
pub(super) fn connect() -> Result<Connection> {
    let Some(bin) = find() else {
        return Err(unavailable(
            THIS,
            "the fusermount route: fusermount3 is not installed (package fuse3)",
        ));
    };
    // fusermount3 would fail the same way, less plainly.
    drop(open_dev()?);
    let mut point = MountPoint::create(Detach::Fusermount(bin.clone()))?;
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| unavailable(THIS, format!("socketpair for fusermount3: {e}")))?;
    let theirs_raw = theirs.as_raw_fd();
    let mut cmd = Command::new(&bin);
    cmd.args(["-o", "nosuid,nodev,noexec,fsname=greenfd-vpoll", "--"])
        .arg(point.path())
        .env("_FUSE_COMMFD", theirs_raw.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure only clears FD_CLOEXEC with fcntl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(theirs_raw, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| unavailable(THIS, format!("cannot run {}: {e}", bin.display())))?;
    drop(theirs);
    // fusermount3 sends the fd, then exits; its stderr closes when it does.
    let mut stderr = Vec::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_end(&mut stderr);
    }
    let status = child
        .wait()
        .map_err(|e| unavailable(THIS, format!("waiting for fusermount3: {e}")))?;
    if !status.success() {
        return Err(failure("fusermount3 -o … DIR", status, &stderr));
    }
    point.mounted = true;
    let dev = receive_fd(&ours)?;
    tracing::trace!(?dev, path = %point.path().display(), "vpoll fuse: fusermount3 mounted");
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    Ok(Connection {
        dev,
        root: Root::OnDir(point),
        owner: (uid, gid),
    })
}

/// Receives the one fd `fusermount3` sends over `_FUSE_COMMFD`.
fn receive_fd(sock: &OwnedFd) -> Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut control = [0u64; 4];
    // Non-blocking: the sender has exited, so the message is there or never comes.
    let (_, mut passed) =
        recv_fds(sock, &mut byte, &mut control, libc::MSG_DONTWAIT).map_err(|e| {
            unavailable(
                THIS,
                format!("the fusermount route: no fd from fusermount3: {e}"),
            )
        })?;
    match passed.len() {
        1 => Ok(passed.pop().expect("one fd")),
        n => Err(unavailable(
            THIS,
            format!("the fusermount route: fusermount3 passed {n} fds, expected 1"),
        )),
    }
}

/// `fusermount3 -u -z -q DIR`: lazily detaches our mount from `dir`.
pub(super) fn unmount(bin: &Path, dir: &Path) -> Result<()> {
    let out = Command::new(bin)
        .args(["-u", "-z", "-q", "--"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| unavailable(THIS, format!("cannot run {}: {e}", bin.display())))?;
    if !out.status.success() {
        return Err(failure("fusermount3 -u -z DIR", out.status, &out.stderr));
    }
    Ok(())
}

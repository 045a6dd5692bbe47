//! tokio's `AsyncFd` waits on a `VpollFd` like on any socket, on every backend.

mod common;

use common::{SAFETY, make};
use greenfd_test_support::backends;
use greenfd_vpoll::Events;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

#[test]
fn tokio_async_fd_waits_for_vpoll_events() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    for b in backends() {
        rt.block_on(async {
            let v = make(b, Events::empty());
            // SAFETY: a `VpollFd` owns its descriptor and `as_raw_fd` always returns
            // it; the AsyncFd owns the VpollFd, so the fd stays open while registered.
            let afd = unsafe {
                AsyncFd::register_with_interest(v, Interest::READABLE | Interest::WRITABLE)
            }
            .map_err(|e| e.to_string())
            .unwrap();
            let setter = async {
                tokio::task::yield_now().await;
                afd.get_ref().add(Events::IN).unwrap();
            };
            let (guard, ()) =
                tokio::time::timeout(SAFETY, async { tokio::join!(afd.readable(), setter) })
                    .await
                    .unwrap_or_else(|_| panic!("{b}: readable() never completed"));
            let mut guard = guard.unwrap();
            assert!(guard.ready().is_readable(), "{b}");
            afd.get_ref().del(Events::IN).unwrap();
            guard.clear_ready();

            afd.get_ref().add(Events::OUT).unwrap();
            let mut guard = tokio::time::timeout(SAFETY, afd.writable())
                .await
                .unwrap_or_else(|_| panic!("{b}: writable() never completed"))
                .unwrap();
            assert!(guard.ready().is_writable(), "{b}");
            afd.get_ref().del(Events::OUT).unwrap();
            guard.clear_ready();
            assert_eq!(afd.get_ref().events().unwrap(), Events::empty(), "{b}");
        });
    }
}

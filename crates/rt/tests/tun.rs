//! TUN and TAP devices through the rt API, in a private network namespace of the test
//! thread, with every test body run under greenfd-rt, tokio (multi-thread and
//! current-thread) and smol: packets both ways, a clear error when the device vanishes,
//! multi-queue, concurrent send and recv through `&self`, and two TAP devices where a
//! stalled one never delays the other.
//!
//! Devices and sockets are created on the test thread (the one in the namespace); the
//! runtimes' threads only do IO on the fds, and `ip` runs in the namespace via
//! [`ip_in`].

mod common;

use common::*;
use greenfd_rt::{Async, DeviceError, TapDevice, TunDevice};
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::{Arc, Mutex};

#[test]
fn tun_packets_both_ways_then_a_clear_error_when_it_vanishes() {
    let _s = serial();
    if let Err(why) = private_netns() {
        eprintln!("skip: {why}");
        return;
    }
    assert!(matches!(
        TunDevice::new("a-name-that-is-too-long"),
        Err(DeviceError::InvalidName(_))
    ));
    let ns = Arc::new(this_netns());
    for (i, rt) in RUNTIMES.into_iter().enumerate() {
        let name = format!("gtun{i}");
        let tun = TunDevice::new(&name).unwrap();
        assert_eq!(tun.name(), name);
        let local = Ipv4Addr::new(10, 78, i as u8, 1);
        let remote = Ipv4Addr::new(10, 78, i as u8, 2);
        ip(&["addr", "add", &format!("{local}/24"), "dev", &name]);
        ip(&["link", "set", "dev", &name, "up"]);
        let sock = UdpSocket::bind((local, 0)).unwrap();
        let ns = Arc::clone(&ns);
        run(rt, move |rt| async move {
            // Kernel → device: a datagram routed to the remote comes out as an IP packet.
            let port = sock.local_addr().unwrap().port();
            let sock = Async::new(sock).unwrap();
            sock.get_ref().send_to(b"to the tun", (remote, 7)).unwrap();
            let mut buf = [0u8; 2048];
            loop {
                let n = tun.recv(&mut buf).await.unwrap();
                let p = &buf[..n];
                // Skip anything else the kernel sends (e.g. IPv6 chatter).
                if p.len() >= 28 && p[0] >> 4 == 4 && p[9] == 17 && p[16..20] == remote.octets() {
                    assert_eq!(&p[22..24], &7u16.to_be_bytes());
                    assert_eq!(&p[28..], b"to the tun");
                    break;
                }
            }

            // Device → kernel: a packet we write is delivered to the socket.
            let pkt = udp_packet((remote, 7), (local, port), b"from the tun");
            assert_eq!(tun.send(&pkt).await.unwrap(), pkt.len());
            let mut got = [0u8; 64];
            let (n, from) = sock.read_with(|s| s.recv_from(&mut got)).await.unwrap();
            assert_eq!(&got[..n], b"from the tun");
            assert_eq!(from, (remote, 7).into());

            // The interface is deleted while a task waits in recv: it wakes with Vanished.
            let result = Arc::new(Mutex::new(None));
            let waiting = {
                let result = Arc::clone(&result);
                spawn_on(rt, async move {
                    let mut buf = [0u8; 2048];
                    loop {
                        match tun.recv(&mut buf).await {
                            Ok(_) => continue, // late packets from before the deletion
                            Err(e) => {
                                *result.lock().unwrap() = Some(e);
                                return;
                            }
                        }
                    }
                })
            };
            sleep(std::time::Duration::from_millis(20)).await;
            ip_in(&ns, &["link", "del", &name]);
            waiting.await;
            let err = result.lock().unwrap().take().unwrap();
            assert!(
                matches!(err, DeviceError::Vanished(ref n) if *n == name),
                "{err:?}"
            );
        });
    }
}

#[test]
fn multi_queue_tap_opens_several_queues_of_one_interface() {
    let _s = serial();
    if let Err(why) = private_netns() {
        eprintln!("skip: {why}");
        return;
    }
    let q0 = TapDevice::new_multi_queue("gmq0").unwrap();
    let q1 = TapDevice::new_multi_queue("gmq0").unwrap();
    assert_eq!((q0.name(), q1.name()), ("gmq0", "gmq0"));
    // A single-queue open of the same interface is refused: the flags differ.
    assert!(matches!(
        TapDevice::new("gmq0"),
        Err(DeviceError::Create { .. })
    ));
}

#[test]
fn a_tun_device_sends_and_receives_concurrently_through_a_shared_reference() {
    let _s = serial();
    if let Err(why) = private_netns() {
        eprintln!("skip: {why}");
        return;
    }
    for (i, rt) in RUNTIMES.into_iter().enumerate() {
        // Device and addresses are set up on this thread, which is in the namespace; the
        // runtime's threads only do IO on the fds.
        let name = format!("grt{i}");
        let tun = Arc::new(TunDevice::new(&name).unwrap());
        let (ours, peer) = (
            Ipv4Addr::new(10, 79, i as u8, 1),
            Ipv4Addr::new(10, 79, i as u8, 2),
        );
        ip(&["addr", "add", &format!("{ours}/24"), "dev", &name]);
        ip(&["link", "set", &name, "up"]);
        let sock = UdpSocket::bind((ours, 7000)).unwrap();
        run(rt, move |rt| async move {
            const N: u16 = 20;
            // Reader task: packets the kernel routes to the peer come out of the device.
            let reader = {
                let tun = Arc::clone(&tun);
                spawn_on(rt, async move {
                    let mut seen = 0;
                    let mut buf = [0u8; 2048];
                    while seen < N {
                        let n = tun.recv(&mut buf).await.unwrap();
                        if let Some(p) = udp_payload_to(&buf[..n], 9000) {
                            assert_eq!(p, format!("out{seen}").as_bytes());
                            seen += 1;
                        }
                    }
                })
            };
            // Meanwhile this task sends through the same device (&self) and the kernel
            // delivers to our socket.
            let sock = Async::new(sock).unwrap();
            let mut buf = [0u8; 64];
            for k in 0..N {
                let pkt = udp_packet((peer, 9000), (ours, 7000), format!("in{k}").as_bytes());
                tun.send(&pkt).await.unwrap();
                let n = sock.read_with(|s| s.recv(&mut buf)).await.unwrap();
                assert_eq!(&buf[..n], format!("in{k}").as_bytes());
                sock.write_with(|s| s.send_to(format!("out{k}").as_bytes(), (peer, 9000)))
                    .await
                    .unwrap();
            }
            reader.await;
        });
        // The device went away with its last fd, inside the body.
    }
}

#[test]
fn two_taps_one_task_each_a_stalled_device_never_delays_the_other() {
    let _s = serial();
    if let Err(why) = private_netns() {
        eprintln!("skip: {why}");
        return;
    }
    const N: usize = 20;
    for (i, rt) in RUNTIMES.into_iter().enumerate() {
        let mut devices = Vec::new();
        let mut senders = Vec::new();
        for side in 0..2u8 {
            let name = format!("gtap{i}{side}");
            devices.push(TapDevice::new(&name).unwrap());
            let net = 80 + 2 * i as u8 + side;
            ip(&["addr", "add", &format!("10.{net}.0.1/24"), "dev", &name]);
            ip(&["link", "set", &name, "up"]);
            // A static neighbour: datagrams leave as Ethernet frames at once (no ARP).
            ip(&[
                "neigh",
                "add",
                &format!("10.{net}.0.2"),
                "lladdr",
                "02:00:00:00:00:02",
                "dev",
                &name,
            ]);
            let sock = UdpSocket::bind((Ipv4Addr::new(10, net, 0, 1), 0)).unwrap();
            senders.push((sock, Ipv4Addr::new(10, net, 0, 2)));
        }
        // Every frame is queued in the kernel before the runtime starts: the stalled
        // device's fd stays readable throughout.
        for (sock, peer) in &senders {
            for k in 0..N {
                sock.send_to(format!("f{k}").as_bytes(), (*peer, 9000))
                    .unwrap();
            }
        }
        let busy = devices.pop().unwrap();
        let stalled = devices.pop().unwrap();
        run(rt, move |rt| async move {
            let gate = Arc::new(Done::default());
            let progress = Arc::new(Mutex::new(Vec::<(&'static str, usize)>::new()));
            /// Reads `N` UDP frames to port 9000 in order; after the first, `stall_on`
            /// (if any) must open before the device is read again.
            async fn serve(
                tap: TapDevice,
                who: &'static str,
                stall_on: Option<Arc<Done>>,
                progress: Arc<Mutex<Vec<(&'static str, usize)>>>,
            ) {
                let mut buf = [0u8; 2048];
                let mut seen = 0;
                while seen < N {
                    let n = tap.recv(&mut buf).await.unwrap();
                    let Some(p) = buf.get(14..n).and_then(|ip| udp_payload_to(ip, 9000)) else {
                        continue; // e.g. IPv6 router solicitations
                    };
                    assert_eq!(p, format!("f{seen}").as_bytes(), "{who}");
                    seen += 1;
                    progress.lock().unwrap().push((who, seen));
                    if seen == 1 {
                        if let Some(gate) = &stall_on {
                            Arc::clone(gate).wait().await;
                        }
                    }
                }
            }
            let a = spawn_on(
                rt,
                serve(
                    stalled,
                    "stalled",
                    Some(Arc::clone(&gate)),
                    Arc::clone(&progress),
                ),
            );
            let b = spawn_on(rt, serve(busy, "busy", None, Arc::clone(&progress)));
            b.await;
            // The busy device was served completely while the stalled one sat after its
            // first frame (its fd readable all along).
            let stalled_so_far = progress
                .lock()
                .unwrap()
                .iter()
                .filter(|(w, _)| *w == "stalled")
                .count();
            assert!(stalled_so_far <= 1, "the stalled task ran past its stall");
            gate.set();
            a.await;
            let log = progress.lock().unwrap().clone();
            let count = |who| log.iter().filter(|(w, _)| *w == who).count();
            assert_eq!((count("busy"), count("stalled")), (N, N), "{log:?}");
            let last_busy = log.iter().rposition(|(w, _)| *w == "busy").unwrap();
            let second_stalled = log.iter().position(|e| *e == ("stalled", 2)).unwrap();
            assert!(
                last_busy < second_stalled,
                "the busy device finished before the stalled one resumed: {log:?}"
            );
        });
    }
}

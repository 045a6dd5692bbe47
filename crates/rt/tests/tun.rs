//! TUN devices through the rt API, in a private network namespace of the test thread:
//! packets both ways, multi-queue, and a clear error when the device vanishes.

use greenfd_rt::{Async, TapDevice, TunDevice, TunError, block_on, timeout};
use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use greenfd_test_support::{ip, private_netns};

/// The Internet checksum.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4/UDP packet (UDP checksum 0: "none", valid for IPv4).
fn udp_packet(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + payload.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src.0.octets());
    p.extend_from_slice(&dst.0.octets());
    let sum = checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&src.1.to_be_bytes());
    p.extend_from_slice(&dst.1.to_be_bytes());
    p.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

#[test]
fn tun_packets_both_ways_then_a_clear_error_when_it_vanishes() {
    if let Err(why) = private_netns() {
        eprintln!("skip: {why}");
        return;
    }
    block_on(async {
        assert!(matches!(
            TunDevice::new("a-name-that-is-too-long"),
            Err(TunError::InvalidName(_))
        ));
        let tun = TunDevice::new("gtun0").unwrap();
        assert_eq!(tun.name(), "gtun0");
        ip(&["addr", "add", "10.78.0.1/24", "dev", "gtun0"]);
        ip(&["link", "set", "dev", "gtun0", "up"]);
        let local = Ipv4Addr::new(10, 78, 0, 1);
        let remote = Ipv4Addr::new(10, 78, 0, 2);

        // Kernel → device: a datagram routed to 10.78.0.2 comes out as an IP packet.
        let sock = UdpSocket::bind((local, 0)).unwrap();
        let port = sock.local_addr().unwrap().port();
        let sock = Async::new(sock).unwrap();
        sock.get_ref().send_to(b"to the tun", (remote, 7)).unwrap();
        let mut buf = [0u8; 2048];
        loop {
            let n = timeout(Duration::from_secs(10), tun.recv(&mut buf))
                .await
                .expect("a packet within 10 s")
                .unwrap();
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
        let (n, from) = timeout(
            Duration::from_secs(10),
            sock.read_with(|s| s.recv_from(&mut got)),
        )
        .await
        .expect("delivered within 10 s")
        .unwrap();
        assert_eq!(&got[..n], b"from the tun");
        assert_eq!(from, (remote, 7).into());

        // The interface is deleted while a task waits in recv: it wakes with Vanished.
        let waiting = greenfd_rt::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                match tun.recv(&mut buf).await {
                    Ok(_) => continue, // late packets from before the deletion
                    Err(e) => return e,
                }
            }
        });
        futures_lite::future::yield_now().await;
        ip(&["link", "del", "gtun0"]);
        let err = timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken within 10 s")
            .unwrap();
        assert!(
            matches!(err, TunError::Vanished(ref n) if n == "gtun0"),
            "{err:?}"
        );
    })
    .unwrap();
}

#[test]
fn multi_queue_tap_opens_several_queues_of_one_interface() {
    if let Err(why) = private_netns() {
        eprintln!("skip: {why}");
        return;
    }
    block_on(async {
        let q0 = TapDevice::new_multi_queue("gmq0").unwrap();
        let q1 = TapDevice::new_multi_queue("gmq0").unwrap();
        assert_eq!((q0.name(), q1.name()), ("gmq0", "gmq0"));
        // A single-queue open of the same interface is refused: the flags differ.
        assert!(matches!(
            TapDevice::new("gmq0"),
            Err(TunError::Create { .. })
        ));
    })
    .unwrap();
}

//! `greenfd tap`: TAP devices that answer ARP and ping for a virtual peer, one task
//! per device on one single-threaded executor.
//!
//! Run it inside a network namespace you made (`ip netns add x; ip netns exec x
//! greenfd tap ...`): it creates interfaces. The kernel side of device *i* gets the
//! *i*-th subnet after `--addr` (the address plus i × the subnet size, so
//! `10.77.0.1/24` gives `10.77.0.1` on the first device and `10.77.1.1` on the
//! second); the virtual peer that answers is the next address (`10.77.0.2`,
//! `10.77.1.2`), so `ping 10.77.0.2` goes out through the first device and is answered
//! by this program. Interfaces are configured by running the `ip` binary (iproute2).
//! SIGINT/SIGTERM arrive through a signalfd, itself an `Async` fd on the same loop, and
//! end the program cleanly (the interfaces vanish with their fds).

use crate::CliResult;
use crate::signals::{read_signal, stop_signal_fd};
use greenfd_rt::{Async, DeviceError, TapDevice, block_on, internet_checksum, sleep, spawn};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

/// Options of `greenfd tap`.
#[derive(clap::Args)]
#[command(
    after_help = "Device i (0-based) gets the i-th subnet after --addr on the kernel side \
(e.g. 10.77.0.1/24, 10.77.1.1/24, ...); the answering virtual host is the next address \
(10.77.0.2, 10.77.1.2, ...). Interfaces are brought up with the `ip` binary (iproute2). \
Prints one `device NAME kernel A/P peer B mac M` line per device, then `ready`. \
Needs CAP_NET_ADMIN: run it inside a network namespace (ip netns exec NS greenfd tap ...)."
)]
pub struct Args {
    /// Interface name; with --count N > 1 the names are the name's non-digit prefix
    /// followed by 0..N-1 (tap0 -> tap0, tap1, ...).
    #[arg(long, default_value = "tap0")]
    name: String,
    /// Kernel-side address and prefix length of the first device (prefix 8..=30).
    #[arg(long, default_value = "10.77.0.1/24")]
    addr: String,
    /// How many devices to serve.
    #[arg(long, default_value_t = 1)]
    count: u16,
    /// Test hook, `DEVICE:MS`: the task of DEVICE sleeps MS milliseconds (cooperatively)
    /// after every frame it receives, so its queue backs up while the others go on.
    #[arg(long, hide = true, value_parser = parse_stall)]
    stall: Option<(String, u64)>,
}

/// Parses `--stall DEVICE:MS`.
fn parse_stall(s: &str) -> Result<(String, u64), String> {
    let (dev, ms) = s.split_once(':').ok_or("expected DEVICE:MS")?;
    Ok((dev.to_owned(), ms.parse().map_err(|e| format!("MS: {e}"))?))
}

/// One device's addressing.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Plan {
    /// Interface name.
    name: String,
    /// Kernel-side address.
    kernel: Ipv4Addr,
    /// Prefix length.
    prefix: u8,
    /// The virtual host this program plays.
    peer: Ipv4Addr,
    /// The virtual host's MAC address (locally administered).
    mac: [u8; 6],
}

/// Works out names and addresses for every device.
fn plan(args: &Args) -> Result<Vec<Plan>, String> {
    let (ip, prefix) = args
        .addr
        .split_once('/')
        .ok_or_else(|| format!("--addr {:?}: expected A.B.C.D/PREFIX", args.addr))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|e| format!("--addr {:?}: {e}", args.addr))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|e| format!("--addr {:?}: prefix: {e}", args.addr))?;
    if !(8..=30).contains(&prefix) {
        return Err(format!("--addr prefix {prefix}: must be 8..=30"));
    }
    if args.count == 0 {
        return Err("--count must be at least 1".into());
    }
    let size = 1u64 << (32 - prefix);
    let mask = !((size - 1) as u32);
    let host = u32::from(ip) & !mask;
    if host == 0 || u64::from(host) + 1 >= size - 1 {
        return Err(format!(
            "--addr {ip}/{prefix}: need a host address whose next address is also a host (not network/broadcast)"
        ));
    }
    let base = u64::from(u32::from(ip) & mask);
    let stem = args.name.trim_end_matches(|c: char| c.is_ascii_digit());
    (0..u64::from(args.count))
        .map(|i| {
            let net = base + i * size;
            if net + size > 1 << 32 {
                return Err(format!(
                    "--count {}: subnets run past 255.255.255.255",
                    args.count
                ));
            }
            let kernel = Ipv4Addr::from((net + u64::from(host)) as u32);
            let peer = Ipv4Addr::from((net + u64::from(host) + 1) as u32);
            let name = if args.count == 1 {
                args.name.clone()
            } else {
                format!("{stem}{i}")
            };
            let mac = [0x02, 0x67, 0x66, 0x64, (i >> 8) as u8, i as u8];
            Ok(Plan {
                name,
                kernel,
                prefix,
                peer,
                mac,
            })
        })
        .collect()
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    tracing::debug!(?args, "ip");
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `greenfd tap`.
pub fn run(args: Args) -> CliResult {
    let plans = plan(&args)?;
    let signals = stop_signal_fd()?;
    block_on(async move {
        let signals = Async::new(signals)?;
        let mut devices = Vec::new();
        for p in &plans {
            let tap = TapDevice::new(&p.name)?;
            if tap.name() != p.name {
                return Err(format!(
                    "asked for {:?}, the kernel named it {:?}",
                    p.name,
                    tap.name()
                )
                .into());
            }
            // Quiet the link: no IPv6 autoconfiguration chatter (best effort).
            let _ = std::fs::write(
                format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", p.name),
                "1",
            );
            ip(&[
                "addr",
                "add",
                &format!("{}/{}", p.kernel, p.prefix),
                "dev",
                &p.name,
            ])?;
            ip(&["link", "set", "dev", &p.name, "up"])?;
            devices.push(tap);
        }
        let mut out = std::io::stdout().lock();
        for p in &plans {
            writeln!(
                out,
                "device {} kernel {}/{} peer {} mac {}",
                p.name,
                p.kernel,
                p.prefix,
                p.peer,
                fmt_mac(&p.mac)
            )?;
        }
        writeln!(out, "ready")?;
        out.flush()?;
        drop(out);
        let tasks: Vec<_> = devices
            .into_iter()
            .zip(plans)
            .map(|(tap, p)| {
                let stall = match &args.stall {
                    Some((dev, ms)) if *dev == p.name => Some(Duration::from_millis(*ms)),
                    _ => None,
                };
                spawn(serve(tap, p, stall))
            })
            .collect();
        // Wait for SIGINT/SIGTERM on the same loop as the devices.
        let signo = signals.read_with(|fd| read_signal(fd.as_fd())).await?;
        tracing::info!(signo, "signal received, shutting down");
        for t in &tasks {
            t.cancel();
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })??;
    Ok(())
}

/// One device's task: serves until its device fails, then reports why. Only this
/// task ends; the other devices go on.
async fn serve(tap: TapDevice, plan: Plan, stall: Option<Duration>) {
    if let Err(e) = serve_frames(&tap, &plan, stall).await {
        eprintln!(
            "greenfd tap: {}: {e}; its task ends, the other devices go on",
            plan.name
        );
    }
}

/// Reads frames and answers ARP and ping for the peer.
async fn serve_frames(
    tap: &TapDevice,
    plan: &Plan,
    stall: Option<Duration>,
) -> Result<(), DeviceError> {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = tap.recv(&mut buf).await?;
        if let Some(stall) = stall {
            eprintln!(
                "greenfd tap: {}: stalling for {} ms",
                plan.name,
                stall.as_millis()
            );
            sleep(stall).await;
        }
        if let Some(reply) = answer(&buf[..n], plan) {
            tap.send(&reply).await?;
        }
    }
}

/// `aa:bb:..`
fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Ethertype of ARP.
const ETH_ARP: u16 = 0x0806;
/// Ethertype of IPv4.
const ETH_IPV4: u16 = 0x0800;
/// Length of an Ethernet header.
const ETH_LEN: usize = 14;

/// The reply to `frame`, if it is an ARP request or ICMP echo request for the peer.
fn answer(frame: &[u8], plan: &Plan) -> Option<Vec<u8>> {
    if frame.len() < ETH_LEN {
        return None;
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        ETH_ARP => arp_reply(frame, plan),
        ETH_IPV4 => echo_reply(frame, plan),
        _ => None,
    }
}

/// Answers "who has <peer>?" with the peer's MAC.
fn arp_reply(frame: &[u8], plan: &Plan) -> Option<Vec<u8>> {
    let arp = frame.get(ETH_LEN..ETH_LEN + 28)?;
    let (htype, ptype, hlen, plen, op) = (
        u16::from_be_bytes([arp[0], arp[1]]),
        u16::from_be_bytes([arp[2], arp[3]]),
        arp[4],
        arp[5],
        u16::from_be_bytes([arp[6], arp[7]]),
    );
    if (htype, ptype, hlen, plen, op) != (1, ETH_IPV4, 6, 4, 1) || arp[24..28] != plan.peer.octets()
    {
        return None;
    }
    let (sha, spa) = (&arp[8..14], &arp[14..18]);
    let mut r = Vec::with_capacity(ETH_LEN + 28);
    r.extend_from_slice(sha);
    r.extend_from_slice(&plan.mac);
    r.extend_from_slice(&ETH_ARP.to_be_bytes());
    r.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    r.extend_from_slice(&plan.mac);
    r.extend_from_slice(&plan.peer.octets());
    r.extend_from_slice(sha);
    r.extend_from_slice(spa);
    Some(r)
}

/// Answers an ICMP echo request addressed to the peer.
fn echo_reply(frame: &[u8], plan: &Plan) -> Option<Vec<u8>> {
    let ip = frame.get(ETH_LEN..)?;
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20
        || total < ihl + 8
        || total > ip.len()
        || ip[9] != 1
        || ip[16..20] != plan.peer.octets()
    {
        return None;
    }
    // Fragments are not reassembled: answer only whole datagrams.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return None;
    }
    let icmp = &ip[ihl..total];
    if icmp[0] != 8 || icmp[1] != 0 {
        return None;
    }
    let mut r = Vec::with_capacity(ETH_LEN + total);
    r.extend_from_slice(&frame[6..12]);
    r.extend_from_slice(&plan.mac);
    r.extend_from_slice(&ETH_IPV4.to_be_bytes());
    let mut hdr = ip[..ihl].to_vec();
    hdr[8] = 64; // TTL
    hdr[12..16].copy_from_slice(&ip[16..20]);
    hdr[16..20].copy_from_slice(&ip[12..16]);
    hdr[10..12].copy_from_slice(&[0, 0]);
    let sum = internet_checksum(&hdr);
    hdr[10..12].copy_from_slice(&sum.to_be_bytes());
    r.extend_from_slice(&hdr);
    let mut body = icmp.to_vec();
    body[0] = 0; // echo reply
    body[2..4].copy_from_slice(&[0, 0]);
    let sum = internet_checksum(&body);
    body[2..4].copy_from_slice(&sum.to_be_bytes());
    r.extend_from_slice(&body);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, addr: &str, count: u16) -> Args {
        Args {
            name: name.into(),
            addr: addr.into(),
            count,
            stall: None,
        }
    }

    #[test]
    fn plan_spreads_devices_over_consecutive_subnets() {
        let p = plan(&args("tap0", "10.77.0.1/24", 3)).unwrap();
        let got: Vec<_> = p
            .iter()
            .map(|p| (p.name.as_str(), p.kernel.to_string(), p.peer.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("tap0", "10.77.0.1".into(), "10.77.0.2".into()),
                ("tap1", "10.77.1.1".into(), "10.77.1.2".into()),
                ("tap2", "10.77.2.1".into(), "10.77.2.2".into()),
            ]
        );
        assert_eq!(
            plan(&args("veth9", "10.0.0.5/30", 1)).unwrap()[0].name,
            "veth9"
        );
        assert!(
            plan(&args("t", "10.0.0.2/30", 1)).is_err(),
            "peer would be broadcast"
        );
        assert!(
            plan(&args("t", "10.0.0.0/24", 1)).is_err(),
            "network address"
        );
        assert!(plan(&args("t", "10.0.0.1", 1)).is_err());
        assert!(plan(&args("t", "10.0.0.1/31", 1)).is_err());
        assert!(plan(&args("t", "255.255.255.1/24", 2)).is_err());
    }

    fn test_plan() -> Plan {
        plan(&args("tap0", "10.77.0.1/24", 1)).unwrap().remove(0)
    }

    #[test]
    fn arp_request_for_the_peer_gets_a_reply() {
        let p = test_plan();
        let kmac = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&kmac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&kmac);
        f.extend_from_slice(&[10, 77, 0, 1]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[10, 77, 0, 2]);
        let r = answer(&f, &p).unwrap();
        assert_eq!(&r[0..6], &kmac);
        assert_eq!(&r[20..22], &[0, 2], "op reply");
        assert_eq!(&r[22..28], &p.mac);
        assert_eq!(&r[28..32], &[10, 77, 0, 2]);
        assert_eq!(&r[38..42], &[10, 77, 0, 1]);
        f[41] = 3; // someone else
        assert!(answer(&f, &p).is_none());
    }

    #[test]
    fn echo_request_for_the_peer_gets_a_checksummed_reply() {
        let p = test_plan();
        let mut ip = vec![
            0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 77, 0, 1, 10, 77, 0, 2,
        ];
        let mut icmp = vec![8, 0, 0, 0, 0xbe, 0xef, 0, 1];
        icmp.extend_from_slice(b"payload!");
        let s = internet_checksum(&icmp);
        icmp[2..4].copy_from_slice(&s.to_be_bytes());
        let total = (ip.len() + icmp.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let s = internet_checksum(&ip);
        ip[10..12].copy_from_slice(&s.to_be_bytes());
        let mut f = p.mac.to_vec();
        f.extend_from_slice(&[0xaa; 6]);
        f.extend_from_slice(&[0x08, 0]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&icmp);
        let r = answer(&f, &p).unwrap();
        assert_eq!(&r[0..6], &[0xaa; 6]);
        let rip = &r[14..34];
        assert_eq!(internet_checksum(rip), 0, "IP checksum verifies");
        assert_eq!(&rip[12..16], &[10, 77, 0, 2]);
        assert_eq!(&rip[16..20], &[10, 77, 0, 1]);
        let ricmp = &r[34..];
        assert_eq!(ricmp[0], 0);
        assert_eq!(internet_checksum(ricmp), 0, "ICMP checksum verifies");
        assert_eq!(&ricmp[4..], &icmp[4..], "id, sequence and payload echoed");
        assert!(answer(&f[..30], &p).is_none(), "truncated frame ignored");
    }
}

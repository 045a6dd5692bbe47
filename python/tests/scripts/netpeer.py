"""A minimal IPv4 host behind a TAP or TUN device: answers ARP and ICMP echo requests.

Used by the device scripts, which run in a network namespace their test created
(``unshare --net``): nothing here ever reaches a real network.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

ETH_ARP = 0x0806
ETH_IPV4 = 0x0800
ICMP = 1


def mac(last: int) -> bytes:
    """A locally administered unicast MAC address ending in ``last``."""
    return bytes([0x02, 0, 0, 0, 0, last])


def ip4(text: str) -> bytes:
    """Dotted quad to 4 bytes."""
    return bytes(int(p) for p in text.split("."))


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_reply(packet: bytes, peer_ip: bytes) -> bytes | None:
    """The ICMP echo reply to an IPv4 echo request addressed to ``peer_ip``, else None."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if packet[9] != ICMP or packet[16:20] != peer_ip or len(packet) < ihl + 8:
        return None
    icmp = bytearray(packet[ihl:])
    if icmp[0] != 8:  # echo request
        return None
    icmp[0] = 0  # echo reply
    icmp[2:4] = b"\0\0"
    icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
    header = bytearray(packet[:ihl])
    header[12:16], header[16:20] = packet[16:20], packet[12:16]
    header[8] = 64
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    return bytes(header) + bytes(icmp)


def answer_frame(frame: bytes, peer_mac: bytes, peer_ip: bytes) -> tuple[str, bytes] | None:
    """The reply to an Ethernet frame for the host (``peer_mac``, ``peer_ip``): ("arp",
    frame) for an ARP request for ``peer_ip``, ("icmp", frame) for a ping, else None."""
    if len(frame) < 14:
        return None
    dst, src, ethertype = frame[0:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    body = frame[14:]
    if ethertype == ETH_ARP and len(body) >= 28:
        op = struct.unpack("!H", body[6:8])[0]
        sender_mac, sender_ip, target_ip = body[8:14], body[14:18], body[24:28]
        if op == 1 and target_ip == peer_ip:
            arp = struct.pack("!HHBBH", 1, ETH_IPV4, 6, 4, 2) + peer_mac + peer_ip + sender_mac + sender_ip
            return "arp", src + peer_mac + struct.pack("!H", ETH_ARP) + arp
    if ethertype == ETH_IPV4 and dst == peer_mac:
        reply = echo_reply(body, peer_ip)
        if reply is not None:
            return "icmp", src + peer_mac + struct.pack("!H", ETH_IPV4) + reply
    return None


def quiet_ipv6() -> None:
    """Turns IPv6 off for new interfaces of this namespace (no router solicitations)."""
    for conf in ("all", "default"):
        path = Path(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6")
        if path.exists():
            path.write_text("1\n")


def configure(name: str, address_cidr: str) -> None:
    """Brings interface ``name`` up with ``address_cidr`` (in this namespace)."""
    subprocess.run(["ip", "addr", "add", address_cidr, "dev", name], check=True)
    subprocess.run(["ip", "link", "set", "dev", name, "up"], check=True)

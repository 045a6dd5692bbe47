"""TapDevice and TunDevice behaviour, run in a network namespace of its own.

``devices.py CASE`` runs one case and prints "ok" (exit 0), or fails with a traceback.
The test starts it with ``unshare --net``, so the interfaces and the pings stay inside
that namespace.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import select
import subprocess
import sys
import threading

import greenfd
import netpeer

#: Ping deadline in seconds (a bound for broken runs, not a measurement).
DEADLINE = "60"
#: Bound on waits for a device to become readable; reaching it fails the case.
PATIENCE = 60.0


def ping_argv(device: str, peer: str) -> list[str]:
    """One ping through ``device`` to ``peer``."""
    return ["ping", "-n", "-q", "-c", "1", "-w", DEADLINE, "-I", device, peer]


def nonblocking_and_empty() -> None:
    """fileno() is non-blocking; recv on an empty queue raises BlockingIOError."""
    netpeer.quiet_ipv6()
    threads = len(os.listdir("/proc/self/task"))
    with greenfd.TapDevice("gtb0") as tap:
        assert len(os.listdir("/proc/self/task")) == threads, "a device started a thread"
        assert tap.name == "gtb0" and not tap.multi_queue and not tap.closed
        assert fcntl.fcntl(tap.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK
        try:
            tap.recv()
        except BlockingIOError as e:
            assert e.errno == errno.EAGAIN, e
        else:
            raise AssertionError("recv on an empty device returned")
        assert "gtb0" in repr(tap)
    assert tap.closed
    try:
        tap.recv()
    except ValueError as e:
        assert "closed TapDevice" in str(e)
    else:
        raise AssertionError("recv after close returned")
    try:
        greenfd.TapDevice("gtb1").recv(0)
    except greenfd.InvalidArgument as e:
        assert e.errno == errno.EINVAL
    else:
        raise AssertionError("recv(0) returned")


def asyncio_answers_ping() -> None:
    """recv_async/send_async (loop.add_reader/add_writer) answer a ping through a TAP."""
    netpeer.quiet_ipv6()

    async def serve(tap: greenfd.TapDevice) -> list[str]:
        answered: list[str] = []
        while "icmp" not in answered:
            frame = await tap.recv_async()
            reply = netpeer.answer_frame(frame, netpeer.mac(9), netpeer.ip4("10.0.9.2"))
            if reply is not None:
                await tap.send_async(reply[1])
                answered.append(reply[0])
        return answered

    async def main() -> None:
        with greenfd.TapDevice("gta0") as tap:
            netpeer.configure("gta0", "10.0.9.1/24")
            server = asyncio.create_task(serve(tap))
            proc = await asyncio.create_subprocess_exec(
                *ping_argv("gta0", "10.0.9.2"), stdout=asyncio.subprocess.DEVNULL)
            assert await proc.wait() == 0, "ping through gta0 not answered"
            assert await asyncio.wait_for(server, PATIENCE) == ["arp", "icmp"]

    asyncio.run(main())


def tun_answers_ping() -> None:
    """A TUN device carries bare IPv4 packets: a ping is answered through recv/send."""
    netpeer.quiet_ipv6()
    with greenfd.TunDevice("gtun0") as tun:
        netpeer.configure("gtun0", "10.0.8.1/24")
        ping = subprocess.Popen(ping_argv("gtun0", "10.0.8.2"), stdout=subprocess.DEVNULL)
        answered = False
        while not answered:
            ready, _, _ = select.select([tun], [], [], PATIENCE)
            assert ready, "no packet from the TUN device"
            while True:
                try:
                    packet = tun.recv()
                except BlockingIOError:
                    break
                assert packet[0] >> 4 in (4, 6), packet[:4]
                reply = netpeer.echo_reply(packet, netpeer.ip4("10.0.8.2"))
                if reply is not None:
                    assert tun.send(reply) == len(reply)
                    answered = True
        assert ping.wait() == 0, "ping through gtun0 not answered"


def multi_queue() -> None:
    """Two queues of one multi-queue interface: two fds, one interface name."""
    with greenfd.TapDevice("gmq0", multi_queue=True) as q1, \
            greenfd.TapDevice("gmq0", multi_queue=True) as q2:
        assert q1.multi_queue and q2.multi_queue
        assert q1.name == q2.name == "gmq0"
        assert q1.fileno() != q2.fileno()
        links = subprocess.run(["ip", "-o", "link", "show", "gmq0"], capture_output=True,
                               text=True, check=True).stdout
        assert "gmq0" in links


def vanished() -> None:
    """A deleted interface: recv raises OSError with errno EBADFD, saying so."""
    with greenfd.TapDevice("gvan0") as tap:
        subprocess.run(["ip", "link", "delete", "gvan0"], check=True)
        try:
            tap.recv()
        except OSError as e:
            assert e.errno == errno.EBADFD, e
            assert "vanished" in str(e), e
        else:
            raise AssertionError("recv on a deleted interface returned")


def exit_with_live_devices() -> None:
    """Ends with devices open and a thread waiting on one (the test bounds the exit)."""
    devices = [greenfd.TapDevice("gex0"), greenfd.TunDevice("gex1"),
               greenfd.TapDevice("gex2", multi_queue=True)]
    started = threading.Event()

    def wait() -> None:
        started.set()
        select.select([devices[0]], [], [])

    threading.Thread(target=wait, daemon=True).start()
    started.wait()


CASES = {f.__name__: f for f in (nonblocking_and_empty, asyncio_answers_ping, tun_answers_ping,
                                  multi_queue, vanished, exit_with_live_devices)}

if __name__ == "__main__":
    CASES[sys.argv[1]]()
    print("ok")

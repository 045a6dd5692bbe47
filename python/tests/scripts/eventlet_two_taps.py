"""The original scenario: two TAP devices, one eventlet green thread each.

Run inside a network namespace of its own (the test starts it with ``unshare --net``).
Each device has a host behind it (netpeer) served by one green thread: gtap0's reads
with eventlet's green ``os.read``, gtap1's waits with ``hubs.trampoline`` and reads
with ``TapDevice.recv``. A ping through gtap0 must be answered

1. while gtap1's green thread idles in ``trampoline``, and
2. while gtap1's green thread is stalled (woken by a frame, but not reading it);
   after it is released, a ping through gtap1 that waited meanwhile is answered too.

Exit status 0 and a final "ok" line when all of that held; the counts of replies each
thread sent are printed. No timing is asserted: pings have a deadline only so a broken
run ends.

``--control-blocking-read`` runs the original bug instead, to show the scenario tells
the difference: gtap1's green thread calls the plain, blocking ``os.read`` on a
blocking fd, which freezes eventlet's hub, so the ping through gtap0 goes unanswered.
An OS thread (outside the hub) runs that ping, then unfreezes the hub by making gtap1
readable (a ping through it). It prints "control: ping via gtap0 unanswered" and exits 0
when the freeze happened.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import eventlet
from eventlet import event, hubs
from eventlet.green import os as green_os
from eventlet.green import subprocess as green_subprocess

import greenfd
import netpeer

#: name -> (address of this side, address of the host behind the device, its MAC byte).
DEVICES = {"gtap0": ("10.0.0.1/24", "10.0.0.2", 1), "gtap1": ("10.0.1.1/24", "10.0.1.2", 2)}
#: Ping deadline in seconds (a bound for broken runs, not a measurement).
DEADLINE = "60"

replies: dict[str, list[str]] = {name: [] for name in DEVICES}


def handle(dev: greenfd.TapDevice, frame: bytes) -> None:
    """Answers ``frame`` as the host behind ``dev`` would, and records the reply."""
    _, peer, last = DEVICES[dev.name]
    reply = netpeer.answer_frame(frame, netpeer.mac(last), netpeer.ip4(peer))
    if reply is not None:
        kind, data = reply
        dev.send(data)
        replies[dev.name].append(kind)


def serve_with_green_read(dev: greenfd.TapDevice) -> None:
    """gtap0: eventlet's green os.read (it trampolines until readable, then reads)."""
    while True:
        handle(dev, green_os.read(dev.fileno(), 65600))


class Gate:
    """Where gtap1's green thread stalls when told to: woken by a frame, not reading it."""

    def __init__(self) -> None:
        self.closed = False
        self.opened = event.Event()
        self.reached = event.Event()

    def pass_through(self) -> None:
        if self.closed:
            self.reached.send()
            self.opened.wait()


def serve_with_trampoline(dev: greenfd.TapDevice, gate: Gate) -> None:
    """gtap1: hubs.trampoline on the fd, then non-blocking recv until BlockingIOError."""
    while True:
        hubs.trampoline(dev.fileno(), read=True)
        gate.pass_through()
        while True:
            try:
                frame = dev.recv()
            except BlockingIOError:
                break
            handle(dev, frame)


def ping(device: str) -> green_subprocess.Popen:
    """Starts one ping through ``device`` to the host behind it (a green child process)."""
    _, peer, _ = DEVICES[device]
    return green_subprocess.Popen(
        ["ping", "-n", "-q", "-c", "1", "-w", DEADLINE, "-I", device, peer],
        stdout=green_subprocess.PIPE,
        stderr=green_subprocess.STDOUT,
    )


def expect_answered(p: green_subprocess.Popen, what: str) -> None:
    """Waits (green) for ping ``p``; exits 1 with its output unless it got its reply."""
    out = p.stdout.read().decode(errors="replace")
    status = p.wait()
    if status != 0:
        print(f"FAIL: {what}: ping exited {status}\n{out}\nreplies: {replies}")
        sys.exit(1)
    print(f"{what}: answered; replies so far {replies}")


def main() -> int:
    netpeer.quiet_ipv6()
    devices = {}
    for name, (address, _, _) in DEVICES.items():
        devices[name] = greenfd.TapDevice(name)
        netpeer.configure(name, address)
    gate = Gate()
    eventlet.spawn(serve_with_green_read, devices["gtap0"])
    eventlet.spawn(serve_with_trampoline, devices["gtap1"], gate)
    eventlet.sleep(0)

    # 1. gtap1's thread idles in trampoline.
    expect_answered(ping("gtap0"), "ping via gtap0 while gtap1 idles")
    if replies["gtap1"]:
        print(f"FAIL: gtap1 answered without a ping: {replies}")
        return 1

    # 2. gtap1's thread is stalled with a frame waiting (a ping through gtap1 started).
    gate.closed = True
    waiting = ping("gtap1")
    gate.reached.wait()
    expect_answered(ping("gtap0"), "ping via gtap0 while gtap1's thread is stalled")
    if replies["gtap1"]:
        print(f"FAIL: gtap1 answered while stalled: {replies}")
        return 1

    # 3. Released, gtap1's thread reads what waited and its ping is answered.
    gate.closed = False
    gate.opened.send()
    expect_answered(waiting, "ping via gtap1 after its thread was released")
    for dev in devices.values():
        dev.close()
    print("ok")
    return 0


def control_blocking_read() -> int:
    """The original bug: one blocking read freezes every green thread (see module doc)."""
    netpeer.quiet_ipv6()
    devices = {}
    for name, (address, _, _) in DEVICES.items():
        devices[name] = greenfd.TapDevice(name)
        netpeer.configure(name, address)
    eventlet.spawn(serve_with_green_read, devices["gtap0"])
    eventlet.sleep(0)
    gtap1 = devices["gtap1"].fileno()
    os.set_blocking(gtap1, True)
    outcome: dict[str, int] = {}

    def outside_the_hub() -> None:
        _, peer0, _ = DEVICES["gtap0"]
        argv = ["ping", "-n", "-q", "-c", "1", "-w", "3", "-I", "gtap0", peer0]
        outcome["gtap0"] = subprocess.run(argv, capture_output=True).returncode
        _, peer1, _ = DEVICES["gtap1"]
        argv = ["ping", "-n", "-q", "-c", "1", "-w", "1", "-I", "gtap1", peer1]
        subprocess.run(argv, capture_output=True)  # its ARP request wakes the read

    helper = threading.Thread(target=outside_the_hub)
    helper.start()
    # The bug: gtap1's green thread reads with a blocking read.
    eventlet.spawn(os.read, gtap1, 65600).wait()
    helper.join()
    if outcome["gtap0"] == 0:
        print(f"FAIL: control: ping via gtap0 was answered despite the frozen hub: {replies}")
        return 1
    print(f"control: ping via gtap0 unanswered (ping exited {outcome['gtap0']}); "
          f"replies {replies}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--control-blocking-read"]:
        sys.exit(control_blocking_read())
    sys.exit(main())

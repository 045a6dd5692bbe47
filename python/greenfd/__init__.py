"""greenfd for Python: file descriptors whose readiness you set, and TUN/TAP devices
that never block your event loop.

``Vpoll`` is a vpoll fd: register ``fileno()`` with ``select.epoll``, ``select.poll``,
``select.select``, ``selectors``, asyncio's ``loop.add_reader``, trio's
``trio.lowlevel.wait_readable`` or eventlet's ``trampoline``, then ``add``, ``delete``
or ``set`` the events it reports (``IN``, ``PRI``, ``OUT``, ``ERR``, ``HUP``,
``RDHUP``: the ``select.EPOLL*`` values)::

    import select, greenfd
    with greenfd.Vpoll() as v:
        ep = select.epoll()
        ep.register(v.fileno(), select.EPOLLIN | select.EPOLLPRI)
        v.add(greenfd.PRI)
        assert ep.poll(0) == [(v.fileno(), select.EPOLLPRI)]

``probe()`` lists the vpoll backends available here and why the others are not.

``TapDevice`` and ``TunDevice`` are non-blocking packet devices: ``recv`` and ``send``
raise ``BlockingIOError`` instead of waiting, so any event loop can wait on
``fileno()``; ``recv_async``/``send_async`` do that for asyncio.

Errors are ``OSError`` with an errno. Bad arguments raise ``InvalidArgument``, which is
an ``OSError`` (errno ``EINVAL``) and a ``ValueError``.
"""

from __future__ import annotations

from . import _greenfd
from ._greenfd import (
    ALL_EVENTS,
    ERR,
    HUP,
    IN,
    OUT,
    PRI,
    RDHUP,
    Availability,
    InvalidArgument,
    Vpoll,
    __version__,
    probe,
)

__all__ = [
    "ALL_EVENTS",
    "ERR",
    "HUP",
    "IN",
    "OUT",
    "PRI",
    "RDHUP",
    "Availability",
    "InvalidArgument",
    "TapDevice",
    "TunDevice",
    "Vpoll",
    "__version__",
    "probe",
]


async def _wait_fd(fileno: int, writable: bool) -> None:
    """Waits in the running asyncio loop until ``fileno`` is readable (or writable)."""
    import asyncio

    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    if writable:
        loop.add_writer(fileno, wake)
    else:
        loop.add_reader(fileno, wake)
    try:
        await woken
    finally:
        if writable:
            loop.remove_writer(fileno)
        else:
            loop.remove_reader(fileno)


class _AsyncPackets:
    """asyncio coroutines over a non-blocking device's ``recv``/``send``.

    They wait with ``loop.add_reader``/``loop.add_writer``, so one coroutine at a time
    may receive and one may send on a device (asyncio keeps one callback per fd and
    direction).
    """

    __slots__ = ()

    async def recv_async(self, bufsize: int = 65600) -> bytes:
        """Receives one packet, waiting in the running asyncio loop until one arrives."""
        while True:
            try:
                return self.recv(bufsize)  # type: ignore[attr-defined]
            except BlockingIOError:
                pass
            await _wait_fd(self.fileno(), writable=False)  # type: ignore[attr-defined]

    async def send_async(self, packet: bytes) -> int:
        """Sends one packet, waiting in the running asyncio loop while the queue is full."""
        while True:
            try:
                return self.send(packet)  # type: ignore[attr-defined]
            except BlockingIOError:
                pass
            await _wait_fd(self.fileno(), writable=True)  # type: ignore[attr-defined]


class TapDevice(_AsyncPackets, _greenfd.TapDevice):
    """A TAP device (Ethernet frames) with a non-blocking ``fileno()``.

    ``TapDevice(name, multi_queue=False)`` creates (or attaches to) interface ``name``
    in the caller's network namespace; it needs CAP_NET_ADMIN. ``recv(bufsize)`` returns
    one frame and ``send(frame)`` writes one; both raise ``BlockingIOError`` rather
    than wait. ``await recv_async()``/``await send_async(frame)`` wait in asyncio.
    A deleted interface raises ``OSError`` with errno ``EBADFD``.
    """

    __slots__ = ()


class TunDevice(_AsyncPackets, _greenfd.TunDevice):
    """A TUN device (IP packets) with a non-blocking ``fileno()``.

    Same interface as ``TapDevice``, for layer-3 packets (no packet-information header).
    """

    __slots__ = ()

"""Type stubs of the extension module greenfd._greenfd (re-exported by greenfd)."""

from types import TracebackType
from typing import Literal, Optional, Type, final

from typing_extensions import Self, disjoint_base

__all__ = [
    "Vpoll",
    "Availability",
    "TapDevice",
    "TunDevice",
    "probe",
    "InvalidArgument",
    "IN",
    "PRI",
    "OUT",
    "ERR",
    "HUP",
    "RDHUP",
    "ALL_EVENTS",
    "__version__",
]

__version__: str

IN: int
"""EPOLLIN (0x1): readable."""
PRI: int
"""EPOLLPRI (0x2): urgent data."""
OUT: int
"""EPOLLOUT (0x4): writable."""
ERR: int
"""EPOLLERR (0x8): error condition."""
HUP: int
"""EPOLLHUP (0x10): hang-up."""
RDHUP: int
"""EPOLLRDHUP (0x2000): peer closed its writing half."""
ALL_EVENTS: int
"""IN | PRI | OUT | ERR | HUP | RDHUP."""

_BackendName = Literal["kernel", "device", "fuse", "emulated"]
_FuseRouteName = Literal["direct", "userns", "fusermount"]

class InvalidArgument(OSError, ValueError):
    """A bad argument: an OSError with errno EINVAL that is also a ValueError."""

@final
class Vpoll:
    """A file descriptor whose readiness is set by hand (a vpoll fd).

    Errors are OSError with an errno; bad arguments raise InvalidArgument.
    """

    def __new__(
        cls,
        events: int = 0,
        backend: Optional[_BackendName] = None,
        *,
        fuse_route: Optional[_FuseRouteName] = None,
    ) -> Self:
        """Creates a vpoll fd with `events` set, served by `backend` (None: the best one);
        `fuse_route` forces how the fuse backend mounts its filesystem."""
    def fileno(self) -> int:
        """The descriptor number, for select, poll, epoll and event loops."""
    def add(self, events: int) -> None:
        """Sets `events` in addition to those already set."""
    def delete(self, events: int) -> None:
        """Clears `events`."""
    def set(self, events: int) -> None:
        """Replaces the whole mask with `events`."""
    def events(self) -> int:
        """The events poll(2) reports for the fd now, as an int of EPOLL* bits."""
    @property
    def backend(self) -> _BackendName:
        """The backend serving this fd."""
    @property
    def fuse_route(self) -> Optional[_FuseRouteName]:
        """How the fuse filesystem serving this fd was mounted; None for other backends."""
    @property
    def closed(self) -> bool:
        """Whether close() was called."""
    def close(self) -> None:
        """Closes the fd (again: no effect)."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class Availability:
    """One vpoll backend (or FUSE route) as probe() found it."""

    @property
    def kind(self) -> Literal["backend", "fuse-route"]:
        """"backend" for a vpoll backend, "fuse-route" for a way to get the FUSE connection."""
    @property
    def name(self) -> str:
        """Its name."""
    @property
    def available(self) -> bool:
        """Whether it can be used here."""
    @property
    def reason(self) -> Optional[str]:
        """Why it cannot be used (None when available)."""
    @property
    def selected(self) -> bool:
        """Whether Vpoll() with no backend argument would use it now."""

def probe() -> list[Availability]:
    """The vpoll backends, then the FUSE routes, in order of preference, with the reason
    for each unavailable one and which one Vpoll() would use."""

class _Device:
    """The shared interface of TapDevice and TunDevice."""

    def __new__(cls, name: str, multi_queue: bool = False) -> Self:
        """Creates (or attaches to) the interface `name`; needs CAP_NET_ADMIN."""
    def fileno(self) -> int:
        """The descriptor number (non-blocking)."""
    @property
    def name(self) -> str:
        """The interface name the kernel assigned."""
    @property
    def multi_queue(self) -> bool:
        """Whether this fd is one queue of a multi-queue interface."""
    @property
    def closed(self) -> bool:
        """Whether close() was called."""
    def recv(self, bufsize: int = 65600) -> bytes:
        """Reads one packet; raises BlockingIOError if none is queued."""
    def send(self, packet: bytes) -> int:
        """Writes one packet; raises BlockingIOError if the queue is full."""
    def close(self) -> None:
        """Closes the descriptor (again: no effect)."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@disjoint_base
class TapDevice(_Device):
    """A TAP device (Ethernet frames), non-blocking."""

@disjoint_base
class TunDevice(_Device):
    """A TUN device (IP packets), non-blocking."""

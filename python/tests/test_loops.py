"""Event loops wake on a Vpoll: selectors, asyncio (add_reader/add_writer), trio."""

from __future__ import annotations

import asyncio
import selectors
import threading

import pytest

import greenfd

#: Bound on every wait below; reaching it fails the test (no timing is asserted).
PATIENCE = 30.0


def set_from_thread(v: greenfd.Vpoll, op: str, events: int) -> threading.Thread:
    """Applies ``v.<op>(events)`` from another thread (the loop is already waiting)."""
    t = threading.Thread(target=getattr(v, op), args=(events,))
    t.start()
    return t


def test_selectors_report_read_and_write() -> None:
    with greenfd.Vpoll() as v, selectors.DefaultSelector() as sel:
        sel.register(v, selectors.EVENT_READ | selectors.EVENT_WRITE)
        assert sel.select(0) == []
        v.set(greenfd.IN)
        assert [(k.fileobj, ev) for k, ev in sel.select(0)] == [(v, selectors.EVENT_READ)]
        v.set(greenfd.OUT)
        assert [(k.fileobj, ev) for k, ev in sel.select(0)] == [(v, selectors.EVENT_WRITE)]
        v.set(0)
        assert sel.select(0) == []


def test_asyncio_add_reader_wakes_when_another_thread_adds_in() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        with greenfd.Vpoll() as v:
            woken = loop.create_future()
            loop.add_reader(v.fileno(), lambda: woken.done() or woken.set_result(v.events()))
            try:
                # The loop is blocked in epoll_wait when the other thread sets IN.
                loop.call_soon(set_from_thread, v, "add", greenfd.IN)
                return await asyncio.wait_for(woken, PATIENCE)
            finally:
                loop.remove_reader(v.fileno())

    assert asyncio.run(main()) == greenfd.IN


def test_asyncio_add_writer_wakes_on_out_and_reader_on_hup() -> None:
    async def wait(v: greenfd.Vpoll, add, remove) -> int:
        loop = asyncio.get_running_loop()
        woken = loop.create_future()
        add(v.fileno(), lambda: woken.done() or woken.set_result(v.events()))
        try:
            return await asyncio.wait_for(woken, PATIENCE)
        finally:
            remove(v.fileno())

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        with greenfd.Vpoll() as v:
            loop.call_soon(set_from_thread, v, "set", greenfd.OUT)
            out = await wait(v, loop.add_writer, loop.remove_writer)
            loop.call_soon(set_from_thread, v, "set", greenfd.HUP)
            hup = await wait(v, loop.add_reader, loop.remove_reader)
            return out, hup

    assert asyncio.run(main()) == (greenfd.OUT, greenfd.HUP)


def test_trio_wait_readable_and_writable() -> None:
    trio = pytest.importorskip("trio", reason="trio not installed (pip install trio)")

    async def main() -> tuple[int, int]:
        with greenfd.Vpoll() as v:
            with trio.fail_after(PATIENCE):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(trio.to_thread.run_sync, v.add, greenfd.IN)
                    await trio.lowlevel.wait_readable(v)
                readable = v.events()
                v.set(0)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(trio.to_thread.run_sync, v.set, greenfd.OUT)
                    await trio.lowlevel.wait_writable(v.fileno())
                return readable, v.events()

    assert trio.run(main) == (greenfd.IN, greenfd.OUT)

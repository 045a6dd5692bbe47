"""A greenfd call that waits on the kernel lets other Python threads run (GIL released)."""

from __future__ import annotations

from conftest import run_script, skip_or_ok


def test_waiting_ctl_releases_the_gil() -> None:
    # With the GIL held during the wait, the child's watcher thread never runs and the
    # run ends at the timeout (checked by building the extension without the release).
    done = run_script("gil_release.py", timeout=60)
    print(done.stdout)
    skip_or_ok(done)
    assert "watched the other thread inside write(2): True" in done.stdout
    assert done.stdout.strip().endswith("ok")

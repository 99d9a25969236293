"""Post-copy restore: `cryo restore --lazy-pages` starts the tree before its
private anonymous memory is in. Each task's restorer registers that memory
with a userfaultfd; a handler process (its pid in restore.log) copies in
each page the tree touches first, and the rest in the background
(--lazy-rate limits it), following forks, mremap, madvise(DONTNEED),
munmap and exits meanwhile, and exits once every page is in."""
import re
import time

import pytest

import cryolib
from conftest import prog


_handlers = []


@pytest.fixture(autouse=True)
def no_handler_left():
    """A handler a failed test left filling pages is killed, by its pid."""
    yield
    while _handlers:
        cryolib.kill_and_reap(_handlers.pop())


def handler_pid(images):
    m = re.search(r"the lazy pages are filled by pid (\d+)", (images / "restore.log").read_text())
    assert m, "restore.log does not name the lazy-pages handler"
    _handlers.append(int(m.group(1)))
    return _handlers[-1]


def handler_summary(images, timeout=60):
    """The handler's last line, once it has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"every page is in: (\d+) MiB copied in \d+ ms, (\d+) faults, (\d+) zero pages",
                      (images / "restore.log").read_text())
        if m:
            return tuple(int(x) for x in m.groups())
        time.sleep(0.1)
    raise AssertionError("the lazy-pages handler did not finish:\n" + cryolib.log_tail(
        ["-D", str(images), "-o", "restore.log"]))


def wait_output(w, word, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if word in w.output():
            return
        time.sleep(0.02)
    raise AssertionError(f"{w.argv[0]} did not print {word!r}:\n{w.output()}")


def test_lazy_restore_dirty(workload, images):
    """A process rewriting 256 MiB at 100 MiB/s, restored with its memory
    left to the handler: it runs at once, goes on writing and checks every
    page against its write counter."""
    w = workload([prog("dirty"), "256", "100"])
    w.wait_ready()
    time.sleep(0.3)
    cryolib.checkpoint(w, images)
    cryolib.restore(images, "--lazy-pages", "--lazy-rate", "64")
    w.restored = True
    assert cryolib.alive(handler_pid(images)), "the handler is gone before the tree was checked"
    time.sleep(0.5)
    w.verify(timeout=60)
    mib, faults, _ = handler_summary(images)
    assert mib >= 250 and faults > 0


def test_lazy_restore_fork_mremap_madvise_exit(workload, images):
    """While the pages still arrive (16 MiB/s in the background), the
    restored process forks a child that checks and rewrites its copy, one
    that exits, drops a range with MADV_DONTNEED (zeros), moves one with
    mremap (same bytes) and unmaps one; then, after the handler is done,
    checks everything again."""
    w = workload([prog("lazy"), "96"])
    w.wait_ready()
    cryolib.checkpoint(w, images)
    cryolib.restore(images, "--lazy-pages", "--lazy-rate", "16")
    w.restored = True
    handler = handler_pid(images)
    os_kill_usr1(w.pid)
    wait_output(w, "PHASE1")
    assert "PHASE1 ok" in w.output(), w.output()
    assert cryolib.alive(handler), "every page was in before the checks: they proved nothing"
    mib, faults, zeros = handler_summary(images)
    assert faults > 0 and zeros > 0, "no fault, or no zero page after MADV_DONTNEED, went to the handler"
    # its last line is written a moment before it exits
    deadline = time.monotonic() + 10
    while cryolib.alive(handler) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not cryolib.alive(handler), "the handler runs on after every page is in"
    w.verify()


def os_kill_usr1(pid):
    import os
    import signal
    os.kill(pid, signal.SIGUSR1)

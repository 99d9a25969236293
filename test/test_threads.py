"""Multi-threaded processes: every thread comes back with its tid, its
registers and FPU state, its signal mask and altstack, and carries on."""
import os
import time

import pytest

import cryolib
from conftest import prog


def tids(pid):
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


def per_thread(pid):
    """What /proc shows of each thread that is its own: credentials (each
    thread has its own copy), mask, name, no_new_privs, seccomp."""
    keys = ("Name", "Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapBnd", "SigBlk", "NoNewPrivs",
            "Seccomp")
    out = {}
    for tid in tids(pid):
        status = open(f"/proc/{pid}/task/{tid}/status").read().splitlines()
        out[tid] = {k: v.strip() for k, _, v in (l.partition(":") for l in status) if k in keys}
    return out


@pytest.mark.parametrize("user", [None, cryolib.NOBODY], ids=["root", "nobody"])
def test_threads_carry_on(workload, images, user):
    w = workload([prog("threads")], user=user)
    ready = w.wait_ready()
    before = cryolib.snapshot(w.pid)
    before_tids = tids(w.pid)
    before_threads = per_thread(w.pid)
    assert len(before_tids) == 9
    assert sorted(int(t) for t in ready["tids"].split(",")) == before_tids[1:]
    cryolib.checkpoint_restore(w, images)
    assert tids(w.pid) == before_tids, "the threads came back with other tids"
    cryolib.assert_same_process(before, w.pid)
    assert per_thread(w.pid) == before_threads
    threads = cryolib.images_by_kind(images)["core"]["threads"]
    assert len(threads) == 9
    w.verify()


PY_THREADS = """
import threading, time
counts = [0] * 4
def work(i):
    while True:
        counts[i] += 1
        time.sleep(0.005)
for i in range(4):
    threading.Thread(target=work, args=(i,), daemon=True).start()
while True:
    with open("counts.tmp", "w") as f:
        f.write(" ".join(map(str, counts)))
    __import__("os").rename("counts.tmp", "counts")
    time.sleep(0.02)
"""


def read_counts(w):
    return [int(c) for c in (w.cwd / "counts").read_text().split()]


def test_python_threads_carry_on(workload, images):
    """python3 with four counting threads: the counts go on from where they
    were (a fresh start would begin again at zero)."""
    w = workload(["/usr/bin/python3", "-c", PY_THREADS])
    w.wait_exec_settled()
    deadline = time.monotonic() + 10
    while not (w.cwd / "counts").exists() or min(read_counts(w)) < 50:
        assert time.monotonic() < deadline, "the python threads do not count"
        time.sleep(0.05)
    before_tids = tids(w.pid)
    cryolib.checkpoint(w, images)
    at_dump = read_counts(w)
    (w.cwd / "counts").unlink()
    cryolib.restore(images)
    w.restored = True
    assert tids(w.pid) == before_tids
    deadline = time.monotonic() + 10
    while not (w.cwd / "counts").exists() or min(read_counts(w)) <= max(at_dump) + 20:
        assert time.monotonic() < deadline, f"counts stuck after restore (at dump {at_dump})"
        time.sleep(0.05)
    after = read_counts(w)
    assert all(a >= d for a, d in zip(after, at_dump)), f"{after} restarted below {at_dump}"


def test_thread_tid_in_use(workload, images):
    """A tid taken by another process: one line naming it, nothing left."""
    w = workload(["/usr/bin/python3", "-c", PY_THREADS])
    w.wait_exec_settled()
    time.sleep(0.2)
    thread = tids(w.pid)[1]
    cryolib.checkpoint(w, images)
    # fake the thread's tid being taken, with a process of that pid: the
    # dumped process itself is gone, so borrow ns_last_pid
    squatter = cryolib.start_with_pid(thread, ["sleep", "1000"])
    try:
        cryolib.restore_fails(images, w.pid, f"tid {thread} of pid {w.pid}", "in use", "sleep")
    finally:
        cryolib.kill_and_reap(squatter)


@pytest.mark.parametrize("user", [None, cryolib.NOBODY], ids=["root", "nobody"])
def test_seccomp_filters_in_every_thread(workload, images, user):
    """Two stacked seccomp filters, in the order they were installed, on
    every thread (the restorer installs them with TSYNC)."""
    w = workload([prog("seccomp")], user=user)
    w.wait_ready()
    before_threads = per_thread(w.pid)
    assert all(t["Seccomp"] == "2" for t in before_threads.values())
    cryolib.checkpoint_restore(w, images)
    assert per_thread(w.pid) == before_threads
    w.verify()

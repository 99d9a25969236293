"""Process trees: every process of the tree under the dumped pid comes back
with its pid, its parent, its process group and its session; a zombie comes
back a zombie, with its exit status for its parent to reap."""
import os
import shutil
import time

import pytest

import cryolib
from conftest import prog


def tree_of(pid):
    """{pid: (ppid, pgid, sid, state)} for pid and all its descendants
    (short-lived ones that exit meanwhile left out)."""
    out = {}
    for p in cryolib.descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[p] = (int(fields[1]), int(fields[2]), int(fields[3]), fields[0] if fields[0] == "Z" else "live")
    return out


@pytest.mark.parametrize("user", [None, cryolib.NOBODY], ids=["root", "nobody"])
def test_tree_with_sessions_groups_and_zombie(workload, images, user):
    w = workload([prog("tree")], user=user)
    w.wait_ready()
    before = tree_of(w.pid)
    assert len(before) == 13
    assert len({v[2] for v in before.values()}) == 3, "three sessions"
    groups = {v[1] for v in before.values()}
    assert len(groups) == 6, f"six process groups: {before}"
    assert len(groups - set(before)) == 1, "one group whose leader is gone"
    parent_sid = {p: before[v[0]][2] for p, v in before.items() if v[0] in before}
    assert any(v[2] != parent_sid[p] and v[2] != p for p, v in before.items() if p in parent_sid), \
        "a process in a session that is neither its own nor its parent's"
    assert sum(v[3] == "Z" for v in before.values()) == 1, "one zombie"
    snapshots = {p: cryolib.snapshot(p) for p, v in before.items() if v[3] == "live"}
    cryolib.checkpoint_restore(w, images)
    assert sorted(cryolib.tree_pids(images)) == sorted(before)
    assert tree_of(w.pid) == before
    for pid, snap in snapshots.items():
        cryolib.assert_same_process(snap, pid)
    w.verify()


ORPHAN = """
import os, signal, sys, time, ctypes
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)     # child subreaper: orphans come back here
r, w = os.pipe()
a = os.fork()
if a == 0:                                   # a: leads its own group, forks a1 into it, exits
    os.setpgid(0, 0)
    a1 = os.fork()
    if a1 == 0:
        os.close(r)
        os.close(w)
        time.sleep(1000)
    os.write(w, str(a1).encode())
    os._exit(0)
os.waitpid(a, 0)
a1 = int(os.read(r, 32))
os.close(r)
os.close(w)
me = os.getpid()
while str(a1) not in open(f"/proc/{me}/task/{me}/children").read().split():
    time.sleep(0.01)                         # a1 has come to us
go = []
signal.signal(signal.SIGUSR1, lambda *_: go.append(1))
print("READY", flush=True)
while not go:
    time.sleep(0.01)
got = (os.getpgid(a1), os.getsid(a1))
os.kill(a1, signal.SIGTERM)
pid, st = os.waitpid(a1, 0)                  # still our child
if got == (a, me) and pid == a1 and os.WIFSIGNALED(st):
    print("PASS")
else:
    print(f"FAIL: a1 group and session {got}, expected {(a, me)}; reaped {pid} status {st}")
    sys.exit(1)
"""


def test_orphan_of_a_subreaper_in_a_group_without_leader(workload, images):
    """a1 was orphaned and reparented to the root (a child subreaper); its
    group was led by its parent, which is gone: it comes back under the
    root, in that group (a helper recreates it), and the root reaps it."""
    w = workload(["/usr/bin/python3", "-c", ORPHAN])
    w.wait_ready()
    before = tree_of(w.pid)
    assert len(before) == 2
    cryolib.checkpoint_restore(w, images)
    assert tree_of(w.pid) == before
    w.verify()


SH_CHILDREN = """
for i in 1 2 3; do
    ( n=0; while true; do n=$((n+1)); echo $n > c$i.tmp; mv c$i.tmp c$i; sleep 0.02; done ) &
done
wait
"""


def counts(w):
    out = []
    for i in (1, 2, 3):
        try:
            out.append(int((w.cwd / f"c{i}").read_text() or 0))
        except (FileNotFoundError, ValueError):
            out.append(0)
    return out


def test_busybox_sh_with_children(workload, images):
    """A busybox sh waiting for three subshells that count into files: the
    whole tree comes back and every counter goes on from where it was."""
    w = workload([shutil.which("busybox"), "sh", "-c", SH_CHILDREN])
    deadline = time.monotonic() + 10
    while min(counts(w)) < 5:
        assert time.monotonic() < deadline, "the subshells do not count"
        time.sleep(0.05)
    before = tree_of(w.pid)
    assert len(before) >= 4
    cryolib.checkpoint(w, images)
    at_dump = counts(w)
    cryolib.restore(images)
    w.restored = True
    deadline = time.monotonic() + 10
    while not all(c > d + 5 for c, d in zip(counts(w), at_dump)):
        assert time.monotonic() < deadline, f"counters stuck: {counts(w)}, at dump {at_dump}"
        time.sleep(0.05)
    after = tree_of(w.pid)
    assert {p: v for p, v in after.items() if p in before} == {p: v for p, v in before.items() if p in after}


SH_PIPELINE = """
( n=0; while true; do n=$((n+1)); echo $n; sleep 0.02; done ) |
( p=0; while read l; do [ $l -eq $((p+1)) ] || echo "after $p came $l" >> gaps
  p=$l; echo $l > last.tmp; mv last.tmp last; done )
"""


def test_busybox_sh_pipeline(workload, images):
    """busybox sh running producer | consumer: the pipe between them (and
    whatever is queued in it) comes back; the consumer sees every number
    once, in order, across the checkpoint."""
    w = workload([shutil.which("busybox"), "sh", "-c", SH_PIPELINE])
    last = w.cwd / "last"

    def value():
        try:
            return int(last.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0
    deadline = time.monotonic() + 10
    while value() < 5:
        assert time.monotonic() < deadline, "the pipeline does not run"
        time.sleep(0.05)
    cryolib.checkpoint(w, images)
    at_dump = value()
    cryolib.restore(images)
    w.restored = True
    deadline = time.monotonic() + 10
    while value() < at_dump + 10:
        assert time.monotonic() < deadline, f"the consumer is stuck at {value()}, {at_dump} at the dump"
        time.sleep(0.05)
    assert not (w.cwd / "gaps").exists(), (w.cwd / "gaps").read_text()


def test_failed_tree_restore_leaves_nothing(workload, images):
    """One process of the tree cannot be restored (its pages are corrupted):
    the restore fails with one line and none of the tree is left."""
    w = workload([prog("tree")])
    w.wait_ready()
    cryolib.checkpoint(w, images)
    pids = cryolib.tree_pids(images)
    live = [p for p in pids if (images / f"pages-{p}.img").exists()]
    leaf = live[-1]
    pages = images / f"pages-{leaf}.img"
    raw = bytearray(pages.read_bytes())
    raw[4096 + 10] ^= 0xff
    pages.write_bytes(bytes(raw))
    cryolib.restore_fails(images, w.pid, f"pages-{leaf}.img is corrupted")
    left = [p for p in pids if os.path.exists(f"/proc/{p}")]
    assert not left, f"pids {left} left behind by a failed restore"

"""crun checkpoints and restores through libcriu, which it dlopen()s as
libcriu.so.2: cryo's (build/lib, criu-core/libcriu/) runs `cryo swrk` for
each request and speaks CRIU's RPC to it. crun is Debian's, built with
checkpoint support against build/lib (make crun: scripts/build-crun), run
with LD_LIBRARY_PATH=build/lib and cryo's directory first on PATH. The
container is ocilib's busybox shell with its counter and 4 MiB of text.

crun refuses a hybrid cgroup layout whose v2 hierarchy has controllers
(this machine's /sys/fs/cgroup/unified has hugetlb): each crun call runs
in a mount namespace of the tests' own where an empty file is bound over
/sys/fs/cgroup/unified/cgroup.controllers. The host's mounts are untouched."""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import ocilib
from cryolib import CRYO, ROOT
from ocilib import alive, read_lines, reap, wait_for

CRUN = ROOT / "build" / "crun" / "crun"
LIBDIR = ROOT / "build" / "lib"
CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"
pytestmark = pytest.mark.skipif(not CRUN.exists(), reason=f"{CRUN} is missing (make crun builds it)")


def crun_env(path=None):
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(LIBDIR)
    env["PATH"] = path or f"{CRYO.parent}:{env.get('PATH') or '/usr/sbin:/usr/bin:/sbin:/bin'}"
    return env


@pytest.fixture(scope="module")
def mntns(tmp_path_factory):
    """The pid of a process holding a private mount namespace in which the
    v2 hierarchy lists no controllers; killed at the end."""
    empty = tmp_path_factory.mktemp("crun-mntns") / "empty"
    empty.write_text("")
    sh = (f'if grep -qs . {CONTROLLERS}; then mount --bind "$0" {CONTROLLERS} || exit 1; fi; '
          'echo ready; exec sleep infinity')
    p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", sh, str(empty)],
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n", "cannot make the mount namespace for crun"
        yield p.pid
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


class CrunContainer(ocilib.Container):
    def __init__(self, tmp_path, name, mntns):
        super().__init__(tmp_path, name, CRUN, env=crun_env())
        self.mntns = mntns

    def argv(self, *args):
        # the bundle as the cwd from inside the namespace (nsenter --wd would keep the host's mount)
        return ["nsenter", "-t", str(self.mntns), "-m", "--", "env", "-C", str(self.bundle), *super().argv(*args)]


@pytest.fixture
def container(tmp_path, mntns):
    c = CrunContainer(tmp_path, f"cryo-crun-{os.getpid()}", mntns)
    yield c
    c.destroy()


def cryo_log(path):
    """A log cryo wrote (its lines name criu-core's files), not some other criu's."""
    text = path.read_text()
    assert "(criu-core/" in text, f"{path} is not cryo's log:\n{text[:500]}"
    return text


def test_checkpoint_restore(container, tmp_path):
    """crun checkpoint stops the container in its tracks (nothing moves until
    the restore), crun restore -d brings back the same process: its pid, its
    counter going on from the very next value, its memory."""
    c = container
    c.run()
    images = tmp_path / "ck"
    c.checkpoint(images)
    assert c.status() is None, "crun still lists the checkpointed container"
    assert not alive(c.pid)
    at_checkpoint = c.counter()
    time.sleep(0.6)
    assert c.counter() == at_checkpoint, "the counter moved after the checkpoint"
    assert (images / "inventory.img").exists() and (images / "descriptors.json").exists()
    cryo_log(images / "dump.log")
    c.restore(images)
    first, then = c.after_restore()
    assert first in (at_checkpoint, at_checkpoint + 1) and then == first + 1, \
        f"the counter went from {at_checkpoint} to {first}, {then}"
    cryo_log(images / "restore.log")
    st = c.status()
    assert st and st["status"] == "running" and st["pid"] == c.pid, st
    assert alive(c.pid)
    now, at_start = c.memory_md5()
    assert now == at_start, "the shell's memory changed across checkpoint and restore"


def test_leave_running(container, tmp_path):
    """--leave-running: the container runs on; a restore after it is killed
    goes back to the moment of the checkpoint."""
    c = container
    c.run()
    before = c.counter()
    c.checkpoint(tmp_path / "ck", "--leave-running")
    after = c.counter()
    assert c.status()["status"] == "running" and alive(c.pid)
    wait_for(lambda: c.counter() > after + 5, "the counter to go on after --leave-running")
    killed_at = c.counter()
    c.destroy()
    c.restore(tmp_path / "ck")
    _, first = c.after_restore()  # (the file still shows what the killed container wrote last)
    assert before < first <= after + 1 and first < killed_at, (before, after, first, killed_at)
    assert c.status()["pid"] == c.pid
    now, at_start = c.memory_md5()
    assert now == at_start


def test_pre_dump_then_checkpoint(container, tmp_path):
    """crun checkpoint --pre-dump (libcriu: FEATURE_CHECK mem_track, then
    PRE_DUMP) copies the memory while the container runs; the final
    checkpoint with --parent-path saves only what changed since, and the
    restore reads the rest through the chain."""
    c = container
    c.run()
    c.checkpoint(tmp_path / "pre", "--pre-dump")
    assert alive(c.pid) and c.status()["status"] == "running"
    cryo_log(tmp_path / "pre" / "dump.log")
    time.sleep(0.5)
    c.checkpoint(tmp_path / "ck", "--parent-path", "../pre")
    assert os.readlink(tmp_path / "ck" / "parent") == "../pre"
    pre_pages = sum(f.stat().st_size for f in (tmp_path / "pre").glob("pages-*.img"))
    final_pages = sum(f.stat().st_size for f in (tmp_path / "ck").glob("pages-*.img"))
    assert final_pages < pre_pages / 2, f"the final checkpoint saved {final_pages} bytes of pages, the pre-dump {pre_pages}"
    at_checkpoint = c.counter()
    c.restore(tmp_path / "ck")
    first, then = c.after_restore()
    assert first in (at_checkpoint, at_checkpoint + 1) and then == first + 1, \
        f"the counter went from {at_checkpoint} to {first}, {then}"
    assert c.status()["pid"] == c.pid
    now, at_start = c.memory_md5()
    assert now == at_start, "the memory read through the pre-dump chain is not what the shell had"


def test_stdout_pipe(container, tmp_path):
    """The container's stdout is a pipe of the caller's (as under a
    container engine). crun restore names it in libcriu's inherit_fd
    (pipe:[INODE] from descriptors.json, its own fd 1, which cryo swrk
    inherits): the shell writes its counter on into the new pipe, from the
    next value."""
    c = container
    r, w = os.pipe()
    c.run(stdout=w)
    os.close(w)
    os.set_blocking(r, False)
    ino = os.fstat(r).st_ino
    seen = read_lines(r)
    c.checkpoint(tmp_path / "ck")
    desc = json.loads((tmp_path / "ck" / "descriptors.json").read_text())
    assert desc[1] == f"pipe:[{ino}]", desc
    seen += read_lines(r, 0)
    os.close(r)
    r2, w2 = os.pipe()
    try:
        c.restore(tmp_path / "ck", stdout=w2)
        os.close(w2)
        w2 = None
        os.set_blocking(r2, False)
        got = read_lines(r2)
        assert got[0] == seen[-1] + 1, f"the counter went from {seen[-1]} to {got[:3]}"
    finally:
        os.close(r2)
        if w2 is not None:
            os.close(w2)


def test_restore_into_missing_rootfs(container, tmp_path):
    """The container's root file system is gone (an empty directory in its
    place): crun restore fails showing cryo's reason once, and no process
    or cgroup is left (crun itself keeps its state directory: delete -f)."""
    c = container
    c.run()
    c.checkpoint(tmp_path / "ck")
    real = c.bundle / "rootfs.real"
    c.rootfs.rename(real)
    c.rootfs.mkdir()
    try:
        r = c.restore(tmp_path / "ck", check=False)
        assert r.returncode != 0
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("cryo: ")]
        assert len(lines) == 1 and "/bin/busybox" in lines[0] and "No such file" in lines[0], r.stderr
        assert "libcriu:" not in r.stderr, r.stderr
        assert "CRIU restoring failed -2" in r.stderr, r.stderr
        assert c.status() is None, "crun lists a container after the failed restore"
        assert not alive(c.pid), f"pid {c.pid} runs after the failed restore"
        for ctrl in ("freezer", "pids", "cpu"):
            assert not (Path("/sys/fs/cgroup") / ctrl / c.name).exists(), f"cgroup {ctrl}:/{c.name} is left"
    finally:
        shutil.rmtree(c.rootfs)
        real.rename(c.rootfs)


def test_no_cryo_on_path(container, tmp_path):
    """libcriu finds no cryo to run: crun checkpoint fails with libcriu's
    reason, and the container runs on untouched."""
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    if shutil.which("cryo", path=path):
        pytest.skip(f"a cryo is installed on {path}")
    c = container
    c.run()
    r = c.rt("checkpoint", "--image-path", tmp_path / "ck", c.name, check=False, env=crun_env(path))
    assert r.returncode != 0
    assert "libcriu: cannot run cryo swrk: No such file or directory" in r.stderr, r.stderr
    assert c.status()["status"] == "running" and alive(c.pid)
    c.next_counter()

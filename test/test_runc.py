"""runc drives cryo as its criu binary (runc --criu build/cryo): it speaks
CRIU's RPC to `cryo swrk 3` for checkpoint and restore. The container is a
busybox shell on its own root file system with a counter held in the
shell's memory (written to /tmp/counter every 0.2 s) and 4 MiB of random
text whose md5 it writes at start and again on SIGUSR1, from its memory.
A restore must carry on the very process: same pid, the counter going on
from where the checkpoint left it, the text the same."""
import copy
import os
import select
import socket
import subprocess
import time
from pathlib import Path

import pytest

import ocilib
from cryolib import CRYO, write_secret
from ocilib import SCRIPT, SERVER, RuncContainer, alive, wait_for

RUNC = ocilib.RUNC
pytestmark = pytest.mark.skipif(not RUNC, reason="runc is not installed (make deps installs it)")


@pytest.fixture
def container(tmp_path):
    c = RuncContainer(tmp_path, f"cryo-test-{os.getpid()}")
    yield c
    c.destroy()


def test_checkpoint_restore(container, tmp_path):
    """runc checkpoint and restore -d (ocilib.check_checkpoint_restore): same
    pid, counter, memory; and its own cgroup directories again."""
    c = container
    ocilib.check_checkpoint_restore(c, tmp_path / "ck")
    # its cgroup directories (bind mounts of cgroup v1) are its own again, not those of the runc that restored it
    procs = c.rt("exec", c.name, "cat", "/sys/fs/cgroup/pids/cgroup.procs").stdout.split()
    assert "1" in procs, f"/sys/fs/cgroup/pids in the container lists {procs}, not its init"


def test_leave_running(container, tmp_path):
    """runc checkpoint --leave-running (ocilib.check_leave_running)."""
    ocilib.check_leave_running(container, tmp_path / "ck")


def freezer_state(c):
    return (Path("/sys/fs/cgroup/freezer") / c.name / "freezer.state").read_text().strip()


def test_paused_checkpoint(container, tmp_path):
    """runc pause, then runc checkpoint --leave-running: cryo takes the
    frozen cgroup as it is and leaves it frozen (runc still says paused, the
    counter stands still); runc resume then thaws it and the counter goes on
    from the next value, with the same memory. The checkpoint, restored once
    the container is gone, runs (not paused) from the paused moment."""
    c = container
    c.run()
    c.rt("pause", c.name)
    assert freezer_state(c) == "FROZEN"
    at_pause = c.counter()
    c.checkpoint(tmp_path / "ck", "--leave-running")
    assert c.status()["status"] == "paused", c.status()
    assert freezer_state(c) == "FROZEN"
    time.sleep(0.6)
    assert c.counter() == at_pause, "the paused container ran after the checkpoint"
    c.rt("resume", c.name)
    assert c.status()["status"] == "running"
    first, then = c.after_restore()
    assert first in (at_pause, at_pause + 1) and then == first + 1, (at_pause, first, then)
    now, at_start = c.memory_md5()
    assert now == at_start
    c.destroy()
    c.restore(tmp_path / "ck")
    assert c.status()["status"] == "running" and c.status()["pid"] == c.pid
    # (the file shows what the killed container wrote last, until the restored shell writes)
    _, then = c.after_restore()
    assert then == at_pause + 1, (at_pause, then)
    assert freezer_state(c) == "THAWED"


def test_paused_checkpoint_killed(container, tmp_path):
    """runc pause, then runc checkpoint (the container is killed): the
    restore runs it from the paused moment, not paused."""
    c = container
    c.run()
    c.rt("pause", c.name)
    at_pause = c.counter()
    c.checkpoint(tmp_path / "ck")
    assert c.status() is None and not alive(c.pid)
    c.restore(tmp_path / "ck")
    first, then = c.after_restore()
    assert first in (at_pause, at_pause + 1) and then == first + 1, (at_pause, first, then)
    assert c.status()["status"] == "running" and freezer_state(c) == "THAWED"
    now, at_start = c.memory_md5()
    assert now == at_start


def test_syslogd_in_own_netns(tmp_path):
    """busybox syslogd on /dev/log (a unix datagram socket on the
    container's /dev tmpfs, in the container's own network namespace, as
    runc makes them): checkpoint and restore; a line logged after the
    restore (runc exec logger) reaches its log."""
    c = RuncContainer(tmp_path, f"cryo-test-{os.getpid()}",
                      script="syslogd -n -S -O /tmp/syslog &\n" + SCRIPT)
    for applet in ("syslogd", "logger"):
        os.symlink("busybox", c.rootfs / "bin" / applet)
    log = c.rootfs / "tmp" / "syslog"
    try:
        c.run()
        wait_for(lambda: c.rt("exec", c.name, "logger", "before-checkpoint", check=False).returncode == 0 and
                 log.exists() and "before-checkpoint" in log.read_text(), "syslogd to log")
        c.checkpoint(tmp_path / "ck")
        c.restore(tmp_path / "ck")
        assert c.status()["pid"] == c.pid
        c.rt("exec", c.name, "logger", "after-restore")
        wait_for(lambda: "after-restore" in log.read_text(), "the line logged after the restore")
    finally:
        c.destroy()


def test_stdout_pipe(container, tmp_path):
    """runc hands the restore a new stdout pipe (ocilib.check_stdout_pipe)."""
    ocilib.check_stdout_pipe(container, tmp_path / "ck")


@pytest.fixture
def netns():
    """A named network namespace with a veth to the host (ocilib.host_netns)."""
    with ocilib.host_netns("rt", 78) as n:
        yield n


def test_tcp_established(tmp_path, netns):
    """runc checkpoint --tcp-established of a container in a network
    namespace of the caller's serving a TCP client on the host, then runc
    restore --tcp-established (ocilib.check_tcp_established)."""
    c = RuncContainer(tmp_path, f"cryo-test-{os.getpid()}", script=SERVER + SCRIPT, netns=netns[1])
    try:
        ocilib.check_tcp_established(c, netns, tmp_path / "ck")
    finally:
        c.destroy()


def test_pre_dump_then_checkpoint(container, tmp_path):
    """runc checkpoint --pre-dump, then --parent-path (ocilib.check_pre_dump)."""
    ocilib.check_pre_dump(container, tmp_path)


def test_restore_into_missing_rootfs(container, tmp_path):
    """A restore into an empty rootfs fails, leaving nothing
    (ocilib.check_restore_into_missing_rootfs); runc prints cryo's reason."""
    r = ocilib.check_restore_into_missing_rootfs(container, tmp_path / "ck")
    assert "cryo: " in r.stderr and "/bin/busybox" in r.stderr and "No such file" in r.stderr, r.stderr
    assert "errno 2" in r.stderr, r.stderr


def test_terminal(tmp_path):
    """A container with a terminal (runc --console-socket): see
    ocilib.check_terminal. Its images restored by cryo's command line, which
    has no one to give the new master to, are refused, naming the pty."""
    c = RuncContainer(tmp_path, f"cryo-test-{os.getpid()}", script=ocilib.TTY_SCRIPT, terminal=True)
    try:
        ocilib.check_terminal(c, tmp_path / "ck")
    finally:
        c.destroy()
    r = subprocess.run([CRYO, "restore", "-d", "-D", tmp_path / "ck", "--root", c.rootfs, "--empty-ns", "net"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "pty 0" in r.stderr and "orphan_pts_master" in r.stderr, r.stderr
    assert not alive(c.pid)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lazy:
    """A container (c) to checkpoint with --lazy-pages into images, served
    on port; c2 a second one of the same bundle to restore it as; the
    processes (runc checkpoint, cryo lazy-pages) to end at the end."""

    def __init__(self, tmp_path):
        secret = tmp_path / "secret"
        write_secret(secret)
        self.env = dict(os.environ, CRYO_SECRET_FILE=str(secret))
        self.c = RuncContainer(tmp_path, f"cryo-test-{os.getpid()}", env=self.env)
        self.c2 = copy.copy(self.c)
        self.c2.name = self.c.name + "-lazy"
        self.images, self.port = tmp_path / "ck", free_port()
        self.images.mkdir()
        self.procs = []

    def checkpoint(self):
        """runc checkpoint --lazy-pages in the background, once it says (status fd) the memory is served."""
        c = self.c
        r, w = os.pipe()
        p = subprocess.Popen(c.argv("checkpoint", "--lazy-pages", "--page-server", f"127.0.0.1:{self.port}",
                                    "--status-fd", str(w), "--image-path", self.images, c.name),
                             cwd=c.bundle, env=self.env, pass_fds=[w], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        os.close(w)
        ready, _, _ = select.select([r], [], [], 60)
        got = os.read(r, 1) if ready else b""
        os.close(r)
        assert got == b"\0", "no status-ready byte from runc checkpoint --lazy-pages"
        return p

    def daemon(self):
        """cryo lazy-pages for the images, once it has reached the dump and waits for the restore."""
        p = subprocess.Popen([CRYO, "lazy-pages", "--page-server", "--address", "127.0.0.1", "--port",
                              str(self.port), "-D", self.images], env=self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert p.stdout.readline().startswith("cryo lazy-pages: "), "cryo lazy-pages did not start"
        return p

    def end(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        if self.c2.pid:
            self.c2.destroy()
        self.c.destroy()


@pytest.fixture
def lazy(tmp_path):
    z = Lazy(tmp_path)
    yield z
    z.end()


def test_lazy_pages(lazy):
    """runc checkpoint --lazy-pages --page-server A:P (--status-fd): cryo dumps
    the container leaving its memory in it, stopped, serves that memory on
    A:P and says so (status-ready, which runc turns into a byte on the
    status fd). cryo lazy-pages on the images connects there; runc restore
    --lazy-pages of a second container from the same bundle hands it the
    tasks, and it fills their memory as they run: the counter goes on from
    the next value, the 4 MiB of text read from memory has the same md5.
    Once every page is there the checkpoint returns and the first
    container is gone."""
    c, c2 = lazy.c, lazy.c2
    c.run()
    ck = lazy.checkpoint()
    at_checkpoint = c.counter()
    time.sleep(0.5)
    assert c.counter() == at_checkpoint and alive(c.pid), "the container is not stopped while its memory waits"
    assert sum(f.stat().st_size for f in lazy.images.glob("pages-*.img")) < 1 << 20, \
        "the lazy checkpoint wrote the memory into the images"
    daemon = lazy.daemon()
    r = c2.restore(lazy.images, "--lazy-pages", check=False)
    assert r.returncode == 0, f"runc restore --lazy-pages failed: {r.stderr}"
    c2.pid = c2.status()["pid"]
    assert ck.wait(60) == 0, f"runc checkpoint --lazy-pages failed: {ck.stderr.read()}"
    assert daemon.wait(60) == 0, f"cryo lazy-pages failed: {daemon.stderr.read()}"
    first, then = c2.after_restore()
    assert first in (at_checkpoint, at_checkpoint + 1) and then == first + 1, (at_checkpoint, first, then)
    now, at_start = c2.memory_md5()
    assert now == at_start, "the memory that came lazily is not what the shell had"
    wait_for(lambda: not alive(c.pid), f"the source pid {c.pid} to go")
    assert c.status() is None, "runc still lists the checkpointed container"


def test_lazy_pages_restore_side_dies(lazy):
    """The restore side of runc checkpoint --lazy-pages dies (cryo lazy-pages
    killed) before the memory went over: the checkpoint fails with cryo's
    reason in its log, and the container runs on where it was, its counter
    going on from where it stopped, its memory the same. Its images, which
    lack that memory, are not restored without the dump to ask."""
    c, c2 = lazy.c, lazy.c2
    c.run()
    ck = lazy.checkpoint()
    at_checkpoint = c.counter()
    lazy.daemon().kill()
    assert ck.wait(60) != 0, "runc checkpoint --lazy-pages succeeded without its restore side"
    # (runc gives cryo no stderr when it checkpoints: the reason is in the log)
    errors = [ln for ln in (lazy.images / "dump.log").read_text().splitlines() if " Error " in ln]
    assert errors and "connection was closed" in errors[0], errors
    assert c.status()["status"] == "running" and alive(c.pid)
    first, then = c.after_restore()
    assert first in (at_checkpoint, at_checkpoint + 1) and then == first + 1, (at_checkpoint, first, then)
    now, at_start = c.memory_md5()
    assert now == at_start
    r = c2.restore(lazy.images, "--lazy-pages", check=False)
    assert r.returncode != 0 and "still at the source" in r.stderr and "cryo lazy-pages" in r.stderr, r.stderr
    assert c2.status() is None


def test_lazy_pages_client_dies(lazy):
    """runc checkpoint --lazy-pages killed while the memory waits for its
    restore side: cryo sees its client gone, lets the container run on
    intact and exits, instead of holding it stopped for no one."""
    c = lazy.c
    c.run()
    ck = lazy.checkpoint()
    at_checkpoint = c.counter()
    swrk = [int(p) for t in os.listdir(f"/proc/{ck.pid}/task")
            for p in open(f"/proc/{ck.pid}/task/{t}/children").read().split()]
    assert len(swrk) == 1 and "swrk" in open(f"/proc/{swrk[0]}/cmdline").read(), swrk
    ck.kill()
    ck.wait()
    first, then = c.after_restore()
    assert first in (at_checkpoint, at_checkpoint + 1) and then == first + 1, (at_checkpoint, first, then)
    now, at_start = c.memory_md5()
    assert now == at_start
    wait_for(lambda: not alive(swrk[0]), "cryo swrk to exit")
    ocilib.reap(swrk[0])

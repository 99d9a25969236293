"""runc drives cryo as its criu binary (runc --criu build/cryo): it speaks
CRIU's RPC to `cryo swrk 3` for checkpoint and restore. The container is a
busybox shell on its own root file system with a counter held in the
shell's memory (written to /tmp/counter every 0.2 s) and 4 MiB of random
text whose md5 it writes at start and again on SIGUSR1, from its memory.
A restore must carry on the very process: same pid, the counter going on
from where the checkpoint left it, the text the same."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ocilib
from cryolib import CRYO
from ocilib import SCRIPT, alive

RUNC = shutil.which("runc")
pytestmark = pytest.mark.skipif(not RUNC, reason="runc is not installed (make deps installs it)")


class RuncContainer(ocilib.Container):
    """ocilib's container, run by runc with cryo as its criu binary."""

    def __init__(self, tmp_path, name, **kw):
        super().__init__(tmp_path, name, RUNC, **kw)

    def argv(self, *args):
        return [self.runtime, "--root", str(self.state), "--criu", str(CRYO), *args]


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


def test_stdout_pipe(container, tmp_path):
    """runc hands the restore a new stdout pipe (ocilib.check_stdout_pipe)."""
    ocilib.check_stdout_pipe(container, tmp_path / "ck")


# a TCP service: each line a client sends comes back numbered, the count held by the shell nc runs
SERVER = "nc -l -p 5000 -e sh -c 'n=0; while read l; do n=$((n + 1)); echo \"$n $l\"; done' &\n"


@pytest.fixture
def netns():
    """A named network namespace with a veth to the host: (name, path, host address, container address)."""
    pid = os.getpid()
    name, veth, net = f"cryo-rt-{pid}", f"crt{pid % 100000}", f"10.78.{pid % 200 + 20}"

    def ip(*argv):
        subprocess.run(["ip", *argv], check=True, capture_output=True)

    ip("netns", "add", name)
    try:
        ip("link", "add", veth + "h", "type", "veth", "peer", "name", veth + "c")
        ip("link", "set", veth + "c", "netns", name)
        ip("addr", "add", f"{net}.1/30", "dev", veth + "h")
        ip("link", "set", veth + "h", "up")
        ip("-n", name, "addr", "add", f"{net}.2/30", "dev", veth + "c")
        ip("-n", name, "link", "set", veth + "c", "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield name, f"/var/run/netns/{name}", f"{net}.1", f"{net}.2"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", veth + "h"], capture_output=True)


def nft_tables_in(netns_name):
    r = subprocess.run(["ip", "netns", "exec", netns_name, sys.executable, "-c",
                        "import cryolib; print(' '.join(cryolib.nft_tables()))"],
                       cwd=Path(__file__).parent, check=True, capture_output=True, text=True)
    return r.stdout.split()


def test_tcp_established(tmp_path, netns):
    """A container in a network namespace the caller made (runc dumps it as
    external net[INODE] and hands it back on restore) serves a TCP client on
    the host. runc checkpoint --tcp-established: the namespace is locked (a
    line sent meanwhile is only retransmitted); runc restore --tcp-established:
    the same connection goes on, the line sent during the checkpoint answered
    with the next number, and the lock is gone."""
    name, path, _, ct_ip = netns
    c = RuncContainer(tmp_path, f"cryo-test-{os.getpid()}", script=SERVER + SCRIPT, netns=path)
    s = None
    try:
        c.run()
        deadline = time.monotonic() + 10
        while s is None:
            try:
                s = socket.create_connection((ct_ip, 5000), timeout=10)
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the container's server does not listen"
                time.sleep(0.05)
        f = s.makefile("rb")
        for i in range(1, 4):
            s.sendall(b"a%d\n" % i)
            assert f.readline() == b"%d a%d\n" % (i, i)
        c.checkpoint(tmp_path / "ck", "--tcp-established")
        assert "cryo-netlock" in nft_tables_in(name), "the namespace is not locked after the checkpoint"
        s.sendall(b"during\n")
        time.sleep(0.5)
        c.restore(tmp_path / "ck", "--tcp-established")
        assert c.status()["pid"] == c.pid
        assert f.readline() == b"4 during\n"
        s.sendall(b"after\n")
        assert f.readline() == b"5 after\n"
        assert "cryo-netlock" not in nft_tables_in(name), "the lock is left after the restore"
        assert c.next_counter() > 0
    finally:
        if s:
            s.close()
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

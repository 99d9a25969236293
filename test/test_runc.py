"""runc drives cryo as its criu binary (runc --criu build/cryo): it speaks
CRIU's RPC to `cryo swrk 3` for checkpoint and restore. The container is a
busybox shell on its own root file system with a counter held in the
shell's memory (written to /tmp/counter every 0.2 s) and 4 MiB of random
text whose md5 it writes at start and again on SIGUSR1, from its memory.
A restore must carry on the very process: same pid, the counter going on
from where the checkpoint left it, the text the same."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cryolib import CRYO

RUNC = shutil.which("runc")
pytestmark = pytest.mark.skipif(not RUNC, reason="runc is not installed (make deps installs it)")

SCRIPT = """
x=$(head -c 4000000 /dev/urandom | base64)
echo "$x" | md5sum >/tmp/sum0
trap 'echo "$x" | md5sum >/tmp/sum1' USR1
n=0
while :; do
    n=$((n + 1))
    echo $n >/tmp/counter.new
    echo $n
    mv /tmp/counter.new /tmp/counter
    sleep 0.2
done
"""


def wait_for(cond, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except FileNotFoundError:
        return False


def reap(pid):
    """Our child (pytest is a subreaper) once runc exits: wait for it if it is gone."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class Container:
    """A runc container from a bundle in tmp_path, with its own runc state
    directory (nothing else's containers are seen or touched)."""

    def __init__(self, tmp_path, name, script=SCRIPT, netns=None):
        self.name = name
        self.bundle = tmp_path / "bundle"
        self.rootfs = self.bundle / "rootfs"
        self.state = tmp_path / "runc-state"
        (self.rootfs / "bin").mkdir(parents=True)
        (self.rootfs / "tmp").mkdir()
        shutil.copy("/bin/busybox", self.rootfs / "bin" / "busybox")
        for applet in ("sh", "sleep", "head", "base64", "md5sum", "mv", "cat", "ps", "nc"):
            os.symlink("busybox", self.rootfs / "bin" / applet)
        subprocess.run([RUNC, "spec"], cwd=self.bundle, check=True)
        cfg = json.loads((self.bundle / "config.json").read_text())
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = ["sh", "-c", script]
        if netns:
            # a network namespace made by the caller (as CNI makes them), named by its path
            for ns in cfg["linux"]["namespaces"]:
                if ns["type"] == "network":
                    ns["path"] = netns
        cfg["root"]["readonly"] = False
        (self.bundle / "config.json").write_text(json.dumps(cfg, indent=1))
        self.pid = None

    def runc(self, *argv, check=True, stdout=None):
        """stdout: the container's (runc run and restore -d), a pipe's write end;
        else /dev/null: never a pipe of ours that we read to its end, which it holds open"""
        if stdout is not None:
            out = err = subprocess.DEVNULL
        else:
            out = subprocess.DEVNULL if argv[0] == "run" else subprocess.PIPE
            stdout, err = out, out
        r = subprocess.run([RUNC, "--root", str(self.state), "--criu", str(CRYO), *map(str, argv)],
                           cwd=self.bundle, stdin=subprocess.DEVNULL, stdout=stdout, stderr=err, text=True,
                           timeout=120)
        if check:
            assert r.returncode == 0, f"runc {' '.join(map(str, argv))} exited {r.returncode}:\n{r.stdout}{r.stderr}"
        return r

    def status(self):
        r = self.runc("state", self.name, check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def run(self, stdout=None):
        self.runc("run", "-d", self.name, stdout=stdout)
        self.pid = self.status()["pid"]
        wait_for(lambda: (self.rootfs / "tmp" / "sum0").exists() and self.counter() >= 3, "the container to start")

    def counter(self):
        try:
            return int((self.rootfs / "tmp" / "counter").read_text() or 0)
        except FileNotFoundError:
            return 0

    def next_counter(self):
        """The next value the counter takes."""
        c = self.counter()
        wait_for(lambda: self.counter() != c, "the counter to move")
        return self.counter()

    def memory_md5(self):
        """The md5 of the text, from what the shell holds now, against the one it wrote at start."""
        (self.rootfs / "tmp" / "sum1").unlink(missing_ok=True)
        self.runc("kill", self.name, "USR1")
        wait_for(lambda: (self.rootfs / "tmp" / "sum1").exists() and (self.rootfs / "tmp" / "sum1").read_text(),
                 "the shell to answer SIGUSR1")
        return (self.rootfs / "tmp" / "sum1").read_text(), (self.rootfs / "tmp" / "sum0").read_text()

    def checkpoint(self, images, *opts):
        r = self.runc("checkpoint", "--image-path", images, *opts, self.name)
        if "--leave-running" not in opts and "--pre-dump" not in opts:
            wait_for(lambda: not alive(self.pid), f"pid {self.pid} to go after the checkpoint")
            reap(self.pid)
        return r

    def restore(self, images, *opts, check=True, stdout=None):
        return self.runc("restore", "-d", "--image-path", images, *opts, self.name, check=check, stdout=stdout)

    def destroy(self):
        self.runc("kill", self.name, "KILL", check=False)
        if self.pid:
            wait_for(lambda: not alive(self.pid), f"pid {self.pid} to die", timeout=10)
            reap(self.pid)
        self.runc("delete", "-f", self.name, check=False)


@pytest.fixture
def container(tmp_path):
    c = Container(tmp_path, f"cryo-test-{os.getpid()}")
    yield c
    c.destroy()


def test_checkpoint_restore(container, tmp_path):
    """runc checkpoint stops the container in its tracks (nothing moves until
    the restore), runc restore -d brings back the same process: its pid, its
    counter going on from the very next value, its memory, its own cgroup
    directories."""
    c = container
    c.run()
    images = tmp_path / "ck"
    c.checkpoint(images)
    assert c.status() is None, "runc still lists the checkpointed container"
    assert not alive(c.pid)
    at_checkpoint = c.counter()
    time.sleep(0.6)
    assert c.counter() == at_checkpoint, "the counter moved after the checkpoint"
    assert (images / "inventory.img").exists() and (images / "descriptors.json").exists()
    c.restore(images)
    st = c.status()
    assert st and st["status"] == "running" and st["pid"] == c.pid, st
    assert alive(c.pid)
    assert c.next_counter() == at_checkpoint + 1, "the counter did not go on from the checkpoint"
    now, at_start = c.memory_md5()
    assert now == at_start, "the shell's memory changed across checkpoint and restore"
    # its cgroup directories (bind mounts of cgroup v1) are its own again, not those of the runc that restored it
    procs = c.runc("exec", c.name, "cat", "/sys/fs/cgroup/pids/cgroup.procs").stdout.split()
    assert "1" in procs, f"/sys/fs/cgroup/pids in the container lists {procs}, not its init"


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
    assert c.status()["pid"] == c.pid
    first = c.next_counter()
    assert before < first <= after + 1 and first < killed_at, (before, after, first, killed_at)


def read_lines(rfd, timeout=20):
    """The counter values the pipe has now, waiting (up to timeout) for at least one whole line."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n") and (timeout or not data):
        assert not timeout or time.monotonic() < deadline, f"no line on the container's stdout: {data!r}"
        try:
            got = os.read(rfd, 65536)
        except BlockingIOError:
            got = None
        if not got and not timeout:
            break
        if got:
            data += got
        else:
            time.sleep(0.01)
    return [int(x) for x in data.split()]


def test_stdout_pipe(container, tmp_path):
    """The container's stdout is a pipe of the caller's (as under a
    container engine). runc restore gives the restored container a new pipe
    (cryo's fd 1, named by inherit_fd pipe:[INODE] from descriptors.json):
    the shell writes its counter on into it, from the next value."""
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
    c = Container(tmp_path, f"cryo-test-{os.getpid()}", script=SERVER + SCRIPT, netns=path)
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
    """runc checkpoint --pre-dump copies the memory while the container runs;
    the final checkpoint with --parent-path saves only what changed since,
    and the restore reads the rest through the chain."""
    c = container
    c.run()
    c.checkpoint(tmp_path / "pre", "--pre-dump")
    assert alive(c.pid) and c.status()["status"] == "running"
    time.sleep(0.5)
    c.checkpoint(tmp_path / "ck", "--parent-path", "../pre")
    assert os.readlink(tmp_path / "ck" / "parent") == "../pre"
    pre_pages = sum(f.stat().st_size for f in (tmp_path / "pre").glob("pages-*.img"))
    final_pages = sum(f.stat().st_size for f in (tmp_path / "ck").glob("pages-*.img"))
    assert final_pages < pre_pages / 2, f"the final checkpoint saved {final_pages} bytes of pages, the pre-dump {pre_pages}"
    at_checkpoint = c.counter()
    c.restore(tmp_path / "ck")
    assert c.next_counter() == at_checkpoint + 1
    now, at_start = c.memory_md5()
    assert now == at_start, "the memory read through the pre-dump chain is not what the shell had"


def test_restore_into_missing_rootfs(container, tmp_path):
    """The container's root file system is gone (an empty directory in its
    place): runc restore fails printing cryo's reason, and nothing is left:
    no process, no container, no cgroup."""
    c = container
    c.run()
    c.checkpoint(tmp_path / "ck")
    real = c.bundle / "rootfs.real"
    c.rootfs.rename(real)
    c.rootfs.mkdir()
    try:
        r = c.restore(tmp_path / "ck", check=False)
        assert r.returncode != 0
        assert "cryo: " in r.stderr and "/bin/busybox" in r.stderr and "No such file" in r.stderr, r.stderr
        assert "errno 2" in r.stderr, r.stderr
        assert c.status() is None, "runc lists a container after the failed restore"
        assert not alive(c.pid), f"pid {c.pid} runs after the failed restore"
        for ctrl in ("freezer", "pids", "cpu"):
            assert not (Path("/sys/fs/cgroup") / ctrl / c.name).exists(), f"cgroup {ctrl}:/{c.name} is left"
    finally:
        shutil.rmtree(c.rootfs)
        real.rename(c.rootfs)

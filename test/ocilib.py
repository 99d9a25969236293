"""OCI runtime containers for the tests of runtimes checkpointing through
cryo (test_runc.py, test_crun.py): a busybox
shell on its own root file system in a bundle under the test's tmp_path,
with a counter held in the shell's memory (written to /tmp/counter every
0.2 s, and to stdout) and 4 MiB of random text whose md5 it writes at start
and again on SIGUSR1, from its memory. A restore must carry on the very
process: same pid, the counter going on from where the checkpoint left it,
the text the same.

A container with a terminal (terminal=True) has a pty: the runtime sends
its master to the test's console socket (--console-socket), at the start
and again after a restore, when it is a new pair's."""
import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from cryolib import CRYO

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

# a TCP service: each line a client sends comes back numbered, the count held by the shell nc runs
SERVER = "nc -l -p 5000 -e sh -c 'n=0; while read l; do n=$((n + 1)); echo \"$n $l\"; done' &\n"

# the counter shell with a terminal: ^C (SIGINT to the terminal's foreground group) is answered, not fatal
TTY_SCRIPT = "trap 'echo int $n' INT\n" + SCRIPT

APPLETS = ("sh", "sleep", "head", "base64", "md5sum", "mv", "cat", "ps", "nc")


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
    """Our child (pytest is a subreaper) once the runtime exits: wait for it if it is gone."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def exited_children():
    """Our children that have exited and wait to be reaped."""
    me, pids = os.getpid(), set()
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state == "Z" and int(ppid) == me:
            pids.add(int(d))
    return pids


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
        except OSError as e:
            # a pty master whose slave side is closed by all
            if e.errno != errno.EIO:
                raise
            got = b""
        if not got and not timeout:
            break
        if got:
            data += got
        else:
            time.sleep(0.01)
    return [int(x) for x in data.split()]


class Console:
    """The socket a runtime sends a terminal container's pty master to."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.sock.settimeout(20)

    def take(self):
        """The master the runtime sent (it has connected by the time its command returned)."""
        conn, _ = self.sock.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 4096, 4)
        assert len(fds) == 1, f"the runtime sent {len(fds)} fds on the console socket"
        os.set_blocking(fds[0], False)
        return fds[0]

    def close(self):
        self.sock.close()


class Container:
    """A container of the runtime at `runtime` from a bundle in tmp_path,
    with its own state directory (nothing else's containers are seen or
    touched). `argv(*args)` is the command line of one runtime call, run
    with cwd the bundle and env; subclasses say how (runc --criu, crun in a
    mount namespace). netns: the path of a network namespace the caller
    made (as CNI does) for it to join."""

    def __init__(self, tmp_path, name, runtime, env=None, script=SCRIPT, netns=None, terminal=False):
        self.name = name
        self.runtime = str(runtime)
        self.env = env
        self.bundle = tmp_path / "bundle"
        self.rootfs = self.bundle / "rootfs"
        self.state = tmp_path / "runtime-state"
        (self.rootfs / "bin").mkdir(parents=True)
        (self.rootfs / "tmp").mkdir()
        shutil.copy("/bin/busybox", self.rootfs / "bin" / "busybox")
        for applet in APPLETS:
            os.symlink("busybox", self.rootfs / "bin" / applet)
        subprocess.run([self.runtime, "spec"], cwd=self.bundle, check=True)
        cfg = json.loads((self.bundle / "config.json").read_text())
        cfg["process"]["terminal"] = terminal
        cfg["process"]["args"] = ["sh", "-c", script]
        if netns:
            for ns in cfg["linux"]["namespaces"]:
                if ns["type"] == "network":
                    ns["path"] = netns
        cfg["root"]["readonly"] = False
        (self.bundle / "config.json").write_text(json.dumps(cfg, indent=1))
        self.pid = None
        self.console = Console(tmp_path / "console.sock") if terminal else None
        self.master = None

    def console_args(self):
        return ["--console-socket", self.console.path] if self.console else []

    def take_master(self):
        if self.master is not None:
            os.close(self.master)
        self.master = self.console.take()

    def argv(self, *args):
        return [self.runtime, "--root", str(self.state), *args]

    def rt(self, *args, check=True, stdout=None, env=None):
        """One runtime call. stdout: the container's (run and restore -d), a
        pipe's write end; else /dev/null: never a pipe of ours that we read
        to its end, which it holds open."""
        args = [str(a) for a in args]
        if stdout is not None:
            out = err = subprocess.DEVNULL
        else:
            out = subprocess.DEVNULL if args[0] == "run" else subprocess.PIPE
            stdout, err = out, out
        before = exited_children()
        r = subprocess.run(self.argv(*args), cwd=self.bundle, env=env or self.env, stdin=subprocess.DEVNULL,
                           stdout=stdout, stderr=err, text=True, timeout=120)
        # what the runtime left to us, the subreaper, and has exited (crun run -d: a helper of its own)
        for pid in exited_children() - before:
            reap(pid)
        if check:
            assert r.returncode == 0, f"{' '.join(self.argv(*args))} exited {r.returncode}:\n{r.stdout}{r.stderr}"
        return r

    def status(self):
        r = self.rt("state", self.name, check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def run(self, stdout=None):
        self.rt("run", "-d", *self.console_args(), self.name, stdout=stdout)
        if self.console:
            self.take_master()
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

    def after_restore(self):
        """The counter's value the moment a restore returns and the next one
        it writes: the first is the checkpoint's or, when the shell has
        written again since it was resumed, the one after it."""
        first = self.counter()
        wait_for(lambda: self.counter() != first, "the counter to move after the restore")
        return first, self.counter()

    def signal(self, sig):
        """Send the container's init signal sig (a name: USR1, KILL)."""
        self.rt("kill", self.name, sig)

    def memory_md5(self):
        """The md5 of the text, from what the shell holds now, against the one it wrote at start."""
        (self.rootfs / "tmp" / "sum1").unlink(missing_ok=True)
        self.signal("USR1")
        wait_for(lambda: (self.rootfs / "tmp" / "sum1").exists() and (self.rootfs / "tmp" / "sum1").read_text(),
                 "the shell to answer SIGUSR1")
        return (self.rootfs / "tmp" / "sum1").read_text(), (self.rootfs / "tmp" / "sum0").read_text()

    def checkpoint(self, images, *opts, **kw):
        r = self.rt("checkpoint", "--image-path", images, *opts, self.name, **kw)
        if r.returncode == 0 and "--leave-running" not in opts and "--pre-dump" not in opts:
            wait_for(lambda: not alive(self.pid), f"pid {self.pid} to go after the checkpoint")
            reap(self.pid)
        return r

    def restore(self, images, *opts, check=True, stdout=None):
        r = self.rt("restore", "-d", "--image-path", images, *self.console_args(), *opts, self.name, check=check,
                    stdout=stdout)
        if self.console and r.returncode == 0:
            self.take_master()
        return r

    def destroy(self):
        self.rt("kill", self.name, "KILL", check=False)
        if self.pid:
            wait_for(lambda: not alive(self.pid), f"pid {self.pid} to die", timeout=10)
            reap(self.pid)
        self.rt("delete", "-f", self.name, check=False)
        if self.master is not None:
            os.close(self.master)
            self.master = None
        if self.console:
            self.console.close()


RUNC = shutil.which("runc")


class RuncContainer(Container):
    """A container run by runc with cryo as its criu binary (runc --criu)."""

    def __init__(self, tmp_path, name, **kw):
        super().__init__(tmp_path, name, RUNC, **kw)

    def argv(self, *args):
        return [self.runtime, "--root", str(self.state), "--criu", str(CRYO), *args]


def read_until(fd, pattern, timeout=20):
    """What a non-blocking fd gives until pattern (a regex of bytes) matches it."""
    data = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, data):
        assert time.monotonic() < deadline, f"{pattern!r} never came: {data!r}"
        try:
            data += os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.01)
    return data


def check_terminal(c, images):
    """A container whose terminal is a pty, its master the runtime's (sent to
    the console socket), checkpointed and restored: the restore makes a new
    pair in the container's devpts (/dev/pts/0 again, /dev/console bound on
    it), hands the runtime its master (orphan-pts-master), which sends it to
    the console socket. Through the new master: the counter goes on from the
    next value, the window size and modes set before the checkpoint are
    kept, and ^C interrupts the shell as its foreground group: the pty is
    its session's controlling terminal again."""
    c.run()
    seen = read_lines(c.master)
    fcntl.ioctl(c.master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    mode = termios.tcgetattr(c.master)
    mode[3] &= ~termios.ECHO
    termios.tcsetattr(c.master, termios.TCSANOW, mode)
    c.checkpoint(images)
    seen += read_lines(c.master, 0)
    c.restore(images)
    got = read_lines(c.master)
    assert got[0] == seen[-1] + 1, f"the counter went from {seen[-1]} to {got[:3]}"
    rows, cols = struct.unpack("HHHH", fcntl.ioctl(c.master, termios.TIOCGWINSZ, bytes(8)))[:2]
    assert (rows, cols) == (33, 101), f"the restored terminal is {rows}x{cols}"
    assert not termios.tcgetattr(c.master)[3] & termios.ECHO, "the restored terminal echoes again"
    stat = open(f"/proc/{c.pid}/stat").read().rsplit(")", 1)[1].split()
    tty, tpgid = int(stat[4]), int(stat[5])
    assert (os.major(tty), os.minor(tty), tpgid) == (136, 0, c.pid), \
        f"the shell's terminal is {os.major(tty)}:{os.minor(tty)} with foreground group {tpgid}"
    console = os.stat(f"/proc/{c.pid}/root/dev/console")
    assert (os.major(console.st_rdev), os.minor(console.st_rdev)) == (136, 0), "/dev/console is not pts/0"
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{c.pid}/fd/{fd}") == "/dev/pts/0"
    os.write(c.master, b"\x03")
    n = int(re.search(rb"int (\d+)", read_until(c.master, rb"int \d+\r\n")).group(1))
    assert alive(c.pid), "^C killed the shell: its trap is not there"
    assert max(read_lines(c.master)) > n, "the counter stopped after ^C"


# ----------------------------------------------------------- the checks each runtime's tests run


def check_checkpoint_restore(c, images):
    """checkpoint stops the container in its tracks (nothing moves until the
    restore); restore -d brings back the same process: its pid, its counter
    going on from the very next value, its memory."""
    c.run()
    c.checkpoint(images)
    assert c.status() is None, "the runtime still lists the checkpointed container"
    assert not alive(c.pid)
    at_checkpoint = c.counter()
    time.sleep(0.6)
    assert c.counter() == at_checkpoint, "the counter moved after the checkpoint"
    assert (images / "inventory.img").exists() and (images / "descriptors.json").exists()
    c.restore(images)
    first, then = c.after_restore()
    assert first in (at_checkpoint, at_checkpoint + 1) and then == first + 1, \
        f"the counter went from {at_checkpoint} to {first}, {then}"
    st = c.status()
    assert st and st["status"] == "running" and st["pid"] == c.pid, st
    assert alive(c.pid)
    now, at_start = c.memory_md5()
    assert now == at_start, "the shell's memory changed across checkpoint and restore"


def check_leave_running(c, images):
    """--leave-running: the container runs on; a restore after it is killed
    goes back to the moment of the checkpoint."""
    c.run()
    before = c.counter()
    c.checkpoint(images, "--leave-running")
    after = c.counter()
    assert c.status()["status"] == "running" and alive(c.pid)
    wait_for(lambda: c.counter() > after + 5, "the counter to go on after --leave-running")
    killed_at = c.counter()
    c.destroy()
    c.restore(images)
    _, first = c.after_restore()  # (the file still shows what the killed container wrote last)
    assert before < first <= after + 1 and first < killed_at, (before, after, first, killed_at)
    assert c.status()["pid"] == c.pid
    now, at_start = c.memory_md5()
    assert now == at_start


def check_pre_dump(c, tmp_path):
    """checkpoint --pre-dump copies the memory while the container runs; the
    final checkpoint with --parent-path saves only what changed since, and
    the restore reads the rest through the chain."""
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
    first, then = c.after_restore()
    assert first in (at_checkpoint, at_checkpoint + 1) and then == first + 1, \
        f"the counter went from {at_checkpoint} to {first}, {then}"
    assert c.status()["pid"] == c.pid
    now, at_start = c.memory_md5()
    assert now == at_start, "the memory read through the pre-dump chain is not what the shell had"


def check_stdout_pipe(c, images):
    """The container's stdout is a pipe of the caller's (as under a
    container engine). The restore gives it a new pipe, named by inherit_fd
    pipe:[INODE] from descriptors.json: the shell writes its counter on into
    it, from the next value."""
    r, w = os.pipe()
    c.run(stdout=w)
    os.close(w)
    os.set_blocking(r, False)
    ino = os.fstat(r).st_ino
    seen = read_lines(r)
    c.checkpoint(images)
    desc = json.loads((images / "descriptors.json").read_text())
    assert desc[1] == f"pipe:[{ino}]", desc
    seen += read_lines(r, 0)
    os.close(r)
    r2, w2 = os.pipe()
    try:
        c.restore(images, stdout=w2)
        os.close(w2)
        w2 = None
        os.set_blocking(r2, False)
        got = read_lines(r2)
        assert got[0] == seen[-1] + 1, f"the counter went from {seen[-1]} to {got[:3]}"
    finally:
        os.close(r2)
        if w2 is not None:
            os.close(w2)


def check_restore_into_missing_rootfs(c, images):
    """The container's root file system is gone (an empty directory in its
    place): the restore fails, and no process or cgroup is left. Returns the
    runtime's result, for its message."""
    c.run()
    c.checkpoint(images)
    real = c.bundle / "rootfs.real"
    c.rootfs.rename(real)
    c.rootfs.mkdir()
    try:
        r = c.restore(images, check=False)
        assert r.returncode != 0
        assert c.status() is None, "the runtime lists a container after the failed restore"
        assert not alive(c.pid), f"pid {c.pid} runs after the failed restore"
        for ctrl in ("freezer", "pids", "cpu"):
            assert not (Path("/sys/fs/cgroup") / ctrl / c.name).exists(), f"cgroup {ctrl}:/{c.name} is left"
        return r
    finally:
        shutil.rmtree(c.rootfs)
        real.rename(c.rootfs)


@contextlib.contextmanager
def host_netns(tag, subnet):
    """A named network namespace with a veth to the host, as CNI makes them
    for a container to join: (name, path, host address, container address),
    in 10.SUBNET.N/30; its name and the veth's derive from tag and our pid."""
    pid = os.getpid()
    name, veth, net = f"cryo-{tag}-{pid}", f"c{tag}{pid % 100000}", f"10.{subnet}.{pid % 200 + 20}"

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


def check_tcp_established(c, netns, images):
    """A container (running SERVER + SCRIPT) in a network namespace the
    caller made (the runtime dumps it as external net[INODE] and hands it
    back on restore) serves a TCP client on the host. checkpoint
    --tcp-established: the namespace is locked (a line sent meanwhile is
    only retransmitted); restore --tcp-established: the same connection
    goes on, the line sent during the checkpoint answered with the next
    number, and the lock is gone."""
    name, _, _, ct_ip = netns
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
        c.checkpoint(images, "--tcp-established")
        assert "cryo-netlock" in nft_tables_in(name), "the namespace is not locked after the checkpoint"
        s.sendall(b"during\n")
        time.sleep(0.5)
        c.restore(images, "--tcp-established")
        assert c.status()["pid"] == c.pid
        assert f.readline() == b"4 during\n"
        s.sendall(b"after\n")
        assert f.readline() == b"5 after\n"
        assert "cryo-netlock" not in nft_tables_in(name), "the lock is left after the restore"
        assert c.next_counter() > 0
    finally:
        if s:
            s.close()

"""LXC containers for test_lxc.py and scripts/bench: LXC's busybox
template as it creates it, in a private lxcpath, its name unique to the
run, with cryo as `criu` on the PATH LXC's tools are run with; a shell
started with lxc-attach counts in its memory (ocilib.SCRIPT). After a
restore no LXC command is used (LXC 5.0.2's restored monitor crashes when a
command client leaves, see test_lxc.py): the monitor's masters are taken
with pidfd_getfd, and the container is ended by killing its init by pid.
"""
import ctypes
import itertools
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from cryolib import CRYO
from ocilib import SCRIPT, alive, wait_for

LXC_CHECKPOINT = shutil.which("lxc-checkpoint")
SEQ = itertools.count()
_libc = ctypes.CDLL(None, use_errno=True)
SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438


def pidfd_getfd(pid, fd):
    """A copy of fd of process pid (the monitor's masters)."""
    pidfd = _libc.syscall(SYS_PIDFD_OPEN, pid, 0)
    assert pidfd >= 0, f"pidfd_open({pid}): {os.strerror(ctypes.get_errno())}"
    try:
        got = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        assert got >= 0, f"pidfd_getfd({pid}, {fd}): {os.strerror(ctypes.get_errno())}"
        return got
    finally:
        os.close(pidfd)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except FileNotFoundError:
        return ""


def nspid(pid):
    with open(f"/proc/{pid}/status") as f:
        return [int(x) for x in next(ln for ln in f if ln.startswith("NSpid:")).split()[1:]]


def read_until(fd, pattern, timeout=20):
    """What the master gives until pattern shows in it."""
    data, deadline = b"", time.monotonic() + timeout
    os.set_blocking(fd, False)
    while pattern not in data:
        assert time.monotonic() < deadline, f"no {pattern!r} from the terminal, only {data!r}"
        try:
            data += os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.02)
    return data


class LxcContainer:
    """A container of LXC's busybox template in the test's own lxcpath, its
    name unique to the test run; cryo is `criu` on the PATH LXC is run with.
    net: None for lxc.net.0.type = empty, else the bridge of its veth."""

    def __init__(self, tmp_path, net=None):
        self.tmp = tmp_path
        self.lxcpath = tmp_path / "lxc"
        self.lxcpath.mkdir()
        self.name = f"cryo-lxc-{os.getpid()}-{next(SEQ)}"
        self.rootfs = self.lxcpath / self.name / "rootfs"
        self.out = tmp_path / "lxc-tools.log"
        bindir = tmp_path / "bin"
        bindir.mkdir()
        os.symlink(CRYO, bindir / "criu")
        self.env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
        cfg = []
        if not os.path.exists("/sys/kernel/security/apparmor"):
            # Debian's default config names one; LXC passes it on (--lsm-profile) whether AppArmor runs or not
            cfg.append("lxc.apparmor.profile = generated")
        if net is None:
            cfg.append("lxc.net.0.type = empty")
        else:
            cfg += ["lxc.net.0.type = veth", f"lxc.net.0.link = {net}", "lxc.net.0.flags = up",
                    "lxc.net.0.name = eth0"]
        (tmp_path / "config").write_text("\n".join(cfg) + "\n")
        self.init = None      # the container's init, as the host sees it
        self.created = False
        self.tool("lxc-create", "-t", "busybox", "-f", tmp_path / "config")
        self.created = True

    def tool(self, tool, *args, check=True):
        """One LXC command. Its output goes to a file: the monitor it may
        leave running holds what it was given, and a pipe would never end."""
        with open(self.out, "a+") as out:
            out.write(f"$ {tool} {' '.join(map(str, args))}\n")
            out.flush()
            start = out.tell()
            r = subprocess.run([tool, "-P", str(self.lxcpath), "-n", self.name, *map(str, args)], env=self.env,
                               stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=120)
            out.seek(start)
            text = out.read()
        if check:
            assert r.returncode == 0, f"{tool} {' '.join(map(str, args))} exited {r.returncode}:\n{text}"
        return r.returncode, text

    def monitor(self):
        """The container's monitor: LXC's process named after its lxcpath and name."""
        want = f"[lxc monitor] {self.lxcpath} {self.name}"
        for d in os.listdir("/proc"):
            if d.isdigit() and cmdline(int(d)) == want:
                return int(d)
        return None

    def procs(self):
        """Every process of the container below its init: {host pid: command line}."""
        out, todo = {}, children(self.init)
        while todo:
            p = todo.pop()
            out[p] = cmdline(p)
            todo += children(p)
        return out

    def find(self, what):
        return [p for p, c in self.procs().items() if c.startswith(what)]

    def start(self):
        self.tool("lxc-start")
        _, text = self.tool("lxc-info", "-p", "-H")
        self.init = int(text.split()[-1])
        wait_for(lambda: self.find("/bin/getty") and self.find("init"), "the template's getty and console")
        (self.rootfs / "counter.sh").write_text(SCRIPT)
        self.tool("lxc-attach", "--", "/bin/sh", "-c", "setsid /bin/sh /counter.sh </dev/null >/dev/null 2>&1 &")
        wait_for(lambda: (self.rootfs / "tmp" / "sum0").exists() and self.counter() >= 3,
                 "the counter shell to start")
        self.shell = self.find("/bin/sh /counter.sh")[0]
        self.getty = self.find("/bin/getty")[0]
        self.askfirst = self.find("init")[0]

    def counter(self):
        try:
            return int((self.rootfs / "tmp" / "counter").read_text() or 0)
        except FileNotFoundError:
            return 0

    def memory_md5(self):
        (self.rootfs / "tmp" / "sum1").unlink(missing_ok=True)
        os.kill(self.shell, signal.SIGUSR1)
        wait_for(lambda: (self.rootfs / "tmp" / "sum1").exists() and (self.rootfs / "tmp" / "sum1").read_text(),
                 "the shell to answer SIGUSR1")
        return (self.rootfs / "tmp" / "sum1").read_text(), (self.rootfs / "tmp" / "sum0").read_text()

    def checkpoint(self, images):
        self.tool(LXC_CHECKPOINT, "-s", "-D", images)
        wait_for(lambda: not alive(self.init), f"init {self.init} to go after the checkpoint")
        wait_for(lambda: self.monitor() is None, "the monitor to go after the checkpoint")

    def restore(self, images):
        self.tool(LXC_CHECKPOINT, "-r", "-D", images)

    def masters(self):
        """The pty masters LXC's monitor holds: {(devpts dev, index): its fd in the monitor}."""
        mon, found = self.monitor(), {}
        for fd in os.listdir(f"/proc/{mon}/fd"):
            try:
                with open(f"/proc/{mon}/fdinfo/{fd}") as f:
                    index = [ln.split()[1] for ln in f if ln.startswith("tty-index:")]
            except FileNotFoundError:
                continue
            if index:
                local = pidfd_getfd(mon, int(fd))
                try:
                    peer = _libc.ioctl(local, 0x5441, os.O_RDWR | os.O_NOCTTY)  # TIOCGPTPEER
                    assert peer >= 0, f"TIOCGPTPEER on the monitor's fd {fd}: {os.strerror(ctypes.get_errno())}"
                    found[(os.fstat(peer).st_dev, int(index[0]))] = int(fd)
                    os.close(peer)
                finally:
                    os.close(local)
        return found

    def master_of(self, path):
        """A copy of the master, held by the monitor, of the container's terminal at path."""
        st = os.stat(f"/proc/{self.init}/root{path}")
        index = (os.major(st.st_rdev) - 136) * 256 + os.minor(st.st_rdev)
        fd = self.masters().get((st.st_dev, index))
        assert fd is not None, f"LXC's monitor holds no master of the container's {path} (pty {index})"
        return pidfd_getfd(self.monitor(), fd)

    def destroy(self):
        """By pid: the container's init (its monitor then ends), then LXC's files."""
        mon = self.monitor()
        if self.init and alive(self.init):
            os.kill(self.init, signal.SIGKILL)
            wait_for(lambda: not alive(self.init), f"init {self.init} to die", timeout=10)
        if mon:
            wait_for(lambda: not alive(mon), f"monitor {mon} to end", timeout=10)
        if self.created:
            self.tool("lxc-destroy", "-f", check=False)
        # what a monitor that died left (LXC's cgroups, named after the container)
        for d in Path("/sys/fs/cgroup").glob(f"*/lxc.*.{self.name}*"):
            d.rmdir()
        for d in Path("/sys/fs/cgroup").glob(f"lxc.*.{self.name}*"):
            d.rmdir()

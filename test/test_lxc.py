"""LXC (5.0.2, Debian's) drives cryo as its criu: lxc-checkpoint runs
`criu dump` and `criu restore` from PATH with CRIU's command line, and the
test's PATH has cryo there. The container is LXC's busybox template as it
creates it, in a private lxcpath under the test's tmp_path: busybox init,
syslogd, a getty on tty1 (one of the 5 ttys whose masters LXC's monitor
holds), the console (a pty of the host's, bound on /dev/console, its master
with the monitor) where init waits for Enter to start a shell; and a shell
started with lxc-attach that counts in its memory (written to /tmp/counter)
and holds 4 MiB of random text (its md5 at start and on SIGUSR1).

A restore must bring back the very container: the same pids, the counter
going on from the next value, the text the same, the getty answering on
tty1 through the master the monitor holds, the console's shell answering
through the monitor's console, and its network: loopback only
(lxc.net.0.type = empty), or a veth on a bridge of the test's own.

LXC 5.0.2's restored monitor has no table of ttys (it gets them only from
a starting container's child) and walks one of lxc.tty.max entries when
any command client leaves (lxc-info, lxc-console, lxc-stop): it dies of
it. So after a restore the test talks to no LXC command (it takes the
monitor's masters with pidfd_getfd, and cleans up by killing the
container's init by pid), except with lxc.tty.max = 0 in the config at
restore, where lxc-console itself reaches the restored console's shell.
"""
import os
import pty
import select
import shutil
import subprocess
import time

import pytest

from lxclib import LXC_CHECKPOINT, LxcContainer, children, cmdline, nspid, read_until
from cryolib import cryo
from ocilib import alive, wait_for

pytestmark = pytest.mark.skipif(not LXC_CHECKPOINT or not shutil.which("lxc-create"),
                                reason="lxc is not installed (make deps installs it)")


@pytest.fixture
def bridge(tmp_path):
    """A bridge of the test's own with an address, and a DHCP server on it
    (busybox udhcpd) for the template's udhcpc to get the container's
    address from: (name, the container's address)."""
    pid = os.getpid()
    name, net = f"crl{pid % 100000}", f"10.79.{pid % 200 + 20}"

    def ip(*argv):
        subprocess.run(["ip", *argv], check=True, capture_output=True)

    conf = tmp_path / "udhcpd.conf"
    conf.write_text(f"start {net}.2\nend {net}.2\ninterface {name}\nlease_file {tmp_path}/udhcpd.leases\n"
                    f"pidfile {tmp_path}/udhcpd.pid\noption subnet 255.255.255.0\noption lease 86400\n")
    (tmp_path / "udhcpd.leases").touch()
    ip("link", "add", name, "type", "bridge")
    server = None
    try:
        ip("addr", "add", f"{net}.1/24", "dev", name)
        ip("link", "set", name, "up")
        server = subprocess.Popen([shutil.which("busybox"), "udhcpd", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        yield name, f"{net}.2"
    finally:
        if server:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def mounts(pid):
    """The container's mount tree as its init sees it: each mount (mountpoint,
    root, type, options) with the mounts of its peer group (shared:N)."""
    with open(f"/proc/{pid}/mountinfo") as f:
        lines = [ln.split() for ln in f]
    group = {}
    for ln in lines:
        for opt in ln[6:ln.index("-")]:
            if opt.startswith("shared:"):
                group.setdefault(opt, []).append(ln[4])
    out = []
    for ln in lines:
        sep = ln.index("-")
        peers = [group[o] for o in ln[6:sep] if o.startswith("shared:")]
        out.append((ln[4], ln[3], ln[sep + 1], ln[5], tuple(sorted(peers[0])) if peers else ()))
    return sorted(out)


def cgroups(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


def check_checkpoint_restore(c, images, on_start=None, restore=True):
    """lxc-checkpoint -s stops the container; -r brings back the same one
    (check_restore)."""
    c.start()
    if on_start:
        on_start()
    procs = {p: cmdline(p) for p in [c.init, *c.procs()]}
    c.snap = dict(procs=procs, cgroups={p: cgroups(p) for p in procs}, mounts=mounts(c.init),
                  shell_ns=nspid(c.shell), tty1=os.stat(f"/proc/{c.init}/root/dev/tty1").st_rdev)
    assert "/.lxc\n" in c.snap["cgroups"][c.shell], c.snap["cgroups"][c.shell]
    c.checkpoint(images)
    c.snap["counter"] = c.counter()
    time.sleep(0.6)
    assert c.counter() == c.snap["counter"], "the counter moved after the checkpoint"
    assert not alive(c.shell)
    if restore:
        check_restore(c, images)


def check_restore(c, images):
    """The same processes with their pids, cgroups (the counter shell in
    lxc-attach's .lxc), memory, terminals and mount tree (peer groups too)."""
    snap = c.snap
    c.restore(images)
    mon = c.monitor()
    assert mon and c.init in children(mon), f"the restored init {c.init} is not the child of LXC's monitor {mon}"
    after = {p: cmdline(p) for p in [c.init, *c.procs()]}
    assert after == snap["procs"], f"processes before the checkpoint {snap['procs']}, after the restore {after}"
    assert {p: cgroups(p) for p in after} == snap["cgroups"]
    assert mounts(c.init) == snap["mounts"]
    assert nspid(c.shell) == snap["shell_ns"]
    first = c.counter()
    wait_for(lambda: c.counter() != first, "the counter to move after the restore")
    assert first in (snap["counter"], snap["counter"] + 1) and c.counter() == first + 1, \
        f"the counter went from {snap['counter']} to {first}, {c.counter()}"
    now, at_start = c.memory_md5()
    assert now == at_start, "the shell's memory changed across checkpoint and restore"
    # the ttys: the same numbers in the container's devpts, each master with LXC's monitor
    assert os.stat(f"/proc/{c.init}/root/dev/tty1").st_rdev == snap["tty1"]
    devpts = os.stat(f"/proc/{c.init}/root/dev/pts/ptmx").st_dev
    assert sorted(i for d, i in c.masters() if d == devpts) == [0, 1, 2, 3, 4], c.masters()


def check_getty(c):
    """The restored getty (the same process) reads tty1 and answers through
    the master the monitor holds: a login name, and login asks for its
    password."""
    master = c.master_of("/dev/tty1")
    try:
        os.write(master, b"root\n")
        read_until(master, b"Password")
    finally:
        os.close(master)
    assert cmdline(c.getty).startswith(("/bin/login", "login")), \
        f"the getty {c.getty} did not go on to login: {cmdline(c.getty)!r}"


def check_console(c):
    """The console: init's child (the same process) was waiting there for
    Enter; it becomes a shell, which runs a command sent after. The monitor
    reads the console's master itself (to a log or nowhere): the shell's
    answer goes to a file, the test writes to the master."""
    master = c.master_of("/dev/console")
    answer = c.rootfs / "tmp" / "console-answer"
    try:
        os.write(master, b"\n")
        wait_for(lambda: cmdline(c.askfirst) == "/bin/sh", "init's child on the console to become a shell")
        os.write(master, b"echo $((6*7))-ok $$ >/tmp/console-answer\n")
        wait_for(lambda: answer.exists() and answer.read_text().endswith("\n"), "the console's shell to answer")
    finally:
        os.close(master)
    assert answer.read_text().split() == ["42-ok", str(nspid(c.askfirst)[-1])], answer.read_text()


def netns_run(pid, code):
    """Python code run in the network namespace of pid."""
    return subprocess.run(["nsenter", "-t", str(pid), "-n", "/usr/bin/python3", "-c", code], capture_output=True,
                          text=True, timeout=30)


LOOPBACK_ECHO = """
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
c = socket.create_connection(s.getsockname()); a, _ = s.accept()
c.sendall(b"ping"); print(a.recv(4).decode())
"""


def test_checkpoint_restore_empty_network(tmp_path):
    """lxc.net.0.type = empty: the container as the template makes it, its
    loopback working after the restore."""
    c = LxcContainer(tmp_path)
    try:
        check_checkpoint_restore(c, tmp_path / "ck", restore=False)
        # the console is LXC's: cryo's command line alone cannot restore it
        r = cryo("restore", "-D", tmp_path / "ck", "-d", "--ext-mount-map", "console:/dev/null", check=False)
        assert r.returncode != 0 and "--inherit-fd fd[N]:tty[" in r.stderr and "/dev/console" in r.stderr, r.stderr
        assert not alive(c.init) and c.monitor() is None
        check_restore(c, tmp_path / "ck")
        check_getty(c)
        check_console(c)
        r = netns_run(c.init, "import socket; print(socket.if_nameindex())")
        assert r.returncode == 0 and "'lo'" in r.stdout and "eth" not in r.stdout, r.stdout + r.stderr
        r = netns_run(c.init, LOOPBACK_ECHO)
        assert r.returncode == 0 and r.stdout.strip() == "ping", r.stdout + r.stderr
    finally:
        c.destroy()


def test_checkpoint_restore_veth(tmp_path, bridge):
    """A veth on the test's bridge, its address from the template's udhcpc:
    it answers ping before and after, its host end back in the bridge."""
    name, ip = bridge
    c = LxcContainer(tmp_path, net=name)

    def ping():
        return subprocess.run([shutil.which("busybox"), "ping", "-c", "1", "-W", "1", ip], capture_output=True).returncode == 0

    try:
        check_checkpoint_restore(c, tmp_path / "ck", lambda: wait_for(ping, f"the container to answer ping at {ip}"))
        assert ping(), f"the restored container does not answer ping at {ip}"
        ports = subprocess.run(["ip", "-o", "link", "show", "master", name], capture_output=True, text=True).stdout
        assert len(ports.splitlines()) == 1 and "veth" in ports, f"bridge {name} has {ports!r}"
        check_console(c)
    finally:
        c.destroy()


def lxc_console_run(c, line, want, timeout=20):
    """lxc-console -t 0 on a terminal of the test's: Enter (init's child on
    the console waits for it), then line; what came back once want shows."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe("lxc-console", ["lxc-console", "-P", str(c.lxcpath), "-n", c.name, "-t", "0"], c.env)
    out, deadline = b"", time.monotonic() + timeout
    try:
        def read(until):
            nonlocal out
            while until not in out and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.1)[0]:
                    try:
                        out += os.read(fd, 4096)
                    except OSError:
                        break
            return until in out

        read(b"Ctrl+a q")
        os.write(fd, b"\r")
        read(b"# ")
        os.write(fd, line + b"\r")
        read(want)
        os.write(fd, b"\x01q")
    finally:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        os.close(fd)
    return out


def test_lxc_console_after_restore(tmp_path):
    """LXC's own console client on the restored container: with
    lxc.tty.max = 0 in its config at restore (LXC 5.0.2's restored monitor
    has no tty table, and walks one of lxc.tty.max entries when a client
    leaves), the monitor serves lxc-info and lxc-console: the console's
    shell, which the restored init starts on Enter, answers a command."""
    c = LxcContainer(tmp_path)
    try:
        check_checkpoint_restore(c, tmp_path / "ck", restore=False)
        config = c.lxcpath / c.name / "config"
        config.write_text(config.read_text().replace("lxc.tty.max = 5", "lxc.tty.max = 0"))
        check_restore(c, tmp_path / "ck")
        out = lxc_console_run(c, b"echo $((6*7))-ok $$", b"42-ok")
        assert f"42-ok {nspid(c.askfirst)[-1]}".encode() in out, out
        _, text = c.tool("lxc-info", "-s")
        assert "RUNNING" in text and c.monitor(), text
    finally:
        c.destroy()

"""Unix sockets of a container with its own network and mount namespaces
(scripts/container): sock_diag is asked in the container's network
namespace, and a socket's name is a file beneath the container's root, made
again there at restore.

- busybox syslogd bound on /dev/log (a datagram socket on the container's
  /dev tmpfs): lines that logger writes after the restore reach the log;
- a stream listener with a client connected to it (ct-unixpair): the pair
  goes on talking, and the listener still takes new connections at its
  name, with its counts (in its memory) carried on.
"""
import os
import shutil
import subprocess
import time

import pytest

from cryolib import ROOT, dump, restore, show
from test_container import CONTAINER, container, wait_gone  # noqa: F401 (a fixture)

UNIXPAIR = ROOT / "build" / "ct-unixpair"


def name(tag):
    """A container name no other session's test uses."""
    return f"{tag}{os.getpid() % 100000}"


def ct_exec(c, script):
    """Run script in the container, in its cgroups (a service it starts is the container's)."""
    r = subprocess.run([str(CONTAINER), "exec", c.name, "/bin/sh", "-c", script], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, f"in the container: {script!r} failed:\n{r.stderr}"
    return r.stdout


def wait_for(what, cond, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout} s")


def pid_of(c, comm):
    """The container's pid (inside) of its one process named comm."""
    for line in c.sh("ps -o pid,comm").splitlines()[1:]:
        pid, cmd = line.split(None, 1)
        if cmd.strip() == comm:
            return int(pid)
    return None


def unix_records(images):
    return [r["unix_sk"] for r in show(images / "files.img")["records"] if r["kind"] == "UNIX_SK"]


@pytest.mark.parametrize("userns", [False, True], ids=["privileged", "unprivileged"])
def test_syslogd_on_dev_log(container, images, userns):
    """busybox syslogd on /dev/log in the container: dumped, restored, and
    lines logged after the restore are in its log file. Unprivileged (in a
    user namespace too), /dev/log keeps its owner as the container sees it."""
    c = container("os", name("ctusl" if userns else "ctsl"), ip=93 if userns else 91, userns=userns)
    log = c.dir / "rootfs" / "var" / "syslog"
    ct_exec(c, "setsid syslogd -n -S -O /var/syslog </dev/null >/dev/null 2>&1 &")
    wait_for("/dev/log", lambda: "s" == c.sh("ls -l /dev/log 2>/dev/null | cut -c1 || true").strip())
    ct_exec(c, "logger -t cryotest before-dump")
    wait_for("the line before the dump in the log", lambda: log.exists() and "before-dump" in log.read_text())
    syslogd = pid_of(c, "syslogd")
    assert syslogd
    owner = c.sh("chown 0:12 /dev/log && ls -ln /dev/log").split()[2:4]
    assert owner == ["0", "12"], owner
    dump(c.pid, images)
    wait_gone(c.pid)
    names = [bytes.fromhex(u["name"]) if "name" in u else b"" for u in unix_records(images)]
    assert any(n.rstrip(b"\0") == b"/dev/log" for n in names), names
    restore(images)
    assert pid_of(c, "syslogd") == syslogd, "syslogd is not the same process"
    # its name is a socket file again, in the container's /dev
    assert c.sh("ls -l /dev/log | cut -c1").strip() == "s"
    assert c.sh("ls -ln /dev/log").split()[2:4] == owner
    for i in range(3):
        ct_exec(c, f"logger -t cryotest after-restore-{i}")
    wait_for("the lines after the restore in the log",
             lambda: all(f"after-restore-{i}" in log.read_text() for i in range(3)))
    text = log.read_text()
    assert text.count("before-dump") == 1 and text.index("before-dump") < text.index("after-restore-0"), text


def test_stream_pair_and_listener(container, images):
    """A unix stream listener in the container with a client connected to
    it, talking all the time: after the restore they go on from their
    numbers, and the listener takes a new connection at its name, with the
    count of connections in its memory carried on."""
    c = container("os", name("ctsp"), ip=92)
    shutil.copy(UNIXPAIR, c.dir / "rootfs" / "bin" / "ct-unixpair")
    progress = c.dir / "rootfs" / "var" / "unixpair"
    ct_exec(c, "setsid ct-unixpair serve /run/pair.sock /var/unixpair </dev/null >/dev/null 2>&1 &")

    def number():
        text = progress.read_text() if progress.exists() else ""
        assert not text.startswith("FAIL"), text
        return int(text) if text.strip() else 0

    wait_for("the pair talking", lambda: number() >= 3)
    first = c.sh("ct-unixpair ask /run/pair.sock").split()
    assert first[:2] == ["served", "2"] and int(first[3]) >= 3, first
    dump(c.pid, images)
    wait_gone(c.pid)
    at_dump = number()
    recs = unix_records(images)
    assert any(r.get("state") == 10 for r in recs), recs    # the listener
    restore(images)
    # the client goes on from its number, not from 1, and its answers are right
    wait_for("the pair talking after the restore", lambda: number() > at_dump + 3)
    assert number() < at_dump + 100
    # the listener is at its name in the container: a new connection, the third it accepted
    again = c.sh("ct-unixpair ask /run/pair.sock").split()
    assert again[:2] == ["served", "3"], again
    assert int(again[3]) > at_dump, (at_dump, again)
    assert c.sh("ls -l /run/pair.sock | cut -c1").strip() == "s"

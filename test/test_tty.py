"""A shell job: a process whose stdio is its shell's terminal, in the
foreground, is dumped with --shell-job and restored, with --shell-job, onto
the terminal of the restoring cryo (which waits for it, as a shell would
wait for `cryo restore`). It must get that terminal as its controlling
terminal, hold its foreground, and read what is typed there."""
import fcntl
import os
import select
import signal
import subprocess
import sys
import termios
import time

import pytest

import cryolib
from conftest import prog

# a minimal job-control shell: session leader on the terminal, runs argv[2]
# in its own process group in the foreground, writes its pid to argv[1]
SHELL = r"""
import os, sys
fcntl_ioctl = __import__("fcntl").ioctl
fcntl_ioctl(0, __import__("termios").TIOCSCTTY, 0)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    while os.tcgetpgrp(0) != os.getpid():
        pass
    os.execv(sys.argv[2], sys.argv[2:])
os.setpgid(pid, pid)
os.tcsetpgrp(0, pid)
open(sys.argv[1], "w").write(str(pid))
os.waitpid(pid, 0)
"""


class Terminal:
    """A pseudo-terminal pair; collects what is written to the slave."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        self.text = ""

    def read_until(self, word, timeout=20):
        deadline = time.monotonic() + timeout
        while word not in self.text:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{word!r} never appeared on the terminal:\n{self.text}")
            if select.select([self.master], [], [], left)[0]:
                try:
                    self.text += os.read(self.master, 4096).decode(errors="replace")
                except OSError:   # EIO: no slave open any more
                    time.sleep(0.05)
        return self.text

    def close(self):
        for fd in (self.master, self.slave):
            os.close(fd)


def on_terminal(term):
    """Popen arguments: a new session with term as its controlling terminal."""
    return dict(stdin=term.slave, stdout=term.slave, stderr=term.slave, start_new_session=True,
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0), close_fds=True)


@pytest.fixture
def terminals():
    made = []

    def make():
        made.append(Terminal())
        return made[-1]
    yield make
    for t in made:
        t.close()


def start_job(tmp_path, term):
    pidfile = tmp_path / "job.pid"
    shell = subprocess.Popen([sys.executable, "-c", SHELL, str(pidfile), prog("tty")],
                             stdin=term.slave, stdout=term.slave, stderr=term.slave,
                             start_new_session=True, close_fds=True)
    term.read_until("READY")
    # the shell writes the pid file itself, maybe a moment after the job's READY
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the shell wrote no pid file"
        time.sleep(0.01)
    job = int(pidfile.read_text())
    return shell, job


def test_shell_job_gets_cryos_terminal(tmp_path, images, terminals):
    first, second = terminals(), terminals()
    shell, job = start_job(tmp_path, first)
    try:
        token = first.text.split("token=")[1].split()[0]
        stat = open(f"/proc/{job}/stat").read().rsplit(")", 1)[1].split()
        assert int(stat[2]) == job and int(stat[5]) == job, "the job is not in the foreground"

        # without --shell-job the terminal is refused, naming the fd
        r = cryolib.cryo("dump", "-t", job, "-D", images, check=False)
        assert r.returncode != 0 and "--shell-job" in r.stderr and "terminal" in r.stderr
        assert cryolib.alive(job)

        cryolib.dump(job, images, "--shell-job")
        shell.wait(timeout=10)   # the shell reaps its killed job and ends
        assert cryolib.images_by_kind(images)["pstree"][0]["tty_foreground"]

        rst = subprocess.Popen([str(cryolib.CRYO), "restore", "-D", str(images), "--shell-job",
                                "-o", "restore.log"], **on_terminal(second))
        for _ in range(500):
            if cryolib.alive(job):
                break
            time.sleep(0.01)
        assert cryolib.alive(job), f"no pid {job} after restore:\n{second.text}"
        stat = open(f"/proc/{job}/stat").read().rsplit(")", 1)[1].split()
        assert int(stat[3]) == rst.pid, "the job is not in cryo's session"
        os.kill(job, signal.SIGUSR1)
        second.read_until("ASK")
        os.write(second.master, b"hello from the new terminal\n")
        out = second.read_until("PASS")
        assert f"GOT hello from the new terminal token={token}" in out
        assert rst.wait(timeout=20) == 0, out
        assert "FAIL" not in out
    finally:
        cryolib.kill_and_reap(job)
        shell.kill()
        shell.wait()


def test_shell_job_restore_needs_the_flag(tmp_path, images, terminals):
    shell, job = start_job(tmp_path, terminals())
    try:
        cryolib.dump(job, images, "--shell-job")
        shell.wait(timeout=10)
        r = cryolib.cryo("restore", "-D", images, "-d", check=False)
        assert r.returncode != 0
        assert len(r.stderr.splitlines()) == 1 and "--shell-job" in r.stderr, r.stderr
        time.sleep(0.1)
        assert not os.path.exists(f"/proc/{job}")
    finally:
        cryolib.kill_and_reap(job)
        shell.kill()
        shell.wait()

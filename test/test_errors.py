"""Bad input gets one clear line on stderr and a non-zero exit, and nothing
is lost: the original keeps running where there is one, and a failed
restore leaves no process behind. Also --leave-running and a restore that
waits for the process and passes on its exit status."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import cryolib
from cryolib import one_line_error, restore_fails
from conftest import prog


def unused_pid():
    """A pid nobody has (pid_max is large; take one far from the current)."""
    pid = 4000000
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    return pid


def test_dump_missing_pid(images):
    pid = unused_pid()
    r = cryolib.cryo("dump", "-t", pid, "-D", images, check=False)
    one_line_error(r, str(pid), "no such process")
    assert not list(Path(images).glob("*.img")), "a failed dump left images behind"


def test_dump_into_missing_dir(workload, tmp_path):
    w = workload([prog("regs")])
    w.wait_ready()
    missing = tmp_path / "no" / "such" / "dir"
    r = cryolib.cryo("dump", "-t", w.pid, "-D", missing, check=False)
    one_line_error(r, str(missing))
    assert cryolib.proc_state(w.pid) in "RS"
    w.verify()


OUTSIDE_GROUP = """
import os, time
r, w = os.pipe()
if os.fork() == 0:                           # a: own group; its child b joins the root's group
    os.setpgid(0, 0)
    if os.fork() == 0:
        os.setpgid(0, os.getsid(0))
        os.write(w, b"r")
        time.sleep(1000)
    time.sleep(1000)
os.read(r, 1)
print("READY", flush=True)
time.sleep(1000)
"""


def test_dump_refuses_group_led_from_outside(workload, images):
    """A process of the dumped tree is in a process group led by a live
    process outside it: the dump says which, and the tree carries on."""
    w = workload(["/usr/bin/python3", "-c", OUTSIDE_GROUP])
    w.wait_ready()
    a = int(open(f"/proc/{w.pid}/task/{w.pid}/children").read().split()[0])
    b = int(open(f"/proc/{a}/task/{a}/children").read().split()[0])
    before = cryolib.snapshot(a), cryolib.snapshot(b)
    # a's session is led from outside too: --shell-job allows that, not b's group
    r = cryolib.cryo("dump", "-t", a, "-D", images, "--shell-job", check=False)
    one_line_error(r, f"pid {b}", f"process group {w.pid}", "led by a process outside the dump")
    cryolib.assert_same_process(before[0], a)
    cryolib.assert_same_process(before[1], b)
    assert not (images / "inventory.img").exists()


PIPE_COUNTER = """
import os, time
n = 0
while True:                                  # stdout: a pipe the test holds
    n += 1
    os.write(1, b"%d\\n" % n)
    time.sleep(0.02)
"""


def read_counter(rfd, timeout=10):
    """The numbers the pipe has for us now (waiting up to timeout for at least one)."""
    data = b""
    deadline = time.monotonic() + timeout
    while (not data or not data.endswith(b"\n")) and time.monotonic() < deadline:
        try:
            got = os.read(rfd, 65536)
        except BlockingIOError:
            got = None
        if got:
            data += got
        elif not timeout:
            break
        else:
            time.sleep(0.01)
    assert data.endswith(b"\n") or not timeout, f"no line from the pipe in {timeout}s: {data!r}"
    return [int(x) for x in data.split()]


def test_pipe_to_outside_inherit_fd(images):
    """The dumped process writes into a pipe whose read end only the test
    holds (a runtime's stdio pipe). The dump marks it external; a restore
    without the pipe fails naming it and --inherit-fd, leaving nothing; a
    restore given the pipe with --inherit-fd fd[N]:pipe:[INODE] writes on
    into it, from the next number of the counter."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    p = subprocess.Popen(["/usr/bin/python3", "-c", PIPE_COUNTER], stdin=subprocess.DEVNULL, stdout=w,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        ino = os.fstat(r).st_ino
        seen = read_counter(r)
        cryolib.dump(p.pid, images)
        p.wait(10)
        seen += read_counter(r, 0)
        pipes = [f["pipe"] for f in cryolib.show(images / "files.img")["records"] if f.get("pipe")]
        assert pipes and all(e["pipe_id"] == ino and e.get("external") for e in pipes), pipes
        assert not any(e.get("data") for e in pipes), "an external pipe's bytes stay in the pipe"

        restore_fails(images, p.pid, "fd 1", f"pipe:[{ino}]", "--inherit-fd")
        cryolib.cryo("restore", "-D", images, "-d", "-o", "restore.log", "-v4",
                     "--inherit-fd", f"fd[{w}]:pipe:[{ino}]", pass_fds=(w,))
        after = read_counter(r)
        assert after[0] == seen[-1] + 1, f"the counter went from {seen[-1]} to {after[:3]}"
        assert after == list(range(after[0], after[0] + len(after)))
    finally:
        cryolib.kill_and_reap(p.pid)
        os.close(r)
        os.close(w)


def test_inherit_fd_bad(images):
    """--inherit-fd that is not fd[N]:KEY, or names an fd cryo lacks: one line naming it."""
    r = cryolib.cryo("restore", "-D", images, "--inherit-fd", "pipe:[5]", check=False)
    one_line_error(r, "--inherit-fd pipe:[5]", "fd[N]:KEY")
    r = cryolib.cryo("restore", "-D", images, "--inherit-fd", "fd[77]:pipe:[5]", check=False)
    one_line_error(r, "fd[77]:pipe:[5]", "cryo has no fd 77")


def test_leave_running(workload, images):
    """--leave-running: the original carries on (and passes its checks),
    and the images restore the same state once it is gone."""
    w = workload([prog("regs")])
    w.wait_ready()
    time.sleep(0.2)
    before = cryolib.snapshot(w.pid)
    cryolib.dump(w.pid, images, "--leave-running")
    cryolib.assert_same_process(before, w.pid)
    r12 = cryolib.images_by_kind(images)["core"]["threads"][0]["regs"]["r12"]
    time.sleep(0.1)
    # it is still counting: the dumped r12 is behind the live loop
    os.kill(w.pid, signal.SIGUSR1)
    w.proc.wait(timeout=10)
    assert w.proc.returncode == 0, w.output()
    live = int(w.output().split("counter=")[1].split()[0])
    assert live > r12
    # the same pid, now free, comes back from the images
    w.log.write_text("")
    cryolib.restore(images)
    w.restored = True
    restored = int(w.verify().split("counter=")[1].split()[0])
    assert restored >= r12


def test_restore_into_taken_pid(workload, images):
    w = workload([prog("regs")])
    w.wait_ready()
    cryolib.dump(w.pid, images, "--leave-running")
    r = cryolib.cryo("restore", "-D", images, "-d", check=False)
    one_line_error(r, str(w.pid), "in use")
    # the original is untouched and still the one counting
    assert w.proc.poll() is None
    w.verify()


def restore_in_foreground(images, pid):
    """`cryo restore` without -d, started and waited for until pid is back."""
    rst = subprocess.Popen([str(cryolib.CRYO), "restore", "-D", str(images)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(500):
        if cryolib.alive(pid):
            break
        time.sleep(0.01)
    assert cryolib.alive(pid), f"pid {pid} did not come back"
    time.sleep(0.1)
    assert rst.poll() is None, "cryo restore returned before its process exited"
    return rst


def test_restore_waits_and_passes_exit_status(workload, images):
    """Without -d cryo waits for the restored process and exits with its
    status (128+signal for a signal, like a shell)."""
    w = workload([prog("regs")])
    w.wait_ready()
    cryolib.checkpoint(w, images)
    rst = restore_in_foreground(images, w.pid)
    os.kill(w.pid, signal.SIGUSR1)
    out, err = rst.communicate(timeout=30)
    assert rst.returncode == 0, err
    assert "PASS" in w.output()

    # a second restore from the same images, killed by a signal this time
    rst = restore_in_foreground(images, w.pid)
    os.kill(w.pid, signal.SIGTERM)
    rst.communicate(timeout=30)
    assert rst.returncode == 128 + signal.SIGTERM


@pytest.fixture
def dumped_regs(dumped):
    return dumped([prog("regs")])


def image(images, kind):
    return next(Path(images).glob(f"{kind}*.img"))


@pytest.mark.parametrize("kind", ["core", "mm", "pagemap", "pages", "files", "fds", "pstree",
                                  "inventory"])
def test_restore_truncated_image(dumped_regs, images, kind):
    img = image(images, kind)
    data = img.read_bytes()
    saved = data
    img.write_bytes(data[:len(data) - 1 if kind == "pages" else max(len(data) // 2, 17)])
    restore_fails(images, dumped_regs.pid, img.name)
    # intact images still restore: nothing was consumed by the failure
    img.write_bytes(saved)
    cryolib.restore(images)
    dumped_regs.restored = True
    dumped_regs.verify()


@pytest.mark.parametrize("kind", ["core", "mm", "pagemap", "pages"])
def test_restore_corrupted_image(dumped_regs, images, kind):
    img = image(images, kind)
    data = bytearray(img.read_bytes())
    data[len(data) - 3] ^= 0x40   # in the last record (or page)
    img.write_bytes(data)
    line = restore_fails(images, dumped_regs.pid, img.name)
    assert "checksum" in line or "crc" in line


def test_restore_bad_magic(dumped_regs, images):
    img = image(images, "core")
    data = bytearray(img.read_bytes())
    data[0:4] = b"XXXX"
    img.write_bytes(data)
    # the manifest catches it first; the file alone is shown to be no image
    restore_fails(images, dumped_regs.pid, img.name, "manifest")
    one_line_error(cryolib.cryo("show", img, check=False), img.name, "magic")


def test_restore_missing_image(dumped_regs, images):
    img = image(images, "mm")
    img.unlink()
    restore_fails(images, dumped_regs.pid, img.name, "No such file")


def test_restore_empty_dir(tmp_path):
    r = cryolib.cryo("restore", "-D", tmp_path, "-d", check=False)
    one_line_error(r, "inventory")


def test_images_are_private(dumped_regs, images):
    for img in Path(images).glob("*.img"):
        assert img.stat().st_mode & 0o777 == 0o600, f"{img.name} is mode {img.stat().st_mode:o}"


def test_verbose_and_log_file(workload, images, tmp_path):
    """-v adds detail on stderr; -o writes the full log, error included."""
    w = workload([prog("regs")])
    w.wait_ready()
    quiet = cryolib.cryo("dump", "-t", w.pid, "-D", tmp_path / "quiet", "-R")
    assert quiet.stderr == ""
    loud = cryolib.cryo("dump", "-t", w.pid, "-D", tmp_path / "loud", "-R", "-v")
    assert f"dumped pid {w.pid}" in loud.stderr and "VMAs" in loud.stderr, loud.stderr
    cryolib.cryo("dump", "-t", w.pid, "-D", images, "-R", "-o", "dump.log")
    log = (images / "dump.log").read_text()
    for detail in ("parasite at", "VMAs", f"dumped pid {w.pid}"):
        assert detail in log, f"{detail!r} not in the -o log:\n{log}"

    pid = unused_pid()
    r = cryolib.cryo("dump", "-t", pid, "-D", tmp_path / "bad", "-o", tmp_path / "bad.log",
                     check=False)
    line = one_line_error(r, str(pid))
    assert line.split("cryo: ", 1)[1] in (tmp_path / "bad.log").read_text()
    w.verify()


def test_dump_refuses_unknown_fd_kind(workload, images):
    """An fd of a kind cryo cannot dump yet (here a userfaultfd): the dump
    names the pid, the fd and what /proc shows, and the process runs on."""
    w = workload(["/usr/bin/python3", "-c",
                  "import ctypes, time; fd = ctypes.CDLL(None).syscall(323, 0); print('READY', fd, flush=True); "
                  "time.sleep(1000)"])
    w.wait_ready()
    fd = int(w.output().split()[1])
    link = os.readlink(f"/proc/{w.pid}/fd/{fd}")
    before = cryolib.snapshot(w.pid)
    r = cryolib.cryo("dump", "-t", w.pid, "-D", images, check=False)
    one_line_error(r, f"pid {w.pid} fd {fd}", link, "not support")
    cryolib.assert_same_process(before, w.pid)
    assert not (images / "inventory.img").exists()


PACKET_RING = """
import mmap, socket, struct, sys, time
p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
p.setsockopt(263, 5, struct.pack("IIII", 4096, 2, 2048, 4))  # SOL_PACKET, PACKET_RX_RING
if len(sys.argv) > 1:
    ring = mmap.mmap(p.fileno(), 8192)
print("READY", p.fileno(), flush=True)
time.sleep(1000)
"""


def test_dump_refuses_packet_ring(workload, images):
    """A packet socket with a ring, mapped into the task or not yet, is
    refused with one line naming it, and the process runs on with it."""
    for mapped in (False, True):
        w = workload(["/usr/bin/python3", "-c", PACKET_RING, *(["mapped"] if mapped else [])])
        w.wait_ready()
        fd = int(w.output().split()[1])
        before = cryolib.snapshot(w.pid)
        r = cryolib.cryo("dump", "-t", w.pid, "-D", images, check=False)
        where = ("VMA", "maps socket:[") if mapped else (f"fd {fd}",)
        one_line_error(r, f"pid {w.pid}", *where, "packet socket", "PACKET_RX_RING")
        cryolib.assert_same_process(before, w.pid)
        assert not (images / "inventory.img").exists()


SOCKET_OUT = """
import os, socket, time
a, b = socket.socketpair()
pid = os.fork()
if pid == 0:                                 # keeps a; the parent (outside the dump) keeps b
    b.close()
    time.sleep(1000)
a.close()
print("READY", pid, flush=True)
time.sleep(1000)
"""


def test_dump_refuses_socket_to_outside(workload, images):
    """A unix socket whose peer only a process outside the dump holds: the
    dump says so and the process runs on."""
    w = workload(["/usr/bin/python3", "-c", SOCKET_OUT])
    w.wait_ready()
    child = int(open(f"/proc/{w.pid}/task/{w.pid}/children").read().split()[0])
    before = cryolib.snapshot(child)
    r = cryolib.cryo("dump", "-t", child, "-D", images, "--shell-job", check=False)
    one_line_error(r, "unix socket", "is held by no task of the dump")
    cryolib.assert_same_process(before, child)
    assert not (images / "inventory.img").exists()


CHANGED_FILE = """
import time
open("data", "w").write("0123456789")
f = open("data", "r+")
f.seek(3)
print("READY", flush=True)
time.sleep(1000)
"""


def test_restore_refuses_changed_file(workload, images):
    """A file the process reads changed between dump and restore: the
    restore refuses with the file's name and why, and leaves no process;
    with the file as it was, the same images restore."""
    w = workload(["/usr/bin/python3", "-c", CHANGED_FILE])
    data = w.cwd / "data"
    w.wait_ready()
    st = data.stat()
    cryolib.checkpoint(w, images)
    with open(data, "a") as f:
        f.write("more")
    cryolib.restore_fails(images, w.pid, str(data), "changed since the dump", "14 bytes, not 10")
    with open(data, "r+") as f:
        f.write("abcdefghij")
        f.truncate(10)
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    cryolib.restore_fails(images, w.pid, str(data), "modified after")
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    cryolib.restore(images)
    w.restored = True
    assert os.readlink(f"/proc/{w.pid}/fd/3") == str(data)
    assert "pos:\t3" in open(f"/proc/{w.pid}/fdinfo/3").read()

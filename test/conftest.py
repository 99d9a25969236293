"""Suite-wide set-up: pytest becomes a child subreaper, so that a process
restored with `cryo restore -d` (whose parent, cryo, exits) is re-parented
to pytest, which can then wait for it and see its exit status. Every test
runs as root (cryo needs it) and kills what it started, by pid."""
import ctypes
import os
import shutil

import pytest

import cryolib

PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        pytest.exit("the cryo tests must run as root", returncode=2)
    if not cryolib.CRYO.exists():
        pytest.exit(f"{cryolib.CRYO} is missing: run make first", returncode=2)


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    return d


@pytest.fixture
def workload(tmp_path):
    """workload(argv, user=None, cwd=None) -> started Workload, cleaned up after the test."""
    started = []

    def start(argv, **kw):
        sub = tmp_path / f"w{len(started)}"
        sub.mkdir()
        os.chmod(tmp_path, 0o755)
        w = cryolib.Workload(sub, argv, **kw).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.cleanup()


@pytest.fixture
def dumped(workload, images):
    """dumped(argv) -> a workload started, READY, then dumped into images
    (which kills it)."""
    def make(argv, **kw):
        w = workload(argv, **kw)
        w.wait_ready()
        cryolib.checkpoint(w, images)
        return w
    return make


@pytest.fixture
def ping_groups():
    """Ping sockets for group 0: net.ipv4.ping_group_range is opened to it
    for the test, and put back after."""
    path = "/proc/sys/net/ipv4/ping_group_range"
    with open(path) as f:
        old = f.read().split()
    lo, hi = int(old[0]), int(old[1])
    if not lo <= 0 <= hi:
        with open(path, "w") as f:
            f.write(f"0 {max(hi, 0)}")
    yield
    with open(path, "w") as f:
        f.write(" ".join(old))


def prog(name):
    return str(cryolib.PROGS / name)


@pytest.fixture
def dumped_sleep(tmp_path, workload):
    """An image directory made by `cryo dump --leave-running` of `sleep 1000`."""
    w = workload([shutil.which("sleep"), "1000"])
    d = tmp_path / "sleep-images"
    w.wait_exec_settled()
    cryolib.dump(w.pid, d, "--leave-running")
    yield str(d)

"""Process state beyond memory: file descriptors, signals, FPU/AVX registers
and per-process attributes. Each program checks itself after restore."""
import pytest

import cryolib
from conftest import prog

PROGRAMS = {
    "fds": [],
    "signals": [],
    "fpu": [],
    "misc": ["hello-world"],
}


@pytest.mark.parametrize("user", [None, cryolib.NOBODY], ids=["root", "nobody"])
@pytest.mark.parametrize("name", PROGRAMS)
def test_state_carries_on(workload, images, name, user):
    w = workload([prog(name), *PROGRAMS[name]], user=user)
    w.wait_ready()
    before = cryolib.snapshot(w.pid)
    cryolib.checkpoint_restore(w, images)
    cryolib.assert_same_process(before, w.pid)
    w.verify()


def test_fds_images(workload, images):
    """The fd image keeps what the program cannot see for itself: the dup
    is one file entry, the fds are at their numbers with their flags."""
    w = workload([prog("fds")])
    w.wait_ready()
    cryolib.dump(w.pid, images, "--leave-running")
    imgs = cryolib.images_by_kind(images)
    fds = {f["fd"]: f for f in imgs["fds"]}
    files = {f["id"]: f for f in imgs["files"]}
    assert sorted(fds) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 900]
    assert fds[3]["id"] == fds[5]["id"], "a dup'ed fd must share its file entry"
    assert fds[3]["id"] != fds[4]["id"]
    assert fds[7]["cloexec"] and not fds[3]["cloexec"]
    assert files[fds[3]["id"]]["reg"]["pos"] == 1234
    assert files[fds[4]["id"]]["reg"]["pos"] == 40000
    w.verify()


def test_signals_images(workload, images):
    """Pending signals and the armed timer are in the images."""
    w = workload([prog("signals")])
    w.wait_ready()
    cryolib.dump(w.pid, images, "--leave-running")
    task = cryolib.images_by_kind(images)["core"]["task"]
    real = [t for t in task["itimers"] if t["which"] == 0]
    assert real and 0 < real[0]["value_us"] <= 2_000_000
    pending = task.get("shared_pending", [])
    assert len(pending) == 3, f"expected 2 x SIGRTMIN+2 and SIGWINCH pending, got {len(pending)}"
    w.verify()

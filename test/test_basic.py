"""Checkpoint and restore of single processes: the program verifies its own
state after restore, and what /proc shows of it must not change."""
import time

import cryolib
from conftest import prog


def test_regs_counter(workload, images):
    """Registers and stack carry on: the count goes on from the dumped r12."""
    w = workload([prog("regs")])
    w.wait_ready()
    time.sleep(0.3)  # let it count far enough that a restart from zero shows
    before = cryolib.snapshot(w.pid)
    cryolib.checkpoint_restore(w, images)
    cryolib.assert_same_process(before, cryolib.snapshot(w.pid), ignore=("State",))
    r12_at_dump = cryolib.images_by_kind(images)["core"]["threads"][0]["regs"]["r12"]
    assert r12_at_dump > 1000, "the counter had hardly started: the test proves nothing"
    out = w.verify()
    counter = int(out.split("counter=")[1].split()[0])
    assert counter >= r12_at_dump, f"count {counter} restarted below the dumped {r12_at_dump}"

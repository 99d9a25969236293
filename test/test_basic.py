"""Checkpoint and restore of single processes: the program verifies its own
state after restore, and what /proc shows of it must not change."""
import os
import signal
import subprocess
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
    cryolib.assert_same_process(before, w.pid)
    r12_at_dump = cryolib.images_by_kind(images)["core"]["threads"][0]["regs"]["r12"]
    assert r12_at_dump > 1000, "the counter had hardly started: the test proves nothing"
    out = w.verify()
    counter = int(out.split("counter=")[1].split()[0])
    assert counter >= r12_at_dump, f"count {counter} restarted below the dumped {r12_at_dump}"


def test_signal_during_restore_waits_for_the_process(workload, images):
    """A signal sent to the pid the moment it reappears, while cryo is still
    rebuilding the process, is held pending and reaches the restored
    program (its SIGUSR1 handler), not cryo's code in the child."""
    w = workload([prog("heap"), "256"])
    w.wait_ready()
    cryolib.checkpoint(w, images)
    rst = subprocess.Popen([str(cryolib.CRYO), "restore", "-D", str(images), "-d"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sent = False
    while rst.poll() is None and not sent:
        try:
            os.kill(w.pid, signal.SIGUSR1)
            sent = True
        except ProcessLookupError:
            pass
    out, err = rst.communicate(timeout=60)
    assert sent and rst.returncode == 0, f"restore exit {rst.returncode}: {err}"
    w.restored = True
    assert cryolib.wait_pid(w.pid, 60) == 0, w.output()
    assert "PASS" in w.output()

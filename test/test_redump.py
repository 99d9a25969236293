"""A restored process, dumped again, must give the same images as the
original did: the strongest check that restore brought back everything cryo
knows about (signal dispositions, limits, creds, rseq, altstack, mm fields,
auxv, every VMA, every fd), not just what a test program happens to look at."""
import shutil

import pytest

import cryolib

# values that legitimately move while a process runs
VOLATILE_TASK = {"itimers"}
VOLATILE_THREAD = {"regs", "xsave"}


def strip(d, keys):
    return {k: v for k, v in d.items() if k not in keys}


@pytest.mark.parametrize("argv", [
    [shutil.which("sleep"), "1000"],
    ["/usr/bin/python3", "-c", "import time\nwhile True: time.sleep(0.05)"],
    ["/usr/bin/python3", "-c", "import threading, time\n"
     "for i in range(3): threading.Thread(target=time.sleep, args=(1000,)).start()\n"
     "while True: time.sleep(0.05)"],
], ids=["sleep", "python3", "python3-threads"])
def test_redump_gives_same_images(workload, tmp_path, argv):
    w = workload(argv)
    w.wait_exec_settled()
    first, second = tmp_path / "first", tmp_path / "second"
    cryolib.checkpoint_restore(w, first)
    cryolib.dump(w.pid, second, "--leave-running")
    a, b = cryolib.images_by_kind(first), cryolib.images_by_kind(second)

    ta, tb = a["core"]["task"], b["core"]["task"]
    assert strip(ta, VOLATILE_TASK) == strip(tb, VOLATILE_TASK)
    assert len(a["core"]["threads"]) == len(b["core"]["threads"])
    for tha, thb in zip(a["core"]["threads"], b["core"]["threads"]):
        assert strip(tha, VOLATILE_THREAD) == strip(thb, VOLATILE_THREAD)
        assert tha["regs"]["fs_base"] == thb["regs"]["fs_base"]
        assert tha["regs"]["gs_base"] == thb["regs"]["gs_base"]
    assert a["mm"] == b["mm"], "the address space differs after restore"
    assert a["files"] == b["files"]
    assert a["fds"] == b["fds"]
    assert a["pstree"] == b["pstree"]

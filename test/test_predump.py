"""Incremental dumps: `cryo pre-dump` copies memory while the workload runs
on, tracking its writes with a userfaultfd in write-protect async mode read
back by PAGEMAP_SCAN (this kernel has no soft-dirty bits); a later pre-dump
or `dump --prev-images-dir` saves only the pages written since, and restore
reads the others through the chain of parent images.

progs/dirty rewrites random pages of its buffer at a set rate and, after
restore, works out from its write counter alone what every page must hold:
a page written after it was copied and not copied again (a missed dirty
page) fails it."""
import os
import time
from pathlib import Path

import pytest

import cryolib
from conftest import prog

MIB = 1 << 20


def predump(pid, d, *extra):
    return cryolib.cryo("pre-dump", "-t", pid, "-D", d, "-o", "dump.log", "-v4", *extra)


def pages_bytes(d):
    return sum(f.stat().st_size for f in Path(d).glob("pages-*.img"))


def pagemap_flags(d):
    out = {}
    for img in cryolib.show(d)["images"]:
        if img["file"].startswith("pagemap-"):
            for e in img["records"]:
                out[e["flags"]] = out.get(e["flags"], 0) + e["nr_pages"]
    return out


def uffds(pid):
    """fd numbers of pid that are userfaultfds."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[userfaultfd]":
                out.append(int(fd))
        except FileNotFoundError:
            pass
    return out


@pytest.mark.parametrize("user", [None, cryolib.NOBODY], ids=["root", "nobody"])
def test_predump_chain(workload, tmp_path, user):
    """Two pre-dumps and a dump of a process writing 50 MiB/s into 128 MiB:
    each round after the first copies only what was written, and the chain
    restores every page as the program last wrote it."""
    w = workload([prog("dirty"), "128", "50"], user=user)
    w.wait_ready()
    d1, d2, d3 = tmp_path / "1", tmp_path / "2", tmp_path / "3"
    predump(w.pid, d1)
    assert cryolib.alive(w.pid)
    assert len(uffds(w.pid)) == 1, "the tracker is not parked in the task"
    full = pages_bytes(d1)
    assert full >= 128 * MIB
    time.sleep(0.5)
    predump(w.pid, d2, "--prev-images-dir", "../1")
    assert os.readlink(d2 / "parent") == "../1"
    time.sleep(0.5)
    cryolib.checkpoint(w, d3, "--prev-images-dir", "../2")

    # ~25 MiB written per half second, at random pages: far less than all of it
    for d in (d2, d3):
        assert pages_bytes(d) < full * 0.5, f"{d.name}: {pages_bytes(d) >> 20} MiB of {full >> 20}"
        flags = pagemap_flags(d)
        assert flags.get(4, 0) * 4096 > full * 0.4, f"{d.name}: few pages left to the parent: {flags}"
    assert cryolib.show(d2 / "inventory.img")["records"][0]["pre_dump"] is True
    chain = cryolib.show(d3)["chain"]
    assert [(c["link"], c["pre_dump"]) for c in chain] == [("../2", True), ("../1", True)], chain

    cryolib.restore(d3)
    w.restored = True
    assert not uffds(w.pid), "the tracker came back with the restored process"
    w.verify(timeout=60)


def test_idle_process_second_round_is_empty(workload, tmp_path):
    """Nothing written between rounds: the second pre-dump copies (next to)
    nothing, and the final dump only what the program's loop touches."""
    w = workload([prog("dirty"), "64", "0"])
    w.wait_ready()
    predump(w.pid, tmp_path / "1")
    predump(w.pid, tmp_path / "2", "--prev-images-dir", "../1")
    assert pages_bytes(tmp_path / "2") < 2 * MIB, pages_bytes(tmp_path / "2")
    cryolib.checkpoint(w, tmp_path / "3", "--prev-images-dir", "../2")
    assert pages_bytes(tmp_path / "3") < 2 * MIB
    cryolib.restore(tmp_path / "3")
    w.restored = True
    w.verify()


def test_dump_leave_running_closes_the_tracker(workload, tmp_path):
    w = workload([prog("dirty"), "16", "10"])
    w.wait_ready()
    predump(w.pid, tmp_path / "1")
    assert len(uffds(w.pid)) == 1
    cryolib.dump(w.pid, tmp_path / "2", "--prev-images-dir", "../1", "--leave-running")
    assert cryolib.alive(w.pid) and not uffds(w.pid)
    fds = cryolib.show(tmp_path / "2")["images"]
    assert "userfaultfd" not in str(fds)
    w.verify()


def test_restore_of_a_pre_dump_is_refused(workload, tmp_path):
    w = workload([prog("dirty"), "16", "0"])
    w.wait_ready()
    predump(w.pid, tmp_path / "1")
    r = cryolib.cryo("restore", "-D", tmp_path / "1", "-d", check=False)
    cryolib.one_line_error(r, "holds a pre-dump", "--prev-images-dir")
    w.verify()


def test_broken_chain_fails_clearly(workload, tmp_path):
    """A parent whose pages are gone: the restore names the file and leaves
    nothing behind."""
    w = workload([prog("dirty"), "16", "10"])
    w.wait_ready()
    predump(w.pid, tmp_path / "1")
    cryolib.checkpoint(w, tmp_path / "2", "--prev-images-dir", "../1")
    for f in (tmp_path / "1").glob("pages-*.img"):
        f.unlink()
    cryolib.restore_fails(tmp_path / "2", w.pid, "parent/pages-")


def pages_allocated(d):
    """Bytes the pages images of d take on disk (holes punched are free)."""
    return sum(f.stat().st_blocks * 512 for f in Path(d).glob("pages-*.img"))


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_restore_auto_dedup_frees_the_chain(workload, tmp_path, lazy):
    """restore --auto-dedup reads the pages of a pre-dump and a dump (a
    chain) into the process and frees them in the images as it goes, in
    cryo restore itself or in the post-copy handler: every page comes back
    as the program wrote it, and the images keep their size but hold next
    to nothing."""
    w = workload([prog("dirty"), "64", "50"])
    w.wait_ready()
    d1, d2 = tmp_path / "1", tmp_path / "2"
    predump(w.pid, d1)
    time.sleep(0.5)
    cryolib.checkpoint(w, d2, "--prev-images-dir", "../1")
    sizes = {d: pages_bytes(d) for d in (d1, d2)}
    assert pages_allocated(d1) >= 64 * MIB and pages_allocated(d2) > MIB
    cryolib.restore(d2, "--auto-dedup", *(["--lazy-pages"] if lazy else []))
    w.restored = True
    w.verify(timeout=60)
    if lazy:
        import test_lazy
        test_lazy.handler_summary(d2)
    for d in (d1, d2):
        assert pages_bytes(d) == sizes[d], "the images changed size"
        assert pages_allocated(d) < MIB, f"{d.name}: {pages_allocated(d) >> 10} KiB still allocated"


def test_auto_dedup_keeps_a_parent_elsewhere(workload, tmp_path):
    """--auto-dedup frees the pages of the chain's levels beside the one
    restored, not of a parent the link leads to elsewhere (another dump a
    crafted or careless link could name): those are kept, with a warning."""
    w = workload([prog("dirty"), "16", "50"])
    w.wait_ready()
    d1, d2 = tmp_path / "elsewhere" / "1", tmp_path / "2"
    d1.parent.mkdir()
    predump(w.pid, d1)
    cryolib.checkpoint(w, d2, "--prev-images-dir", "../elsewhere/1")
    kept = pages_allocated(d1)
    r = cryolib.restore(d2, "--auto-dedup")
    w.restored = True
    w.verify(timeout=60)
    assert "is not beside" in r.stderr, r.stderr
    assert pages_allocated(d1) == kept, "the pages of a parent elsewhere were freed"
    assert pages_allocated(d2) < MIB

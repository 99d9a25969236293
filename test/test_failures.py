"""Failures must not lose the workload: a dump that fails midway leaves the
process running as it was; a restore that fails leaves no process behind
and says why in one line."""
import os
import shutil
import subprocess
import time

import pytest

import cryolib
from conftest import prog


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs: too small for the pages of the heap program."""
    d = tmp_path / "small"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "cryo-test", str(d)], check=True)
    yield d
    subprocess.run(["umount", str(d)], check=True)


def test_dump_out_of_space_leaves_process_running(workload, small_fs):
    w = workload([prog("heap"), "32"])
    w.wait_ready()
    before = cryolib.snapshot(w.pid)
    r = cryolib.cryo("dump", "-t", w.pid, "-D", small_fs / "img", check=False)
    assert r.returncode != 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "No space left" in lines[0], r.stderr
    # not restored: the very process that was dumped carries on, untouched
    assert not (small_fs / "img" / "inventory.img").exists()
    cryolib.assert_same_process(before, cryolib.snapshot(w.pid))
    w.verify()


def dumped_mapping_prog(workload, images):
    """A dumped `mappings` program (it maps files from its cwd)."""
    w = workload([prog("mappings")])
    w.wait_ready()
    cryolib.dump(w.pid, images)
    w.reap_dumped()
    return w


def assert_restore_fails(images, pid, *words):
    r = cryolib.cryo("restore", "-D", images, "-d", check=False)
    assert r.returncode != 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    for word in words:
        assert word in lines[0], r.stderr
    time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}"), f"pid {pid} left behind by a failed restore"


def test_restore_missing_mapped_file(workload, images):
    w = dumped_mapping_prog(workload, images)
    mapped = [v["path"] for v in cryolib.images_by_kind(images)["mm"]["vmas"]
              if v.get("path", "").startswith(str(w.cwd))]
    assert mapped, "the program maps no file of its own"
    os.rename(mapped[0], mapped[0] + ".moved")
    assert_restore_fails(images, w.pid, mapped[0], "No such file")
    # with the file back, the same images restore fine
    os.rename(mapped[0] + ".moved", mapped[0])
    cryolib.restore(images)
    w.restored = True
    w.verify()


def test_restore_changed_mapped_file(workload, images):
    w = dumped_mapping_prog(workload, images)
    mapped = [v["path"] for v in cryolib.images_by_kind(images)["mm"]["vmas"]
              if v.get("path", "").startswith(str(w.cwd))]
    with open(mapped[0], "ab") as f:
        f.write(b"x" * 4096)
    assert_restore_fails(images, w.pid, mapped[0], "changed size")


def test_restore_missing_executable(workload, images, tmp_path):
    exe = tmp_path / "regs-copy"
    shutil.copy(prog("regs"), exe)
    w = workload([exe])
    w.wait_ready()
    cryolib.dump(w.pid, images)
    w.reap_dumped()
    exe.unlink()
    assert_restore_fails(images, w.pid, str(exe))


def test_restore_missing_open_file(workload, images):
    w = workload([prog("fds")])
    w.wait_ready()
    cryolib.dump(w.pid, images)
    w.reap_dumped()
    files = [f["reg"]["path"] for f in cryolib.images_by_kind(images)["files"]
             if "reg" in f and f["reg"]["path"].startswith(str(w.cwd)) and not os.path.isdir(f["reg"]["path"])]
    assert files
    os.unlink(files[0])
    assert_restore_fails(images, w.pid, files[0])

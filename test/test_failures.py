"""Failures must not lose the workload: a dump that fails midway leaves the
process running as it was; a restore that fails leaves no process behind
and says why in one line."""
import os
import shutil
import subprocess

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
    cryolib.one_line_error(r, "No space left")
    # not restored: the very process that was dumped carries on, untouched
    assert not (small_fs / "img" / "inventory.img").exists()
    cryolib.assert_same_process(before, w.pid)
    w.verify()


def own_mapped_files(images, w):
    """Files the dumped program mapped from its own directory."""
    mapped = [v["path"] for v in cryolib.images_by_kind(images)["mm"]["vmas"]
              if v.get("path", "").startswith(str(w.cwd))]
    assert mapped, "the program maps no file of its own"
    return mapped


def test_restore_missing_mapped_file(dumped, images):
    w = dumped([prog("mappings")])
    mapped = own_mapped_files(images, w)[0]
    os.rename(mapped, mapped + ".moved")
    cryolib.restore_fails(images, w.pid, mapped, "No such file")
    # with the file back, the same images restore fine
    os.rename(mapped + ".moved", mapped)
    cryolib.restore(images)
    w.restored = True
    w.verify()


def test_restore_changed_mapped_file(dumped, images):
    w = dumped([prog("mappings")])
    mapped = own_mapped_files(images, w)[0]
    with open(mapped, "ab") as f:
        f.write(b"x" * 4096)
    cryolib.restore_fails(images, w.pid, mapped, "changed size")


def test_restore_missing_executable(dumped, images, tmp_path):
    exe = tmp_path / "regs-copy"
    shutil.copy(prog("regs"), exe)
    w = dumped([exe])
    exe.unlink()
    cryolib.restore_fails(images, w.pid, str(exe))


def test_restore_missing_open_file(dumped, images):
    w = dumped([prog("fds")])
    files = [f["reg"]["path"] for f in cryolib.images_by_kind(images)["files"]
             if "reg" in f and os.path.isfile(f["reg"]["path"])
             and f["reg"]["path"].startswith(str(w.cwd))]
    assert files, "the program has no open file of its own"
    os.unlink(files[0])
    cryolib.restore_fails(images, w.pid, files[0], "No such file")

"""CRIU's statistics files: every dump and pre-dump writes stats-dump, every
restore stats-restore, in the work directory (-W, else the images
directory), in CRIU's format (images/stats.proto); --display-stats prints
them, one line each; `cryo show` decodes them. The numbers are measured:
they must agree with the memory the program holds and with each other. A
file that cannot be written fails the command, leaving the workload as it
was: running after a dump, gone after a restore.

progs/dirty holds a buffer of pseudo-random pages and checks every one of
them at SIGUSR1 (its rate 0: it writes nothing after filling it)."""
import os
import struct

import cryolib
from conftest import prog

PAGES_32M = (32 << 20) // 4096

DUMP_LINES = ("Freezing time", "Frozen time", "Memory dump time", "Memory write time", "Memory pages scanned",
              "Memory pages skipped from parent dump", "Memory pages written", "Lazy memory pages")
RESTORE_LINES = ("Pages compared", "Pages skipped COW", "Pages restored", "Restore time", "Forking time")


def displayed(out, title, names):
    """--display-stats' lines: the title, then `name: N us` or `name: N (0xN)`, in CRIU's order."""
    lines = out.splitlines()
    assert lines[0] == title, out
    vals = {}
    for line, name in zip(lines[1:], names, strict=True):
        key, val = line.split(": ")
        assert key == name, out
        n = int(val.split()[0])
        assert val in (f"{n} us", f"{n} (0x{n:x})"), line
        vals[name] = n
    return vals


def shown(path):
    doc = cryolib.show(path)
    assert doc["file"] == os.path.basename(path) and doc["magic"] == "STATS" and len(doc["records"]) == 1, doc
    return doc["records"][0]


def test_dump_and_restore_stats(workload, tmp_path):
    """dump and restore -W WORK --display-stats of 32 MiB of pages: the
    files in WORK, not among the images; what is printed is what `cryo show`
    reads in them; at least the 32 MiB written, fewer than scanned, all of
    them restored; each time within the one that holds it."""
    images, work = tmp_path / "img", tmp_path / "work"
    work.mkdir()
    w = workload([prog("dirty"), "32", "0"])
    w.wait_ready()
    r = cryolib.cryo("dump", "-t", w.pid, "-D", images, "-W", work, "--display-stats")
    w.reap_dumped()
    d = displayed(r.stdout, "Displaying dump stats:", DUMP_LINES)
    assert not (images / "stats-dump").exists()
    f = shown(work / "stats-dump")["dump"]
    assert [f[k] for k in ("freezing_time", "frozen_time", "memdump_time", "memwrite_time", "pages_scanned",
                           "pages_skipped_parent", "pages_written", "pages_lazy")] == list(d.values()), (f, d)
    assert PAGES_32M <= f["pages_written"] < f["pages_scanned"], f
    assert 0 < f["memwrite_time"] <= f["memdump_time"] < f["frozen_time"] and f["freezing_time"] > 0, f
    assert f["pages_skipped_parent"] == f["pages_lazy"] == 0

    r = cryolib.cryo("restore", "-D", images, "-W", work, "-d", "--display-stats")
    w.restored = True
    rs = displayed(r.stdout, "Displaying restore stats:", RESTORE_LINES)
    g = shown(work / "stats-restore")["restore"]
    assert [g[k] for k in ("pages_compared", "pages_skipped_cow", "pages_restored", "restore_time",
                           "forking_time")] == list(rs.values()), (g, rs)
    assert g["pages_restored"] == f["pages_written"], (g, f)
    assert 0 < g["forking_time"] < g["restore_time"], g
    w.verify()


def test_predump_stats(workload, tmp_path):
    """A pre-dump of 128 MiB copies the pages after the program runs again:
    its memory dump takes longer than it was stopped. The dump built on it
    leaves them to it (pages_skipped_parent) and writes next to nothing; the
    restore reads them all through the chain."""
    w = workload([prog("dirty"), "128", "0"])
    w.wait_ready()
    pre, ck = tmp_path / "pre", tmp_path / "ck"
    cryolib.cryo("pre-dump", "-t", w.pid, "-D", pre)
    p = shown(pre / "stats-dump")["dump"]
    assert p["pages_written"] >= 128 * 256 and p["memdump_time"] > p["frozen_time"], p
    cryolib.dump(w.pid, ck, "--prev-images-dir", "../pre")
    w.reap_dumped()
    d = shown(ck / "stats-dump")["dump"]
    assert d["pages_skipped_parent"] >= 128 * 256 and d["pages_written"] < 1000, d
    cryolib.restore(ck)
    w.restored = True
    assert shown(ck / "stats-restore")["restore"]["pages_restored"] == d["pages_skipped_parent"] + d["pages_written"]
    w.verify()


def test_unwritable_stats_dump(workload, tmp_path):
    """stats-dump cannot be written (a directory in its place): the dump
    fails with one line naming it, and the program runs on, its memory its
    own."""
    images = tmp_path / "img"
    (images / "stats-dump").mkdir(parents=True)
    w = workload([prog("dirty"), "8", "0"])
    w.wait_ready()
    r = cryolib.cryo("dump", "-t", w.pid, "-D", images, check=False)
    cryolib.one_line_error(r, "stats-dump", "Is a directory")
    assert cryolib.proc_state(w.pid) not in "tTZX", cryolib.proc_state(w.pid)
    w.verify()


def test_unwritable_stats_restore(workload, tmp_path):
    """stats-restore cannot be written: the restore fails with one line
    naming it, and no task is left; once it can, the restore runs."""
    images = tmp_path / "img"
    w = workload([prog("dirty"), "8", "0"])
    w.wait_ready()
    cryolib.checkpoint(w, images)
    (images / "stats-restore").mkdir()
    cryolib.restore_fails(images, w.pid, "stats-restore", "Is a directory")
    (images / "stats-restore").rmdir()
    cryolib.restore(images)
    w.restored = True
    w.verify()


def test_show_refuses_bad_stats(dumped_sleep, tmp_path):
    """`cryo show` of a stats file cut short, or grown, or whose message is
    not a stats message: one line naming it, nothing on stdout."""
    good = (tmp_path / "sleep-images" / "stats-dump").read_bytes()
    magic, size = good[:8], struct.unpack("<I", good[8:12])[0]
    assert magic == struct.pack("<II", 0x55105940, 0x57093306) and size == len(good) - 12
    for name, data, why in (("cut", good[:-1], "follow its header"),
                            ("grown", good + b"\0", "follow its header"),
                            ("field", magic + struct.pack("<I", 2) + b"\x18\x01", "")):
        bad = tmp_path / name
        bad.write_bytes(data)
        r = cryolib.cryo("show", bad, check=False)
        cryolib.one_line_error(r, name, why)
        assert r.stdout == "", r.stdout


def test_read_only_images_restore_without_stats(workload, tmp_path):
    """Images on a read-only mount restore with a warning and no
    stats-restore (there is nowhere to put it); with -W it goes there."""
    import subprocess
    images, ro, work = tmp_path / "img", tmp_path / "ro", tmp_path / "work"
    w = workload([prog("dirty"), "8", "0"])
    w.wait_ready()
    cryolib.checkpoint(w, images)
    ro.mkdir()
    work.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(images), str(ro)], check=True)
    try:
        r = cryolib.cryo("restore", "-D", ro, "-d")
        w.restored = True
        assert "read-only: no stats-restore written" in r.stderr, r.stderr
        w.verify()
        w.restored = False
        w2 = workload([prog("dirty"), "8", "0"])
        w2.wait_ready()
        images2 = tmp_path / "img2"
        cryolib.checkpoint(w2, images2)
        subprocess.run(["umount", str(ro)], check=True)
        subprocess.run(["mount", "--bind", "-o", "ro", str(images2), str(ro)], check=True)
        cryolib.cryo("restore", "-D", ro, "-d", "-W", work)
        w2.restored = True
        assert (work / "stats-restore").exists()
        w2.verify()
    finally:
        subprocess.run(["umount", "-l", str(ro)])

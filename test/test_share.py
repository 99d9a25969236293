"""What the processes of a tree share stays shared after restore: shared
anonymous memory (one object for parent and children, written after
restore and seen by all), an open file inherited by the children (one
offset), a pipe from one process to another with bytes queued in it, and
private memory they still share copy-on-write (restored shared, not
copied: the memory use stays the same)."""
import cryolib
from conftest import prog


def test_shared_memory_file_offset_and_pipe(workload, images):
    w = workload([prog("share")])
    w.wait_ready()
    pids = cryolib.descendants(w.pid)
    assert len(pids) == 4
    cryolib.checkpoint_restore(w, images)
    assert cryolib.descendants(w.pid) == pids
    # the shared memory is dumped once, not once per process
    shm = [e for e in cryolib.show(images / "memfds.img")["records"] if e.get("anon")]
    assert len(shm) == 1, shm
    # so is the log file: one description, one offset
    logs = [e for e in cryolib.show(images / "files.img")["records"]
            if e.get("reg", {}).get("path", "").endswith("/log")]
    assert len(logs) == 1, logs
    # the pipe: two ends, one copy of its 4000 queued bytes
    pipes = [e["pipe"] for e in cryolib.show(images / "files.img")["records"] if e["kind"] == "PIPE"]
    assert sorted(p["flags"] & 3 for p in pipes) == [0, 1], pipes
    assert [len(p["data"]) // 2 for p in pipes if "data" in p] == [4000], pipes
    w.verify()


def pss_kb(pids):
    """The tree's memory use: proportional set sizes, each shared page
    counted once in all."""
    total = 0
    for p in pids:
        with open(f"/proc/{p}/smaps_rollup") as f:
            total += next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
    return total


def test_copy_on_write_stays_shared(workload, images):
    """Parent, children and grandchild share 256 MiB of heap copy-on-write:
    the children's images leave it to the parent, and after restore the
    tree uses as much memory as before, not four times as much."""
    heap_mb = 256
    w = workload([prog("share"), str(heap_mb)])
    w.wait_ready()
    pids = cryolib.descendants(w.pid)
    before = pss_kb(pids)
    assert before < heap_mb * 1024 * 1.5, f"the tree uses {before} kB before the dump"
    cryolib.checkpoint_restore(w, images)
    after = pss_kb(pids)
    assert abs(after - before) <= before * 0.10, f"{before} kB before the dump, {after} kB after restore"
    for p in pids[1:]:
        size = (images / f"pages-{p}.img").stat().st_size
        assert size < heap_mb << 18, f"pages-{p}.img has {size} bytes: the shared heap was dumped again"
    w.verify()


def test_shared_fd_table_and_fs_info(workload, images):
    """A process cloned with CLONE_FILES | CLONE_FS still shares its
    parent's fd table, cwd and umask after restore (an fd it opens, a chdir,
    a umask are seen by the parent), and a forked sibling still does not."""
    w = workload([prog("clonefiles")])
    w.wait_ready()
    pids = cryolib.descendants(w.pid)
    cryolib.checkpoint_restore(w, images)
    assert cryolib.descendants(w.pid) == pids
    flags = {e["pid"]: e.get("clone_flags", 0) for e in cryolib.show(images / "pstree.img")["records"]}
    assert flags[int(w.ready["s"])] == 0x600 and flags[int(w.ready["f"])] == 0, flags
    w.verify()

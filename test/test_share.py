"""What the processes of a tree share stays shared after restore: shared
anonymous memory (one object for parent and children, written after
restore and seen by all), an open file inherited by the children (one
offset), and private memory they still share copy-on-write (restored
shared, not copied: the memory use stays the same)."""
import cryolib
from conftest import prog


def test_shared_memory_and_file_offset(workload, images):
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
    w.verify()

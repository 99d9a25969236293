"""Memory: anonymous data checksummed word by word after restore, the zero
hole left out of the images, file mappings and protections, and images that
restore more than once."""
import fcntl
import hashlib
import os

import pytest

import cryolib
from conftest import prog

PAGE = 4096


def dumped_pages(images):
    """(vaddr, nr_pages) of every pagemap entry."""
    return [(e["vaddr"], e["nr_pages"]) for e in cryolib.images_by_kind(images)["pagemap"]]


def pages_in(entries, start, end):
    return sum(max(0, min(v + n * PAGE, end) - max(v, start)) // PAGE for v, n in entries)


@pytest.mark.parametrize("mib,user", [(512, None), (64, cryolib.NOBODY)], ids=["512MiB-root", "64MiB-nobody"])
def test_heap(workload, images, mib, user):
    w = workload([prog("heap"), str(mib)], user=user)
    ready = w.wait_ready(timeout=120)
    before = cryolib.snapshot(w.pid)
    cryolib.checkpoint_restore(w, images)
    cryolib.assert_same_process(before, w.pid)

    # every data page is in the images, the never-touched hole is not
    addr, size, hole = int(ready["addr"], 16), int(ready["bytes"]), int(ready["hole"])
    entries = dumped_pages(images)
    data_pages = (size - hole) // PAGE
    got = pages_in(entries, addr, addr + size)
    assert data_pages - 2 <= got <= data_pages + 2, \
        f"{got} pages of the heap dumped, expected about {data_pages} (hole {hole // PAGE} pages)"
    w.verify(timeout=120)


def image_digest(images):
    h = hashlib.sha256()
    for f in sorted(images.glob("*.img")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_restore_twice_from_same_images(workload, images):
    w = workload([prog("heap"), "64"])
    w.wait_ready()
    cryolib.checkpoint(w, images)
    digest = image_digest(images)
    for _ in range(2):
        cryolib.restore(images)
        w.restored = True
        w.log.write_text("")    # the restored program appends to its log
        w.verify()
        assert image_digest(images) == digest, "restore changed the images"


def test_rseq_area_is_quiet_in_the_image(workload, images):
    """While the parasite runs in the leader the kernel would write the CPU
    number into the thread's rseq area whenever it is moved, after the
    page's checksum was made: the area is unregistered meanwhile, so the
    image holds it as unregistration leaves it (cpu_id -1), and the
    process still restores."""
    w = workload([prog("heap"), "16"])
    w.wait_ready()
    cryolib.checkpoint(w, images)
    imgs = cryolib.images_by_kind(images)
    rseq = [t["rseq"] for t in imgs["core"]["threads"] if t["tid"] == w.pid and "rseq" in t]
    assert rseq, "libc registers rseq here: the leader should have it"
    cpu_id_at = rseq[0]["ptr"] + 4
    off = 4096                                  # the pages image's header
    for e in imgs["pagemap"]:
        n = e["nr_pages"] * PAGE if e["flags"] & 1 else 0     # PE_PRESENT: its bytes are in the file
        if e["vaddr"] <= cpu_id_at < e["vaddr"] + e["nr_pages"] * PAGE:
            with open(next(images.glob("pages-*.img")), "rb") as f:
                f.seek(off + cpu_id_at - e["vaddr"])
                assert f.read(4) == b"\xff" * 4, "the rseq area was live during the dump"
            break
        off += n
    else:
        raise AssertionError("the rseq area's page is not in the image")
    cryolib.restore(images)
    w.restored = True
    w.verify()


@pytest.mark.parametrize("user", [None, cryolib.NOBODY], ids=["root", "nobody"])
def test_mappings(workload, images, user):
    w = workload([prog("mappings")], user=user)
    w.wait_ready()
    before = cryolib.snapshot(w.pid)
    cryolib.checkpoint_restore(w, images)
    cryolib.assert_same_process(before, w.pid)
    # the private file mapping dumped its two dirty pages, not all sixteen
    ready = w.ready
    priv = int(ready["priv"], 16)
    assert pages_in(dumped_pages(images), priv, priv + 16 * PAGE) == 2
    w.verify()


@pytest.mark.parametrize("user", [None, cryolib.NOBODY], ids=["root", "nobody"])
def test_vma_kinds_and_advice(workload, images, user):
    """Transparent huge pages, MADV_NOHUGEPAGE/DONTFORK/WIPEONFORK, an
    mlock()ed area, shared anonymous and grows-down memory keep their data
    and their VmFlags; the huge area is backed by huge pages again."""
    w = workload([prog("vmas")], user=user)
    ready = w.wait_ready()
    assert int(ready["huge_kb"]) > 0, "no transparent huge pages before the dump: the test proves nothing"
    before = cryolib.snapshot(w.pid)
    cryolib.checkpoint_restore(w, images)
    cryolib.assert_same_process(before, w.pid)
    w.verify()


F_GET_SEALS = 1034
F_SEAL_SHRINK, F_SEAL_GROW = 2, 4


def memfd_seals(pid, addr):
    """The seals of the file mapped at addr, seen from outside."""
    maps = open(f"/proc/{pid}/maps").read().splitlines()
    rng = next(l.split()[0] for l in maps if int(l.split("-")[0], 16) == addr)
    fd = os.open(f"/proc/{pid}/map_files/{rng}", os.O_RDONLY)
    try:
        return fcntl.fcntl(fd, F_GET_SEALS)
    finally:
        os.close(fd)


@pytest.mark.parametrize("user", [None, cryolib.NOBODY], ids=["root", "nobody"])
def test_memfd_mappings(workload, images, user):
    """A sealed, sparse memfd mapped twice shared and once private comes
    back as one memfd with its name, size, data and seals."""
    w = workload([prog("memfd")], user=user)
    ready = w.wait_ready()
    a = int(ready["a"], 16)
    assert memfd_seals(w.pid, a) == F_SEAL_SHRINK | F_SEAL_GROW
    before = cryolib.snapshot(w.pid)
    cryolib.checkpoint_restore(w, images)
    cryolib.assert_same_process(before, w.pid)
    memfds = cryolib.images_by_kind(images)["memfds"]
    assert len(memfds) == 1, "three mappings of one memfd must dump it once"
    m = memfds[0]
    assert (m["name"], m["size"], m["seals"]) == ("cryo-test", 64 * PAGE, F_SEAL_SHRINK | F_SEAL_GROW)
    assert sum(c["len"] for c in m["chunks"]) == 3 * PAGE, "the hole must not be dumped"
    assert memfd_seals(w.pid, a) == F_SEAL_SHRINK | F_SEAL_GROW
    w.verify()


def test_memfd_corrupted_data(workload, images):
    w = workload([prog("memfd")])
    w.wait_ready()
    cryolib.checkpoint(w, images)
    data = images / "memfd-1.img"
    raw = bytearray(data.read_bytes())
    raw[4096 + 100] ^= 0xff
    data.write_bytes(bytes(raw))
    cryolib.restore_fails(images, w.pid, "memfd-1.img is corrupted")

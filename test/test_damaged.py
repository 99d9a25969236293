"""Damaged image sets are refused (images/image.h is the format's reference):
an image cut at any record boundary, a pages image short by one page, a
FIFO or a symlink in place of an image, a record of unknown fields, an
image edited after the dump, a manifest that lists what is not there.
Each is refused with one line naming the file, quickly, and leaves no
process behind; the intact images still restore."""
import os
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cryolib
from conftest import prog
from test_pagesrv import pagesrv  # noqa: F401 (the page server fixture)

from imgedit import (END_MARK, HDR, RAW_HDR, crc32c, crc32c_combine, end_marker, fields, image_records,  # noqa: F401
                     is_raw, manifest, message_image, record, rebuild, varint, write_manifest)

MIB = 1 << 20


# ---- running cryo ----


def refused(args, *words, timeout=20):
    """cryo args fails, at once, with one line naming each of words."""
    t0 = time.monotonic()
    r = cryolib.cryo(*args, check=False, timeout=timeout)
    line = cryolib.one_line_error(r, *words)
    assert r.stdout == "", "a refused show printed a document"
    return line, time.monotonic() - t0


def restore_refused(images, pid, *words):
    line = cryolib.restore_fails(images, pid, *words)
    assert not cryolib.alive(pid)
    return line


@pytest.fixture
def fds_dump(dumped, images):
    """progs/fds (fds, offsets, its memory) dumped: (workload, images, pid)."""
    w = dumped([prog("fds")])
    return w, images, w.pid


def restores_intact(w, images):
    """The images as the dump wrote them restore, and the program passes its checks."""
    cryolib.restore(images)
    w.restored = True
    w.verify()


def message_images(images):
    return sorted(f for f in Path(images).glob("*.img") if not is_raw(f.read_bytes()))


def test_cut_at_every_record_boundary(fds_dump):
    """Every message image, cut after each of its records in turn (its end
    marker gone): the manifest refuses the restore, the end marker refuses
    `cryo show FILE` (no manifest to go by) and a restore whose manifest
    was made to vouch for the cut file. Bytes after the end marker too."""
    w, images, pid = fds_dump
    imgs = message_images(images)
    assert {f.name.split("-")[0].split(".")[0] for f in imgs} >= {"core", "mm", "pagemap", "fds", "files",
                                                                  "pstree", "inventory", "manifest"}
    cuts = 0
    for f in imgs:
        data = f.read_bytes()
        recs, end = image_records(data)
        kept = data
        for off in [o for o, _ in recs] + [end]:
            f.write_bytes(data[:off])
            restore_refused(images, pid, f.name)
            refused(["show", f], f.name, "end marker")
            if f.name != "manifest.img":
                m = images / "manifest.img"
                saved = m.read_bytes()
                write_manifest(images)
                restore_refused(images, pid, f.name, "end marker")
                m.write_bytes(saved)
            cuts += 1
        f.write_bytes(kept + b"\0" * 8)
        refused(["show", f], f.name, "after its end marker")
        restore_refused(images, pid, f.name)
        f.write_bytes(kept)
    assert cuts > 30, f"only {cuts} cuts: the dump has too few records to prove much"
    restores_intact(w, images)


def test_pages_short_by_one_page(fds_dump):
    """A pages image one page short (or one page long), even with a
    manifest that vouches for it: the pagemap accounts for every byte."""
    w, images, pid = fds_dump
    pages = images / f"pages-{pid}.img"
    data = pages.read_bytes()
    assert len(data) > RAW_HDR + 4096
    saved = (images / "manifest.img").read_bytes()
    for bad, why in ((data[:-4096], "truncated"), (data + b"\0" * 4096, "longer")):
        pages.write_bytes(bad)
        restore_refused(images, pid, pages.name, why)
        refused(["show", images], pages.name, why)
        write_manifest(images)
        line = restore_refused(images, pid, pages.name, why)
        assert "pagemap" in line, line
        (images / "manifest.img").write_bytes(saved)
    pages.write_bytes(data)
    restores_intact(w, images)


def test_fifo_in_place_of_an_image(fds_dump):
    """A FIFO named like an image (or like the manifest) is refused at
    once by restore and show, not waited on."""
    w, images, pid = fds_dump
    for name in (f"core-{pid}.img", "manifest.img"):
        f = images / name
        kept = f.read_bytes()
        f.unlink()
        os.mkfifo(f)
        line, took = refused(["restore", "-D", images, "-d"], name, "FIFO")
        assert took < 10
        assert not cryolib.alive(pid)
        refused(["show", f], name, "FIFO")
        refused(["show", images], name, "FIFO")
        f.unlink()
        f.write_bytes(kept)
        os.chmod(f, 0o600)
    extra = images / "x.img"
    os.mkfifo(extra)
    refused(["restore", "-D", images, "-d"], "x.img", "not listed in manifest.img")
    extra.unlink()
    restores_intact(w, images)


def test_symlink_in_place_of_an_image(fds_dump, tmp_path):
    """An image replaced by a symlink to the very same bytes is refused:
    images are opened with O_NOFOLLOW."""
    w, images, pid = fds_dump
    for name in (f"mm-{pid}.img", "manifest.img"):
        f = images / name
        elsewhere = tmp_path / f"moved-{name}"
        f.rename(elsewhere)
        f.symlink_to(elsewhere)
        restore_refused(images, pid, name, "symbolic link")
        refused(["show", f], name, "symbolic link")
        refused(["show", images], name, "symbolic link")
        f.unlink()
        elsewhere.rename(f)
    restores_intact(w, images)


def test_dump_refuses_a_link_or_fifo_in_place_of_an_image(workload, images, tmp_path):
    """A symlink planted in the images directory under an image's name
    does not make the dump (root) overwrite what it names, nor does a FIFO
    there hold it up: the dump is refused naming it, the process runs on."""
    w = workload([prog("fds")])
    w.wait_ready()
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    link = images / f"core-{w.pid}.img"
    link.symlink_to(victim)
    before = cryolib.snapshot(w.pid)
    refused(["dump", "-t", w.pid, "-D", images], link.name, "symbolic link")
    assert victim.read_bytes() == b"not yours"
    link.unlink()
    fifo = images / f"mm-{w.pid}.img"
    os.mkfifo(fifo)
    line, took = refused(["dump", "-t", w.pid, "-D", images], fifo.name, "FIFO")
    assert took < 10
    cryolib.assert_same_process(before, w.pid)
    assert not (images / "manifest.img").exists()
    w.verify()


def unknown_fields_image(tmp_path, size):
    """core-1.img of one record: size bytes of field 1000 (unknown to
    CoreEntry), varint 1, over and over. Its crc is built up by doubling."""
    unit = varint(1000 << 3) + b"\x01"
    block = unit * (1 << 16)
    assert size % len(block) == 0
    # crc of 2^k blocks for each bit k of their count, joined
    count, crc, n = size // len(block), crc32c(block), len(block)
    whole, total = None, 0
    while count:
        if count & 1:
            whole = crc if whole is None else crc32c_combine(whole, crc, n)
            total += n
        crc, n, count = crc32c_combine(crc, crc, n), n * 2, count >> 1
    assert total == size
    f = tmp_path / "core-1.img"
    with open(f, "wb") as out:
        out.write(b"CRYOCORE" + struct.pack("<II", 2, HDR) + struct.pack("<II", size, whole))
        for _ in range(size // len(block)):
            out.write(block)
        out.write(end_marker(1))
    return f


MAXRSS = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)
sys.stderr.write(r.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_record_of_unknown_fields(tmp_path):
    """60 MiB of fields cryo does not know, in one record with a right
    checksum: `cryo show` refuses it quickly, naming the message type and
    the field number, without the GBs protobuf-c would take for it."""
    assert crc32c(b"123456789") == 0xE3069283   # the helpers the image is built with
    a, b = os.urandom(1000), os.urandom(777)
    assert crc32c_combine(crc32c(a), crc32c(b), len(b)) == crc32c(a + b)
    f = unknown_fields_image(tmp_path, 60 * MIB)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", MAXRSS, str(cryolib.CRYO), "show", str(f)],
                       capture_output=True, text=True, timeout=180)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    line = cryolib.one_line_error(subprocess.CompletedProcess([], 1, "", r.stderr), f.name, "field 1000",
                                  "CoreEntry", "unknown")
    maxrss_kib = int(r.stdout.split()[-1])
    assert maxrss_kib < 200 * 1024, f"cryo show took {maxrss_kib >> 10} MiB: {line}"
    assert took < 10, f"cryo show took {took:.1f} s"


def edit_record(images, name, edit):
    """Rewrite image name of images with edit(payload) -> payload applied to
    its first record, its record crc (but not the manifest) made right."""
    f = images / name
    data = f.read_bytes()
    recs, _ = image_records(data)
    payloads = [p for _, p in recs]
    payloads[0] = edit(payloads[0])
    f.write_bytes(rebuild(data, payloads))


def test_unknown_field_in_a_real_record(fds_dump):
    """A field cryo does not know, added to the task's core record (its
    checksum and the manifest made right): state the restore would drop,
    so it is refused, naming the file, the message and the field."""
    w, images, pid = fds_dump
    name = f"core-{pid}.img"
    kept = (images / name).read_bytes()
    kept_manifest = (images / "manifest.img").read_bytes()
    edit_record(images, name, lambda p: p + varint(99 << 3) + varint(7))
    write_manifest(images)
    restore_refused(images, pid, name, "field 99", "CoreEntry", "unknown")
    refused(["show", images / name], name, "field 99")
    # a string with a NUL inside: inventory's kernel_release (field 4)
    (images / name).write_bytes(kept)
    inv = "inventory.img"

    def nul_in_release(p):
        (_, _, s, e), = [x for x in fields(p) if x[0] == 4]
        return p[:s] + b"\0" + p[s + 1:e] + p[e:]
    edit_record(images, inv, nul_in_release)
    write_manifest(images)
    restore_refused(images, pid, inv, "NUL")
    (images / "manifest.img").write_bytes(kept_manifest)
    restore_refused(images, pid, inv, "manifest")


def test_image_edited_after_the_dump(fds_dump):
    """One bit of the dump time in inventory.img flipped and its record crc
    fixed: every record still reads (show takes it), only the manifest
    knows, and it refuses the restore. Put back, the images restore."""
    w, images, pid = fds_dump
    inv = images / "inventory.img"
    kept = inv.read_bytes()

    def flip_dump_time(p):
        (_, wt, s, _), = [x for x in fields(p) if x[0] == 5]
        assert wt == 0
        return p[:s] + bytes([p[s] ^ 0x02]) + p[s + 1:]
    before = cryolib.show(inv)["records"][0]["dump_time_ns"]
    edit_record(images, "inventory.img", flip_dump_time)
    assert cryolib.show(inv)["records"][0]["dump_time_ns"] == before ^ 2
    line = restore_refused(images, pid, "inventory.img", "changed since the dump", "manifest")
    assert "checksum" in line
    refused(["show", images], "inventory.img", "changed since the dump")
    inv.write_bytes(kept)
    restores_intact(w, images)


def test_show_gives_end_markers_and_manifest(fds_dump):
    """cryo show DIR: each message image with the record count of its end
    marker, and manifest.img listing every other image with its size (and
    crc32c, for message images) as the files have them."""
    w, images, pid = fds_dump
    shown = {i["file"]: i for i in cryolib.show(images)["images"]}
    assert set(shown) == {f.name for f in images.glob("*.img")}
    for name, img in shown.items():
        data = (images / name).read_bytes()
        if is_raw(data):
            assert "end" not in img
            continue
        assert img["end"] == {"records": len(img["records"])} == {"records": len(image_records(data)[0])}
    listed = {r["name"]: r for r in shown["manifest.img"]["records"]}
    assert set(listed) == set(shown) - {"manifest.img"}
    for name, r in listed.items():
        data = (images / name).read_bytes()
        assert r["size"] == len(data)
        assert r.get("crc32c") == (None if is_raw(data) else crc32c(data)), name


def test_manifest_lists_a_missing_image(fds_dump):
    """A manifest that lists an image the directory lacks, or lacks one the
    directory holds: refused, naming it."""
    w, images, pid = fds_dump
    listed = manifest(images)
    assert set(listed) == {f.name for f in images.glob("*.img")} - {"manifest.img"}
    assert listed[f"pages-{pid}.img"] == ((images / f"pages-{pid}.img").stat().st_size, None)
    kept = (images / "manifest.img").read_bytes()
    ghost = f"fds-{pid + 1}.img"
    write_manifest(images, [(n, s, c) for n, (s, c) in listed.items()] + [(ghost, 100, 1)])
    restore_refused(images, pid, ghost, "No such file")
    refused(["show", images], ghost, "No such file")
    write_manifest(images, [(n, s, c) for n, (s, c) in listed.items() if not n.startswith("fds-")])
    restore_refused(images, pid, f"fds-{pid}.img", "not listed in manifest.img")
    (images / "manifest.img").write_bytes(kept)
    restores_intact(w, images)


def test_old_format_is_refused(fds_dump):
    """Images of format version 1 (no end markers, no manifest) are refused
    by their version, with the existing clear error."""
    w, images, pid = fds_dump
    f = images / f"core-{pid}.img"
    data = bytearray(f.read_bytes())
    data[8:12] = struct.pack("<I", 1)
    f.write_bytes(bytes(data))
    refused(["show", f], f.name, "format version 1")
    write_manifest(images)
    restore_refused(images, pid, f.name, "format version 1")


def predump(pid, d, *extra):
    return cryolib.cryo("pre-dump", "-t", pid, "-D", d, "-o", "dump.log", "-v4", *extra)


def test_damaged_parent_is_refused(workload, tmp_path):
    """A dump built on a pre-dump: each directory has its own manifest,
    and damage in the parent's (a pagemap cut at a record boundary, an
    extra image) refuses the restore, naming parent/FILE; repaired, the
    chain restores."""
    w = workload([prog("dirty"), "16", "10"])
    w.wait_ready()
    d1, d2 = tmp_path / "1", tmp_path / "2"
    predump(w.pid, d1)
    cryolib.checkpoint(w, d2, "--prev-images-dir", "../1")
    assert set(manifest(d1)) == {f"pagemap-{w.pid}.img", f"pages-{w.pid}.img", "inventory.img"}
    pm = d1 / f"pagemap-{w.pid}.img"
    data = pm.read_bytes()
    recs, _ = image_records(data)
    assert len(recs) > 1
    pm.write_bytes(data[:recs[-1][0]])
    restore_refused(d2, w.pid, f"parent/{pm.name}", "truncated")
    write_manifest(d1)
    restore_refused(d2, w.pid, f"parent/{pm.name}", "end marker")
    pm.write_bytes(data)
    write_manifest(d1)
    (d1 / "core-1.img").write_bytes(message_image(b"CRYOCORE", []))
    restore_refused(d2, w.pid, "parent/core-1.img", "not listed in manifest.img")
    (d1 / "core-1.img").unlink()
    cryolib.restore(d2)
    w.restored = True
    w.verify()


def test_page_server_round_has_its_manifest(workload, tmp_path, pagesrv):
    """A dump streamed to a page server: the pages never land on the
    source, yet both manifests list them with the size the server got;
    pages cut on the server side are refused."""
    port, dst, secret, _ = pagesrv
    w = workload([prog("fds")])
    w.wait_ready()
    src = tmp_path / "src"
    src.mkdir()
    cryolib.checkpoint(w, src / "r", "--page-server", f"127.0.0.1:{port}", "--secret-file", secret)
    pages = dst / "r" / f"pages-{w.pid}.img"
    assert not (src / "r" / pages.name).exists()
    assert (dst / "r" / "manifest.img").read_bytes() == (src / "r" / "manifest.img").read_bytes()
    assert manifest(dst / "r")[pages.name] == (pages.stat().st_size, None)
    data = pages.read_bytes()
    pages.write_bytes(data[:-4096])
    restore_refused(dst / "r", w.pid, pages.name, "truncated")
    pages.write_bytes(data)
    os.chmod(pages, 0o600)
    restores_intact(w, dst / "r")


"""Read cryo's image files from Python and rewrite one record: how the
tests make crafted images from a real dump.

The format (images/image.h): a 16-byte header (magic "CRYO" + a 4-character
kind tag, u32 version, u32 header length), then records of u32 length, u32
crc32c of the payload, payload (one protobuf message), then an end marker
(u32 0xffffffff, u32 crc32c of the next 8 bytes, u64 record count); little
endian. manifest.img, written last, lists every image of the directory with
its size and (message images) the crc32c of the whole file. The message
classes are compiled from images/*.proto with Debian's protoc
(protobuf-compiler) into a directory of this process, the first time they
are needed, and read with python3-protobuf.

Every rewrite of a record goes through write_image(), which writes the end
marker and then a manifest vouching for the directory as it now is: a
crafted image is then refused for what it says, not for being changed.
"""
import atexit
import importlib
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import cryolib
from cryolib import ROOT

PROTO_DIR = ROOT / "images"

# the kind tag of an image's magic -> (module, message)
TAGS = {
    "INVT": ("inventory", "InventoryEntry"), "PSTR": ("pstree", "PstreeEntry"),
    "CORE": ("core", "CoreEntry"), "MM  ": ("mm", "MmEntry"), "PMAP": ("pagemap", "PagemapEntry"),
    "FILE": ("files", "FileEntry"), "FDS ": ("files", "FdEntry"), "MFDS": ("memfd", "MemfdEntry"),
    "NS  ": ("ns", "NsEntry"), "CGRP": ("ns", "CgroupEntry"), "MNT ": ("ns", "MountEntry"),
    "TMPF": ("ns", "FsNodeEntry"), "IPC ": ("ipc", "IpcEntry"), "NET ": ("net", "NetEntry"),
    "MNFT": ("manifest", "ManifestEntry"),
}

_modules = {}


HDR = 16
RAW_HDR = 4096
END_MARK = 0xFFFFFFFF

# ---- CRC-32C (Castagnoli, reflected 0x82F63B78) ----

POLY = 0x82F63B78
TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ (POLY if _c & 1 else 0)
    TABLE.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _apply(op, v):
    r, i = 0, 0
    while v:
        if v & 1:
            r ^= op[i]
        v >>= 1
        i += 1
    return r


def crc32c_combine(crc1, crc2, len2):
    """crc32c(a + b) from crc32c(a), crc32c(b) and len(b): the register
    after a goes through len(b) zero bytes (a linear map, squared up from
    the one-zero-bit map), then the crc of b is added."""
    op = [POLY] + [1 << (i - 1) for i in range(1, 32)]     # one zero bit
    for _ in range(3):                                       # eight: one byte
        op = [_apply(op, op[i]) for i in range(32)]
    while len2:
        if len2 & 1:
            crc1 = _apply(op, crc1)
        op = [_apply(op, op[i]) for i in range(32)]
        len2 >>= 1
    return crc1 ^ crc2



# ---- images as bytes ----


def varint(v):
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def end_marker(n):
    body = struct.pack("<Q", n)
    return struct.pack("<II", END_MARK, crc32c(body)) + body


def record(payload, crc=None):
    return struct.pack("<II", len(payload), crc32c(payload) if crc is None else crc) + payload


def message_image(magic, payloads, version=2):
    return (magic + struct.pack("<II", version, HDR) + b"".join(record(p) for p in payloads)
            + end_marker(len(payloads)))


def is_raw(data):
    return struct.unpack_from("<I", data, 12)[0] == RAW_HDR


def image_records(data):
    """[(offset, payload)] of a message image, and where its end marker is."""
    out, off = [], HDR
    while True:
        n, crc = struct.unpack_from("<II", data, off)
        if n == END_MARK:
            assert struct.unpack_from("<Q", data, off + 8)[0] == len(out)
            assert off + 16 == len(data)
            return out, off
        out.append((off, data[off + 8:off + 8 + n]))
        assert crc32c(out[-1][1]) == crc
        off += 8 + n


def rebuild(data, payloads):
    """The image data with its records replaced by payloads."""
    return data[:HDR] + b"".join(record(p) for p in payloads) + end_marker(len(payloads))


def write_manifest(d, entries=None):
    """manifest.img of d vouching for d as it is now (or for entries:
    [(name, size, crc or None)]), as a dump writes it."""
    d = Path(d)
    if entries is None:
        entries = []
        for f in sorted(d.glob("*.img")):
            if f.name == "manifest.img":
                continue
            data = f.read_bytes()
            entries.append((f.name, len(data), None if is_raw(data) else crc32c(data)))
    payloads = []
    for name, size, crc in sorted(entries):
        p = b"\x0a" + varint(len(name)) + name.encode() + b"\x10" + varint(size)
        if crc is not None:
            p += b"\x18" + varint(crc)
        payloads.append(p)
    (d / "manifest.img").write_bytes(message_image(b"CRYOMNFT", payloads))


def manifest(d):
    """{name: (size, crc or None)} of d's manifest.img, read with cryo show."""
    return {r["name"]: (r["size"], r.get("crc32c")) for r in cryolib.show(Path(d) / "manifest.img")["records"]}


def fields(payload):
    """[(field number, wire type, start, end of the value)] of a message's top level."""
    out, off = [], 0
    while off < len(payload):
        tag, n = 0, 0
        while True:
            b = payload[off]
            off += 1
            tag |= (b & 0x7F) << (7 * n)
            n += 1
            if not b & 0x80:
                break
        wt, start = tag & 7, off
        if wt == 0:
            while payload[off] & 0x80:
                off += 1
            off += 1
        elif wt == 2:
            ln, n = 0, 0
            while True:
                b = payload[off]
                off += 1
                ln |= (b & 0x7F) << (7 * n)
                n += 1
                if not b & 0x80:
                    break
            start, off = off, off + ln
        else:
            off += 8 if wt == 1 else 4
        out.append((tag >> 3, wt, start, off))
    return out



def module(name):
    """The python3-protobuf module of images/NAME.proto."""
    if not _modules:
        out = Path(tempfile.mkdtemp(prefix="cryo-pb-"))
        atexit.register(shutil.rmtree, out, True)
        protos = sorted(p.name for p in PROTO_DIR.glob("*.proto"))
        subprocess.run(["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", *protos], check=True)
        sys.path.insert(0, str(out))
        for p in protos:
            _modules[p[:-6]] = importlib.import_module(p[:-6] + "_pb2")
    return _modules[name]


class Image:
    """One message image as it is on disk: its header and its records' payloads."""

    def __init__(self, path):
        data = Path(path).read_bytes()
        magic, version, hdr_len = struct.unpack_from("<8sII", data)
        assert magic[:4] == b"CRYO", f"{path} is not a cryo image"
        self.path, self.tag, self.version = Path(path), magic[4:].decode(), version
        self.header = data[:hdr_len]
        self.payloads = [p for _, p in image_records(data)[0]]

    def message_class(self):
        mod, msg = TAGS[self.tag]
        return getattr(module(mod), msg)

    def records(self):
        cls = self.message_class()
        return [cls.FromString(p) for p in self.payloads]


def records(images_dir, image_file):
    """The decoded records of one image."""
    return Image(Path(images_dir) / image_file).records()


def write_image(images_dir, image_file, img):
    """The one writer: the image's header, its records each with its length
    and crc32c, its end marker; then the directory's manifest."""
    (Path(images_dir) / image_file).write_bytes(rebuild(img.header, img.payloads))
    write_manifest(images_dir)


def edit(images_dir, image_file, record_index, fn):
    """Rewrite record record_index of an image after fn(message) changed it
    (fn edits in place, or returns the message to write instead)."""
    img = Image(Path(images_dir) / image_file)
    msg = img.message_class().FromString(img.payloads[record_index])
    msg = fn(msg) or msg
    img.payloads[record_index] = msg.SerializeToString()
    write_image(images_dir, image_file, img)
    return msg

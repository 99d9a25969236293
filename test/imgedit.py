"""Read cryo's image files from Python and rewrite one record: how the
tests make crafted images from a real dump.

The format (images/image.h): a 16-byte header (magic "CRYO" + a 4-character
kind tag, u32 version, u32 header length), then records of u32 length, u32
crc32c of the payload, payload (one protobuf message); little endian. The
message classes are compiled from images/*.proto with Debian's protoc
(protobuf-compiler) into a directory of this process, the first time they
are needed, and read with python3-protobuf.

Every write goes through write_image(): the one place to extend when an
image set gets more than its records rewritten (an end marker per image, a
manifest of the set with each image's size and checksum).
"""
import atexit
import importlib
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from cryolib import ROOT

PROTO_DIR = ROOT / "images"

# the kind tag of an image's magic -> (module, message)
TAGS = {
    "INVT": ("inventory", "InventoryEntry"), "PSTR": ("pstree", "PstreeEntry"),
    "CORE": ("core", "CoreEntry"), "MM  ": ("mm", "MmEntry"), "PMAP": ("pagemap", "PagemapEntry"),
    "FILE": ("files", "FileEntry"), "FDS ": ("files", "FdEntry"), "MFDS": ("memfd", "MemfdEntry"),
    "NS  ": ("ns", "NsEntry"), "CGRP": ("ns", "CgroupEntry"), "MNT ": ("ns", "MountEntry"),
    "TMPF": ("ns", "FsNodeEntry"), "IPC ": ("ipc", "IpcEntry"), "NET ": ("net", "NetEntry"),
}

_modules = {}


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


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
    """One message image as it is on disk: its header, its records' payloads, and anything after them."""

    def __init__(self, path):
        data = Path(path).read_bytes()
        magic, version, hdr_len = struct.unpack_from("<8sII", data)
        assert magic[:4] == b"CRYO", f"{path} is not a cryo image"
        self.path, self.tag, self.version = Path(path), magic[4:].decode(), version
        self.header = data[:hdr_len]
        self.payloads, off = [], hdr_len
        while off + 8 <= len(data):
            n, crc = struct.unpack_from("<II", data, off)
            if off + 8 + n > len(data) or crc32c(data[off + 8:off + 8 + n]) != crc:
                break
            self.payloads.append(data[off + 8:off + 8 + n])
            off += 8 + n
        self.trailer = data[off:]

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
    """The one writer: the image's header, its records each with its length and crc32c, its trailer."""
    out = bytearray(img.header)
    for p in img.payloads:
        out += struct.pack("<II", len(p), crc32c(p)) + p
    out += img.trailer
    (Path(images_dir) / image_file).write_bytes(bytes(out))


def edit(images_dir, image_file, record_index, fn):
    """Rewrite record record_index of an image after fn(message) changed it
    (fn edits in place, or returns the message to write instead)."""
    img = Image(Path(images_dir) / image_file)
    msg = img.message_class().FromString(img.payloads[record_index])
    msg = fn(msg) or msg
    img.payloads[record_index] = msg.SerializeToString()
    write_image(images_dir, image_file, img)
    return msg

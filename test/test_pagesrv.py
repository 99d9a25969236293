"""The page server: (pre-)dumps stream their images to `cryo page-server`,
which writes them only for a peer that proves the shared secret, checks
every frame's crc32c, and keeps nothing of a session that fails."""
import hashlib
import hmac
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

import cryolib
from conftest import prog

MAGIC = b"CRYOPS\0\1"


@pytest.fixture
def pagesrv(tmp_path):
    """A page server on 127.0.0.1 writing into tmp_path/dst: (port, dst, secret file, log)."""
    secret = tmp_path / "secret"
    secret.write_text(os.urandom(24).hex() + "\n")
    dst, log = tmp_path / "dst", tmp_path / "pagesrv.log"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([str(cryolib.CRYO), "page-server", "--address", "127.0.0.1", "--port", str(port),
                          "-D", str(dst), "--secret-file", str(secret), "-v3"],
                         stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    assert "listening" in p.stdout.readline()
    yield port, dst, secret, log
    p.kill()
    p.wait()


def files_in(d):
    return sorted(str(f.relative_to(d)) for f in Path(d).rglob("*")) if Path(d).exists() else []


def test_chain_through_page_server(workload, tmp_path, pagesrv):
    """Two pre-dumps (the second compressed) and a dump, streamed: the pages
    never land on the source side, and the server's directory restores."""
    port, dst, secret, _ = pagesrv
    w = workload([prog("dirty"), "64", "30"])
    w.wait_ready()
    src = tmp_path / "src"
    src.mkdir()
    ps = ["--page-server", f"127.0.0.1:{port}", "--secret-file", secret]
    cryolib.cryo("pre-dump", "-t", w.pid, "-D", src / "1", "-o", "dump.log", "-v4", *ps)
    time.sleep(0.3)
    cryolib.cryo("pre-dump", "-t", w.pid, "-D", src / "2", "--prev-images-dir", "../1", "-o", "dump.log",
                 "-v4", "--compress", *ps)
    time.sleep(0.3)
    cryolib.checkpoint(w, src / "3", "--prev-images-dir", "../2", *ps)
    assert not list(src.rglob("pages-*.img")), "pages were stored on the source side"
    assert os.readlink(dst / "3" / "parent") == "../2" and os.readlink(dst / "2" / "parent") == "../1"
    assert not list(dst.rglob("*.part"))
    # the server's copy of each round holds what the source side listed
    for r in ("1", "2", "3"):
        assert (dst / r / f"pagemap-{w.pid}.img").read_bytes() == (src / r / f"pagemap-{w.pid}.img").read_bytes()
    cryolib.restore(dst / "3")
    w.restored = True
    w.verify()


def test_wrong_secret_is_refused(workload, tmp_path, pagesrv):
    port, dst, _, log = pagesrv
    bad = tmp_path / "bad-secret"
    bad.write_text("not the secret at all, no\n")
    w = workload([prog("dirty"), "16", "10"])
    w.wait_ready()
    r = cryolib.cryo("dump", "-t", w.pid, "-D", tmp_path / "src", "--page-server", f"127.0.0.1:{port}",
                     "--secret-file", bad, check=False)
    cryolib.one_line_error(r, f"127.0.0.1:{port}", "refused", "secret")
    assert cryolib.alive(w.pid), "the dump that failed lost the workload"
    assert files_in(dst) == []
    assert "authentication failed" in log.read_text()
    w.verify()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def session(port, secret):
    """A client that authenticates the way PROTOCOL.md says."""
    s = socket.create_connection(("127.0.0.1", port))
    hello = s.recv(40, socket.MSG_WAITALL)
    assert hello[:8] == MAGIC
    nonce_c, flags = os.urandom(32), 0
    msg = b"cryo-client".ljust(16, b"\0") + hello[8:] + nonce_c + struct.pack("<I", flags)
    mac = hmac.new(secret, msg, hashlib.sha256).digest()
    s.sendall(MAGIC + struct.pack("<I", flags) + nonce_c + mac)
    err, n = struct.unpack("<iI", s.recv(8, socket.MSG_WAITALL))
    assert err == 0, s.recv(n)
    s.recv(n + 32, socket.MSG_WAITALL)
    return s


def frame(kind, payload, crc=None):
    crc = crc32c(payload) if crc is None else crc
    return struct.pack("<IIII", kind, len(payload), len(payload), 0) + payload + struct.pack("<I", crc)


def status(s):
    err, n = struct.unpack("<iI", s.recv(8, socket.MSG_WAITALL))
    return err, s.recv(n, socket.MSG_WAITALL).decode()


def test_malformed_streams_leave_nothing(pagesrv):
    """Garbage instead of a handshake, a frame whose checksum is wrong, a
    name that climbs out of the directory, a session cut short: each is
    refused with its reason logged, and no file of it stays."""
    port, dst, secret_file, log = pagesrv
    secret = secret_file.read_bytes().rstrip(b"\n")

    with socket.create_connection(("127.0.0.1", port)) as s:
        s.recv(40, socket.MSG_WAITALL)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n" + b"x" * 100)
        assert status(s)[1].startswith("not a cryo client")

    with session(port, secret) as s:
        s.sendall(frame(1, b"r/ok.img") + frame(2, b"fine") + frame(3, b""))
        s.sendall(frame(1, b"r/bad.img") + frame(2, b"x" * 4096, crc=crc32c(b"y" * 4096)))
        err, why = status(s)
        assert err and "checksum mismatch" in why and "r/bad.img" in why

    with session(port, secret) as s:
        s.sendall(frame(1, b"../escape.img"))
        assert "refused file name" in status(s)[1]

    with session(port, secret) as s:
        s.sendall(frame(1, b"r/cut.img") + frame(2, b"half of it"))
    time.sleep(0.3)

    text = log.read_text()
    assert "not a cryo client" in text and "the stream ended without its end frame" in text
    assert files_in(dst) in ([], ["r"]), files_in(dst)

    # and a good session still works after all that
    with session(port, secret) as s:
        s.sendall(frame(1, b"r/ok.img") + frame(2, b"fine") + frame(3, b"") + frame(5, b""))
        assert status(s) == (0, "ok")
    assert (dst / "r" / "ok.img").read_bytes() == b"fine"

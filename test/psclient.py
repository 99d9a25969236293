"""A page-server client of the tests' own, written from pagesrv/PROTOCOL.md
(version 2): the handshake (HMAC-SHA256 over both nonces), the session's
keys (HKDF-SHA256, one per direction), and frames sealed with AES-256-GCM
whose nonce is the frame's number in its direction. With it a test can
send what cryo never would: frames with a byte flipped, replayed,
reordered, oversized, or names that try to leave the directory."""
import hashlib
import hmac
import os
import socket
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"CRYOPS\0\2"
HDR = struct.Struct("<IIII")
FILE, DATA, CLOSE, LINK, DONE, MIGRATE, RESTORE, COMMIT = 1, 2, 3, 4, 5, 6, 7, 8
STATUS = 14
ZLIB = 1
FRAME_MAX = 4 << 20
TAG = 16


def zlib_bound(n):
    """zlib's compressBound(n): what a frame of n raw bytes could take, compressed."""
    return n + (n >> 12) + (n >> 14) + (n >> 25) + 13


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        got = s.recv(n - len(buf))
        if not got:
            raise EOFError(f"the server closed the connection after {len(buf)} of {n} bytes")
        buf += got
    return buf


def _key(secret, nonce_s, nonce_c, label, flags):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce_s + nonce_c,
                info=label + struct.pack("<I", flags)).derive(secret)


class Session:
    """One authenticated session: send(kind, payload) seals a frame; seal()
    returns its bytes without sending them (to flip, replay or reorder)."""

    def __init__(self, port, secret, flags=0, host="127.0.0.1", timeout=20):
        self.s = socket.create_connection((host, port), timeout=timeout)
        hello = recv_exact(self.s, 8 + 32)
        assert hello[:8] == MAGIC, hello[:8]
        nonce_s, nonce_c = hello[8:], os.urandom(32)
        msg = b"cryo-client".ljust(16, b"\0") + nonce_s + nonce_c + struct.pack("<I", flags)
        mac = hmac.new(secret, msg, hashlib.sha256).digest()
        self.s.sendall(MAGIC + struct.pack("<I", flags) + nonce_c + mac)
        err, n = struct.unpack("<iI", recv_exact(self.s, 8))
        why = recv_exact(self.s, n)
        assert err == 0, why
        mac_s = recv_exact(self.s, 32)
        msg = b"cryo-server".ljust(16, b"\0") + nonce_c + nonce_s + struct.pack("<I", flags)
        assert hmac.compare_digest(mac_s, hmac.new(secret, msg, hashlib.sha256).digest())
        self.tx = AESGCM(_key(secret, nonce_s, nonce_c, b"cryo-ps2 client to server", flags))
        self.rx = AESGCM(_key(secret, nonce_s, nonce_c, b"cryo-ps2 server to client", flags))
        self.tx_seq = self.rx_seq = 0

    @staticmethod
    def _nonce(seq):
        return b"\0" * 4 + struct.pack("<Q", seq)

    def seal(self, kind, payload=b"", raw_len=None, flags=0):
        h = HDR.pack(kind, len(payload), len(payload) if raw_len is None else raw_len, flags)
        sealed = self.tx.encrypt(self._nonce(self.tx_seq), payload, h)
        self.tx_seq += 1
        return h + sealed

    def send(self, kind, payload=b"", **kw):
        self.s.sendall(self.seal(kind, payload, **kw))

    def file(self, name, data):
        """FILE, DATA, CLOSE: the bytes of one file, sealed (not sent)."""
        return self.seal(FILE, name) + self.seal(DATA, data) + self.seal(CLOSE)

    def status(self):
        """The server's next STATUS frame: (err, message)."""
        h = recv_exact(self.s, HDR.size)
        kind, n, raw, flags = HDR.unpack(h)
        assert kind == STATUS and n == raw and not flags and n < 1024, (kind, n, raw, flags)
        body = self.rx.decrypt(self._nonce(self.rx_seq), recv_exact(self.s, n + TAG), h)
        self.rx_seq += 1
        return struct.unpack("<i", body[:4])[0], body[4:].decode()

    def close(self):
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""A small CRIU RPC client for the tests: the protobuf wire format by hand
(varints and length-delimited fields are all these messages use), with the
field numbers of images/rpc.proto, over `cryo swrk FD` as runc and libcriu
start it."""
import os
import socket
import subprocess

from cryolib import CRYO

# RpcType
DUMP, RESTORE, CHECK, PRE_DUMP, PAGE_SERVER, NOTIFY, FEATURE_CHECK, VERSION = 1, 2, 3, 4, 5, 6, 9, 10


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode(fields):
    """fields: [(number, value)], value an int or bool (varint), str or bytes,
    or a list of fields (a nested message)."""
    out = b""
    for num, v in fields:
        if isinstance(v, (bool, int)):
            out += varint(num << 3) + varint(int(v))
        else:
            b = v.encode() if isinstance(v, str) else encode(v) if isinstance(v, list) else v
            out += varint(num << 3 | 2) + varint(len(b)) + b
    return out


def decode(buf):
    """{number: [values]}: ints for varints, bytes for the rest (decode them again for messages)."""
    fields, i = {}, 0

    def read_varint():
        nonlocal i
        n = shift = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(buf):
        key = read_varint()
        wt = key & 7
        if wt == 0:
            v = read_varint()
        elif wt == 2:
            n = read_varint()
            v, i = buf[i:i + n], i + n
        else:
            n = 8 if wt == 1 else 4
            v, i = buf[i:i + n], i + n
        fields.setdefault(key >> 3, []).append(v)
    return fields


class Resp:
    """An RpcResp: type, success, cr_errno, cr_errmsg and the nested parts decoded."""

    def __init__(self, raw):
        f = decode(raw)
        self.type = f[1][0]
        self.success = bool(f[2][0])
        self.cr_errno = f.get(7, [0])[0]
        self.cr_errmsg = f.get(9, [b""])[0].decode()
        self.restore = decode(f[4][0]) if 4 in f else {}
        self.notify = decode(f[5][0]) if 5 in f else {}
        self.ps = decode(f[6][0]) if 6 in f else {}
        self.version = decode(f[10][0]) if 10 in f else {}


def signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


class Swrk:
    """cryo swrk on one end of a SOCK_SEQPACKET socketpair; its stderr in a file."""

    def __init__(self, tmp_path, env=None):
        self.sk, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.err = tmp_path / "swrk.stderr"
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen([str(CRYO), "swrk", str(other.fileno())], pass_fds=(other.fileno(),),
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         env={**os.environ, **(env or {})})
        other.close()
        self.notes = []          # (script, pid) of each NOTIFY, in order

    def call(self, rtype, opts=None, refuse=()):
        """Send a request; answer NOTIFYs (no for the scripts in refuse); return the final Resp."""
        req = [(1, rtype)] + ([(2, opts)] if opts is not None else [])
        self.sk.send(encode(req))
        while True:
            raw = self.sk.recv(1 << 20)
            assert raw, "cryo swrk hung up"
            r = Resp(raw)
            if r.type != NOTIFY:
                return r
            script = r.notify[1][0].decode()
            self.notes.append((script, signed(r.notify.get(2, [0])[0])))
            self.sk.send(encode([(1, NOTIFY), (3, script not in refuse)]))

    def close(self):
        self.sk.close()
        return self.proc.wait(30)

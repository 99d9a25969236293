"""The page server: (pre-)dumps stream their images to `cryo page-server`,
which writes them only for a peer that proves the shared secret, takes
only frames sealed with the session's keys, never writes outside its
directory nor replaces what is there, serves clients side by side, and
keeps nothing of a session that fails."""
import errno
import os
import socket
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest

import cryolib
import psclient
from conftest import prog


@pytest.fixture
def pagesrv(tmp_path):
    """A page server on 127.0.0.1 writing into tmp_path/dst: (port, dst, secret file, log)."""
    secret = tmp_path / "secret"
    cryolib.write_secret(secret)
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
    cryolib.write_secret(bad, "not the secret at all, no\n")
    w = workload([prog("dirty"), "16", "10"])
    w.wait_ready()
    r = cryolib.cryo("dump", "-t", w.pid, "-D", tmp_path / "src", "--page-server", f"127.0.0.1:{port}",
                     "--secret-file", bad, check=False)
    cryolib.one_line_error(r, f"127.0.0.1:{port}", "refused", "secret")
    assert cryolib.alive(w.pid), "the dump that failed lost the workload"
    assert files_in(dst) == []
    assert "authentication failed" in log.read_text()
    w.verify()


def snapshot(root, skip=()):
    """Every entry beneath root, by path: its kind, contents (or link target)
    and mtime (but a directory's: sessions make and remove rounds in dst)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            if any(p == k or k in p.parents for k in skip):
                continue
            st = p.lstat()
            if p.is_symlink():
                what = ("link", os.readlink(p))
            elif p.is_dir():
                what = ("dir", None)
            else:
                what = ("file", p.read_bytes())
            out[str(p.relative_to(root))] = (what, None if what[0] == "dir" else st.st_mtime_ns)
    return out


@pytest.fixture
def planted(tmp_path, pagesrv):
    """Files outside the server's directory (a victim directory next to it)
    and in it (a round someone else wrote), whose contents and mtimes must
    not change: snapshot() of tmp_path, the server's new files aside."""
    port, dst, secret_file, log = pagesrv
    victim = tmp_path / "victimdir"
    victim.mkdir()
    (victim / "marker").write_bytes(os.urandom(64))
    (victim / "pwned").write_bytes(b"the victim's own pwned\n")
    (dst / "r").mkdir(parents=True)
    (dst / "r" / "existing.img").write_bytes(os.urandom(100))
    os.symlink("../victimdir", dst / "esc2")
    past = time.time() - 3600
    for p in (victim / "marker", victim / "pwned", dst / "r" / "existing.img"):
        os.utime(p, (past, past))
    before = snapshot(tmp_path, skip=(log,))
    yield secret_file.read_bytes().rstrip(b"\n")
    after = {k: v for k, v in snapshot(tmp_path, skip=(log,)).items() if k in before}
    assert after == before, "something that was there changed"
    new = set(snapshot(tmp_path, skip=(log,))) - set(before)
    assert not new, f"refused sessions left {sorted(new)}"


def refused(port, secret, data, *words, flags=0):
    """A session sending data: refused with a status naming each of words."""
    with psclient.Session(port, secret, flags=flags) as s:
        s.s.sendall(data(s) if callable(data) else data)
        err, why = s.status()
    assert err != 0, why
    for w in words:
        assert w in why, f"{w!r} not in {why!r}"
    return err, why


def honest(port, secret, dst, name=None, data=None):
    """The next client, honest: its file arrives whole."""
    name = name or f"ok{os.urandom(4).hex()}"
    data = data if data is not None else os.urandom(5000)
    with psclient.Session(port, secret) as s:
        s.s.sendall(s.file(f"{name}/f.img".encode(), data) + s.seal(psclient.DONE))
        assert s.status() == (0, "ok")
    assert (dst / name / "f.img").read_bytes() == data
    rm_round(dst, name)


def rm_round(dst, name):
    for f in (dst / name).iterdir():
        f.unlink()
    (dst / name).rmdir()


def test_garbage_instead_of_a_handshake(pagesrv):
    port, dst, secret_file, log = pagesrv
    with socket.create_connection(("127.0.0.1", port)) as s:
        psclient.recv_exact(s, 40)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n" + b"x" * 100)
        err, n = struct.unpack("<iI", psclient.recv_exact(s, 8))
        assert err == errno.EPROTO and psclient.recv_exact(s, n).startswith(b"not a cryo client")
    assert files_in(dst) == []
    honest(port, secret_file.read_bytes().rstrip(b"\n"), dst)


def test_frame_sizes(pagesrv, planted):
    """The largest legal frame (4 MiB) is taken whole; one byte more, or a
    compressed frame declaring zlib's bound for 4 MiB, is
    refused from its header: the answer comes before any of its payload
    was sent."""
    port, dst, _, log = pagesrv
    secret = planted
    big = os.urandom(psclient.FRAME_MAX)
    honest(port, secret, dst, "max", big)
    bound = psclient.zlib_bound(psclient.FRAME_MAX)
    # 269 bytes more than the 4 MiB + 1024 the server's buffer once held
    assert bound == psclient.FRAME_MAX + 1024 + 269
    header = psclient.HDR.pack(psclient.DATA, bound, psclient.FRAME_MAX, psclient.ZLIB)
    err, why = refused(port, secret, lambda s: s.seal(psclient.FILE, b"z/big.img") + header,
                       "refused from its header", "larger than a frame may be", flags=psclient.ZLIB)
    assert err == errno.EPROTO
    header = psclient.HDR.pack(psclient.DATA, psclient.FRAME_MAX + 1, psclient.FRAME_MAX + 1, 0)
    refused(port, secret, lambda s: s.seal(psclient.FILE, b"z/big.img") + header, "larger than a frame may be")
    # compression the session did not negotiate
    refused(port, secret, lambda s: s.seal(psclient.FILE, b"z/c.img") +
            s.seal(psclient.DATA, zlib.compress(b"a" * 4096), raw_len=4096, flags=psclient.ZLIB),
            "did not negotiate")
    honest(port, secret, dst)
    assert "larger than a frame may be" in log.read_text()


def test_data_frames_of_all_sizes_keep_their_order(pagesrv):
    """Small DATA frames (gathered by the server) and large ones (written at
    once) of one file land in the order they came."""
    port, dst, secret_file, log = pagesrv
    secret = secret_file.read_bytes().rstrip(b"\n")
    sizes = [16, 4096, 300000, 7, 700000, 262144, 3, 1 << 20, 5, 900000, 200000, 1]
    parts = [os.urandom(n) for n in sizes]
    with psclient.Session(port, secret) as s:
        s.s.sendall(s.seal(psclient.FILE, b"o/f.img") + b"".join(s.seal(psclient.DATA, p) for p in parts) +
                    s.seal(psclient.CLOSE) + s.seal(psclient.DONE))
        assert s.status() == (0, "ok")
    assert (dst / "o" / "f.img").read_bytes() == b"".join(parts)


def test_links_and_files_stay_in_the_directory(tmp_path, pagesrv, planted):
    """A LINK out of the directory, then a FILE through it; a FILE through a
    symlink someone put there; a link target that climbs; a file beneath a
    link the session made: each refused, naming it, and nothing outside the
    directory (nor what was in it) changes."""
    port, dst, _, log = pagesrv
    secret = planted
    L, F = psclient.LINK, psclient.FILE
    refused(port, secret, lambda s: s.seal(L, b"esc\0../victimdir") + s.file(b"esc/pwned", b"owned\n"),
            "link esc -> ../victimdir", "to another round")
    refused(port, secret, lambda s: s.file(b"esc2/pwned", b"owned\n"), "esc2", "symbolic link")
    refused(port, secret, lambda s: s.seal(L, b"q/parent\0../../victimdir"), "link target", "../victimdir")
    refused(port, secret, lambda s: s.seal(L, b"q/parent\0/tmp"), "NAME\\0../ROUND")
    refused(port, secret, lambda s: s.seal(L, b"q/parent\0../q"), "to another round")
    refused(port, secret, lambda s: s.seal(L, b"q/parent\0../p") + s.file(b"q/parent/x", b"x"),
            "one or two components")
    refused(port, secret, lambda s: s.seal(L, b"q/parent\0../p") + s.file(b"q/parent", b"x"),
            "q/parent exists already")
    refused(port, secret, lambda s: s.file(b"../escape.img", b"x"), "'..' component")
    refused(port, secret, lambda s: s.file(b"q/.hidden", b"x"), "beginning with '.'")
    text = log.read_text()
    assert "peer 127.0.0.1" in text and "goes through a symbolic link" in text
    honest(port, secret, dst)


def test_nothing_is_replaced(tmp_path, pagesrv, planted):
    """A LINK or a FILE over a file that exists is refused by name; of two
    sessions writing the same file of the same round at once, the first to
    complete it has it, whole, and the other is refused."""
    port, dst, _, log = pagesrv
    secret = planted
    refused(port, secret, lambda s: s.seal(psclient.LINK, b"r/existing.img\0../other"),
            "r/existing.img exists already", "never replaces")
    refused(port, secret, lambda s: s.file(b"r/existing.img", b"replaced\n"), "r/existing.img exists already")
    a, b = psclient.Session(port, secret), psclient.Session(port, secret)
    da, db = os.urandom(300000), os.urandom(300000)
    a.s.sendall(a.seal(psclient.FILE, b"same/f.img") + a.seal(psclient.DATA, da[:1000]))
    b.s.sendall(b.seal(psclient.FILE, b"same/f.img") + b.seal(psclient.DATA, db[:200000]))
    a.s.sendall(a.seal(psclient.DATA, da[1000:]) + a.seal(psclient.CLOSE) + a.seal(psclient.DONE))
    assert a.status() == (0, "ok")
    b.s.sendall(b.seal(psclient.DATA, db[200000:]) + b.seal(psclient.CLOSE) + b.seal(psclient.DONE))
    err, why = b.status()
    assert err == errno.EEXIST and "same/f.img was made by someone else" in why, why
    a.close()
    b.close()
    # the refused session removes its part file as it ends: give it time to, on a busy machine
    deadline = time.monotonic() + 10
    while os.listdir(dst / "same") != ["f.img"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (dst / "same" / "f.img").read_bytes() == da
    assert os.listdir(dst / "same") == ["f.img"], "a part file of the refused session stayed"
    rm_round(dst, "same")
    honest(port, secret, dst)


def test_frames_are_authenticated(pagesrv, planted):
    """After the handshake a frame with one byte flipped (in its payload,
    its header or its tag), replayed, reordered, dropped, or replayed from
    an earlier session, fails its authentication: the session ends, naming
    the peer, nothing of it stays, and the next client is served."""
    port, dst, _, log = pagesrv
    secret = planted

    def flip(at, bit):
        def make(s):
            f = bytearray(s.seal(psclient.FILE, b"r/flip.img"))
            f[at] ^= bit
            return bytes(f)
        return make

    # in the payload, in the header (FILE made CLOSE, a header the server takes), in the tag
    for at, bit in ((psclient.HDR.size + 3, 0x20), (0, 0x02), (-1, 0x01)):
        err, why = refused(port, secret, flip(at, bit), "fails its authentication")
        assert err == errno.EBADMSG

    def replayed(s):
        f = s.file(b"r/one.img", b"1")
        return f + f

    def reordered(s):
        one, two = s.seal(psclient.FILE, b"r/two.img"), s.seal(psclient.DATA, b"2")
        return two + one

    def dropped(s):
        s.seal(psclient.FILE, b"r/three.img")
        return s.seal(psclient.FILE, b"r/four.img")

    for make in (replayed, reordered, dropped):
        refused(port, secret, make, "fails its authentication", "replayed")

    # a whole session, replayed after another handshake
    with psclient.Session(port, secret) as s:
        recorded = s.file(b"rec/x.img", b"the first session's") + s.seal(psclient.DONE)
        s.s.sendall(recorded)
        assert s.status() == (0, "ok")
    rm_round(dst, "rec")
    refused(port, secret, recorded, "fails its authentication")
    assert "peer 127.0.0.1 port" in log.read_text()
    honest(port, secret, dst)


def test_slow_clients_delay_nobody(pagesrv):
    """A client that connects and sends nothing and one that sends its
    handshake a byte a second do not delay an honest client while they are
    connected; each is cut off once its 5 s for the handshake are over."""
    port, dst, secret_file, log = pagesrv
    secret = secret_file.read_bytes().rstrip(b"\n")
    silent = socket.create_connection(("127.0.0.1", port))
    trickler = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    stop = threading.Event()

    def trickle():
        psclient.recv_exact(trickler, 40)
        for b in psclient.MAGIC + bytes(70):
            if stop.wait(1):
                return
            try:
                trickler.send(bytes([b]))
            except OSError:
                return

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        time.sleep(1.2)
        t1 = time.monotonic()
        honest(port, secret, dst)
        assert time.monotonic() - t1 < 2.5, "an honest client was held up by slow ones"
        assert time.monotonic() - t0 < 4.5, "the slow clients were gone before the honest one came"
        for c in (silent, trickler):
            c.settimeout(10)
            head = psclient.recv_exact(c, 40 if c is silent else 8)
            if c is silent:
                assert head[:8] == psclient.MAGIC
                head = psclient.recv_exact(c, 8)
            err, n = struct.unpack("<iI", head)
            assert err == errno.ETIMEDOUT and b"no authentication within 5 s" in psclient.recv_exact(c, n)
            assert time.monotonic() - t0 < 8, "a slow client kept its connection past its 5 s"
    finally:
        stop.set()
        t.join()
        silent.close()
        trickler.close()


def test_fifty_concurrent_sessions(pagesrv):
    """50 honest clients at once are all served, each file whole."""
    port, dst, secret_file, log = pagesrv
    secret = secret_file.read_bytes().rstrip(b"\n")
    datas = [os.urandom(200000) for _ in range(50)]
    errors = []

    def one(i):
        try:
            with psclient.Session(port, secret, timeout=120) as s:
                s.s.sendall(s.file(f"c{i}/f.img".encode(), datas[i]) + s.seal(psclient.DONE))
                assert s.status() == (0, "ok")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors
    assert time.monotonic() - t0 < 120
    for i in range(50):
        assert (dst / f"c{i}" / "f.img").read_bytes() == datas[i]


def test_secret_others_can_read_is_refused(tmp_path):
    """A secret file that others can read (or that is not a regular file)
    is refused before anything listens or connects, naming it and its mode."""
    secret = cryolib.write_secret(tmp_path / "secret")
    secret.chmod(0o644)
    (tmp_path / "dst").mkdir()
    r = cryolib.cryo("page-server", "--port", "0", "-D", tmp_path / "dst", "--secret-file", secret, check=False)
    cryolib.one_line_error(r, str(secret), "mode 0644")
    r = cryolib.cryo("page-server", "--port", "0", "-D", tmp_path / "dst", "--secret-file", tmp_path, check=False)
    cryolib.one_line_error(r, str(tmp_path), "regular file")

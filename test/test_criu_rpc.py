"""CRIU's RPC, spoken by a client of our own (criurpc.py, the wire format by
hand) as runc and libcriu speak it: VERSION, DUMP and RESTORE with their
notifications, which the client may refuse (the dump then leaves the
process running; the restore leaves nothing behind), and PAGE_SERVER."""
import os
import time

import cryolib
import criurpc
from conftest import prog


def opts(images_fd, *more):
    """RpcOpts: images_dir_fd (1), log_file (10), notify_scripts (12), and more."""
    return [(1, images_fd), (10, "rpc.log"), (12, True), *more]


def open_dir(path):
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def dumped(tmp_path, fd, w):
    """A cryo swrk that has dumped workload w into the images at fd."""
    c = criurpc.Swrk(tmp_path)
    r = c.call(criurpc.DUMP, opts(fd, (2, w.pid)))
    assert r.success, r.cr_errmsg
    w.reap_dumped()
    return c


def test_version(tmp_path):
    c = criurpc.Swrk(tmp_path)
    r = c.call(criurpc.VERSION)
    assert r.success and r.type == criurpc.VERSION
    assert (r.version[1][0], r.version[2][0]) >= (3, 15), r.version   # what runc and crun ask for
    assert r.version[6][0] == b"cryo"
    assert c.close() == 0


def test_dump_restore_notifications(workload, images, tmp_path):
    """Every notification in CRIU's order, the restored root's pid with
    post-restore and in the response; the process goes on from its count."""
    w = workload([prog("regs")])
    w.wait_ready()
    time.sleep(0.2)
    fd = open_dir(images)
    try:
        c = dumped(tmp_path, fd, w)
        r = c.call(criurpc.RESTORE, opts(fd))
        assert r.success, r.cr_errmsg
        w.restored = True
        assert r.restore[1][0] == w.pid
        assert c.close() == 0
    finally:
        os.close(fd)
    assert [s for s, _ in c.notes] == ["pre-dump", "network-lock", "post-dump", "pre-restore", "setup-namespaces",
                                       "post-setup-namespaces", "post-restore", "pre-resume", "network-unlock",
                                       "post-resume"], c.notes
    assert dict(c.notes)["post-restore"] == w.pid
    counter = int(w.verify().split("counter=")[1].split()[0])
    r12 = cryolib.images_by_kind(images)["core"]["threads"][0]["regs"]["r12"]
    assert counter >= r12


def test_refused_notifications(workload, images, tmp_path):
    """The client says no to post-dump: the dump fails saying so, and the
    process runs on as it was. It says no to post-setup-namespaces: the
    restore fails saying so, and no task is left."""
    w = workload([prog("regs")])
    w.wait_ready()
    before = cryolib.snapshot(w.pid)
    fd = open_dir(images)
    try:
        c = criurpc.Swrk(tmp_path)
        r = c.call(criurpc.DUMP, opts(fd, (2, w.pid), (3, True)), refuse=("post-dump",))
        assert not r.success and "refused the post-dump notification" in r.cr_errmsg, r.cr_errmsg
        cryolib.assert_same_process(before, w.pid)
        r = c.call(criurpc.DUMP, opts(fd, (2, w.pid)))
        assert r.success, r.cr_errmsg
        w.reap_dumped()
        r = c.call(criurpc.RESTORE, opts(fd), refuse=("post-setup-namespaces",))
        assert not r.success and "refused the post-setup-namespaces notification" in r.cr_errmsg, r.cr_errmsg
        time.sleep(0.1)
        assert not os.path.exists(f"/proc/{w.pid}"), "a task is left after the refused restore"
        assert c.close() == 0
    finally:
        os.close(fd)
    assert "cryo: " in c.err.read_text()


def test_page_server(workload, tmp_path):
    """PAGE_SERVER starts a page server on a port the kernel picks and says
    which, with its pid; a dump through it writes the images there (under
    the name of the dump's directory), and they restore the process."""
    secret = tmp_path / "secret"
    cryolib.write_secret(secret)
    dst = tmp_path / "dst"
    dst.mkdir()
    w = workload([prog("regs")])
    w.wait_ready()
    fd = open_dir(dst)
    try:
        c = criurpc.Swrk(tmp_path, env={"CRYO_SECRET_FILE": str(secret)})
        r = c.call(criurpc.PAGE_SERVER, [(1, fd), (11, [(1, "127.0.0.1"), (2, 0)])])
        assert r.success, r.cr_errmsg
        port, ps_pid = r.ps[2][0], r.ps[3][0]
        assert port > 0 and os.path.exists(f"/proc/{ps_pid}")
        assert c.close() == 0
    finally:
        os.close(fd)
    local = tmp_path / "local"
    local.mkdir()
    cryolib.dump(w.pid, local, "--page-server", f"127.0.0.1:{port}", "--secret-file", secret)
    w.reap_dumped()
    cryolib.wait_pid(ps_pid)        # one session, then it exits (we are its subreaper)
    got = dst / local.name
    assert (got / "inventory.img").exists() and list(got.glob("pages-*.img"))
    cryolib.restore(got)
    w.restored = True
    w.verify()


def test_bad_images_fd(tmp_path):
    """A DUMP naming an fd the client lacks: the answer says which, and
    cryo prints it once on the client's stderr."""
    c = criurpc.Swrk(tmp_path)
    r = c.call(criurpc.DUMP, [(1, 999), (2, os.getpid())])
    assert not r.success and "images_dir_fd" in r.cr_errmsg and "999" in r.cr_errmsg, r.cr_errmsg
    assert c.close() == 0
    err = c.err.read_text().splitlines()
    assert err == [f"cryo: {r.cr_errmsg}"], err


def test_veths_are_external_veth(workload, images, tmp_path):
    """RpcOpts veths (if_in, if_out), the older form of external
    veth[IF]:HOST: a restore naming a veth the tree lacks fails saying so
    and leaves nothing; one without it brings the process back."""
    w = workload([prog("regs")])
    w.wait_ready()
    fd = open_dir(images)
    try:
        c = dumped(tmp_path, fd, w)
        r = c.call(criurpc.RESTORE, opts(fd, (19, [(1, "eth0"), (2, "cvhost0")])))
        assert not r.success and "veth[eth0]:cvhost0" in r.cr_errmsg and "no veth eth0" in r.cr_errmsg, \
            r.cr_errmsg
        assert not cryolib.alive(w.pid)
        r = c.call(criurpc.RESTORE, opts(fd))
        assert r.success, r.cr_errmsg
        w.restored = True
        assert c.close() == 0
    finally:
        os.close(fd)
    w.verify()

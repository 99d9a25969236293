"""Untrusted input: images (and RPC requests) are read by cryo as root, and
a crafted one must not reach outside where its names and paths belong.

Each image test takes a real dump, edits ONE field of one record
(imgedit.py) and restores it: the restore must fail with one line naming
the image, the record and the field, before it makes anything; a marker
file outside the restore's root must be untouched, with nothing new next to
it; no task of the tree may be left. The last test of each kind restores the
dump unedited: what the validation pass refuses is the edit, not the dump.
"""
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import criurpc
import imgedit
from cryolib import alive, checkpoint, cryo, dump, kill_and_reap, one_line_error, wait_pid
from test_container import CGROOT, Container, wait_gone

MARK = "the marker: nothing may write here\n"
UP = "../" * 16          # enough to climb out of any directory cryo starts from


def reset(outside):
    """outside holds the marker alone."""
    for p in outside.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    (outside / "victim").write_text(MARK)


def assert_untouched(outside):
    assert sorted(os.listdir(outside)) == ["victim"], f"new files next to the marker: {os.listdir(outside)}"
    assert (outside / "victim").read_text() == MARK, "the marker was written"


def refused(images, *words):
    """A restore of images that fails with one line naming words."""
    r = cryo("restore", "-D", images, "-d", check=False)
    return one_line_error(r, *words, "is refused")


def index_of(records, pred, what):
    for i, r in enumerate(records):
        if pred(r):
            return i
    raise AssertionError(f"the dump has no {what}")


# ------------------------------------------------------------ a container


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app container (scripts/container) dumped once: its images, with
    in its /run tmpfs a symlink to the marker's directory (a target that
    means nothing inside its root) between regular files, and another one
    in its root directory (its overlay's upper layer)."""
    outside = tmp_path_factory.mktemp("outside")
    c = Container("app", f"ut{os.getpid()}")
    try:
        time.sleep(0.3)
        c.sh(f"echo a >/run/a1 && echo a >/run/a2 && ln -s {outside} /run/lnk && echo b >/run/b1 && "
             f"echo b >/run/b2 && ln -s {outside} /data/lnk")
        images = tmp_path_factory.mktemp("app-images")
        dump(c.pid, images)
        wait_gone(c.pid)
        yield SimpleNamespace(c=c, images=images, outside=outside)
    finally:
        c.stop()


@pytest.fixture
def crafted(app, tmp_path):
    """A copy of the container's images to edit; after the test, no task and the marker untouched."""
    images = tmp_path / "images"
    shutil.copytree(app.images, images)
    reset(app.outside)
    yield images
    left = [int(p) for ctrl in ("memory", "pids", "cpu", "freezer")
            for p in cgroup_procs(f"{CGROOT}/{ctrl}/cryo/{app.c.name}")] + [app.c.pid] * alive(app.c.pid)
    for pid in set(left):
        # a restore that went through (as before the door): its tree goes, by pid
        kill_and_reap(pid)
        wait_gone(pid)
    assert not left, f"pids {sorted(set(left))} left behind by the failed restore"
    assert_untouched(app.outside)


def cgroup_procs(d):
    try:
        return Path(d, "cgroup.procs").read_text().split()
    except FileNotFoundError:
        return []


def cgroup_record(images, controllers):
    return index_of(imgedit.records(images, "cgroup.img"), lambda e: e.controllers == controllers,
                    f"cgroup of {controllers}")


def test_cgroup_path_with_dotdot(app, crafted):
    """A cgroup path climbing out of its hierarchy (mkdir -p'd on the host before)."""
    i = cgroup_record(crafted, "memory")
    evil = "/" + UP + str(app.outside)[1:] + "/made/x"
    imgedit.edit(crafted, "cgroup.img", i, lambda e: setattr(e, "path", evil))
    refused(crafted, f"cgroup.img record {i}: path", "'..'")


def test_cgroup_property_outside(app, crafted):
    """A property name that is a path to a host file (written before)."""
    i = cgroup_record(crafted, "memory")
    evil = UP + str(app.outside / "victim")[1:]

    def edit(e):
        assert e.props, "the memory cgroup has no limits in the dump"
        e.props[0].name = evil
    imgedit.edit(crafted, "cgroup.img", i, edit)
    refused(crafted, f"cgroup.img record {i}: props[0].name", "a name cannot hold a '/'")


def test_cgroup_property_not_dumped(app, crafted):
    """A property of a kind cryo does not dump (cgroup.procs would move a task in)."""
    i = cgroup_record(crafted, "memory")
    imgedit.edit(crafted, "cgroup.img", i, lambda e: setattr(e.props[0], "name", "cgroup.procs"))
    refused(crafted, f"cgroup.img record {i}: props[0].name 'cgroup.procs'", "not one cryo knows")


def test_sysctl_name_outside(app, crafted):
    """A sysctl name climbing out of /proc/sys/net (written as host root before)."""
    evil = "../../.." + str(app.outside / "victim")

    def edit(n):
        assert n.sysctls, "net.img has no sysctls"
        n.sysctls[0].name = evil
    imgedit.edit(crafted, "net.img", 0, edit)
    refused(crafted, "net.img record 0: sysctls[0].name", "not one cryo knows")


def test_net_device_name_with_slash(crafted):
    imgedit.edit(crafted, "net.img", 0, lambda n: setattr(n.links[0], "name", "l/o"))
    refused(crafted, "net.img record 0: links[0].name 'l/o'", "cannot hold '/'")


def run_tmpfs(images):
    """The tmpfs image of the container's /run and its records."""
    mounts = imgedit.records(images, "mnt.img")
    m = mounts[index_of(mounts, lambda m: m.mountpoint == "/run", "tmpfs on /run")]
    name = f"tmpfs-{m.id}.img"
    return name, imgedit.records(images, name)


def test_tmpfs_node_with_dotdot(app, crafted):
    """A tmpfs node climbing out of its mount (made on the host, before pivot_root)."""
    name, nodes = run_tmpfs(crafted)
    i = index_of(nodes, lambda n: n.path == "note", "file /run/note")
    evil = UP + str(app.outside)[1:] + "/new"
    imgedit.edit(crafted, name, i, lambda n: setattr(n, "path", evil))
    refused(crafted, f"{name} record {i}: path", "'..'")


def test_tmpfs_node_through_symlink(app, crafted):
    """A node through a symlink node of the same image (which leads to the host's directory)."""
    name, nodes = run_tmpfs(crafted)
    link = index_of(nodes, lambda n: n.path == "lnk", "symlink /run/lnk")
    assert nodes[link].target == str(app.outside)
    i = index_of(nodes, lambda n: n.path in ("a1", "a2", "b1", "b2", "note") and nodes.index(n) > link,
                 "regular file after the symlink")
    imgedit.edit(crafted, name, i, lambda n: setattr(n, "path", "lnk/new"))
    refused(crafted, f"{name} record {i}: path 'lnk/new'", "goes through 'lnk'")


@pytest.fixture(scope="module")
def app_userns(tmp_path_factory):
    """The app container in a user namespace of its own, dumped once."""
    c = Container("app", f"uu{os.getpid()}", userns=True)
    try:
        time.sleep(0.3)
        images = tmp_path_factory.mktemp("app-userns-images")
        dump(c.pid, images)
        wait_gone(c.pid)
        yield SimpleNamespace(c=c, images=images)
    finally:
        c.stop()


def test_device_node_in_a_user_namespace(app_userns, tmp_path):
    """A file of the /dev tmpfs turned into the host's first disk (8:0), in a
    container with its own user namespace: its root could not have made
    that node, and cryo, which makes it as root, must not either."""
    import stat
    images = tmp_path / "images"
    shutil.copytree(app_userns.images, images)
    mounts = imgedit.records(images, "mnt.img")
    m = mounts[index_of(mounts, lambda m: m.mountpoint == "/dev", "tmpfs on /dev")]
    name = f"tmpfs-{m.id}.img"
    i = index_of(imgedit.records(images, name), lambda n: stat.S_ISREG(n.mode), "file in /dev")

    def to_disk(n):
        n.mode = stat.S_IFBLK | 0o666
        n.rdev = os.makedev(8, 0)
    n = imgedit.edit(images, name, i, to_disk)
    refused(images, f"{name} record {i}: path '{n.path}'", "a device node")
    assert not alive(app_userns.c.pid)


def test_mountpoint_outside(app, crafted):
    """A mountpoint climbing out of the container's root."""
    mounts = imgedit.records(crafted, "mnt.img")
    i = index_of(mounts, lambda m: m.mountpoint == "/run", "tmpfs on /run")
    evil = "/" + UP + str(app.outside)[1:]
    imgedit.edit(crafted, "mnt.img", i, lambda m: setattr(m, "mountpoint", evil))
    refused(crafted, f"mnt.img record {i}: mountpoint", "'..'")


def test_mountpoint_through_symlink_of_its_root(app, crafted):
    """A mountpoint with no '..' but through an absolute symlink of the
    container's root directory, which no check of the image can see: it is
    resolved in the container's root (where it leads nowhere), not on the
    host (where it would cover the marker's directory in the restore's
    mount namespace, and the restore go on)."""
    mounts = imgedit.records(crafted, "mnt.img")
    i = index_of(mounts, lambda m: m.mountpoint == "/run", "tmpfs on /run")
    imgedit.edit(crafted, "mnt.img", i, lambda m: setattr(m, "mountpoint", "/data/lnk"))
    r = cryo("restore", "-D", crafted, "-d", check=False)
    one_line_error(r, f"mnt.img: the mountpoint of mount {mounts[i].id} '/data/lnk'", "No such file or directory")


def test_mount_of_host_device(crafted):
    """A file system cryo does not mount again (a host disk, by its source)."""
    mounts = imgedit.records(crafted, "mnt.img")
    i = index_of(mounts, lambda m: m.mountpoint == "/run", "tmpfs on /run")

    def edit(m):
        m.fstype = "ext4"
    imgedit.edit(crafted, "mnt.img", i, edit)
    refused(crafted, f"mnt.img record {i}: fstype 'ext4'", "not one cryo knows")


def test_hostname_too_long(crafted):
    """More than a host name holds (HOST_NAME_MAX)."""
    imgedit.edit(crafted, "ns.img", 0, lambda n: setattr(n, "hostname", "h" * 65))
    refused(crafted, "ns.img record 0: hostname", "too long")


def test_container_unedited_restores(app, tmp_path):
    """The same dump, unedited, passes the validation pass and runs: the
    symlink and the files of its tmpfs are made again."""
    images = tmp_path / "images"
    shutil.copytree(app.images, images)
    reset(app.outside)
    cryo("restore", "-D", images, "-d", "-o", "restore.log", "-v4")
    time.sleep(0.3)
    assert alive(app.c.pid)
    assert app.c.sh("readlink /run/lnk; cat /run/a1 /run/b2") == f"{app.outside}\na\nb\n"
    assert_untouched(app.outside)


# ------------------------------------------------------- a process of the host

PROG = r"""
import mmap, os, socket, time
open("data", "w").write("data\n")
open("mapped", "wb").write(b"m" * 4096)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(os.path.abspath("s.sock"))
s.listen(1)
f = open("data")
m = open("mapped", "r+b")
mm = mmap.mmap(m.fileno(), 4096)
print("READY", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture
def plain(tmp_path, workload, images):
    """A python3 process of the host (a unix socket bound by path, a file
    open, a file mapped shared) dumped; the marker next to its directory."""
    outside = tmp_path / "outside"
    outside.mkdir()
    reset(outside)
    w = workload(["/usr/bin/python3", "-c", PROG])
    w.wait_ready()
    checkpoint(w, images)
    yield SimpleNamespace(w=w, images=images, outside=outside)
    assert_untouched(outside)
    assert (w.dir / "mapped").read_bytes() == b"m" * 4096, "the mapped file was changed"
    assert not alive(w.pid), f"pid {w.pid} left behind by the failed restore"


def files_record(images, pred, what):
    return index_of(imgedit.records(images, "files.img"), pred, what)


def test_unix_socket_name_with_dotdot(plain):
    """A socket's name climbing into the marker's directory (bound there before)."""
    i = files_record(plain.images, lambda f: f.HasField("unix_sk") and f.unix_sk.HasField("name"),
                     "bound unix socket")
    evil = f"{plain.w.dir}/../outside/new.sock".encode() + b"\0"
    assert len(evil) <= 108
    imgedit.edit(plain.images, "files.img", i, lambda f: setattr(f.unix_sk, "name", evil))
    refused(plain.images, f"files.img record {i}: unix_sk.name", "'..'")


def test_regular_file_path_with_dotdot(plain):
    i = files_record(plain.images, lambda f: f.HasField("reg") and f.reg.path.endswith("/data"), "open file")
    evil = f"{plain.w.dir}/../{plain.w.dir.name}/data"
    imgedit.edit(plain.images, "files.img", i, lambda f: setattr(f.reg, "path", evil))
    refused(plain.images, f"files.img record {i}: reg.path", "'..'")


def test_device_path_with_dotdot(plain):
    i = files_record(plain.images, lambda f: f.HasField("dev") and f.dev.path == "/dev/null", "/dev/null")
    imgedit.edit(plain.images, "files.img", i, lambda f: setattr(f.dev, "path", "/dev/../dev/null"))
    refused(plain.images, f"files.img record {i}: dev.path '/dev/../dev/null'", "'..'")


def test_executable_path_with_dotdot(plain):
    mm = f"mm-{plain.w.pid}.img"
    exe = imgedit.records(plain.images, mm)[0].exe_path
    evil = os.path.dirname(exe) + "/../" + os.path.basename(os.path.dirname(exe)) + "/" + os.path.basename(exe)
    imgedit.edit(plain.images, mm, 0, lambda m: setattr(m, "exe_path", evil))
    refused(plain.images, f"{mm} record 0: exe_path", "'..'")


def test_thread_name_too_long(plain):
    core = f"core-{plain.w.pid}.img"
    imgedit.edit(plain.images, core, 0, lambda c: setattr(c.threads[0], "comm", "x" * 40))
    refused(plain.images, f"{core} record 0: threads[0].comm", "too long")


def test_cwd_with_dotdot(plain):
    core = f"core-{plain.w.pid}.img"
    evil = f"{plain.w.dir}/../{plain.w.dir.name}"
    imgedit.edit(plain.images, core, 0, lambda c: setattr(c.task, "cwd", evil))
    refused(plain.images, f"{core} record 0: task.cwd", "'..'")


def test_mapped_file_flags(plain):
    """A mapped file opened to be truncated (O_CREAT | O_TRUNC)."""
    mm = f"mm-{plain.w.pid}.img"
    vmas = imgedit.records(plain.images, mm)[0].vmas
    i = index_of(vmas, lambda v: v.path.endswith("/mapped"), "mapping of the file")

    def edit(m):
        m.vmas[i].fdflags |= os.O_CREAT | os.O_TRUNC
    imgedit.edit(plain.images, mm, 0, edit)
    refused(plain.images, f"{mm} record 0: vmas[{i}].fdflags")


def test_process_unedited_restores(plain):
    """The same dump, unedited, passes the validation pass and runs, its
    socket bound at its name again: the name the kernel keeps for it
    (getsockname, /proc/net/unix) is the one it had, not a path of cryo's."""
    name = str(plain.w.dir / "s.sock")
    os.unlink(name)
    cryo("restore", "-D", plain.images, "-d", "-o", "restore.log", "-v4")
    plain.w.restored = True
    try:
        assert alive(plain.w.pid)
        assert Path(name).is_socket()
        names = [l.split()[7] for l in open(f"/proc/{plain.w.pid}/net/unix").read().splitlines()[1:]
                 if len(l.split()) > 7]
        assert name in names, f"{name} is not a socket's name: {names}"
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(name)
    finally:
        os.kill(plain.w.pid, signal.SIGKILL)
        wait_pid(plain.w.pid, 10)


# ------------------------------------------------------------------ RPC


def rpc_restore(tmp_path, *more):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    fd = os.open(images, os.O_RDONLY | os.O_DIRECTORY)
    try:
        c = criurpc.Swrk(tmp_path)
        r = c.call(criurpc.RESTORE, [(1, fd), (12, False), *more])
        assert c.close() == 0
    finally:
        os.close(fd)
    assert not r.success, "the restore succeeded"
    return r, c


@pytest.mark.parametrize("field,opt", [
    ("log_file '../rpc.log'", (10, "../rpc.log")),
    ("root 'rootfs'", (13, "rootfs")),
    ("parent_img 'a//b'", (14, "a//b")),
    ("veths[0].if_out 'a/b'", (19, [(1, "eth0"), (2, "a/b")])),
    ("ext_mnt[0].val 'x'", (23, [(1, "/mnt"), (2, "x")])),
    ("cg_root[0].path '/cryo/../../x'", (25, [(2, "/cryo/../../x")])),
], ids=["log_file", "root", "parent_img", "veths", "ext_mnt", "cg_root"])
def test_rpc_names_and_paths(tmp_path, field, opt):
    """A request's paths and names go through the door too: refused by field, once, on the client's stderr."""
    r, c = rpc_restore(tmp_path, opt)
    assert field in r.cr_errmsg and "is refused" in r.cr_errmsg, r.cr_errmsg
    assert c.err.read_text().splitlines() == [f"cryo: {r.cr_errmsg}"]


def test_rpc_log_file_through_symlink(tmp_path):
    """log_file is made in the work directory, not through a symlink left
    there to a host file (which it would truncate)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    reset(outside)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "rpc.log").symlink_to(outside / "victim")
    r, _ = rpc_restore(tmp_path, (10, "rpc.log"))
    assert "log_file" in r.cr_errmsg and "symbolic link" in r.cr_errmsg, r.cr_errmsg
    assert_untouched(outside)

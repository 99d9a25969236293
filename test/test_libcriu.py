"""cryo's libcriu (build/lib/libcriu.so.2, criu-core/libcriu/) called the
way a runtime calls CRIU's, here through ctypes: it runs `cryo swrk` from
PATH for each request. The version and features come from cryo; a dump and
a criu_restore_child bring back progs/regs, which checks its registers,
the restored process the caller's child from the start; the notify
callback sees each hook point (criu_notify_pid: the restored root at
post-restore) and may refuse one; a failure is told once."""
import ctypes
import errno
import os
import subprocess
import time

import pytest

import cryolib
from conftest import prog

LIB = cryolib.ROOT / "build" / "lib" / "libcriu.so.2"
NOTIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


class FeatureCheck(ctypes.Structure):
    _fields_ = [("mem_track", ctypes.c_bool), ("lazy_pages", ctypes.c_bool), ("pidfd_store", ctypes.c_bool)]


@pytest.fixture
def lib(monkeypatch):
    assert LIB.exists(), f"{LIB} is missing: run make"
    monkeypatch.setenv("PATH", f"{cryolib.CRYO.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    lib = ctypes.CDLL(str(LIB))
    lib.criu_notify_pid.argtypes = [ctypes.c_void_p]
    return lib


class Opts:
    """A criu_opts of libcriu's local API: o.NAME(args) is criu_local_NAME(opts, args)."""

    def __init__(self, lib):
        self.lib = lib
        self.p = ctypes.c_void_p()
        assert lib.criu_local_init_opts(ctypes.byref(self.p)) == 0

    def __getattr__(self, name):
        f = getattr(self.lib, "criu_local_" + name)
        return lambda *args: f(self.p, *args)

    def free(self):
        self.lib.criu_local_free_opts(self.p)


def ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def cryo_version():
    major, minor = cryolib.cryo("--version").stdout.split()[1].split(".")[:2]
    return int(major) * 10000 + int(minor) * 100


def test_version_and_features(lib, capfd):
    o = Opts(lib)
    try:
        v = cryo_version()
        assert o.get_version() == v
        assert o.check_version(31500) == 1 and o.check_version(v + 1) == 0
        f = FeatureCheck(mem_track=True, lazy_pages=False, pidfd_store=True)
        assert o.feature_check(ctypes.byref(f), ctypes.sizeof(f)) == 0
        assert f.mem_track and not f.lazy_pages and not f.pidfd_store, (f.mem_track, f.lazy_pages, f.pidfd_store)
        assert o.check() == 0
        assert o.set_service_binary(b"/nonexistent/cryo") == 0
        assert o.get_version() == -errno.ENOENT
    finally:
        o.free()
    # the global option set
    assert lib.criu_init_opts() == 0
    assert lib.criu_get_version() == v
    lib.criu_free_opts()
    assert lib.criu_get_version() == -errno.EINVAL
    err = capfd.readouterr().err
    assert err.splitlines() == ["libcriu: cannot run /nonexistent/cryo swrk: No such file or directory",
                                "libcriu: criu_init_opts() has not been called"], err


def test_dump_restore_child(lib, workload, images):
    w = workload([prog("regs")])
    w.wait_ready()
    time.sleep(0.3)
    seen = []

    @NOTIFY_CB
    def notify(action, na):
        pid = lib.criu_notify_pid(na)
        seen.append((action.decode(), pid, ppid(pid) if pid > 0 else None))
        return 0

    dfd = os.open(images, os.O_DIRECTORY)
    o, r = Opts(lib), Opts(lib)
    try:
        o.set_images_dir_fd(dfd)
        o.set_pid(w.pid)
        o.set_log_file(b"dump.log")
        o.set_notify_cb(notify)
        assert o.dump() == 0
        w.reap_dumped()
        assert seen[0][0] == "pre-dump" and seen[-1][0] == "post-dump", seen
        seen.clear()
        r.set_images_dir_fd(dfd)
        r.set_log_file(b"restore.log")
        r.set_notify_cb(notify)
        assert r.restore_child() == w.pid
    finally:
        o.free()
        r.free()
        os.close(dfd)
    w.restored = True
    points = [a for a, _, _ in seen]
    assert points[0] == "pre-restore" and points[-1] == "post-resume" and "post-restore" in points, seen
    # the restored root is the caller's child, already when it is restored
    assert dict((a, (pid, parent)) for a, pid, parent in seen)["post-restore"] == (w.pid, os.getpid()), seen
    w.verify()


def test_refused_notification(lib, workload, images, capfd):
    """The callback says no at post-dump: the dump fails, told once (by
    cryo), and the process runs on unharmed."""
    w = workload([prog("regs")])
    w.wait_ready()

    @NOTIFY_CB
    def notify(action, na):
        return 1 if action == b"post-dump" else 0

    dfd = os.open(images, os.O_DIRECTORY)
    o = Opts(lib)
    try:
        o.set_images_dir_fd(dfd)
        o.set_pid(w.pid)
        o.set_log_file(b"dump.log")
        o.set_notify_cb(notify)
        assert o.dump() < 0
    finally:
        o.free()
        os.close(dfd)
    err = capfd.readouterr().err
    assert err.splitlines() == ["cryo: the client refused the post-dump notification"], err
    w.verify()


PROBE = r"""
#include <stdio.h>
#include <criu/criu.h>

int main(void)
{
	if (criu_init_opts() < 0)
		return 2;
	printf("%d\n", criu_get_version());
	return 0;
}
"""


def test_make_install(tmp_path):
    """make install puts cryo, libcriu.so.2, <criu/criu.h> and a criu.pc
    naming the installed paths under PREFIX; a program built from them with
    pkg-config gets cryo's version through the installed library."""
    dest = tmp_path / "dest"
    subprocess.run(["make", "-s", "-C", cryolib.ROOT, "install", f"DESTDIR={dest}", "PREFIX=/usr/local"],
                   check=True, capture_output=True, timeout=300)
    top = dest / "usr" / "local"
    for f in ("sbin/cryo", "lib/libcriu.so.2", "include/criu/criu.h", "lib/pkgconfig/criu.pc"):
        assert (top / f).is_file(), f"make install did not install {f}"
    assert os.readlink(top / "lib" / "libcriu.so") == "libcriu.so.2"
    env = dict(os.environ, PKG_CONFIG_PATH=str(top / "lib" / "pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "criu"], env=env, check=True, capture_output=True,
                           text=True).stdout.split()
    assert flags == ["-I/usr/local/include", "-L/usr/local/lib", "-lcriu"], flags
    # built against the tree under DESTDIR as it would be at /usr/local
    (tmp_path / "probe.c").write_text(PROBE)
    subprocess.run(["cc", "-o", tmp_path / "probe", tmp_path / "probe.c", f"-I{top}/include", f"-L{top}/lib",
                    "-lcriu"], check=True, capture_output=True)
    r = subprocess.run([tmp_path / "probe"], env=dict(os.environ, LD_LIBRARY_PATH=str(top / "lib"),
                                                    PATH=f"{top}/sbin:/usr/bin:/bin"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "31900", (r.returncode, r.stdout, r.stderr)

"""crun checkpoints and restores through libcriu, which it dlopen()s as
libcriu.so.2: cryo's (build/lib, criu-core/libcriu/) runs `cryo swrk` for
each request and speaks CRIU's RPC to it. crun is Debian's, built with
checkpoint support against build/lib (make crun: scripts/build-crun), run
with LD_LIBRARY_PATH=build/lib and cryo's directory first on PATH. The
container is ocilib's busybox shell with its counter and 4 MiB of text.

crun refuses a hybrid cgroup layout whose v2 hierarchy has controllers
(this machine's /sys/fs/cgroup/unified has hugetlb): each crun call runs
in a mount namespace of the tests' own where an empty file is bound over
/sys/fs/cgroup/unified/cgroup.controllers. The host's mounts are untouched."""
import os
import shutil
import subprocess

import pytest

import ocilib
from cryolib import CRYO, ROOT
from ocilib import alive

CRUN = ROOT / "build" / "crun" / "crun"
LIBDIR = ROOT / "build" / "lib"
CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"
pytestmark = pytest.mark.skipif(not CRUN.exists(), reason=f"{CRUN} is missing (make crun builds it)")


def crun_env(path=None):
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(LIBDIR)
    env["PATH"] = path or f"{CRYO.parent}:{env.get('PATH') or '/usr/sbin:/usr/bin:/sbin:/bin'}"
    return env


@pytest.fixture(scope="module")
def mntns(tmp_path_factory):
    """The pid of a process holding a private mount namespace in which the
    v2 hierarchy lists no controllers; killed at the end."""
    empty = tmp_path_factory.mktemp("crun-mntns") / "empty"
    empty.write_text("")
    sh = (f'if grep -qs . {CONTROLLERS}; then mount --bind "$0" {CONTROLLERS} || exit 1; fi; '
          'echo ready; exec sleep infinity')
    p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", sh, str(empty)],
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n", "cannot make the mount namespace for crun"
        yield p.pid
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


class CrunContainer(ocilib.Container):
    def __init__(self, tmp_path, name, mntns, **kw):
        super().__init__(tmp_path, name, CRUN, env=crun_env(), **kw)
        self.mntns = mntns

    def argv(self, *args):
        # the bundle as the cwd from inside the namespace (nsenter --wd would keep the host's mount)
        return ["nsenter", "-t", str(self.mntns), "-m", "--", "env", "-C", str(self.bundle), *super().argv(*args)]


@pytest.fixture
def container(tmp_path, mntns):
    c = CrunContainer(tmp_path, f"cryo-crun-{os.getpid()}", mntns)
    yield c
    c.destroy()


def cryo_log(path):
    """A log cryo wrote (its lines name criu-core's files), not some other criu's."""
    text = path.read_text()
    assert "(criu-core/" in text, f"{path} is not cryo's log:\n{text[:500]}"
    return text


def test_checkpoint_restore(container, tmp_path):
    """crun checkpoint and restore -d (ocilib.check_checkpoint_restore): same
    pid, counter, memory; the logs are cryo's."""
    ocilib.check_checkpoint_restore(container, tmp_path / "ck")
    cryo_log(tmp_path / "ck" / "dump.log")
    cryo_log(tmp_path / "ck" / "restore.log")


def test_leave_running(container, tmp_path):
    """crun checkpoint --leave-running (ocilib.check_leave_running)."""
    ocilib.check_leave_running(container, tmp_path / "ck")


def test_pre_dump_then_checkpoint(container, tmp_path):
    """crun checkpoint --pre-dump (libcriu: FEATURE_CHECK mem_track, then
    PRE_DUMP), then --parent-path: ocilib.check_pre_dump."""
    ocilib.check_pre_dump(container, tmp_path)
    cryo_log(tmp_path / "pre" / "dump.log")


def test_stdout_pipe(container, tmp_path):
    """crun restore names the new stdout pipe in libcriu's inherit_fd (its own
    fd 1, which cryo swrk inherits): ocilib.check_stdout_pipe."""
    ocilib.check_stdout_pipe(container, tmp_path / "ck")


def test_restore_into_missing_rootfs(container, tmp_path):
    """A restore into an empty rootfs fails, leaving no process or cgroup
    (ocilib.check_restore_into_missing_rootfs; crun itself keeps its state
    directory: delete -f); crun shows cryo's reason once."""
    r = ocilib.check_restore_into_missing_rootfs(container, tmp_path / "ck")
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("cryo: ")]
    assert len(lines) == 1 and "/bin/busybox" in lines[0] and "No such file" in lines[0], r.stderr
    assert "libcriu:" not in r.stderr, r.stderr
    assert "CRIU restoring failed -2" in r.stderr, r.stderr


def test_no_cryo_on_path(container, tmp_path):
    """libcriu finds no cryo to run: crun checkpoint fails with libcriu's
    reason, and the container runs on untouched."""
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    if shutil.which("cryo", path=path):
        pytest.skip(f"a cryo is installed on {path}")
    c = container
    c.run()
    r = c.rt("checkpoint", "--image-path", tmp_path / "ck", c.name, check=False, env=crun_env(path))
    assert r.returncode != 0
    assert "libcriu: cannot run cryo swrk: No such file or directory" in r.stderr, r.stderr
    assert c.status()["status"] == "running" and alive(c.pid)
    c.next_counter()


def test_terminal(tmp_path, mntns):
    """A container with a terminal (crun --console-socket; libcriu takes the
    new master from cryo and crun sends it on): see ocilib.check_terminal."""
    c = CrunContainer(tmp_path, f"cryo-crun-{os.getpid()}", mntns, script=ocilib.TTY_SCRIPT, terminal=True)
    try:
        ocilib.check_terminal(c, tmp_path / "ck")
    finally:
        c.destroy()

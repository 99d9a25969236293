"""containerd (Debian's 1.6) drives cryo as its criu: containerd's runc v2
shim runs runc, and runc runs `criu`, found in the PATH containerd was
started with (runc's default), which here is cryo. Each test starts its own
containerd (root, state, socket and config under tmp_path, its own
namespace and runc root) and stops it, and everything it started, by pid.

The image is made here: an OCI image archive with one layer (busybox and
the applets the counter script needs), imported with `ctr image import`.
The container is ocilib's counter shell: a counter held in its memory
(written to /tmp/counter every 0.2 s) and 4 MiB of random text whose md5 it
writes at start and again on SIGUSR1. containerd pauses a running task
before it checkpoints it (and resumes it after): cryo finds the cgroup
frozen, takes it as it is and leaves it frozen.

What ctr 1.6 can do with a checkpoint, and what not:
- `ctr c checkpoint --task --rw --image` then `ctr c restore --live --rw`:
  the round trip (test_container_checkpoint_restore);
- `ctr t checkpoint`: the task runs on, its checkpoint is an image in the
  content store, with cryo's images in it; ctr 1.6 has no command that
  restores such an image (`ctr c restore` wants the image name, runtime and
  snapshotter annotations only `ctr c checkpoint` writes: "image name not
  found in index");
- a paused task: `ctr t checkpoint` leaves it paused; `ctr c checkpoint`
  refuses it (ctr pauses first: "cannot pause a paused container").
"""
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time

import pytest

import ocilib
from cryolib import CRYO, cryo
from ocilib import alive, wait_for

CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
pytestmark = pytest.mark.skipif(not CONTAINERD or not CTR,
                                reason="containerd is not installed (make deps installs it)")

IMAGE = "cryo.test/busybox:latest"
# ocilib's counter shell, writing nothing on its stdout (ctr restore's fifos go when ctr exits)
SCRIPT = ocilib.SCRIPT.replace("    echo $n\n", "")
CGROOT = "/sys/fs/cgroup"


def _blob(d, data):
    digest = hashlib.sha256(data).hexdigest()
    (d / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (d / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layer():
    """An uncompressed layer: busybox, its applets, and the directories a container needs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name in ("bin", "tmp", "dev", "proc", "sys", "etc"):
            i = tarfile.TarInfo(name)
            i.type, i.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            t.addfile(i)
        data = open("/bin/busybox", "rb").read()
        i = tarfile.TarInfo("bin/busybox")
        i.size, i.mode = len(data), 0o755
        t.addfile(i, io.BytesIO(data))
        for applet in ocilib.APPLETS:
            i = tarfile.TarInfo(f"bin/{applet}")
            i.type, i.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(i)
    return buf.getvalue()


def make_image(d, out):
    """An OCI image layout in d, archived as out, naming itself IMAGE."""
    layer = _blob(d, _layer())
    config = _blob(d, json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
    manifest = _blob(d, json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
        "layers": [dict(layer, mediaType="application/vnd.oci.image.layer.v1.tar")]}).encode())
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [dict(
        manifest, mediaType="application/vnd.oci.image.manifest.v1+json",
        platform={"architecture": "amd64", "os": "linux"},
        annotations={"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "latest"})]}))
    (d / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    subprocess.run(["tar", "-C", str(d), "-cf", str(out), "oci-layout", "index.json", "blobs"], check=True)


class Containerd:
    """A containerd of the test's own, with cryo as the criu in its PATH."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / "ctrd"
        self.sock = self.dir / "c.sock"
        assert len(str(self.sock)) < 100, f"{self.sock}: too long for a unix socket"
        self.ns = f"cryo-test-{os.getpid()}"
        self.runc_root = self.dir / "runc"
        bindir = self.dir / "bin"
        bindir.mkdir(parents=True)
        os.symlink(CRYO, bindir / "criu")
        config = self.dir / "config.toml"
        config.write_text(f"""version = 2
root = "{self.dir}/root"
state = "{self.dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.sock}"
[debug]
  address = "{self.dir}/debug.sock"
  level = "debug"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{self.dir}/opt"
""")
        env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}")
        self.log = open(self.dir / "containerd.log", "w")
        self.proc = subprocess.Popen([CONTAINERD, "--config", str(config)], env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self.proc.poll() is not None or
                 (self.sock.exists() and self.ctr("version", check=False).returncode == 0),
                 "containerd to serve", timeout=30)
        assert self.proc.poll() is None, f"containerd exited:\n{(self.dir / 'containerd.log').read_text()[-3000:]}"
        self.names = []

    def ctr(self, *args, check=True):
        r = subprocess.run([CTR, "-a", str(self.sock), "-n", self.ns, *map(str, args)], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120)
        for pid in ocilib.exited_children():
            ocilib.reap(pid)
        if check:
            assert r.returncode == 0, f"ctr {' '.join(map(str, args))} exited {r.returncode}:\n{r.stdout}{r.stderr}"
        return r

    def import_image(self, tmp_path):
        make_image(tmp_path / "oci", tmp_path / "image.tar")
        self.ctr("image", "import", tmp_path / "image.tar")

    def run(self, name):
        self.names.append(name)
        self.ctr("run", "-d", "--null-io", "--runc-root", self.runc_root, IMAGE, name, "/bin/sh", "-c", SCRIPT)
        c = Task(self, name)
        wait_for(lambda: c.file("sum0") and c.counter() >= 3, "the container to start")
        return c

    def tasks(self):
        """{name: (pid, status)} of ctr t ls."""
        out = {}
        for line in self.ctr("t", "ls").stdout.splitlines()[1:]:
            name, pid, status = line.split()
            out[name] = (int(pid), status)
        return out

    def remove(self, name):
        """Kill the container's task, delete it and the container."""
        self.ctr("t", "kill", "-s", "KILL", name, check=False)
        wait_for(lambda: self.tasks().get(name, (0, "STOPPED"))[1] == "STOPPED", f"task {name} to stop")
        self.ctr("t", "rm", "-f", name, check=False)
        self.ctr("c", "rm", name, check=False)

    def stop(self):
        """Every container, then containerd, then what is left of theirs, by pid."""
        if self.proc.poll() is None:
            for name in self.tasks():
                if self.tasks()[name][1] == "PAUSED":
                    self.ctr("t", "resume", name, check=False)
            for name in set(self.names) | set(self.tasks()):
                self.remove(name)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        # shims of this containerd (their command line names its socket), and their containers' processes
        for d in os.listdir("/proc"):
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
            except (OSError, ValueError):
                continue
            if b"-address" in cmd and str(self.sock).encode() in cmd:
                os.kill(int(d), signal.SIGKILL)
        for ctrl in os.listdir(CGROOT):
            ns_dir = os.path.join(CGROOT, ctrl, self.ns)
            if not os.path.isdir(ns_dir):
                continue
            for sub in [e.path for e in os.scandir(ns_dir) if e.is_dir()] + [ns_dir]:
                try:
                    for pid in open(os.path.join(sub, "cgroup.procs")).read().split():
                        os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.2)
        for pid in ocilib.exited_children():
            ocilib.reap(pid)
        for ctrl in os.listdir(CGROOT):
            ns_dir = os.path.join(CGROOT, ctrl, self.ns)
            if os.path.isdir(ns_dir):
                for sub in [e.path for e in os.scandir(ns_dir) if e.is_dir()] + [ns_dir]:
                    try:
                        os.rmdir(sub)
                    except OSError:
                        pass


class Task:
    """A container's task, seen from the host through /proc/PID/root."""

    def __init__(self, ctrd, name):
        self.ctrd, self.name = ctrd, name
        self.pid, self.status_at_start = ctrd.tasks()[name]

    def status(self):
        return self.ctrd.tasks().get(self.name, (0, None))[1]

    def file(self, name):
        try:
            return open(f"/proc/{self.pid}/root/tmp/{name}").read()
        except OSError:
            return ""

    def counter(self):
        return int(self.file("counter") or 0)

    def freezer(self):
        return open(f"{CGROOT}/freezer/{self.ctrd.ns}/{self.name}/freezer.state").read().strip()

    def next_values(self):
        """The counter's value now and the next one it writes."""
        first = self.counter()
        wait_for(lambda: self.counter() != first, "the counter to move")
        return first, self.counter()

    def memory_md5(self):
        """The md5 of the text from the shell's memory now, and the one it wrote at start."""
        os.unlink(f"/proc/{self.pid}/root/tmp/sum1") if self.file("sum1") else None
        self.ctrd.ctr("t", "kill", "-s", "USR1", self.name)
        wait_for(lambda: self.file("sum1"), "the shell to answer SIGUSR1")
        return self.file("sum1"), self.file("sum0")

    def nspid(self):
        status = open(f"/proc/{self.pid}/status").read()
        return status.split("NSpid:")[1].split("\n")[0].split()


@pytest.fixture
def ctrd(tmp_path):
    d = Containerd(tmp_path)
    try:
        d.import_image(tmp_path)
        yield d
    finally:
        d.stop()


def test_container_checkpoint_restore(ctrd):
    """ctr c checkpoint --task --rw --image (containerd pauses the task,
    cryo dumps it frozen and leaves it so, containerd resumes it: it runs
    on), then the container removed and ctr c restore --live --rw: the same
    process (its host pid, pid 1 inside), the counter going on from the
    very next value of the checkpoint's, the same memory, not paused."""
    c = ctrd.run(f"ck{os.getpid()}")
    before = c.counter()
    ctrd.ctr("c", "checkpoint", "--task", "--rw", "--image", c.name, "cryo.test/ck:1")
    after = c.counter()
    assert c.status() == "RUNNING" and c.freezer() == "THAWED"
    wait_for(lambda: c.counter() > after + 2, "the counter to go on after the checkpoint")
    pid = c.pid
    ctrd.remove(c.name)
    assert not alive(pid)
    ctrd.ctr("c", "restore", "--live", "--rw", c.name, "cryo.test/ck:1")
    c = Task(ctrd, c.name)
    assert c.pid == pid and c.status() == "RUNNING", (pid, c.pid, c.status())
    assert c.nspid()[-1] == "1", c.nspid()
    # the rw layer as it was at the checkpoint, and the shell's memory of the same moment
    at_checkpoint, then = c.next_values()
    assert before <= at_checkpoint <= after and then == at_checkpoint + 1, (before, after, at_checkpoint, then)
    now, at_start = c.memory_md5()
    assert now == at_start, "the shell's memory changed across checkpoint and restore"
    assert c.freezer() == "THAWED"


def test_task_checkpoint(ctrd, tmp_path):
    """ctr t checkpoint of a running task: it runs on (containerd paused it,
    cryo left it paused, containerd resumed it); the checkpoint image holds
    cryo's images of it, its pid the task's. With --exit the task stops."""
    c = ctrd.run(f"tk{os.getpid()}")
    ref = ctrd.ctr("t", "checkpoint", c.name).stdout.strip()
    assert ref.startswith(f"containerd.io/checkpoint/{c.name}:"), ref
    assert c.status() == "RUNNING" and c.freezer() == "THAWED"
    n = c.counter()
    wait_for(lambda: c.counter() > n + 2, "the counter to go on after the checkpoint")
    # the criu tar of the checkpoint index, from the content store
    blobs = ctrd.dir / "root" / "io.containerd.content.v1.content" / "blobs" / "sha256"
    index_digest = [l.split()[2] for l in ctrd.ctr("images", "ls").stdout.splitlines() if l.startswith(ref + " ")][0]
    index = json.loads((blobs / index_digest.split(":")[1]).read_text())
    tars = [m["digest"] for m in index["manifests"] if m["mediaType"].endswith("criu.checkpoint.criu.tar")]
    assert len(tars) == 1, index
    images = tmp_path / "criu"
    images.mkdir()
    subprocess.run(["tar", "-C", str(images), "-xf", str(blobs / tars[0].split(":")[1])], check=True)
    assert (images / "manifest.img").exists() and (images / "inventory.img").exists()
    ps = cryo("show", images / "pstree.img").stdout
    assert f'"host_pid": {c.pid}' in ps and '"pid": 1,' in ps, ps
    # --exit: the task is killed once dumped
    e = ctrd.run(f"tx{os.getpid()}")
    ctrd.ctr("t", "checkpoint", "--exit", e.name)
    wait_for(lambda: e.status() == "STOPPED", "the task to stop after checkpoint --exit")
    assert not alive(e.pid)


def test_paused_task_checkpoint(ctrd):
    """ctr t pause, then ctr t checkpoint: the task stays paused (its
    freezer FROZEN, the counter still); ctr t resume: the counter goes on
    from the next value, with the same memory. ctr c checkpoint refuses a
    paused task (ctr pauses it first), and leaves it paused."""
    c = ctrd.run(f"pz{os.getpid()}")
    ctrd.ctr("t", "pause", c.name)
    assert c.status() == "PAUSED" and c.freezer() == "FROZEN"
    at_pause = c.counter()
    ctrd.ctr("t", "checkpoint", c.name)
    assert c.status() == "PAUSED" and c.freezer() == "FROZEN"
    time.sleep(0.6)
    assert c.counter() == at_pause, "the paused task ran after the checkpoint"
    r = ctrd.ctr("c", "checkpoint", "--task", c.name, "cryo.test/pz:1", check=False)
    assert r.returncode != 0 and "cannot pause a paused container" in r.stderr, r.stderr
    assert c.status() == "PAUSED" and c.freezer() == "FROZEN"
    ctrd.ctr("t", "resume", c.name)
    first, then = c.next_values()
    assert first in (at_pause, at_pause + 1) and then == first + 1, (at_pause, first, then)
    now, at_start = c.memory_md5()
    assert now == at_start

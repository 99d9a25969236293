"""Podman (Debian's, runc its runtime, cryo the criu on its PATH) for the
tests and the benchmark, with everything of its own in a directory of a
test's: storage, run state, runc's state, temporary files, events and
cgroup parent (nothing of the host's is read or left), and a busybox image
imported from a tar made here (no network). Its containers have
ocilib.Container's interface, so that ocilib's checks run on them too."""
import errno
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import ocilib
from cryolib import CRYO
from ocilib import RUNC, SCRIPT, alive, wait_for

PODMAN = shutil.which("podman")

# this machine's root lacks CAP_SYS_RESOURCE: podman's default limits cannot be set
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def busybox_tar():
    """A busybox root file system (every applet a link), as a tar's bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "dev", "proc", "sys", "etc", "run", "var"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add("/bin/busybox", "bin/busybox")
        applets = subprocess.run(["/bin/busybox", "--list"], check=True, capture_output=True, text=True).stdout
        for a in applets.split():
            if a != "busybox":
                info = tarfile.TarInfo(f"bin/{a}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
    return buf.getvalue()


def rmdir(d):
    try:
        d.rmdir()
        return True
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
        return False


class Podman:
    """podman with everything of its own under top: a directory in /tmp
    (podman wants its run root's path short), tmp_path/podman links to it;
    removed by close()."""

    def __init__(self, tmp_path):
        self.top = Path(tempfile.mkdtemp(prefix="cryo-pm-"))
        (tmp_path / "podman").symlink_to(self.top)
        self.bin = self.top / "bin"
        self.bin.mkdir(parents=True)
        (self.bin / "criu").symlink_to(CRYO)
        # runc with its state here: podman's own cleanup after a container exits is given its runtime's path, not
        # its --runtime-flag options
        self.runc_root = self.top / "runc"
        self.runc = self.bin / "runc"
        self.runc.write_text(f'#!/bin/sh\nexec {RUNC} --root {self.runc_root} "$@"\n')
        self.runc.chmod(0o755)
        self.cgroup_parent = f"/cryo-podman-{os.getpid()}-{tmp_path.name}"
        (self.top / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.top}/root"\nrunroot = "{self.top}/run"\n')
        (self.top / "containers.conf").write_text(
            '[containers]\nnetns = "none"\nlog_driver = "k8s-file"\n'
            f'[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            f'events_logfile_path = "{self.top}/events.log"\ntmp_dir = "{self.top}/tmp"\n'
            f'volume_path = "{self.top}/volumes"\n'
            f'[network]\nnetwork_config_dir = "{self.top}/net"\n')
        (self.top / "registries.conf").write_text("")
        self.env = dict(os.environ, PATH=f"{self.bin}:{os.environ['PATH']}",
                        CONTAINERS_CONF=str(self.top / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(self.top / "storage.conf"),
                        CONTAINERS_REGISTRIES_CONF=str(self.top / "registries.conf"))
        self.names = []		# our containers, to remove
        self.image = "localhost/cryo-busybox:1"
        tar = self.top / "busybox.tar"
        tar.write_bytes(busybox_tar())
        # podman import writes a blob cache in /var/lib/containers whatever its root: a tmpfs of its own there
        try:
            self("import", tar, self.image, wrap=["unshare", "-m", "sh", "-c",
                                                   'mount -t tmpfs cryo-test /var/lib && exec "$@"', "sh"])
        except BaseException:
            self.close()
            raise

    def argv(self, *args):
        return [PODMAN, "--root", self.top / "root", "--runroot", self.top / "run", "--tmpdir", self.top / "tmp",
                "--storage-driver", "overlay", "--runtime", self.runc, "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", *args]

    def __call__(self, *args, check=True, wrap=(), timeout=120):
        argv = [str(a) for a in (*wrap, *self.argv(*args))]
        r = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        if check:
            assert r.returncode == 0, f"{' '.join(argv)} exited {r.returncode}:\n{r.stdout}{r.stderr}"
        return r

    def container(self, name, script=SCRIPT, network="none"):
        self.names.append(name)
        return PodmanContainer(self, name, script, network)

    def processes(self):
        """Processes of this podman's (conmon, podman's cleanup): their command lines name top."""
        mine = []
        for d in os.listdir("/proc"):
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if str(self.top).encode() in f.read() and int(d) != os.getpid():
                        mine.append(int(d))
            except (OSError, ValueError):
                continue
        return mine

    def remove_containers(self):
        for name in self.names:
            r = self("inspect", "--format", "{{.State.Pid}}", name, check=False)
            self("rm", "-f", "-t", "0", name, check=False)
            pid = int(r.stdout) if r.returncode == 0 and r.stdout.strip().isdigit() else 0
            if pid:
                wait_for(lambda: not alive(pid), f"pid {pid} of container {name} to go", timeout=10)
        # podman's cleanup after each, and conmon, done: none mounts its storage again
        wait_for(lambda: not self.processes(), "podman's and conmon's processes to end", timeout=30)

    def unmount(self):
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for m in sorted((m for m in mounts if m.startswith(str(self.top) + "/")), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)

    def remove_cgroups(self):
        for ctrl in Path("/sys/fs/cgroup").iterdir():
            top = ctrl / self.cgroup_parent.lstrip("/")
            if top.is_dir() and not top.is_symlink():
                # conmon's own (parent/conmon) empties a moment after its container is removed
                for d in sorted((top, *top.rglob("*")), key=lambda p: len(str(p)), reverse=True):
                    if d.is_dir():
                        wait_for(lambda: rmdir(d), f"cgroup {d} to be empty", timeout=10)

    def close(self):
        """Our containers removed, podman's mounts beneath top unmounted, our
        cgroups and top removed: each step tried whatever the one before did."""
        error = None
        for step in (self.remove_containers, self.unmount, self.remove_cgroups,
                     lambda: shutil.rmtree(self.top)):
            try:
                step()
            except Exception as e:  # the first one is raised once all are done
                error = error or e
        if error:
            raise error


class PodmanContainer(ocilib.Container):
    """A podman container with ocilib.Container's interface (the checks of
    ocilib run on it): its files are read in its overlay's upper directory
    (rootfs), there whether it runs or not; status() is None unless it
    runs; checkpoint and restore leave the images where podman keeps them
    (images_dir()), the path given is not used."""

    def __init__(self, podman, name, script, network):
        self.pm, self.name, self.script, self.network = podman, name, script, network
        self.pid = None
        self.console = self.master = None

    def inspect(self, fmt):
        return self.pm("inspect", "--format", fmt, self.name).stdout.strip()

    def refresh(self):
        """Where its files and images are: a container made by an import has its own."""
        self.rootfs = Path(self.inspect("{{.GraphDriver.Data.UpperDir}}"))
        self.userdata = Path(self.inspect("{{.StaticDir}}"))

    def images_dir(self):
        return self.userdata / "checkpoint"

    def status(self):
        r = self.pm("inspect", "--format", "{{.State.Status}} {{.State.Pid}}", self.name, check=False)
        if r.returncode:
            return None
        state, pid = r.stdout.split()
        return {"status": state, "pid": int(pid)} if state == "running" else None

    def started(self):
        """SCRIPT's shell has its text and has counted a little."""
        return (self.rootfs / "tmp" / "sum0").exists() and self.counter() >= 3

    def run(self, stdout=None, ready=None):
        """podman run -d; returns once ready() (started()) holds."""
        self.pm("run", "-d", "--name", self.name, "--network", self.network, "--cgroup-parent",
                self.pm.cgroup_parent, *ULIMITS, self.pm.image, "sh", "-c", self.script)
        self.refresh()
        self.pid = self.status()["pid"]
        wait_for(ready or self.started, "the container to start")

    def signal(self, sig):
        self.pm("kill", "--signal", sig, self.name)

    def nspid(self):
        """Its pids, from the host's pid namespace inwards."""
        with open(f"/proc/{self.pid}/status") as f:
            return [int(x) for l in f if l.startswith("NSpid:") for x in l.split()[1:]]

    def logged(self):
        """The numbers the shell wrote on its stdout, as podman logged them."""
        return [int(x) for x in self.pm("logs", self.name).stdout.split()]

    def checkpoint(self, images=None, *opts, check=True):
        r = self.pm("container", "checkpoint", *opts, self.name, check=check)
        if r.returncode == 0 and not {"--leave-running", "-R", "--pre-checkpoint", "-P"} & set(opts):
            wait_for(lambda: not alive(self.pid), f"pid {self.pid} to go after the checkpoint")
        return r

    def restore(self, images=None, *opts, check=True, stdout=None):
        imported = "--import" in opts
        r = self.pm("container", "restore", *opts, *(() if imported else (self.name,)), check=check)
        if r.returncode == 0:
            if "--name" in opts:
                self.name = opts[opts.index("--name") + 1]
                self.pm.names.append(self.name)
            self.refresh()
        return r

    def destroy(self):
        """Killed, the container kept (and its checkpoint), once podman has cleaned up after it."""
        cid = self.inspect("{{.Id}}")
        self.pm("kill", self.name)
        wait_for(lambda: not alive(self.pid), f"pid {self.pid} to die", timeout=10)
        wait_for(lambda: not (self.pm.runc_root / cid).exists(), "podman to clean up after the container")

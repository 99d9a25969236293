"""OCI runtime containers for the tests of runtimes checkpointing through
cryo (test_crun.py; test_runc.py's Container is the same idea): a busybox
shell on its own root file system in a bundle under the test's tmp_path,
with a counter held in the shell's memory (written to /tmp/counter every
0.2 s, and to stdout) and 4 MiB of random text whose md5 it writes at start
and again on SIGUSR1, from its memory. A restore must carry on the very
process: same pid, the counter going on from where the checkpoint left it,
the text the same."""
import json
import os
import shutil
import subprocess
import time

SCRIPT = """
x=$(head -c 4000000 /dev/urandom | base64)
echo "$x" | md5sum >/tmp/sum0
trap 'echo "$x" | md5sum >/tmp/sum1' USR1
n=0
while :; do
    n=$((n + 1))
    echo $n >/tmp/counter.new
    echo $n
    mv /tmp/counter.new /tmp/counter
    sleep 0.2
done
"""

APPLETS = ("sh", "sleep", "head", "base64", "md5sum", "mv", "cat", "ps")


def wait_for(cond, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except FileNotFoundError:
        return False


def reap(pid):
    """Our child (pytest is a subreaper) once the runtime exits: wait for it if it is gone."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def exited_children():
    """Our children that have exited and wait to be reaped."""
    me, pids = os.getpid(), set()
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state == "Z" and int(ppid) == me:
            pids.add(int(d))
    return pids


def read_lines(rfd, timeout=20):
    """The counter values the pipe has now, waiting (up to timeout) for at least one whole line."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n") and (timeout or not data):
        assert not timeout or time.monotonic() < deadline, f"no line on the container's stdout: {data!r}"
        try:
            got = os.read(rfd, 65536)
        except BlockingIOError:
            got = None
        if not got and not timeout:
            break
        if got:
            data += got
        else:
            time.sleep(0.01)
    return [int(x) for x in data.split()]


class Container:
    """A container of the runtime at `runtime` from a bundle in tmp_path,
    with its own state directory (nothing else's containers are seen or
    touched). `argv(*args)` is the command line of one runtime call, run
    with cwd the bundle and env; subclasses say how (runc --criu, crun in a
    mount namespace)."""

    def __init__(self, tmp_path, name, runtime, env=None):
        self.name = name
        self.runtime = str(runtime)
        self.env = env
        self.bundle = tmp_path / "bundle"
        self.rootfs = self.bundle / "rootfs"
        self.state = tmp_path / "runtime-state"
        (self.rootfs / "bin").mkdir(parents=True)
        (self.rootfs / "tmp").mkdir()
        shutil.copy("/bin/busybox", self.rootfs / "bin" / "busybox")
        for applet in APPLETS:
            os.symlink("busybox", self.rootfs / "bin" / applet)
        subprocess.run([self.runtime, "spec"], cwd=self.bundle, check=True)
        cfg = json.loads((self.bundle / "config.json").read_text())
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = ["sh", "-c", SCRIPT]
        cfg["root"]["readonly"] = False
        (self.bundle / "config.json").write_text(json.dumps(cfg, indent=1))
        self.pid = None

    def argv(self, *args):
        return [self.runtime, "--root", str(self.state), *args]

    def rt(self, *args, check=True, stdout=None, env=None):
        """One runtime call. stdout: the container's (run and restore -d), a
        pipe's write end; else /dev/null: never a pipe of ours that we read
        to its end, which it holds open."""
        args = [str(a) for a in args]
        if stdout is not None:
            out = err = subprocess.DEVNULL
        else:
            out = subprocess.DEVNULL if args[0] == "run" else subprocess.PIPE
            stdout, err = out, out
        before = exited_children()
        r = subprocess.run(self.argv(*args), cwd=self.bundle, env=env or self.env, stdin=subprocess.DEVNULL,
                           stdout=stdout, stderr=err, text=True, timeout=120)
        # what the runtime left to us, the subreaper, and has exited (crun run -d: a helper of its own)
        for pid in exited_children() - before:
            reap(pid)
        if check:
            assert r.returncode == 0, f"{' '.join(self.argv(*args))} exited {r.returncode}:\n{r.stdout}{r.stderr}"
        return r

    def status(self):
        r = self.rt("state", self.name, check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def run(self, stdout=None):
        self.rt("run", "-d", self.name, stdout=stdout)
        self.pid = self.status()["pid"]
        wait_for(lambda: (self.rootfs / "tmp" / "sum0").exists() and self.counter() >= 3, "the container to start")

    def counter(self):
        try:
            return int((self.rootfs / "tmp" / "counter").read_text() or 0)
        except FileNotFoundError:
            return 0

    def next_counter(self):
        """The next value the counter takes."""
        c = self.counter()
        wait_for(lambda: self.counter() != c, "the counter to move")
        return self.counter()

    def after_restore(self):
        """The counter's value the moment a restore returns and the next one
        it writes: the first is the checkpoint's or, when the shell has
        written again since it was resumed, the one after it."""
        first = self.counter()
        wait_for(lambda: self.counter() != first, "the counter to move after the restore")
        return first, self.counter()

    def memory_md5(self):
        """The md5 of the text, from what the shell holds now, against the one it wrote at start."""
        (self.rootfs / "tmp" / "sum1").unlink(missing_ok=True)
        self.rt("kill", self.name, "USR1")
        wait_for(lambda: (self.rootfs / "tmp" / "sum1").exists() and (self.rootfs / "tmp" / "sum1").read_text(),
                 "the shell to answer SIGUSR1")
        return (self.rootfs / "tmp" / "sum1").read_text(), (self.rootfs / "tmp" / "sum0").read_text()

    def checkpoint(self, images, *opts, **kw):
        r = self.rt("checkpoint", "--image-path", images, *opts, self.name, **kw)
        if r.returncode == 0 and "--leave-running" not in opts and "--pre-dump" not in opts:
            wait_for(lambda: not alive(self.pid), f"pid {self.pid} to go after the checkpoint")
            reap(self.pid)
        return r

    def restore(self, images, *opts, check=True, stdout=None):
        return self.rt("restore", "-d", "--image-path", images, *opts, self.name, check=check, stdout=stdout)

    def destroy(self):
        self.rt("kill", self.name, "KILL", check=False)
        if self.pid:
            wait_for(lambda: not alive(self.pid), f"pid {self.pid} to die", timeout=10)
            reap(self.pid)
        self.rt("delete", "-f", self.name, check=False)

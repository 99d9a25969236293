"""Helpers for the cryo test suite: run cryo, start workloads, snapshot what
/proc shows of a process, and clean up by pid.

Conventions of the self-verifying programs in test/progs/ (see prog.h): they
write to stdout (a log file opened by the harness, shared with stderr),
print a line starting with READY once their state is built, and on SIGUSR1
verify everything and print PASS or FAIL: <reason>, then exit 0 or 1.
"""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# CRYO_BIN: another build of cryo to run the suite with (make asan's)
CRYO = Path(os.environ.get("CRYO_BIN") or ROOT / "build" / "cryo")
PROGS = ROOT / "build" / "progs"
NOBODY = 65534


class CryoError(AssertionError):
    pass


def cryo(*args, check=True, timeout=120, **kw):
    """Run build/cryo; with check, fail with its stderr and log tail."""
    r = subprocess.run([str(CRYO), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise CryoError(f"cryo {' '.join(map(str, args))} exited {r.returncode}\n"
                        f"stderr:\n{r.stderr}{log_tail(args)}")
    return r


def write_secret(path, text=None):
    """A page-server secret file as cryo wants one: mode 0600 (random, unless text)."""
    path = Path(path)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text if text is not None else os.urandom(24).hex() + "\n")
    return path


def one_line_error(r, *words):
    """r failed with one line on stderr naming each of words; returns it."""
    assert r.returncode != 0, f"cryo succeeded where it should have failed:\n{r.stdout}"
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{r.stderr}"
    assert lines[0].startswith("cryo: "), lines[0]
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    return lines[0]


def restore_fails(images, pid, *words):
    """A restore that must fail with one clear line, leaving no process."""
    r = cryo("restore", "-D", images, "-d", check=False)
    line = one_line_error(r, *words)
    time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}"), f"pid {pid} left behind by a failed restore"
    return line


def log_tail(args, lines=30):
    """The end of the -o log of a cryo command line, if there is one."""
    args = list(map(str, args))
    try:
        log = args[args.index("-o") + 1]
        d = args[args.index("-D") + 1]
    except (ValueError, IndexError):
        return ""
    path = Path(log) if log.startswith("/") else Path(d) / log
    if not path.exists():
        return ""
    return f"\n{path} (tail):\n" + "\n".join(path.read_text().splitlines()[-lines:])


def dump(pid, images, *extra):
    return cryo("dump", "-t", pid, "-D", images, "-o", "dump.log", "-v4", *extra)


def restore(images, *extra):
    return cryo("restore", "-D", images, "-d", "-o", "restore.log", "-v4", *extra)


def show(path):
    return json.loads(cryo("show", path).stdout)


def images_by_kind(images):
    """{'core': record, 'mm': record, ...} of a single-process dump."""
    out = {}
    for img in show(images)["images"]:
        kind = img["file"].split("-")[0].split(".")[0]
        recs = img.get("records")
        out[kind] = recs[0] if recs and kind in ("core", "mm", "inventory") else recs
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def wait_pid(pid, timeout=30):
    """Wait for a child (or a re-parented restored process) to exit; returns
    the exit code as os.waitstatus_to_exitcode gives it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} did not exit within {timeout}s")


def kill_and_reap(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    try:
        wait_pid(pid, 10)
    except ChildProcessError:
        pass


class Workload:
    """A program under test, started so that cryo can dump it: its own
    session, stdin from /dev/null, stdout and stderr to one log file, no
    other inherited fds."""

    def __init__(self, tmp_path, argv, user=None, cwd=None, env=None):
        self.argv = [str(a) for a in argv]
        self.dir = Path(tmp_path)
        self.log = self.dir / "prog.log"
        self.cwd = Path(cwd) if cwd else self.dir
        self.user = user
        self.env = env
        self.proc = None
        self.pid = None
        self.ready = {}
        self.restored = False   # the pid now belongs to a restored process

    def start(self):
        if self.user is not None:
            for p in (self.dir, self.cwd):
                os.chown(p, self.user, self.user)
        with open(self.log, "w") as log:
            if self.user is not None:
                os.chown(self.log, self.user, self.user)
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.cwd, start_new_session=True, close_fds=True, env=self.env,
                user=self.user, group=self.user, extra_groups=[] if self.user is not None else None)
        self.pid = self.proc.pid
        return self

    def output(self):
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith("READY") and self.stdout_settled():
                    self.ready = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
                    return self.ready
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.argv[0]} exited with {self.proc.returncode} before READY:\n"
                                     f"{self.output()}")
            time.sleep(0.02)
        raise AssertionError(f"{self.argv[0]} not READY after {timeout}s:\n{self.output()}")

    def wait_exec_settled(self, timeout=10):
        """For stock programs, which print no READY: wait until the program
        has exec'ed (its comm is its name) and its address space has stopped
        changing (the dynamic loader and start-up are done)."""
        name = Path(self.argv[0]).name[:15]
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                comm = Path(f"/proc/{self.pid}/comm").read_text().strip()
                maps = Path(f"/proc/{self.pid}/maps").read_text()
            except FileNotFoundError:
                raise AssertionError(f"{self.argv[0]} exited during start-up:\n{self.output()}")
            if comm == name and maps == last:
                return
            last = maps if comm == name else None
            time.sleep(0.1)
        raise AssertionError(f"{self.argv[0]} did not settle after {timeout}s")

    def stdout_settled(self):
        """Has the write of what the log shows returned? Its bytes are in
        the file a moment before the kernel moves the writer's offset, and a
        snapshot taken in between would see an offset that is about to
        change."""
        try:
            info = Path(f"/proc/{self.pid}/fdinfo/1").read_text()
        except FileNotFoundError:
            return True
        pos = int(info.split("pos:", 1)[1].split()[0])
        return pos == self.log.stat().st_size

    def reap_dumped(self):
        """After a dump without --leave-running the original was killed."""
        self.proc.wait(timeout=10)
        assert self.proc.returncode == -signal.SIGKILL, \
            f"the dumped process exited with {self.proc.returncode}, not SIGKILL"

    def trigger(self, timeout=30):
        """SIGUSR1: the program checks itself and exits; (exit code, output)."""
        os.kill(self.pid, signal.SIGUSR1)
        code = wait_pid(self.pid, timeout) if self.restored else self.proc.wait(timeout=timeout)
        return code, self.output()

    def verify(self, timeout=30):
        """Assert the program passed its own checks."""
        code, out = self.trigger(timeout)
        assert code == 0 and "PASS" in out, f"{self.argv[0]} exit {code}:\n{out}"
        return out

    def verify_fails(self, *words, timeout=30):
        """A program that was tampered with: its checks must catch it."""
        code, out = self.trigger(timeout)
        assert code == 1 and "PASS" not in out, f"{self.argv[0]} exit {code}, not a failure:\n{out}"
        for word in words:
            assert word in out, f"{self.argv[0]} did not report {word!r}:\n{out}"
        return out

    def cleanup(self):
        # the processes it started: they come to us (subreaper) and are reaped
        below = [p for p in descendants(self.pid) if p != self.pid] if self.pid else []
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.pid and alive(self.pid):
            kill_and_reap(self.pid)
        elif self.proc and self.proc.returncode is None:
            try:
                self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        # a restored process is our child (subreaper) only after cryo exits
        if self.pid:
            try:
                os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if below:
            reap_orphans(below)


def descendants(pid):
    """pid and every process below it, parents first."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        out.append(p)
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
            except FileNotFoundError:
                pass
    return out


def tree_pids(images):
    """Every pid of a dump, the root first."""
    return [e["pid"] for e in show(Path(images) / "pstree.img")["records"]]


def reap_orphans(pids, timeout=10):
    """The other processes of a killed tree come to us (we are a child
    subreaper) once their parents are gone: reap them, so that their pids
    are free again."""
    left = set(pids)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    left.discard(pid)
            except ChildProcessError:
                if not os.path.exists(f"/proc/{pid}"):
                    left.discard(pid)
        time.sleep(0.01)
    assert not left, f"pids {sorted(left)} of the dumped tree are still there"


def checkpoint(w, images, *dump_args):
    """Dump w (and its tree), which the dump kills; reap them all."""
    dump(w.pid, images, *dump_args)
    w.reap_dumped()
    reap_orphans(tree_pids(images)[1:])
    assert not alive(w.pid)


def checkpoint_restore(w, images, dump_args=(), restore_args=()):
    """Dump w (killing it), restore it, check the pid is back."""
    checkpoint(w, images, *dump_args)
    restore(images, *restore_args)
    w.restored = True
    assert alive(w.pid), f"pid {w.pid} is not running after restore"


# ---- what /proc shows of a process, to compare before and after ----

STATUS_KEYS = ("Umask", "State", "Uid", "Gid", "Groups", "NoNewPrivs", "Seccomp", "SigBlk",
               "SigIgn", "SigCgt", "SigPnd", "ShdPnd", "CapInh", "CapPrm", "CapEff", "CapBnd",
               "CapAmb", "Cpus_allowed_list", "THP_enabled", "Threads")


def normal_maps_line(line):
    """Shared anonymous memory and memfds live in new shmem inodes after a
    restore (the kernel numbers them): compare such lines without the inode."""
    if line.endswith("/dev/zero (deleted)") or " /memfd:" in line:
        f = line.split()
        return " ".join(f[:4] + ["(shmem)"] + f[5:])
    return line


def snapshot(pid):
    p = Path(f"/proc/{pid}")
    status = {}
    for line in (p / "status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in STATUS_KEYS:
            status[k] = v.strip()
    # running and sleeping alternate all the time; stopped, traced or zombie do not
    if status["State"][0] in "RS":
        status["State"] = "R or S"
    fds, pipes = {}, {}
    for fd in sorted((p / "fd").iterdir(), key=lambda x: int(x.name)):
        info = dict(l.split(":", 1) for l in (p / "fdinfo" / fd.name).read_text().splitlines()
                    if ":" in l)
        link = os.readlink(fd)
        if link.startswith("pipe:["):
            # a restored pipe is a new inode: compare which fds share one
            link = f"pipe #{pipes.setdefault(link, len(pipes))}"
        fds[int(fd.name)] = (link, info["pos"].strip(), info["flags"].strip())
    return {
        "maps": [normal_maps_line(l) for l in (p / "maps").read_text().splitlines()],
        "status": status,
        "limits": (p / "limits").read_text(),
        "cmdline": (p / "cmdline").read_bytes(),
        "environ": (p / "environ").read_bytes(),
        "comm": (p / "comm").read_text(),
        "cwd": os.readlink(p / "cwd"),
        "exe": os.readlink(p / "exe"),
        "personality": (p / "personality").read_text(),
        "fds": fds,
    }


def assert_same_process(before, pid, ignore=(), settle=2.0):
    """Everything snapshot() saw of pid must be as before, field by field.
    A process just let go by ptrace runs for a moment before it is back in
    its sleep, so the comparison is retried for up to `settle` seconds."""
    deadline = time.monotonic() + settle
    while True:
        try:
            return compare_snapshots(before, snapshot(pid), ignore)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def compare_snapshots(before, after, ignore=()):
    for key in before:
        if key in ignore:
            continue
        if key == "status":
            for k in before[key]:
                if k in ignore:
                    continue
                assert before[key][k] == after[key].get(k), \
                    f"/proc status {k}: {before[key][k]!r} before, {after[key].get(k)!r} after"
        elif key == "maps":
            assert before[key] == after[key], "maps differ:\n" + "\n".join(
                f"-{a}\n+{b}" for a, b in zip(before[key], after[key]) if a != b)
        else:
            assert before[key] == after[key], f"{key}: {before[key]!r} before, {after[key]!r} after"


def start_with_pid(pid, argv):
    """Start argv with exactly this pid (through ns_last_pid; retried, as
    other forks on the machine may take it first). Returns the pid."""
    for _ in range(50):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        if p.pid == pid:
            return pid
        p.kill()
        p.wait()
    raise AssertionError(f"could not start a process with pid {pid}")


def nft_tables():
    """The names of the nftables tables of this network namespace, asked
    of the kernel (NFT_MSG_GETTABLE dump over NETLINK_NETFILTER)."""
    import socket as so
    import struct
    s = so.socket(so.AF_NETLINK, so.SOCK_RAW, 12)   # NETLINK_NETFILTER
    msg_type = (10 << 8) | 1                           # NFNL_SUBSYS_NFTABLES, NFT_MSG_GETTABLE
    req = struct.pack("=IHHII", 20, msg_type, 0x301, 1, 0) + struct.pack("=BBH", 0, 0, 0)
    s.send(req)
    names, done = [], False
    while not done:
        buf = s.recv(65536)
        off = 0
        while off + 16 <= len(buf):
            ln, typ = struct.unpack_from("=IH", buf, off)
            if typ in (2, 3):                          # NLMSG_ERROR, NLMSG_DONE
                done = True
                break
            a = off + 20                               # after nlmsghdr and nfgenmsg
            while a + 4 <= off + ln:
                alen, atype = struct.unpack_from("=HH", buf, a)
                if atype & 0x7fff == 1:                # NFTA_TABLE_NAME
                    names.append(buf[a + 4:a + alen].rstrip(b"\0").decode())
                a += (alen + 3) & ~3
            off += (ln + 3) & ~3
    s.close()
    return names

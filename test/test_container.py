"""Containers (scripts/container): the whole container is frozen through its
cgroup, dumped with its namespaces and restored with the same shape: pids
inside and outside, host name, mount tree, tmpfs and overlay files, cgroups
with their limits, and services that carry on from their state."""
import difflib
import os
import re
import subprocess
import time
import urllib.request

import pytest

from cryolib import ROOT, cryo, dump, one_line_error, restore
from cryolib import show as cryolib_show

CONTAINER = ROOT / "scripts" / "container"
CGROOT = "/sys/fs/cgroup"


class Container:
    def __init__(self, kind, name, ip=66, userns=False):
        self.kind, self.name, self.ip, self.userns = kind, name, ip, userns
        self.dir = ROOT / "build" / "ct" / name
        r = subprocess.run([str(CONTAINER), "start", kind, name, "--ip", str(ip)] + ["--userns"] * userns,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"container start failed:\n{r.stderr}"
        self.pid = int(r.stdout.split()[-1])

    def sh(self, script):
        """Run a busybox shell script inside the container; its stdout."""
        r = subprocess.run(["nsenter", "-t", str(self.pid)] + ["-U"] * self.userns +
                           ["-p", "-m", "-u", "-i", "-n", "-C", "-T", "-r", "-w", "/bin/sh", "-c", script],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"in the container: {script!r} failed:\n{r.stderr}"
        return r.stdout

    def stop(self):
        subprocess.run([str(CONTAINER), "stop", self.name], capture_output=True, timeout=60)

    def snapshot(self):
        """What must read the same inside before and after."""
        ps = self.sh("ps -o pid,comm,args | grep -v ' ps \\| sh -c '")
        mounts = [re.sub(r"^\d+ \d+ \d+:\d+ ", "", l) for l in self.sh("cat /proc/self/mountinfo").splitlines()]
        # peer group numbers are the kernel's: the same groups, numbered in order
        groups = {}
        mounts = [re.sub(r"shared:(\d+)", lambda g: "shared:%d" % groups.setdefault(g[1], len(groups)), l)
                  for l in mounts]
        return {
            # the counter loop's sleep and mv come and go, and so do its shell's forks on their
            # way to them or out (no cmdline yet or any more: [sh])
            "ps": sorted(l for l in ps.splitlines()
                         if not any(w in l for w in ("sleep", "[exe]", "{mv}", " mv ", "[sh]"))),
            "hostname": self.sh("hostname").strip(),
            "domainname": self.sh("cat /proc/sys/kernel/domainname").strip(),
            "mountinfo": mounts,
            "cgroup": self.sh("cat /proc/1/cgroup"),
            "ip": self.sh("ip addr show lo | grep inet"),
        }

    def host_view(self):
        """The pids the host sees and the container's cgroup limits."""
        nspid = open(f"/proc/{self.pid}/status").read().split("NSpid:")[1].split("\n")[0].split()
        limits = {}
        for f in ("memory/cryo/%s/memory.limit_in_bytes", "pids/cryo/%s/pids.max",
                  "cpu/cryo/%s/cpu.shares", "cpu/cryo/%s/cpu.cfs_quota_us"):
            limits[f] = open(f"{CGROOT}/{f % self.name}").read().strip()
        cg = open(f"/proc/{self.pid}/cgroup").read()
        offsets = open(f"/proc/{self.pid}/timens_offsets").read()
        assert "86400" in offsets, offsets
        status = open(f"/proc/{self.pid}/status").read()
        ids = [l for l in status.splitlines() if l.startswith(("Uid:", "Gid:"))]
        maps = open(f"/proc/{self.pid}/uid_map").read() + open(f"/proc/{self.pid}/gid_map").read()
        return {"nspid": nspid, "limits": limits, "cgroup": cg, "timens_offsets": offsets, "ids": ids,
                "maps": maps}


@pytest.fixture
def container():
    made = []

    def start(kind, name, ip=66, userns=False):
        c = Container(kind, name, ip, userns)
        made.append(c)
        return c

    yield start
    for c in made:
        c.stop()


def wait_gone(pid, timeout=10):
    end = time.time() + timeout
    while os.path.exists(f"/proc/{pid}") and time.time() < end:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), f"pid {pid} still there after the dump"


def read_counter(c):
    return int((c.dir / "upper" / "data" / "counter").read_text())


def os_counter(c):
    """The OS container's counter file, which its shell renames into place."""
    text = (c.dir / "rootfs" / "var" / "counter").read_text().strip()
    assert text, "the OS container's counter file is empty"
    return int(text)


def os_state(c):
    """The OS container's shape, read inside it: what must not change."""
    s = c.snapshot()
    s["ip"] = re.sub(r"@if\d+", "@ifN", c.sh("ip addr; ip route; ip -6 route"))
    s["sysctl"] = c.sh("cat /proc/sys/net/ipv4/ip_forward")
    s["ipc"] = c.sh("/bin/ct-ipc show; cat /proc/sysvipc/shm /proc/sysvipc/msg /proc/sysvipc/sem | "
                    "awk '{print $1, $2, $3, $4}'")
    # /dev without times: the mounts made again at restore (mqueue, pts) are newer
    s["files"] = c.sh("cat /run/note /run/boot-note /shared/hello; ls -l /dev | cut -c1-10,35- | "
                      "sed -E 's/[A-Z][a-z]{2} +[0-9]+ +[0-9:]+ //'")
    return s


def settle_dad(c):
    """A new veth does IPv6 duplicate address detection for its link-local address first."""
    for _ in range(50):
        if "tentative" not in c.sh("ip -6 addr"):
            return
        time.sleep(0.1)


def http_get(url):
    return urllib.request.urlopen(url, timeout=5).read().decode()


def shm_counter(c):
    """The word ct-ipc keeps bumping in its SysV segment: it must still be the segment's."""
    return int(c.sh("/bin/ct-ipc counter"))


@pytest.mark.parametrize("userns", [False, True], ids=["privileged", "unprivileged"])
def test_app_container(container, images, userns):
    """The application container: one process on an overlay root, in its own
    pid, mount, UTS, IPC, network, cgroup and time namespaces (and user
    namespace, unprivileged)."""
    name = "ctuapp" if userns else "ctapp"
    c = container("app", name, userns=userns)
    time.sleep(0.5)
    before, host_before = c.snapshot(), c.host_view()
    assert before["hostname"] == f"app-{name}"
    dump(c.pid, images)
    wait_gone(c.pid)
    # the dump of a frozen container left the freezer thawed
    assert open(f"{CGROOT}/freezer/cryo/{name}/freezer.state").read().strip() == "THAWED"
    counted = read_counter(c)
    time.sleep(0.3)
    assert read_counter(c) == counted, "the counter moved while the container was dumped"
    restore(images)
    time.sleep(0.5)
    after, host_after = c.snapshot(), c.host_view()
    assert after == before
    assert host_after == host_before
    assert host_after["nspid"][1] == "1"
    # the counter carries on from its memory, not from 1
    now = read_counter(c)
    assert counted < now < counted + 30, (counted, now)
    log = [list(map(int, l.split())) for l in (c.dir / "upper" / "data" / "log").read_text().splitlines()]
    counts = [n for n, _ in log]
    assert counts == list(range(10, 10 * len(log) + 1, 10)), "the counter's log has a gap or restarted"
    # its clock, read through the vDSO, runs in its time namespace (a day ahead) before and after
    host_mono = time.clock_gettime(time.CLOCK_MONOTONIC)
    monos = [m for _, m in log]
    assert all(host_mono + 86400 - 600 < m <= host_mono + 86400 + 1 for m in monos), (host_mono, monos)
    assert monos == sorted(monos)
    # files in the overlay's upper layer and in a tmpfs are intact
    assert c.sh("cat /data/upper-note /data/layer-note /run/note") == \
        f"written in the upper layer\nfrom the second layer\ntmpfs file of {name}\n"
    assert c.sh("ls -l /dev/null /dev/zero | cut -c1-10") == "crw-rw-rw-\ncrw-rw-rw-\n"


def test_container_dump_by_cgroup(container, images):
    """--cgroup DIR finds the container's init; --leave-running keeps it going."""
    c = container("app", "ctcg")
    time.sleep(0.3)
    cryo("dump", "--cgroup", f"{CGROOT}/memory/cryo/ctcg", "-D", images, "-R", "-o", "dump.log", "-v4")
    assert os.path.exists(f"/proc/{c.pid}")
    assert open(f"{CGROOT}/freezer/cryo/ctcg/freezer.state").read().strip() == "THAWED"
    n = read_counter(c)
    time.sleep(0.3)
    assert read_counter(c) > n, "the container does not run after a --leave-running dump"
    ps = cryo("show", images / "pstree.img").stdout
    assert f'"host_pid": {c.pid}' in ps and '"pid": 1,' in ps


def test_container_unsupported_mount(container, images):
    """A mount cryo cannot keep fails the dump with its name and type; the
    container goes on, thawed."""
    c = container("app", "ctbad")
    c.sh("mkdir -p /mnt/r && mount -t ramfs ramfs /mnt/r")
    r = cryo("dump", "-t", c.pid, "-D", images, check=False)
    one_line_error(r, "/mnt/r", "ramfs", "not supported")
    assert open(f"{CGROOT}/freezer/cryo/ctbad/freezer.state").read().strip() == "THAWED"
    n = read_counter(c)
    time.sleep(0.3)
    assert read_counter(c) > n, "the container does not run after the failed dump"
    assert not (images / "inventory.img").exists()


def test_container_missing_layer(container, images):
    """A restore whose overlay layer or bind source is gone names it, and
    leaves no task and no cgroup behind."""
    c = container("app", "ctgone")
    time.sleep(0.3)
    dump(c.pid, images)
    wait_gone(c.pid)
    layer = c.dir / "layer2"
    layer.rename(c.dir / "layer2.away")
    try:
        r = cryo("restore", "-D", images, "-d", check=False)
        one_line_error(r, "layer2")
        time.sleep(0.2)
        assert not os.path.exists(f"/proc/{c.pid}")
    finally:
        (c.dir / "layer2.away").rename(layer)
    restore(images)
    time.sleep(0.3)
    assert c.sh("cat /data/layer-note") == "from the second layer\n"


@pytest.mark.parametrize("userns", [False, True], ids=["privileged", "unprivileged"])
def test_os_container(container, images, userns):
    """The OS container: busybox init and its services (a counter loop, httpd,
    SysV and POSIX IPC), a veth on the host bridge with IPv4 and IPv6, tmpfs
    and bind mounts, cgroup limits. Unprivileged: the same in a user
    namespace whose root is host uid 100000, its /dev nodes bind-mounted
    from the host."""
    c = container("os", "ctuos" if userns else "ctos", ip=67 if userns else 66, userns=userns)
    time.sleep(1.5)
    page = http_get(f"http://10.77.0.{c.ip}/")
    settle_dad(c)
    before, host_before = os_state(c), c.host_view()
    assert any(" /peer " in l and "shared:" in l for l in before["mountinfo"])
    assert "eth0" in before["ip"] and f"10.77.0.{c.ip}/24" in before["ip"] and "default via 10.77.0.1" in before["ip"]
    shm_before = shm_counter(c)
    dump(c.pid, images)
    wait_gone(c.pid)
    last = os_counter(c)
    restore(images)
    time.sleep(0.5)
    settle_dad(c)
    after, host_after = os_state(c), c.host_view()
    for k in before:
        assert after[k] == before[k], f"{k} differs:\n" + "\n".join(
            difflib.unified_diff(before[k].splitlines() if isinstance(before[k], str) else before[k],
                                 after[k].splitlines() if isinstance(after[k], str) else after[k]))
    assert host_after == host_before
    if userns:
        assert host_after["ids"][0].split()[1:] == ["100000"] * 4, host_after["ids"]
        assert host_after["maps"].split() == ["0", "100000", "65536"] * 2
    # the services carry on from their state: the counter from its shell variable
    now = os_counter(c)
    assert last < now < last + 20, (last, now)
    time.sleep(0.5)
    assert os_counter(c) > now
    # ct-ipc writes into the very segment the IPC namespace has
    s1 = shm_counter(c)
    time.sleep(0.3)
    assert shm_before <= s1 < shm_counter(c)
    # httpd serves the same page at the same addresses, from the host
    assert http_get(f"http://10.77.0.{c.ip}/") == page
    assert http_get(f"http://[fd77::{c.ip}]/") == page


def test_process_frozen_through_cgroup_v2(workload, images):
    """A process in a cgroup v2 of its own (and in no v1 freezer cgroup of
    its own) is frozen through cgroup.freeze for the dump, thawed after."""
    v2 = f"{CGROOT}/unified"
    if not os.path.exists(f"{v2}/cgroup.procs"):
        pytest.skip("no cgroup v2 hierarchy")
    cg = f"{v2}/cryo-test-{os.getpid()}"
    os.makedirs(cg, exist_ok=True)
    try:
        w = workload(["/bin/sleep", "1000"])
        time.sleep(0.2)
        open(f"{cg}/cgroup.procs", "w").write(str(w.pid))
        cryo("dump", "-t", w.pid, "-D", images, "-R", "-o", "dump.log", "-v4")
        log = (images / "dump.log").read_text()
        assert f"froze cgroup {cg}" in log and f"thawed cgroup {cg}" in log, log[-2000:]
        assert open(f"{cg}/cgroup.freeze").read().strip() == "0"
        assert "frozen 0" in open(f"{cg}/cgroup.events").read()
        assert os.path.exists(f"/proc/{w.pid}")
    finally:
        for p in open(f"{cg}/cgroup.procs").read().split():
            open(f"{v2}/cgroup.procs", "w").write(p)
        os.rmdir(cg)


def test_tcp_client_on_host_carries_on(container, images):
    """A client on the host streams numbered lines to the OS container's
    echo service (nc -e cat) while the container is checkpointed and
    restored: the connection is never reset, and every line comes back
    exactly once, in order, including those in flight at the checkpoint."""
    import select
    import socket
    import threading
    c = container("os", "cttcp", ip=68)
    time.sleep(1.5)
    s = socket.create_connection(("10.77.0.68", 7000), timeout=20)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(None)
    state = {"sent": 0, "got": 0, "error": None, "stop": False, "deadline": time.monotonic() + 60}

    def writer():
        try:
            while not state["stop"]:
                state["sent"] += 1
                s.sendall(b"%d\n" % state["sent"])
                time.sleep(0.002)
        except OSError as e:
            state["error"] = f"send: {e}"

    def reader():
        buf = b""
        try:
            while state["got"] < state["sent"] or not state["stop"]:
                if not select.select([s], [], [], 0.2)[0]:
                    if time.monotonic() > state["deadline"]:
                        state["error"] = "the echo stopped coming"
                        return
                    continue
                data = s.recv(65536)
                if not data:
                    state["error"] = "the container closed the connection"
                    return
                buf += data
                *lines, buf = buf.split(b"\n")
                for l in lines:
                    if int(l) != state["got"] + 1:
                        state["error"] = f"got line {int(l)} after {state['got']}"
                        return
                    state["got"] += 1
        except OSError as e:
            state["error"] = f"recv: {e}"

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    time.sleep(1)
    dump(c.pid, images, "--tcp-established")
    at_dump = state["got"]
    wait_gone(c.pid)
    restore(images)
    t_restored, got_restored = time.monotonic(), state["got"]
    while state["got"] == got_restored and time.monotonic() < t_restored + 30:
        time.sleep(0.01)
    assert state["got"] > got_restored, "no echo within 30 s of the restore"
    time.sleep(2)
    state["stop"] = True
    threads[0].join(10)
    threads[1].join(20)
    s.close()
    assert state["error"] is None, state
    assert state["got"] == state["sent"], state
    assert state["got"] > at_dump + 100, (at_dump, state)
    conns = [e["inet_sk"]["tcp"] for e in cryolib_show(images / "files.img")["records"]
             if e["kind"] == "INET_SK" and "tcp" in e["inet_sk"]]
    assert conns, "no established connection in the images"


def test_udp_client_on_host_carries_on(container, images):
    """A client on the host asks the OS container's UDP echo service over and
    over while it is checkpointed and restored: answers may be missing while
    it is frozen, never wrong, and they come again after the restore."""
    import socket
    c = container("os", "ctudp", ip=69)
    time.sleep(1.5)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(0.05)
    answered, wrong = [], []

    def ask(n):
        u.sendto(b"req %d" % n, ("10.77.0.69", 7001))
        try:
            while True:
                data = u.recv(2048)
                if data == b"echo req %d" % n:
                    answered.append(n)
                    return
                if not re.fullmatch(rb"echo req \d+", data):
                    wrong.append(data)
        except socket.timeout:
            pass

    n = 0
    for _ in range(40):
        n += 1
        ask(n)
    before = len(answered)
    dump(c.pid, images)
    wait_gone(c.pid)
    for _ in range(5):
        n += 1
        ask(n)
    restore(images)
    at_restore = n
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not [a for a in answered if a > at_restore]:
        n += 1
        ask(n)
    for _ in range(20):
        n += 1
        ask(n)
    u.close()
    assert not wrong, wrong
    assert before >= 35, f"only {before} of 40 answered before the checkpoint"
    after = [a for a in answered if a > at_restore]
    assert len(after) >= 18, f"only {len(after)} answers after the restore"


def test_leave_running_unlocks_the_network(container, images):
    """A --leave-running dump of a container with a TCP client from the host:
    the connection goes on afterwards (out of repair mode, the network lock
    released), the container is thawed."""
    import socket
    c = container("os", "ctlr", ip=70)
    time.sleep(1.5)
    s = socket.create_connection(("10.77.0.70", 7000), timeout=5)
    s.sendall(b"before\n")
    assert s.recv(100) == b"before\n"
    dump(c.pid, images, "-R", "--tcp-established")
    s.sendall(b"after\n")
    assert s.recv(100) == b"after\n"
    s.close()
    assert open(f"{CGROOT}/freezer/cryo/ctlr/freezer.state").read().strip() == "THAWED"
    assert "UP" in subprocess.run(["ip", "-br", "link", "show", "cvctlr"], capture_output=True,
                                  text=True).stdout


def test_external_veth(container, images):
    """--external veth[eth0]:HOST@BRIDGE, what LXC passes at restore: the
    container's veth gets its host end under the new name, in the bridge
    named, and the container answers through it as before. A veth the
    container lacks, or a bridge the host lacks, is refused by name and
    nothing is left; at dump the option is refused."""
    c = container("os", "ctveth", ip=70)
    time.sleep(1.5)
    page = http_get(f"http://10.77.0.{c.ip}/")
    old = subprocess.run(["ip", "-o", "link", "show", "master", "cryobr0"], capture_output=True,
                         text=True).stdout
    assert "cvctveth" in old, old
    host = f"cvx{os.getpid() % 100000}"
    one_line_error(cryo("dump", "-t", c.pid, "-D", images, "--external", f"veth[eth0]:{host}", check=False),
                   f"veth[eth0]:{host}", "restore")
    dump(c.pid, images)
    wait_gone(c.pid)
    for bad, words in ((f"veth[eth9]:{host}@cryobr0", ("eth9",)),
                       (f"veth[eth0]:{host}@nosuchbr", ("nosuchbr", "missing"))):
        one_line_error(cryo("restore", "-D", images, "-d", "--external", bad, check=False), *words)
        assert not os.path.exists(f"/proc/{c.pid}")
        assert subprocess.run(["ip", "link", "show", host], capture_output=True).returncode != 0
    restore(images, "--external", f"veth[eth0]:{host}@cryobr0")
    link = subprocess.run(["ip", "-o", "link", "show", host], capture_output=True, text=True).stdout
    assert "master cryobr0" in link, link
    assert subprocess.run(["ip", "link", "show", "cvctveth"], capture_output=True).returncode != 0
    assert http_get(f"http://10.77.0.{c.ip}/") == page


def test_frozen_cgroup_v2_left_frozen(workload, images):
    """A process in a cgroup v2 frozen by its owner (cgroup.freeze 1): the
    dump takes it as it is and --leave-running leaves it frozen; unfrozen,
    it carries on."""
    v2 = f"{CGROOT}/unified"
    if not os.path.exists(f"{v2}/cgroup.procs"):
        pytest.skip("no cgroup v2 hierarchy")
    cg = f"{v2}/cryo-test-frozen-{os.getpid()}"
    os.makedirs(cg, exist_ok=True)
    try:
        # in the cgroup before its first child
        w = workload(["/bin/sh", "-c", f"echo $$ >{cg}/cgroup.procs; n=0; while :; do n=$((n + 1)); "
                      "echo $n >count.new; mv count.new count; sleep 0.1; done"])
        count = w.dir / "count"
        while not count.exists():
            time.sleep(0.05)
        open(f"{cg}/cgroup.freeze", "w").write("1")
        deadline = time.monotonic() + 10
        while "frozen 1" not in open(f"{cg}/cgroup.events").read():
            assert time.monotonic() < deadline, "the cgroup did not freeze"
            time.sleep(0.01)
        n = int(count.read_text())
        cryo("dump", "-t", w.pid, "-D", images, "-R", "-o", "dump.log", "-v4")
        log = (images / "dump.log").read_text()
        assert f"cgroup {cg} is frozen already" in log, log[-2000:]
        assert "frozen 1" in open(f"{cg}/cgroup.events").read()
        time.sleep(0.4)
        assert int(count.read_text()) == n, "the frozen process ran after the dump"
        open(f"{cg}/cgroup.freeze", "w").write("0")
        deadline = time.monotonic() + 10
        while int(count.read_text() or 0) <= n:
            assert time.monotonic() < deadline, "the process did not go on once unfrozen"
            time.sleep(0.05)
    finally:
        for p in open(f"{cg}/cgroup.procs").read().split():
            open(f"{v2}/cgroup.procs", "w").write(p)
        os.rmdir(cg)

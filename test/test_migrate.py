"""Live migration between two hosts made on this machine (scripts/hosts:
each a pid, network, mount and cgroup namespace with a bridge; a veth
joins the bridges). cryo migrate runs on host a, cryo migrate-agent on
host b. What moves is checked on b by the workload itself (every page of
progs/dirty against its write counter; the OS container's counter, web
server and a TCP stream held through the move), and every failure must
leave the source running as it was, and nothing on b."""
import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from cryolib import CRYO, PROGS, ROOT, write_secret

HOSTS = ROOT / "scripts" / "hosts"
HOSTS_DIR = ROOT / "build" / "hosts"
CONTAINER = ROOT / "scripts" / "container"
CLONE_NEWNET = 0x40000000


def on(host, *argv, check=True, timeout=120):
    r = subprocess.run([str(HOSTS), "run", host, *map(str, argv)], capture_output=True, text=True,
                       timeout=timeout)
    if check:
        assert r.returncode == 0, f"on {host}: {argv} exited {r.returncode}:\n{r.stdout}{r.stderr}"
    return r


def on_host_pid(p):
    """What a `hosts run` Popen runs: nsenter's child (in the host's pid namespace), its machine pid."""
    return int(open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()[0])


def alive(host, pid):
    r = on(host, "cat", f"/proc/{pid}/stat", check=False)
    return r.returncode == 0 and r.stdout.split()[2] != "Z"


@pytest.fixture(scope="module")
def hosts():
    subprocess.run([str(HOSTS), "up"], check=True)
    yield
    subprocess.run([str(HOSTS), "down"], check=True)


@pytest.fixture
def secret(tmp_path):
    return write_secret(tmp_path / "secret")


class Agent:
    """cryo migrate-agent on host b, a fresh one (and port) per test."""
    port = 7400

    def __init__(self, tmp_path, secret):
        Agent.port += 1
        self.port = Agent.port
        self.log = tmp_path / "agent.log"
        self.p = subprocess.Popen([str(HOSTS), "run", "b", str(CRYO), "migrate-agent", "--port", str(self.port),
                                   "-D", str(HOSTS_DIR / "img"), "--secret-file", str(secret), "-o",
                                   str(self.log), "-v4"], stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        assert "listening" in line, f"the agent did not start: {line!r}"

    def machine_pid(self):
        """The agent itself: nsenter's child, in host b's pid namespace."""
        return on_host_pid(self.p)

    def kill(self):
        if self.p.poll() is None:
            with contextlib.suppress(Exception):
                os.kill(self.machine_pid(), 9)
            self.p.wait(timeout=10)


@pytest.fixture
def agent(hosts, tmp_path, secret):
    a = Agent(tmp_path, secret)
    yield a
    a.kill()


def migrate(target, pid, secret, *extra, check=True, timeout=300):
    r = on("a", CRYO, "migrate", "-t", pid, "--to", f"10.77.0.254:{target.port}", "--secret-file", secret,
           "--json", *extra, check=False, timeout=timeout)
    try:
        res = json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"cryo migrate printed no JSON:\n{r.stdout}\n{r.stderr}")
    if check:
        assert r.returncode == 0 and res["result"] == "migrated", f"migration failed:\n{r.stderr}"
    return res, r


class Dirty:
    """progs/dirty on host a: pages rewritten at RATE MiB/s, each checked later."""

    def __init__(self, tmp_path, mib, rate, argv=None):
        self.out = tmp_path / "dirty.out"
        pidfile = tmp_path / "dirty.pid"
        argv = argv or [PROGS / "dirty", mib, rate]
        self.p = subprocess.Popen([str(HOSTS), "run", "a", "sh", "-c", 'echo $$ >"$0"; exec setsid "$@"',
                                   str(pidfile), *map(str, argv)],
                                  stdout=open(self.out, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "READY" not in self.out.read_text():
            assert time.monotonic() < deadline and self.p.poll() is None, self.out.read_text()
            time.sleep(0.1)
        self.pid = int(pidfile.read_text())
        self.host = "a"

    def fds(self):
        return sorted(on(self.host, "ls", f"/proc/{self.pid}/fd").stdout.split())

    def verify(self, host):
        """Its own check of every page, run where it is now."""
        on(host, "kill", "-USR1", self.pid)
        deadline = time.monotonic() + 60
        while not any(w in self.out.read_text() for w in ("PASS", "FAIL")):
            assert time.monotonic() < deadline, f"no verdict from progs/dirty:\n{self.out.read_text()}"
            time.sleep(0.1)
        assert "PASS" in self.out.read_text(), self.out.read_text()

    def stop(self):
        for h in ("a", "b"):
            on(h, "kill", "-9", self.pid, check=False)
        with contextlib.suppress(Exception):
            self.p.wait(timeout=10)


def ls_images(host):
    """The image directory of host (its own tmpfs, seen only there)."""
    return on(host, "ls", "-A", HOSTS_DIR / "img").stdout.split()


def images_on_b(timeout=15):
    """What the agent has left in its directory, once it has had time to clean up."""
    deadline = time.monotonic() + timeout
    while (left := ls_images("b")) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def nothing_left_on_b(pid):
    assert not alive("b", pid), f"pid {pid} was left running on the target"
    left = images_on_b()
    assert not left, f"the target kept images of a failed migration: {left}"


def test_precopy_converges(agent, tmp_path, secret):
    """1 GiB rewritten at 200 MiB/s: the rounds shrink until the freeze, the
    source is gone and every page is right on the target."""
    d = Dirty(tmp_path, 1024, 200)
    try:
        res, r = migrate(agent, d.pid, secret)
        print(r.stderr)
        rounds = res["rounds"]
        pre = [x for x in rounds if not x["final"]]
        assert pre[0]["pages"] >= 1024 * 256, "the first round did not copy all the memory"
        # each round after the first sends what was written meanwhile: under
        # all of it (how far under depends on how long the first round took:
        # 200 MiB/s of random writes touch 65% of the pages in 5 s), and
        # less as the rounds get shorter, down to the final one
        assert len(pre) >= 2, f"a single pre-copy round: {rounds}"
        for x in rounds[1:]:
            assert x["pages"] < pre[0]["pages"] * 0.8, f"the rounds did not converge: {rounds}"
        assert rounds[-1]["pages"] < pre[0]["pages"] * 0.65, f"the rounds did not converge: {rounds}"
        assert rounds[-1]["final"]
        assert 0 < res["downtime_ms"] < res["total_ms"]
        assert res["bytes_sent"] >= 1 << 30
        assert res["target_pid"] == d.pid
        assert not alive("a", d.pid), "the source still runs after the migration"
        assert alive("b", d.pid), "the migrated process does not run on the target"
        d.verify("b")
        assert not images_on_b(), "the agent kept the images of a committed migration"
    finally:
        d.stop()


def test_postcopy_while_pages_arrive(agent, tmp_path, secret):
    """--mode postcopy: the tree moves at once and its memory follows, the
    source pushing it (16 MiB/s here) and answering first the pages the
    target touches. While pages still arrive, progs/lazy on b forks, drops
    a range (MADV_DONTNEED), moves one (mremap), unmaps one and checks what
    it reads; once every page is in, the source is gone and it checks all
    its memory."""
    p = Dirty(tmp_path, 0, 0, argv=[PROGS / "lazy", 96])
    mig = None
    try:
        mig = subprocess.Popen([str(HOSTS), "run", "a", str(CRYO), "migrate", "-t", str(p.pid), "--to",
                                f"10.77.0.254:{agent.port}", "--secret-file", str(secret), "--json",
                                "--mode", "postcopy", "--lazy-rate", "16"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not alive("b", p.pid):
            assert time.monotonic() < deadline and mig.poll() is None, mig.communicate()
            time.sleep(0.05)
        on("b", "kill", "-USR1", p.pid)
        while "PHASE1" not in p.out.read_text():
            assert time.monotonic() < deadline, p.out.read_text()
            time.sleep(0.05)
        assert "PHASE1 ok" in p.out.read_text(), p.out.read_text()
        assert mig.poll() is None, "every page was in before the checks: they proved nothing"
        out, err = mig.communicate(timeout=120)
        res = json.loads(out)
        assert mig.returncode == 0 and res["result"] == "migrated", err
        assert res["mode"] == "postcopy" and res["target_pid"] == p.pid
        assert res["postcopy_pushed"] > 0 and res["postcopy_asked"] > 0, res
        # nothing but the rseq pages went before the tree ran
        assert res["rounds"][-1]["pages"] < 64, res
        assert not alive("a", p.pid), "the source still runs after the migration"
        p.verify("b")
        assert not images_on_b(), "the agent kept the images of a committed migration"
    finally:
        if mig and mig.poll() is None:
            mig.kill()
        p.stop()


def test_hybrid(agent, tmp_path, secret):
    """--mode hybrid: pre-copy rounds, then post-copy for what is still
    dirty; every page of 256 MiB rewritten at 100 MiB/s is right on b."""
    d = Dirty(tmp_path, 256, 100)
    try:
        res, r = migrate(agent, d.pid, secret, "--mode", "hybrid")
        assert len(res["rounds"]) >= 2 and res["rounds"][0]["pages"] >= 256 * 256, res
        assert res["postcopy_pushed"] + res["postcopy_asked"] > 0, res
        assert res["target_pid"] == d.pid and not alive("a", d.pid)
        d.verify("b")
    finally:
        d.stop()


def test_wrong_secret(agent, tmp_path, secret):
    d = Dirty(tmp_path, 64, 10)
    try:
        wrong = tmp_path / "wrong"
        write_secret(wrong, "not-the-secret-at-all\n")
        res, r = migrate(agent, d.pid, wrong, check=False)
        assert r.returncode == 1 and res["result"] == "failed" and res["stage"] == "connecting to the agent"
        assert "secret" in r.stderr
        assert "authentication failed" in agent.log.read_text()
        nothing_left_on_b(d.pid)
        d.verify("a")
    finally:
        d.stop()


def test_agent_killed(agent, tmp_path, secret):
    """The agent dies in the first round: the source runs on, its trackers gone."""
    d = Dirty(tmp_path, 1024, 50)
    try:
        fds = d.fds()
        killer = threading.Timer(0.8, agent.kill)
        killer.start()
        res, r = migrate(agent, d.pid, secret, check=False)
        killer.join()
        assert r.returncode == 1 and res["result"] == "failed", r.stderr
        assert res["stage"].startswith("pre-copy round"), res
        assert res["source"] == "running" and "runs on here" not in r.stdout
        assert d.fds() == fds, "the source's fds changed (a dirty tracker left in it?)"
        assert not alive("b", d.pid)
        # what the killed agent could not remove, the next one does
        assert ls_images("b"), "nothing of the killed agent's migration on b?"
        Agent(tmp_path, secret).kill()
        assert not ls_images("b"), "a new agent kept a dead one's migration"
        d.verify("a")
    finally:
        d.stop()


def test_connection_cut(agent, tmp_path, secret):
    """The link between the hosts goes down mid-transfer: the driver notices
    within seconds (TCP user timeout) and the source runs on."""
    d = Dirty(tmp_path, 1024, 50)
    try:
        cut = threading.Timer(0.8, lambda: on("a", "ip", "link", "set", "hl-a", "down"))
        cut.start()
        t0 = time.monotonic()
        res, r = migrate(agent, d.pid, secret, check=False)
        cut.join()
        assert r.returncode == 1 and res["result"] == "failed", r.stderr
        assert time.monotonic() - t0 < 60
        assert not alive("b", d.pid)
        assert "runs on here" in r.stderr or res["source"] == "running"
        d.verify("a")
    finally:
        on("a", "ip", "link", "set", "hl-a", "up")
        d.stop()


@contextlib.contextmanager
def in_netns(host):
    """This thread in host's network namespace: sockets made meanwhile stay there."""
    libc = ctypes.CDLL(None, use_errno=True)
    init = subprocess.run([str(HOSTS), "pid", host], capture_output=True, text=True, check=True).stdout.strip()
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/proc/{init}/ns/net", os.O_RDONLY)
    try:
        assert libc.setns(there, CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
        yield
    finally:
        assert libc.setns(own, CLONE_NEWNET) == 0
        os.close(own)
        os.close(there)


class Stream:
    """Numbered lines to the container's echo service and back, without pause."""

    def __init__(self, addr):
        with in_netns("a"):
            self.s = socket.create_connection(addr, timeout=20)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.settimeout(None)
        self.sent = self.got = 0
        self.error = None
        self.stopping = False
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self.writer, self.reader)]
        for t in self.threads:
            t.start()

    def writer(self):
        try:
            while not self.stopping:
                self.sent += 1
                self.s.sendall(b"%d\n" % self.sent)
                time.sleep(0.002)
        except OSError as e:
            self.error = f"send: {e}"

    def reader(self):
        buf, deadline = b"", None
        try:
            while self.got < self.sent or not self.stopping:
                if deadline is None and self.stopping:
                    deadline = time.monotonic() + 30
                if not select.select([self.s], [], [], 0.2)[0]:
                    if deadline and time.monotonic() > deadline:
                        self.error = f"the echo stopped at {self.got} of {self.sent}"
                        return
                    continue
                data = self.s.recv(65536)
                if not data:
                    self.error = "the container closed the connection"
                    return
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if int(line) != self.got + 1:
                        self.error = f"line {int(line)} came after {self.got}: a gap or a duplicate"
                        return
                    self.got += 1
        except OSError as e:
            self.error = f"recv: {e}"

    def finish(self):
        self.stopping = True
        for t in self.threads:
            t.join(timeout=40)
        self.s.close()
        assert self.error is None, self.error
        assert self.got == self.sent > 0


def http_get(sock):
    sock.sendall(b"GET / HTTP/1.0\r\nHost: ct\r\n\r\n")
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data.decode(errors="replace")


def counter(name):
    return int((HOSTS_DIR / "ct" / name / "rootfs" / "var" / "counter").read_text() or 0)


def services_run_on_b(name):
    ps = on("b", CONTAINER, "exec", name, "ps").stdout
    for svc in ("init", "counter.sh", "httpd", "ct-ipc", "ct-udpecho"):
        assert svc in ps, f"{svc} is not running in the migrated container:\n{ps}"


@pytest.fixture
def os_container(hosts):
    started = []

    def start(name, ip):
        r = on("a", CONTAINER, "start", "os", name, "--ip", ip)
        started.append(name)
        return int(r.stdout.split()[-1])

    yield start
    # where it runs now first: stop removes its directory, which both hosts share
    for name in started:
        for h in ("b", "a"):
            on(h, CONTAINER, "stop", name, check=False)


def test_os_container(agent, os_container, secret):
    """The sample OS container moves with a TCP stream flowing through it and
    an idle connection to its web server: no reset, no gap, and its counter
    goes on from where it was."""
    name = "mig"
    pid = os_container(name, 61)
    time.sleep(1.5)
    with in_netns("a"):
        web = socket.create_connection(("10.77.0.61", 80), timeout=20)
    stream = Stream(("10.77.0.61", 7000))
    time.sleep(1)
    before = counter(name)
    res, r = migrate(agent, pid, secret)
    print(r.stderr)
    assert res["target_pid"] == pid
    assert not alive("a", pid) and alive("b", pid)
    time.sleep(1)
    stream.finish()
    page = http_get(web)
    web.close()
    assert "200 OK" in page and "cryo sample container" in page, page
    after = counter(name)
    assert after > before, f"the counter did not go on ({before} -> {after})"
    services_run_on_b(name)


HOLDER = """
x=$(head -c 16000000 /dev/urandom | base64)
echo "$x" | md5sum >/var/hold.sum
trap 'echo "$x" | md5sum >/var/hold.now' USR1
echo $$ >/var/hold.pid
while :; do sleep 0.2; done
"""


def start_holder(name):
    """A shell in the container holding 21 MiB of random text, started with
    container exec (so in its namespaces and cgroups): enough memory for
    post-copy to last seconds. It writes the text's md5 at start, and again
    on SIGUSR1 from what its memory holds then."""
    root = HOSTS_DIR / "ct" / name / "rootfs"
    (root / "var" / "hold.sh").write_text(HOLDER)
    on("a", CONTAINER, "exec", name, "sh", "-c", "setsid sh /var/hold.sh </dev/null >/dev/null 2>&1 &")
    deadline = time.monotonic() + 30
    while not (root / "var" / "hold.pid").exists():
        assert time.monotonic() < deadline, "the memory holder did not start"
        time.sleep(0.1)
    return root


def holder_sum_now(name, root, host):
    now = root / "var" / "hold.now"
    on(host, CONTAINER, "exec", name, "kill", "-USR1", (root / "var" / "hold.pid").read_text().strip())
    deadline = time.monotonic() + 30
    while not now.exists() or not now.read_text():
        assert time.monotonic() < deadline, "the memory holder did not answer SIGUSR1"
        time.sleep(0.1)
    time.sleep(0.2)
    return now.read_text()


def test_os_container_postcopy(agent, os_container, secret):
    """The OS container moves in post-copy mode, its memory following (a
    shell in it holds 21 MiB, pushed at 4 MiB/s): while pages still arrive
    it serves on b (the TCP stream goes on without a gap, the web server
    answers a new client, the counter goes on); then every page is in,
    including those its processes share copy-on-write with their parents
    (PE_PARENT), the holder's memory has the md5 it had on a, the source is
    gone and the stream has every line back once, in order."""
    name = "migpc"
    pid = os_container(name, 63)
    time.sleep(1.5)
    root = start_holder(name)
    with in_netns("a"):
        web = socket.create_connection(("10.77.0.63", 80), timeout=20)
    stream = Stream(("10.77.0.63", 7000))
    time.sleep(1)
    mig = subprocess.Popen([str(HOSTS), "run", "a", str(CRYO), "migrate", "-t", str(pid),
                            "--to", f"10.77.0.254:{agent.port}", "--secret-file", str(secret), "--json",
                            "--mode", "postcopy", "--lazy-rate", "4"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not alive("b", pid):
            assert time.monotonic() < deadline and mig.poll() is None, mig.communicate()
            time.sleep(0.05)
        before, got = counter(name), stream.got
        time.sleep(1.5)
        with in_netns("a"):
            new = socket.create_connection(("10.77.0.63", 80), timeout=20)
        page = http_get(new)
        new.close()
        assert "cryo sample container" in page, page
        assert stream.error is None and stream.got > got, f"the stream stopped on b: {stream.error}"
        assert counter(name) > before, "the counter does not go on on b"
        assert mig.poll() is None, "every page was in before the checks: they proved nothing"
        out, err = mig.communicate(timeout=120)
        res = json.loads(out)
        assert mig.returncode == 0 and res["result"] == "migrated", err
        assert res["mode"] == "postcopy" and res["target_pid"] == pid
        assert res["postcopy_pushed"] > 0, res
        assert not alive("a", pid) and alive("b", pid)
    finally:
        if mig.poll() is None:
            mig.kill()
    assert holder_sum_now(name, root, "b") == (root / "var" / "hold.sum").read_text()
    time.sleep(1)
    stream.finish()
    assert "200 OK" in http_get(web)
    web.close()
    services_run_on_b(name)


def test_target_cannot_restore(agent, os_container, secret):
    """The container's root file system is missing on the target: the agent's
    restore fails, says why, and the source goes on as if nothing happened."""
    name = "migfail"
    pid = os_container(name, 62)
    time.sleep(1.5)
    ctdir = HOSTS_DIR / "ct" / name
    # host b's view of the shared storage lacks the container's directory
    on("b", "mount", "-t", "tmpfs", "-o", "size=1m", "gone", ctdir)
    try:
        before = counter(name)
        res, r = migrate(agent, pid, secret, check=False)
    finally:
        on("b", "umount", ctdir)
    assert r.returncode == 1 and res["stage"] == "the restore on the target", r.stderr
    assert "rootfs" in res["error"], res["error"]
    assert alive("a", pid) and not alive("b", pid)
    time.sleep(1)
    assert counter(name) > before, "the source's counter stopped after the failed migration"
    with in_netns("a"):
        web = socket.create_connection(("10.77.0.62", 80), timeout=10)
    assert "cryo sample container" in http_get(web)
    web.close()
    nothing_left_on_b(pid)


def test_pidfile_cannot_be_written(agent, tmp_path, secret):
    """The restore on b runs the tree but cannot write its pid file (a
    directory has its name: the agent's, and the name it had before): the agent does not know the tree for sure, so
    it kills what the restore left before it says the restore failed, and
    the source runs on: never two copies."""
    d = Dirty(tmp_path, 64, 10)
    spoiler = subprocess.Popen([str(HOSTS), "run", "b", "sh", "-c",
                                'while :; do for r in "$0"/*/*/; do for p in .restored.pid restored.pid; do '
                                '[ -e "$r$p" ] || mkdir "$r$p"; done; done 2>/dev/null; sleep 0.01; done',
                                str(HOSTS_DIR / "img")])
    try:
        time.sleep(0.3)
        res, r = migrate(agent, d.pid, secret, check=False)
        assert r.returncode == 1 and res["stage"] == "the restore on the target", r.stderr
        assert alive("a", d.pid)
        assert not alive("b", d.pid), "the restored tree runs on b while the source resumed"
        assert "pid file" in res["error"], res["error"]
    finally:
        with contextlib.suppress(Exception):
            os.kill(on_host_pid(spoiler), signal.SIGKILL)
        spoiler.wait(timeout=10)
    try:
        nothing_left_on_b(d.pid)
        d.verify("a")
    finally:
        d.stop()


class Capture:
    """tcpdump on a host's link to the other host (its veth), every byte of
    every TCP packet, into a file."""

    def __init__(self, tmp_path, host):
        self.path = tmp_path / f"{host}.pcap"
        self.p = subprocess.Popen([str(HOSTS), "run", host, "tcpdump", "-i", f"hl-{host}", "-s", "0", "-B", "262144",
                                   "-U", "-n", "-Z", "root", "-w", str(self.path), "tcp"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.p.stderr.readline()
        assert "listening on" in line, f"tcpdump did not start: {line}"

    def stop(self):
        """tcpdump ended (SIGINT) once it has read what the kernel holds for it; its statistics."""
        time.sleep(1)
        os.kill(on_host_pid(self.p), signal.SIGINT)
        return self.p.communicate(timeout=60)[1]


def tcp_streams(pcap):
    """The TCP byte streams of a pcap file (Ethernet frames), by (src, sport,
    dst, dport): each reassembled in sequence order; with the number of
    holes found in it (bytes never captured)."""
    magic, = struct.unpack("<I", pcap[:4])
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), "not a little-endian pcap file"
    assert struct.unpack("<I", pcap[20:24])[0] == 1, "not Ethernet"
    off, segs = 24, {}
    while off + 16 <= len(pcap):
        incl = struct.unpack("<I", pcap[off + 8:off + 12])[0]
        pkt, off = pcap[off + 16:off + 16 + incl], off + 16 + incl
        etype = struct.unpack(">H", pkt[12:14])[0]
        ip = pkt[14:]
        if etype == 0x0800 and ip[9] == 6:
            total = struct.unpack(">H", ip[2:4])[0] or len(ip)   # 0: a GSO packet over 64 KiB
            tcp, src, dst = ip[(ip[0] & 15) * 4:total], ip[12:16], ip[16:20]
        elif etype == 0x86DD and ip[6] == 6:
            tcp, src, dst = ip[40:40 + (struct.unpack(">H", ip[4:6])[0] or len(ip) - 40)], ip[8:24], ip[24:40]
        else:
            continue
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        data = tcp[(tcp[12] >> 4) * 4:]
        flow = segs.setdefault((src, sport, dst, dport), {})
        if data and len(data) > len(flow.get(seq, b"")):
            flow[seq] = data
    streams = {}
    for key, flow in segs.items():
        base = min(flow)
        out, end, holes = bytearray(), None, 0
        for seq in sorted(flow, key=lambda q: (q - base) % (1 << 32)):
            rel = (seq - base) % (1 << 32)
            if end is not None and rel > end:
                holes += 1
                out += bytes(rel - end)
            if end is None or rel + len(flow[seq]) > end:
                out += flow[seq][(end - rel) if end is not None and end > rel else 0:]
                end = rel + len(flow[seq]) if end is None else max(end, rel + len(flow[seq]))
        streams[key] = (bytes(out), holes)
    return streams


@pytest.mark.parametrize("mode", ["precopy", "postcopy"])
def test_nothing_in_clear_on_the_wire(agent, tmp_path, secret, mode):
    """A packet capture on host a's link during a migration holds the whole
    stream to the agent, and none of a 64-byte random secret that is in
    every page of the migrated process's 32 MiB (pre-copy pages, and the
    post-copy PAGES frames): the frames are sealed."""
    marker = os.urandom(64)
    d = Dirty(tmp_path, 0, 0, argv=[PROGS / "secret", 32, marker.hex()])
    try:
        cap = Capture(tmp_path, "a")
        try:
            res, r = migrate(agent, d.pid, secret, "--mode", mode)
        finally:
            stats = cap.stop()
        assert "\n0 packets dropped by kernel" in "\n" + stats, stats
        pcap = cap.path.read_bytes()
        streams = tcp_streams(pcap)
        sent = [(b, holes) for k, (b, holes) in streams.items() if k[3] == agent.port]
        assert len(sent) == 1 and sent[0][1] == 0, "the capture missed some of the stream to the agent"
        assert len(sent[0][0]) >= res["bytes_sent"] >= 32 << 20, (len(sent[0][0]), res["bytes_sent"])
        for blob in [pcap] + [b for b, _ in streams.values()]:
            assert marker not in blob, "the process's secret crossed the wire in clear"
            assert marker.hex().encode() not in blob
        d.verify("b")
    finally:
        d.stop()

"""cryo killed at any moment (SIGKILL, as the OOM killer would) loses
nothing: its guardian undoes what it left half done. A dump's workload
runs on as it was (registers, signal mask, memory, fds, no parasite
mapping or extra fd left, the container's cgroup thawed and its network
unlocked); a restore leaves no task behind; a migration's source runs on.

The moments come from cryo's fault points (criu-core/include/fault.h):
CRYO_FAULT=NAME:N kills cryo the Nth time it reaches NAME."""
import os
import signal
import socket
import subprocess
import time

import pytest

import cryolib
from conftest import prog
from cryolib import CRYO, alive, assert_same_process, snapshot

# moments of a dump, spread from the freeze to the kill: (point, hit)
DUMP_MOMENTS = [
    ("dump-seized", 1), ("infect-gadget", 1), ("syscall-set", 1), ("syscall-entry", 1),
    ("syscall-exit", 1), ("infect-mapped", 1), ("infected", 1), ("parasite-cmd", 1),
    ("parasite-cmd", 2), ("syscall-set", 3), ("syscall-exit", 4), ("rseq-off", 1),
    ("parasite-cmd", 3), ("pages-chunk", 1), ("pages-chunk", 3), ("syscall-entry", 5),
    ("syscall-exit", 6), ("syscall-set", 8), ("syscall-exit", 8), ("cured", 1),
    ("images-written", 1), ("dump-release", 1), ("dump-kill", 1),
]
WORKLOADS = {"regs": ["regs"], "heap": ["heap", "24"], "threads": ["threads"], "tree": ["mixed"]}


def reap_guardians():
    """Guardians whose cryo died are ours (child subreaper) once they end."""
    for pid in cryolib.descendants(os.getpid())[1:]:
        try:
            if open(f"/proc/{pid}/comm").read().strip() == "cryo-guardian" and cryolib.proc_state(pid) == "Z":
                os.waitpid(pid, 0)
        except (FileNotFoundError, ChildProcessError):
            pass


def killed_cryo(*args, fault, timeout=120):
    """cryo ARGS, killed at the fault point; returns once its guardian is
    done (it holds cryo's stderr until then). The point must be reached."""
    env = dict(os.environ, CRYO_FAULT=f"{fault[0]}:{fault[1]}")
    r = subprocess.run([str(CRYO), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    reap_guardians()
    assert r.returncode == -signal.SIGKILL, \
        f"cryo was not killed at {fault} (exit {r.returncode}):\n{r.stderr}"
    return r


def tree_snapshots(w):
    return {pid: snapshot(pid) for pid in cryolib.descendants(w.pid)}


def assert_tree_as_before(before):
    for pid, snap in before.items():
        assert alive(pid), f"pid {pid} of the workload is gone"
        assert_same_process(snap, pid)


@pytest.mark.parametrize("moment", DUMP_MOMENTS, ids=[f"{p}:{n}" for p, n in DUMP_MOMENTS])
@pytest.mark.parametrize("name", WORKLOADS)
def test_dump_killed(workload, images, name, moment):
    """The workload checks itself after its dump's cryo was killed: it ran
    on unharmed (--leave-running or not), or, killed after the dump began
    to kill it, it is all gone and its images restore it whole."""
    w = workload([prog(WORKLOADS[name][0]), *WORKLOADS[name][1:]])
    w.wait_ready()
    before = tree_snapshots(w)
    leave = moment[0] == "dump-release"
    killed_cryo("dump", "-t", w.pid, "-D", images, "-o", "dump.log", "-v4", *(["-R"] if leave else []),
                fault=moment)
    if moment[0] == "dump-kill":
        # past the point of no return: the guardian finished the kill
        cryolib.reap_orphans(list(before))
        w.proc.wait(timeout=10)
        cryolib.restore(images)
        w.restored = True
    else:
        assert_tree_as_before(before)
    w.verify()


@pytest.mark.parametrize("name", ["heap", "threads"])
def test_dump_killed_at_random(workload, tmp_path, name):
    """kill -9 of cryo dump --leave-running at moments a clock picks, not
    cryo: between its fault points too. The workload runs on as it was."""
    import random
    rng = random.Random(f"guardian-{name}")
    w = workload([prog(WORKLOADS[name][0]), *WORKLOADS[name][1:]])
    w.wait_ready()
    before = tree_snapshots(w)
    took = None
    for i in range(10):
        images = tmp_path / f"images{i}"
        t0 = time.monotonic()
        p = subprocess.Popen([str(CRYO), "dump", "-t", str(w.pid), "-D", str(images), "-R"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if took is None:
            p.communicate(timeout=60)
            took = time.monotonic() - t0
            continue
        time.sleep(rng.uniform(0, took))
        p.kill()
        p.communicate(timeout=60)
        reap_guardians()
        assert_tree_as_before(before)
    w.verify()


TCP_MOMENTS = [("fenced", 1), ("tcp-repair", 1), ("tcp-repair", 2), ("images-written", 1), ("dump-release", 1)]


@pytest.mark.parametrize("moment", TCP_MOMENTS, ids=[f"{p}:{n}" for p, n in TCP_MOMENTS])
def test_tcp_dump_killed(workload, images, moment):
    """A process holding TCP connections (both ends, data queued each way)
    whose --tcp-established --leave-running dump is killed while cryo holds
    them in repair mode: fenced in, the process ran none of its own code
    before the guardian took them out of it; every byte then arrives."""
    w = workload([prog("tcp")])
    w.wait_ready()
    before = tree_snapshots(w)
    killed_cryo("dump", "-t", w.pid, "-D", images, "-o", "dump.log", "-v4", "-R", "--tcp-established",
                fault=moment)
    assert_tree_as_before(before)
    w.verify()


RESTORE_MOMENTS = [("restore-traced", 1), ("restore-traced", 2), ("syscall-entry", 1),
                   ("restore-released", 1), ("restore-unlocked", 1)]


@pytest.mark.parametrize("moment", RESTORE_MOMENTS, ids=[f"{p}:{n}" for p, n in RESTORE_MOMENTS])
def test_restore_killed(workload, images, moment):
    """A restore killed half way leaves no task of the tree; the images
    then restore it whole."""
    w = workload([prog("mixed")])
    w.wait_ready()
    cryolib.checkpoint(w, images)
    pids = cryolib.tree_pids(images)
    killed_cryo("restore", "-D", images, "-d", "-o", "restore.log", "-v4", fault=moment)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in pids if alive(p)]
    assert not left, f"pids {left} of a killed restore are still there"
    cryolib.reap_orphans(pids)
    cryolib.restore(images)
    w.restored = True
    w.verify()


@pytest.fixture
def gd_container():
    from test_container import Container
    made = []

    def start(kind, ip):
        c = Container(kind, f"gd{os.getpid() % 10000}", ip)
        made.append(c)
        return c

    yield start
    for c in made:
        c.stop()


CT_MOMENTS = [("dump-frozen", 1), ("dump-seized", 1), ("net-locked", 1), ("tcp-repair", 1), ("infected", 1),
              ("parasite-cmd", 2), ("pages-chunk", 2), ("cured", 2), ("images-written", 1)]


@pytest.mark.parametrize("moment", CT_MOMENTS, ids=[f"{p}:{n}" for p, n in CT_MOMENTS])
def test_container_dump_killed(gd_container, images, moment):
    """An OS container whose dump (--leave-running --tcp-established) was
    killed: thawed, its host veth up, the TCP connection from the host out
    of repair mode and answering, its counter going on, its inside as
    before."""
    from test_container import CGROOT, os_counter, os_state, settle_dad
    c = gd_container("os", 181)
    time.sleep(1.5)
    s = socket.create_connection((f"10.77.0.{c.ip}", 7000), timeout=5)
    s.sendall(b"before\n")
    assert s.recv(100) == b"before\n"
    settle_dad(c)
    state = os_state(c)
    killed_cryo("dump", "-t", c.pid, "-D", images, "-o", "dump.log", "-v4", "-R", "--tcp-established",
                fault=moment)
    assert open(f"{CGROOT}/freezer/cryo/{c.name}/freezer.state").read().strip() == "THAWED"
    assert "UP" in subprocess.run(["ip", "-br", "link", "show", f"cv{c.name}"], capture_output=True,
                                  text=True).stdout
    s.sendall(b"after\n")
    assert s.recv(100) == b"after\n"
    n = os_counter(c)
    time.sleep(1.5)
    assert os_counter(c) > n, "the container's counter stopped"
    # a veth set down and up again does duplicate address detection again
    settle_dad(c)
    after = os_state(c)
    for k in state:
        assert after[k] == state[k], f"{k}: before\n{state[k]}\nafter\n{after[k]}"
    s.close()


MIGRATE_MOMENTS = [("migrate-round", 1), ("migrate-round", 2), ("infected", 2), ("images-written", 1),
                   ("migrate-restored", 1)]


@pytest.mark.parametrize("moment", MIGRATE_MOMENTS, ids=[f"{p}:{n}" for p, n in MIGRATE_MOMENTS])
def test_migrate_killed(request, tmp_path, moment):
    """The driver killed between and during its rounds, or once the target
    has the tree but before the commit: the source runs on as it was (its
    dirty trackers closed, every page checked), nothing is left on the
    target."""
    import test_migrate as tm
    request.getfixturevalue("hosts")
    secret = request.getfixturevalue("secret")
    agent = tm.Agent(tmp_path, secret)
    d = tm.Dirty(tmp_path, 64, 20)
    try:
        fds = d.fds()
        env = dict(os.environ, CRYO_FAULT=f"{moment[0]}:{moment[1]}")
        r = subprocess.run([str(tm.HOSTS), "run", "a", str(CRYO), "migrate", "-t", str(d.pid), "--to",
                            f"10.77.0.254:{agent.port}", "--secret-file", str(secret), "--max-rounds", "3",
                            "--dirty-limit", "0"], capture_output=True, text=True, timeout=120, env=env)
        reap_guardians()
        assert r.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), \
            f"cryo migrate was not killed at {moment} (exit {r.returncode}):\n{r.stderr}"
        assert d.fds() == fds, "the source's fds changed (a dirty tracker left in it?)"
        tm.nothing_left_on_b(d.pid)
        d.verify("a")
    finally:
        d.stop()
        agent.kill()


from test_migrate import hosts, secret  # noqa: E402,F401  (fixtures)


def test_agent_killed_before_the_commit(request, tmp_path, monkeypatch):
    """The agent's session dies (SIGKILL) once it has restored the tree
    and before the driver commits: its guardian kills that tree, the
    driver's source runs on, and no second copy runs on the target."""
    import test_migrate as tm
    request.getfixturevalue("hosts")
    secret = request.getfixturevalue("secret")
    monkeypatch.setenv("CRYO_FAULT", "agent-restored:1")
    agent = tm.Agent(tmp_path, secret)
    monkeypatch.delenv("CRYO_FAULT")
    d = tm.Dirty(tmp_path, 32, 10)
    try:
        res, r = tm.migrate(agent, d.pid, secret, check=False)
        assert r.returncode == 1 and res["result"] == "failed", r.stderr
        assert res["source"] == "running", res
        deadline = time.monotonic() + 10
        while tm.alive("b", d.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not tm.alive("b", d.pid), "the restored tree runs on b while the source runs on a"
        d.verify("a")
    finally:
        d.stop()
        agent.kill()


PAUSED_MOMENTS = [("dump-seized", 1), ("infected", 1), ("parasite-cmd", 2), ("cured", 1), ("images-written", 1),
                  ("dump-release", 1)]


@pytest.mark.parametrize("moment", PAUSED_MOMENTS, ids=[f"{p}:{n}" for p, n in PAUSED_MOMENTS])
def test_paused_container_dump_killed(gd_container, images, moment):
    """A container paused by its owner (its freezer cgroup FROZEN, as runc
    pause and containerd leave it) whose dump --leave-running was killed:
    cryo had thawed it to hold its tasks in ptrace; the guardian cures them
    and freezes it again. Thawed by its owner, it goes on from where it
    was, its inside as before."""
    from test_container import CGROOT, read_counter
    c = gd_container("app", 182)
    time.sleep(0.5)
    state = c.snapshot()
    fz = f"{CGROOT}/freezer/cryo/{c.name}/freezer.state"
    open(fz, "w").write("FROZEN")
    try:
        deadline = time.monotonic() + 10
        while open(fz).read().strip() != "FROZEN":
            assert time.monotonic() < deadline, "the container did not freeze"
            time.sleep(0.01)
        n = read_counter(c)
        killed_cryo("dump", "-t", c.pid, "-D", images, "-o", "dump.log", "-v4", "-R", fault=moment)
        assert open(fz).read().strip() == "FROZEN", "the paused container was left thawed"
        # it ran for the moments from cryo's death to the guardian's freeze (README: Paused containers)
        ran = read_counter(c)
        assert ran <= n + 2, f"the paused container ran on: its counter went from {n} to {ran}"
        time.sleep(0.5)
        assert read_counter(c) == ran, "the paused container runs on after the guardian froze it again"
        n = ran
    finally:
        # a frozen container's tasks cannot die: thawed, whatever happened, so that it can be stopped
        open(fz, "w").write("THAWED")
    deadline = time.monotonic() + 10
    while read_counter(c) <= n:
        assert time.monotonic() < deadline, "the container's counter did not go on once thawed"
        time.sleep(0.05)
    assert read_counter(c) < n + 30
    assert c.snapshot() == state

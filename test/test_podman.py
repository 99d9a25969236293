"""Podman (Debian's, with runc as its runtime) checkpoints through cryo: cryo
is `criu` on the PATH that podman and runc look it up on. Each test has a
podman of its own (podmanlib: storage, state, cgroups in a directory of
its own, a busybox image made here). The container is ocilib's counter
shell: a counter held in its memory, written to /tmp/counter every 0.2 s
and to stdout (podman's log), and 4 MiB of random text whose md5 it writes
at start and on SIGUSR1. A restore must carry on the very process: same
pid (inside and out), the counter going on from the next value, the text
the same."""
import json
import os
import subprocess
import tarfile
import time

import pytest

import ocilib
from cryolib import CRYO
from ocilib import SCRIPT, SERVER, alive, wait_for
from podmanlib import PODMAN, RUNC, Podman

pytestmark = pytest.mark.skipif(not PODMAN or not RUNC,
                                reason="podman or runc is not installed (make deps installs them)")


@pytest.fixture
def podman(tmp_path):
    pm = Podman(tmp_path)
    yield pm
    pm.close()


@pytest.fixture
def container(podman):
    return podman.container(f"cryo-pm-{os.getpid()}")


def check_consecutive(c, before):
    """podman's log of the shell: 1, 2, 3, ... with no number missing or
    written twice (a restarted shell would start at 1 again, a restore of
    another moment skip or repeat some), and more of them than before."""
    wait_for(lambda: len(c.logged()) > len(before) + 2, "the shell to write on after the restore")
    now = c.logged()
    assert now == list(range(1, len(now) + 1)), f"the shell's numbers, across the checkpoint: {now}"
    assert now[:len(before)] == before


class ImagesOf:
    """Where podman keeps c's images (known once c exists), as the path ocilib's checks look in."""

    def __init__(self, c):
        self.c = c

    def __truediv__(self, name):
        return self.c.images_dir() / name


def test_checkpoint_restore(container):
    """podman container checkpoint and restore (ocilib.check_checkpoint_restore):
    the same pid outside (and 1 inside its pid namespace), the counter going
    on from the next value, in podman's log of it too, the memory the same."""
    c = container
    ocilib.check_checkpoint_restore(c, ImagesOf(c))
    assert c.nspid()[-1] == 1, c.nspid()
    check_consecutive(c, [])


def test_leave_running(container):
    """checkpoint --leave-running (ocilib.check_leave_running): the container
    runs on; killed, its restore goes back to the moment of the checkpoint."""
    ocilib.check_leave_running(container, ImagesOf(container))


def memory_and_pids(c, ns_before, logged):
    now, at_start = c.memory_md5()
    assert now == at_start, "the shell's memory changed across checkpoint and restore"
    assert c.nspid()[-1] == ns_before[-1] == 1, f"the shell's pid inside went from {ns_before} to {c.nspid()}"
    check_consecutive(c, logged)


def test_export_import(container, tmp_path):
    """checkpoint --export to a tar, podman rm, restore --import --name into
    a new container: its own overlay (runc gives it as the root), the shell
    going on from the next value with its memory."""
    c = container
    c.run()
    ns_before = c.nspid()
    old_id, old_upper = c.inspect("{{.Id}}"), c.rootfs
    c.checkpoint(None, "--export", tmp_path / "ck.tar")
    at_checkpoint = c.counter()
    logged = c.logged()
    c.pm("rm", c.name)
    assert not old_upper.exists(), "podman rm left the old container's overlay"
    c.restore(None, "--import", tmp_path / "ck.tar", "--name", f"{c.name}-new")
    assert c.inspect("{{.Id}}") != old_id and c.rootfs != old_upper
    first, then = c.after_restore()
    assert first in (at_checkpoint, at_checkpoint + 1) and then == first + 1, (at_checkpoint, first, then)
    assert c.status()["pid"] == c.pid, "the host pid changed"
    memory_and_pids(c, ns_before, logged)


def stats_of(cryo_show_path):
    """What `cryo show` decodes of a stats file: its one message."""
    r = subprocess.run([CRYO, "show", cryo_show_path], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["magic"] == "STATS" and len(doc["records"]) == 1, doc
    return doc["records"][0]


def test_print_stats(container, tmp_path):
    """checkpoint and restore --print-stats: podman reads stats-dump and
    stats-restore and shows numbers that hold together: the frozen time
    within the runtime's checkpoint, the memory dump within it, the write
    within that; the 5 MiB the shell holds written (of fewer pages than were
    scanned) and restored, page for page; the fork within the restore,
    within the runtime's restore. `cryo show` decodes the same file. The
    restored container is podman's: podman rm -f stops it."""
    c = container
    c.run()
    r = c.checkpoint(None, "--print-stats", "--keep")
    out = json.loads(r.stdout)["container_statistics"][0]
    d = out["criu_statistics"]
    assert 0 < d["freezing_time"] < d["frozen_time"] < out["runtime_checkpoint_duration"], out
    assert 0 < d["memwrite_time"] <= d["memdump_time"] < d["frozen_time"], d
    assert 5_300_000 // 4096 < d["pages_written"] < d["pages_scanned"] < 100_000, d
    assert d.get("pages_skipped_parent", 0) == 0 and d.get("pages_lazy", 0) == 0, d
    shown = stats_of(c.userdata / "stats-dump")["dump"]
    assert {k: v for k, v in shown.items() if v} == d, (shown, d)

    r = c.restore(None, "--print-stats")
    out = json.loads(r.stdout)["container_statistics"][0]
    rs = out["criu_statistics"]
    assert 0 < rs["forking_time"] < rs["restore_time"] < out["runtime_restore_duration"], out
    assert rs["pages_restored"] == d["pages_written"], (rs, d)
    assert c.status()["pid"] == c.pid
    now, at_start = c.memory_md5()
    assert now == at_start
    c.pm("rm", "-f", "-t", "0", c.name)
    wait_for(lambda: not alive(c.pid), f"pid {c.pid} to go after podman rm -f")


def test_failed_restore_leaves_nothing(container):
    """A restore that fails at its very end (stats-restore cannot be written:
    a directory is in its place) says why and leaves no task: podman
    --print-stats had failed after the restore and left the container
    running, unknown to it."""
    c = container
    c.run()
    c.checkpoint()
    (c.userdata / "stats-restore").mkdir()
    r = c.restore(None, "--print-stats", check=False)
    assert r.returncode != 0
    # runc's error names the log, where cryo said why
    assert "restore.log" in r.stderr, r.stderr
    log = (c.userdata / "restore.log").read_text()
    assert "cannot create image stats-restore: Is a directory" in log, log
    time.sleep(0.3)
    assert not alive(c.pid), f"pid {c.pid} runs after the failed restore"
    assert c.status() is None, "podman has the container running after the failed restore"
    (c.userdata / "stats-restore").rmdir()
    c.restore()
    assert c.status()["pid"] == c.pid


def test_pre_checkpoint_export_import(container, tmp_path):
    """checkpoint --pre-checkpoint --export (the memory copied while the shell
    runs), then --with-previous --export (only what changed since, on top),
    podman rm, restore --import --import-previous: the shell goes on, its
    memory read through both. The final checkpoint's stats-dump (in its
    tar) says the pages were left to the pre-checkpoint."""
    c = container
    c.run()
    ns_before = c.nspid()
    c.checkpoint(None, "--pre-checkpoint", "--export", tmp_path / "pre.tar", "--compress", "none")
    assert alive(c.pid) and c.status()["pid"] == c.pid
    time.sleep(0.5)
    c.checkpoint(None, "--with-previous", "--export", tmp_path / "ck.tar", "--compress", "none")
    at_checkpoint = c.counter()
    logged = c.logged()
    pages = {}
    for name in ("pre", "ck"):
        with tarfile.open(tmp_path / f"{name}.tar") as tar:
            pages[name] = sum(m.size for m in tar.getmembers() if os.path.basename(m.name).startswith("pages-"))
            if name == "ck":
                assert tar.getmember("checkpoint/parent").linkname == "../pre-checkpoint"
                tar.extract("stats-dump", tmp_path / "ck-stats")
    assert pages["ck"] < pages["pre"] / 4, pages
    d = stats_of(tmp_path / "ck-stats" / "stats-dump")["dump"]
    assert d["pages_skipped_parent"] > 1000 and d["pages_written"] < d["pages_skipped_parent"], d
    c.pm("rm", c.name)
    c.restore(None, "--import", tmp_path / "ck.tar", "--import-previous", tmp_path / "pre.tar",
              "--name", f"{c.name}-new")
    first, then = c.after_restore()
    assert first in (at_checkpoint, at_checkpoint + 1) and then == first + 1, (at_checkpoint, first, then)
    memory_and_pids(c, ns_before, logged)


SYSLOG = """syslogd -O /tmp/messages
n=0
while :; do
    n=$((n + 1))
    logger "tick $n"
    echo $n >/tmp/counter.new
    echo $n
    mv /tmp/counter.new /tmp/counter
    sleep 0.2
done
"""


def ticks(c):
    try:
        text = (c.rootfs / "tmp" / "messages").read_text()
    except FileNotFoundError:
        return []
    return [int(l.rsplit("tick ", 1)[1]) for l in text.splitlines() if "tick " in l]


def test_syslog_unix_socket(podman):
    """A container with a network namespace of its own (--network none) whose
    syslogd holds /dev/log, a unix datagram socket, and whose shell logs a
    tick every 0.2 s: after checkpoint and restore the ticks keep arriving
    in syslogd's file, from where they were."""
    c = podman.container(f"cryo-pm-log-{os.getpid()}", script=SYSLOG)
    c.run(ready=lambda: len(ticks(c)) >= 3)
    c.checkpoint()
    before = ticks(c)
    c.restore()
    wait_for(lambda: len(ticks(c)) > len(before) + 3, "ticks to reach syslogd after the restore")
    after = ticks(c)
    assert after[len(before)] in (before[-1] + 1, before[-1] + 2), (before[-3:], after[len(before):])
    assert after[len(before):] == list(range(after[len(before)], after[-1] + 1)), after
    assert c.status()["pid"] == c.pid


@pytest.fixture
def netns():
    """A named network namespace with a veth to the host (ocilib.host_netns)."""
    with ocilib.host_netns("pm", 79) as n:
        yield n


def test_tcp_established(podman, netns):
    """A container in a network namespace made for it (--network ns:PATH)
    serving a TCP client on the host: checkpoint and restore
    --tcp-established (ocilib.check_tcp_established), the connection going
    on with the count the container's shell holds."""
    c = podman.container(f"cryo-pm-tcp-{os.getpid()}", script=SERVER + SCRIPT, network=f"ns:{netns[1]}")
    ocilib.check_tcp_established(c, netns, None)

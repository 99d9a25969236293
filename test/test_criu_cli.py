"""CRIU's command line, as LXC and scripts use it: `--version` in CRIU's
form, `check --feature` with CRIU's names, and `--action-script`, run at
CRIU's hook points with CRTOOLS_SCRIPT_ACTION and CRTOOLS_INIT_PID."""
import time

import cryolib
from conftest import prog


def test_version_in_criu_form():
    out = cryolib.cryo("--version").stdout.splitlines()
    assert out[0].startswith("Version: ")
    major, minor = map(int, out[0].split()[1].split("."))
    assert (major, minor) >= (3, 15), out  # what runc and LXC ask for
    assert out[1].startswith("GitID: cryo-")


def test_check_criu_features():
    for name in ("mem_dirty_track", "uffd-noncoop"):
        r = cryolib.cryo("check", "--feature", name, check=False)
        assert r.returncode == 0 and r.stdout.strip() == f"{name}: ok", r.stdout + r.stderr
    r = cryolib.cryo("check", "--feature", "no_such_thing", check=False)
    assert r.returncode != 0 and "unknown feature" in r.stderr


def script(tmp_path, fail_at=None):
    log = tmp_path / "actions"
    s = tmp_path / "action.sh"
    s.write_text(f"""#!/bin/sh
echo "$CRTOOLS_SCRIPT_ACTION ${{CRTOOLS_INIT_PID:-none}}" >>{log}
[ "$CRTOOLS_SCRIPT_ACTION" != "{fail_at}" ]
""")
    s.chmod(0o755)
    return s, log


def test_action_scripts(workload, images, tmp_path):
    """Each hook point, in CRIU's order, with the root's pid where it has one;
    the process carries on from its dumped count."""
    s, log = script(tmp_path)
    w = workload([prog("regs")])
    w.wait_ready()
    time.sleep(0.2)
    cryolib.checkpoint(w, images, "--action-script", str(s))
    cryolib.restore(images, "--action-script", str(s))
    w.restored = True
    seen = [line.split() for line in log.read_text().splitlines()]
    points = [p for p, _ in seen]
    assert points == ["pre-dump", "network-lock", "post-dump", "pre-restore", "setup-namespaces",
                      "post-setup-namespaces", "post-restore", "pre-resume", "network-unlock",
                      "post-resume"], points
    pids = dict(seen)
    assert pids["pre-dump"] == pids["post-dump"] == pids["post-restore"] == str(w.pid), seen
    assert pids["pre-restore"] == "none"
    counter = int(w.verify().split("counter=")[1].split()[0])
    r12 = cryolib.images_by_kind(images)["core"]["threads"][0]["regs"]["r12"]
    assert counter >= r12


def test_failing_post_dump_script_leaves_the_process_running(workload, images, tmp_path):
    """A script that fails at post-dump stops the dump there: the process is
    not killed but resumed, and says why on one line."""
    s, log = script(tmp_path, fail_at="post-dump")
    w = workload([prog("regs")])
    w.wait_ready()
    r = cryolib.cryo("dump", "-t", w.pid, "-D", images, "--action-script", s, check=False)
    cryolib.one_line_error(r, "action script", "post-dump", "exited with status 1")
    assert cryolib.alive(w.pid), "the dump killed the process though its post-dump script failed"
    assert "network-unlock" in log.read_text()
    w.verify()


def test_external_net_must_be_the_trees(workload, images):
    """--external net[INODE]:KEY names the tree's network namespace: for a
    process in cryo's own, one line says so, and it runs on; so does one for
    veth[...] (a restore's) or a kind cryo lacks."""
    w = workload([prog("regs")])
    w.wait_ready()
    before = cryolib.snapshot(w.pid)
    r = cryolib.cryo("dump", "-t", w.pid, "-D", images, "--external", "net[1]:extRootNetNS", check=False)
    cryolib.one_line_error(r, "--external net[1]:extRootNetNS", "cryo's own")
    r = cryolib.cryo("dump", "-t", w.pid, "-D", images, "--external", "veth[x]:y", check=False)
    cryolib.one_line_error(r, "--external veth[x]:y", "for a restore")
    r = cryolib.cryo("dump", "-t", w.pid, "-D", images, "--external", "mnt[x]:y", check=False)
    cryolib.one_line_error(r, "--external mnt[x]:y", "not supported")
    cryolib.assert_same_process(before, w.pid)

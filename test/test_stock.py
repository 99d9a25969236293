"""Unmodified stock programs carry on from where they were: their counters
continue from the value they had reached, not from the start."""
import os
import shutil
import signal
import time

import pytest

import cryolib

BUSYBOX = shutil.which("busybox")

# builtins only: a fork per iteration would make the shell a tree
SH_LOOP = 'i=$1; while :; do i=$((i+1)); echo "$i" >> counter; done'
PY_LOOP = """
import sys, time
n = int(sys.argv[1])
state = [n]
while True:
    state[0] += 1
    with open("counter", "a") as f:
        f.write("%d\\n" % state[0])
    time.sleep(0.002)
"""


def read_counter(w):
    """The last complete line of the counter file the loop appends to."""
    for _ in range(500):
        try:
            lines = (w.cwd / "counter").read_text().split("\n")[:-1]
            if lines:
                return int(lines[-1])
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"{w.argv[0]} never wrote its counter:\n{w.output()}")


def wait_counter_above(w, value, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = read_counter(w)
        if got > value:
            return got
        time.sleep(0.02)
    raise AssertionError(f"counter stuck at {read_counter(w)} after restore (dumped at {value})")


@pytest.mark.parametrize("argv", [
    [BUSYBOX, "sh", "-c", SH_LOOP, "sh", "1000000"],
    ["/usr/bin/python3", "-c", PY_LOOP, "1000000"],
], ids=["busybox-sh", "python3"])
@pytest.mark.parametrize("user", [None, cryolib.NOBODY], ids=["root", "nobody"])
def test_counter_carries_on(workload, images, argv, user):
    w = workload(argv, user=user)
    start = wait_counter_above(w, 1000000)
    time.sleep(0.3)
    cryolib.checkpoint(w, images)
    at_dump = read_counter(w)
    assert at_dump > start
    # a fresh start would count from 1000000 again; make that visible
    (w.cwd / "counter").write_text("")
    before = time.monotonic()
    cryolib.restore(images)
    w.restored = True
    after = wait_counter_above(w, 0)
    assert after > at_dump, f"counter restarted: {after} after restore, {at_dump} at dump"
    # and it goes on counting
    wait_counter_above(w, after)
    assert time.monotonic() - before < 10
    assert cryolib.alive(w.pid)


def test_sleep_carries_on(workload, images):
    """sleep, restored in the middle of its nanosleep, sleeps the remaining
    time (not from the start, not zero) and exits 0."""
    w = workload([shutil.which("sleep"), "3"])
    w.wait_exec_settled()
    started = time.monotonic()
    time.sleep(1)
    cryolib.checkpoint(w, images)
    cryolib.restore(images)
    w.restored = True
    assert cryolib.alive(w.pid)
    code = cryolib.wait_pid(w.pid, 10)
    elapsed = time.monotonic() - started
    assert code == 0
    # interrupted nanosleep restarts with the remaining time
    assert 2.5 < elapsed < 5, f"sleep 3 took {elapsed:.1f}s across the checkpoint"


def test_sleep_1000_survives_and_keeps_sleeping(workload, images):
    w = workload([shutil.which("sleep"), "1000"])
    w.wait_exec_settled()
    before = cryolib.snapshot(w.pid)
    cryolib.checkpoint_restore(w, images)
    time.sleep(0.5)
    assert cryolib.proc_state(w.pid) == "S"
    cryolib.assert_same_process(before, w.pid)
    os.kill(w.pid, signal.SIGTERM)
    assert cryolib.wait_pid(w.pid) == -signal.SIGTERM


PY_UNIX = r"""
import os, socket, threading, time

def put(name, n):
    with open(name + ".tmp", "w") as f:
        f.write(str(n))
    os.rename(name + ".tmp", name)

srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind("srv.sock")
srv.listen(4)
if os.fork() == 0:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect("srv.sock")
    n = 0
    while True:
        n += 1
        c.sendall(b"%d\n" % n)
        reply = c.recv(64)
        if int(reply) != 2 * n:
            put("bad", "client sent %d, got %r" % (n, reply))
        put("client", n)
        time.sleep(0.005)

def greeter():
    while True:
        s, _ = srv.accept()
        s.sendall(b"hello")
        s.close()

conn, _ = srv.accept()
threading.Thread(target=greeter, daemon=True).start()
expect = 1
for line in conn.makefile("rb"):
    n = int(line)
    if n != expect:
        put("bad", "server expected %d, got %d" % (expect, n))
    expect = n + 1
    conn.sendall(b"%d" % (2 * n))
    put("server", n)
"""


def test_python_unix_socket_server_and_client(workload, images):
    """python3: a server with a listening unix socket (and a thread that
    greets new connections) and a client process in conversation with it.
    Both carry on from where they were, and the listener takes new
    connections after the restore."""
    w = workload(["/usr/bin/python3", "-c", PY_UNIX])

    def count(name):
        try:
            return int((w.cwd / name).read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0
    deadline = time.monotonic() + 20
    while count("client") < 20:
        assert time.monotonic() < deadline, f"the client does not count:\n{w.output()}"
        time.sleep(0.05)
    cryolib.checkpoint(w, images)
    at_dump = count("client")
    cryolib.restore(images)
    w.restored = True
    deadline = time.monotonic() + 20
    while count("client") < at_dump + 20 or count("server") < at_dump + 20:
        assert time.monotonic() < deadline, \
            f"stuck after restore: client {count('client')}, server {count('server')}, {at_dump} at dump"
        time.sleep(0.05)
    assert not (w.cwd / "bad").exists(), (w.cwd / "bad").read_text()
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(w.cwd / "srv.sock"))
        assert s.recv(16) == b"hello"


PY_INET = """
import socket, threading, time
tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("::", 0))
tcp.listen(7)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
state = {"served": 0}

def udp_echo():
    while True:
        data, peer = udp.recvfrom(64)
        udp.sendto(b"udp " + data, peer)
threading.Thread(target=udp_echo, daemon=True).start()
print("READY", tcp.getsockname()[1], udp.getsockname()[1], flush=True)
while True:
    s, _ = tcp.accept()
    state["served"] += 1
    s.sendall(b"served %d" % state["served"])
    s.close()
"""


def test_python_tcp_listener_and_udp(workload, images):
    """python3 listening on TCP (IPv6, dual stack) and answering on a bound
    UDP socket: after the restore both ports answer, with the count of
    connections served kept in memory."""
    import socket
    w = workload(["/usr/bin/python3", "-c", PY_INET])
    w.wait_ready()
    tport, uport = map(int, w.output().split()[1:3])

    def tcp_get():
        with socket.create_connection(("127.0.0.1", tport), timeout=5) as s:
            return s.recv(64)

    assert tcp_get() == b"served 1"
    assert tcp_get() == b"served 2"
    cryolib.checkpoint(w, images)
    cryolib.restore(images)
    w.restored = True
    assert tcp_get() == b"served 3"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.sendto(b"ping", ("127.0.0.1", uport))
        assert u.recv(64) == b"udp ping"
    # the listen backlog: ss shows it as Send-Q of a listener
    import subprocess
    ss = subprocess.run(["ss", "-ltnH", f"sport = :{tport}"], capture_output=True, text=True).stdout.split()
    assert ss[0] == "LISTEN" and ss[2] == "7", ss

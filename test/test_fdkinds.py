"""Every common kind of fd comes back with its state: event, signal and
timer fds, epoll sets, inotify watches, pidfds, O_ASYNC owners, locks,
O_PATH and /proc fds, FIFOs, memfds and deleted files (see
progs/fdkinds.c for what it checks)."""
import socket
import time

import cryolib
from conftest import prog


def test_fd_kinds(workload, images):
    w = workload([prog("fdkinds")])
    w.wait_ready()
    cryolib.checkpoint_restore(w, images)
    files = cryolib.show(images / "files.img")["records"]
    kinds = {e["kind"] for e in files}
    assert {"EVENTFD", "SIGNALFD", "TIMERFD", "EPOLL", "INOTIFY", "PIDFD", "PIPE", "REG"} <= kinds, kinds
    # the deleted file and the memfd are dumped with their bytes, once each
    objs = cryolib.show(images / "memfds.img")["records"]
    assert sorted(o["name"].rsplit("/", 1)[-1] for o in objs) == ["fdkinds-memfd", "ghost"], objs
    w.verify()


def test_unix_sockets(workload, images):
    w = workload([prog("unixsk")])
    w.wait_ready()
    cryolib.checkpoint_restore(w, images)
    socks = [e["unix_sk"] for e in cryolib.show(images / "files.img")["records"] if e["kind"] == "UNIX_SK"]
    # the listener's two waiting connections are in the images, oldest first
    listeners = [s for s in socks if s.get("icons")]
    assert len(listeners) == 1 and len(listeners[0]["icons"]) == 2, listeners
    w.verify()


def test_two_processes_share_pipe_socketpair_and_epoll(workload, images):
    w = workload([prog("mixed")])
    w.wait_ready()
    cryolib.checkpoint_restore(w, images)
    files = cryolib.show(images / "files.img")["records"]
    # one epoll set, one pipe, one socketpair: shared, not copied per process
    assert sorted(e["kind"] for e in files if e["kind"] in ("EPOLL", "PIPE", "UNIX_SK")) == \
        ["EPOLL", "PIPE", "PIPE", "UNIX_SK", "UNIX_SK"], files
    w.verify()


def test_pty_of_its_own(workload, images):
    w = workload([prog("pty")])
    w.wait_ready()
    cryolib.checkpoint_restore(w, images)
    ptys = [e["pty"] for e in cryolib.show(images / "files.img")["records"] if e["kind"] == "PTY"]
    # master, slave, and /dev/tty standing for the slave
    assert sorted((p["master"], p.get("devtty", False)) for p in ptys) == \
        [(False, False), (False, True), (True, False)], ptys
    w.verify()


def test_tcp_established(workload, images):
    """Established TCP connections over loopback (both ends dumped), with
    data queued both ways and some never sent: every byte arrives once, in
    order, and the connections carry new data after the restore. Also
    half-closed by the client (FIN_WAIT1/2): the server gets the data, then
    the end of stream; and with the server in CLOSE_WAIT, LAST_ACK and
    CLOSING, which must end as they would have. Each over IPv4, IPv6, and
    IPv6 sockets carrying IPv4 (v4-mapped)."""
    modes = ([], ["shut"], ["peerclose"], ["lastack"], ["closing"])
    for args in (m + v for m in modes for v in ([], ["v6"], ["mapped"])):
        w = workload([prog("tcp"), *args])
        w.wait_ready()
        cryolib.checkpoint_restore(w, images, dump_args=("--tcp-established",))
        tcp = [e["inet_sk"]["tcp"] for e in cryolib.show(images / "files.img")["records"]
               if e["kind"] == "INET_SK" and "tcp" in e["inet_sk"]]
        assert len(tcp) == 2, tcp
        # the server's side as the image says it was: which FINs went, in what order
        fins = sorted((t.get("fin_sent", False), t.get("fin_received", False), t.get("peer_fin_first", False))
                      for t in tcp)
        want = {"shut": [(False, False, False), (True, False, False)],
                "peerclose": [(False, True, False), (True, False, False)],
                "lastack": [(True, False, False), (True, True, True)],
                "closing": [(True, False, False), (True, True, False)]}
        assert fins == want.get(args[0] if args and args[0] not in ("v6", "mapped") else "",
                                [(False, False, False)] * 2), fins
        w.verify()


def test_tcp_accept_queue(workload, images):
    """Connections waiting in a listener's queue come back in it, in order,
    with what they received (and a FIN), from clients in the tree and one
    outside it; each carries data both ways after the restore. Over IPv4,
    IPv6, and IPv4 clients of an IPv6 listener (v4-mapped)."""
    for args in ([], ["v6"], ["mapped"]):
        w = workload([prog("tcpqueue"), "outside", *args])
        port = int(w.wait_ready()["port"])
        outside = socket.create_connection(("::1" if args == ["v6"] else "127.0.0.1", port))
        outside.sendall(b"outside-hello\n")
        time.sleep(0.1)
        cryolib.checkpoint_restore(w, images, dump_args=("--tcp-established",))
        listeners = [e["inet_sk"] for e in cryolib.show(images / "files.img")["records"]
                     if e["kind"] == "INET_SK" and e["inet_sk"].get("pending")]
        assert [len(e["pending"]) for e in listeners] == [4], listeners
        w.verify()
        outside.settimeout(10)
        assert outside.recv(100) == b"outside-bye\n"
        outside.close()


def test_tcp_accept_queue_leave_running(workload, images):
    """A --leave-running dump takes the connections out of the queue to read
    them, and must put them back: the task then accepts all four, in order,
    with their data, and the client outside gets its answer."""
    w = workload([prog("tcpqueue"), "outside"])
    port = int(w.wait_ready()["port"])
    outside = socket.create_connection(("127.0.0.1", port))
    outside.sendall(b"outside-hello\n")
    time.sleep(0.1)
    cryolib.dump(w.pid, images, "--tcp-established", "--leave-running")
    w.verify()
    outside.settimeout(10)
    assert outside.recv(100) == b"outside-bye\n"
    outside.close()


def test_tcp_established_needs_the_flag(workload, images):
    """Without --tcp-established a dump of an established connection fails
    with one line that says so, and the process runs on."""
    w = workload([prog("tcp")])
    w.wait_ready()
    before = cryolib.snapshot(w.pid)
    r = cryolib.cryo("dump", "-t", w.pid, "-D", images, check=False)
    cryolib.one_line_error(r, f"pid {w.pid}", "TCP connection 127.0.0.1:", "--tcp-established")
    cryolib.assert_same_process(before, w.pid)


def test_ping_sockets(ping_groups, workload, images):
    """ICMP datagram sockets, v4 and v6, keep their echo identifier, peer
    and TTL, and a ping on each comes back."""
    w = workload([prog("ping")])
    w.wait_ready()
    cryolib.checkpoint_restore(w, images)
    protos = sorted(e["inet_sk"]["protocol"] for e in cryolib.show(images / "files.img")["records"]
                    if e["kind"] == "INET_SK")
    assert protos == [1, 58], protos
    w.verify()


def test_raw_packet_netlink_udp_sockets(workload, images):
    """A raw ICMP socket pings, a packet socket on lo sees a datagram go by,
    a netlink route socket keeps its port id and groups and answers a
    dump, a connected UDP socket still reaches its peer."""
    w = workload([prog("socks")])
    w.wait_ready()
    cryolib.checkpoint_restore(w, images)
    kinds = sorted(e["kind"] for e in cryolib.show(images / "files.img")["records"]
                   if e["kind"] in ("INET_SK", "NETLINK_SK", "PACKET_SK"))
    assert kinds == ["INET_SK"] * 3 + ["NETLINK_SK", "PACKET_SK", "PACKET_SK"], kinds
    mc = [m for e in cryolib.show(images / "files.img")["records"] if e["kind"] == "PACKET_SK"
          for m in e["packet_sk"].get("mclist", [])]
    assert [(m["ifname"], m["type"], m["count"]) for m in mc] == [("lo", 1, 1)], mc
    w.verify()


def test_udp_queued_datagrams(workload, images):
    """Datagrams a UDP socket received and did not read come back in order,
    each from its sender, with a zero-length and a 60000-byte one, to a
    socket bound to all addresses and to one connected (which held one
    from before it connected); bytes held back by UDP_CORK and MSG_MORE
    stay held and go out whole with the next send; over IPv4, IPv6 and
    v4-mapped IPv6."""
    for args in ([], ["v6"], ["mapped"]):
        w = workload([prog("udp"), *args])
        w.wait_ready()
        cryolib.checkpoint_restore(w, images)
        queues = sorted(len(e["inet_sk"]["rqueue"]) for e in cryolib.show(images / "files.img")["records"]
                        if e["kind"] == "INET_SK" and e["inet_sk"].get("rqueue"))
        assert queues == [3, 4], queues
        held = sorted(bytes.fromhex(e["inet_sk"]["corked"]["data"]) for e in cryolib.show(images / "files.img")["records"]
                      if e["kind"] == "INET_SK" and "corked" in e["inet_sk"])
        assert held == [b"held-", b"more-"], held
        w.verify()


def test_udp_held_bytes_leave_running(workload, images):
    """A --leave-running dump lets the bytes a UDP socket holds back go, to
    catch them, and must hold them back again: the task's datagrams then
    arrive whole, once, after the dump as they would have without it."""
    w = workload([prog("udp")])
    w.wait_ready()
    cryolib.dump(w.pid, images, "--leave-running")
    # the rule that caught them is gone with its table
    assert not [t for t in cryolib.nft_tables() if t.startswith("cryo-")], cryolib.nft_tables()
    w.verify()


RAW_QUEUED = """
import socket, time
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253)
socket.socket(socket.AF_INET, socket.SOCK_RAW, 253).sendto(b"queued", ("127.0.0.1", 0))
time.sleep(0.1)
print("READY", r.fileno(), flush=True)
time.sleep(1000)
"""


def test_raw_queued_datagram_is_a_warning(workload, images):
    """A raw socket's queued datagram cannot be walked in place: the dump
    says it is not kept, naming the socket, and the restore goes on."""
    w = workload(["/usr/bin/python3", "-c", RAW_QUEUED])
    w.wait_ready()
    fd = int(w.output().split()[1])
    r = cryolib.dump(w.pid, images, "--leave-running")
    warn = [ln for ln in r.stderr.splitlines() if "not kept" in ln]
    assert len(warn) == 1 and f"pid {w.pid} fd {fd}" in warn[0] and "raw socket" in warn[0], r.stderr

"""Every self-checking program takes a "tamper" argument that spoils one
value of its state before it checks: checkpointed and restored like the
others, it must then report that value as wrong. A check that cannot fail
proves nothing."""
import pytest

import cryolib
from conftest import prog

# program and arguments -> what it must report
TAMPERED = {
    ("heap", "16"): "1 of 2097152 heap words differ",
    ("mappings",): "guard page is r--p",
    ("vmas",): "locked: 0 kB locked, expected 256",
    ("memfd",): "private mapping byte 10",
    ("fds",): "fd 4 offset 40001, expected 40000",
    ("signals",): "SIGUSR2 sa_mask is not {SIGINT, SIGRTMIN+5}",
    ("fpu",): "ymm9 lane 0",
    ("misc", "hello-world"): "comm misc-tampered, expected misc-renamed",
    ("threads",): "thread 2 rbx",
    ("seccomp",): "thread 0: getppid gave errno 13",
    ("tree",): "b1: session",
    ("clonefiles",): "the root's umask is 027, expected 077",
    ("share",): "b: sees root mark 0x600d600d in the shared memory, expected 0x600d600e",
    ("fdkinds",): "semaphore eventfd gave 5 reads, expected 6",
    ("mixed",): "child failed its checks",
    ("pty",): "window 33x111, expected 34x111",
    ("unixsk",): "stream pair: got 'hello-a', expected 'hello-b'",
    ("tcp",): "client: server stream wrong or short at byte 0 of 1000",
    ("socks",): "netlink: groups 0x11, expected 0x51",
    ("ping",): "v4 ping socket: identifier 0x5a5a, expected 0x5a5b",
    ("tcpqueue",): "c1's stream: 4194304 of 4194304 bytes, wrong from byte 0",
}
# what their dump needs
DUMP_ARGS = {"tcp": ("--tcp-established",), "tcpqueue": ("--tcp-established",)}


@pytest.mark.parametrize("argv", TAMPERED, ids=[a[0] for a in TAMPERED])
def test_tampered_state_is_caught(workload, images, argv, request):
    if argv[0] == "ping":
        request.getfixturevalue("ping_groups")
    w = workload([prog(argv[0]), *argv[1:], "tamper"])
    w.wait_ready()
    cryolib.checkpoint_restore(w, images, dump_args=DUMP_ARGS.get(argv[0], ()))
    w.verify_fails(TAMPERED[argv])

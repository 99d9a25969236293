"""`cryo check` (the kernel feature table) and `cryo show` (images as JSON)."""
import json
import subprocess
from pathlib import Path

CRYO = Path(__file__).resolve().parent.parent / "build" / "cryo"


def cryo(*args):
    return subprocess.run([str(CRYO), *map(str, args)], capture_output=True, text=True, timeout=60)


def check_table(out):
    """{feature: status} from the rows of the `cryo check` table."""
    rows = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 2 and cols[1] in ("ok", "MISSING", "unavailable"):
            rows[cols[0]] = cols[1]
    return rows


def test_check():
    r = cryo("check")
    assert r.returncode == 0, r.stdout + r.stderr
    status = check_table(r.stdout)
    assert status["PAGEMAP_SCAN"] == "ok"
    assert status["pidfd_getfd"] == "ok"
    assert status["soft-dirty"] == "unavailable"  # this machine's kernel has no soft-dirty


def test_show_dump_dir(dumped_sleep):
    r = cryo("show", dumped_sleep)
    assert r.returncode == 0, r.stderr
    images = {img["file"]: img for img in json.loads(r.stdout)["images"]}
    core = next(img for name, img in images.items() if name.startswith("core-"))
    mm = next(img for name, img in images.items() if name.startswith("mm-"))
    assert core["magic"] == "CRYOCORE"
    assert core["records"][0]["threads"][0]["regs"]["rip"] != 0
    assert "[stack]" in [vma.get("name") for vma in mm["records"][0]["vmas"]]


def test_show_bad_checksum(dumped_sleep, tmp_path):
    core = next(Path(dumped_sleep).glob("core-*.img"))
    data = bytearray(core.read_bytes())
    # header (16 bytes), then the first record: u32 len, u32 crc32c, payload
    length = int.from_bytes(data[16:20], "little")
    data[24 + length // 2] ^= 0x01
    bad = tmp_path / core.name
    bad.write_bytes(data)

    r = cryo("show", bad)
    assert r.returncode != 0
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert core.name in lines[0] and "checksum" in lines[0]

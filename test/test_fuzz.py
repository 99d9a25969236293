"""The fuzzers' smoke run (the long one is make fuzz): each libFuzzer
harness of test/fuzz/ (built with ASan and UBSan by make fuzz-build)
replays its regression inputs, then fuzzes for FUZZ_SMOKE_SECONDS (25)
from its seeds, real dumps' images and page-server sessions. A crash, a
leak-free timeout or a sanitizer report fails the test with its input."""
import os
import shutil
import subprocess

import pytest

from cryolib import ROOT

FUZZ = ROOT / "build" / "fuzz"
SECONDS = int(os.environ.get("FUZZ_SMOKE_SECONDS", "25"))


@pytest.mark.parametrize("name", ["image", "frame"])
def test_fuzz_smoke(name, tmp_path):
    binary = FUZZ / f"fuzz-{name}"
    assert binary.exists(), f"{binary} is missing: run make fuzz-build"
    regress = sorted((ROOT / "test" / "fuzz" / "regress" / name).glob("*"))
    if regress:
        r = subprocess.run([str(binary), "-timeout=10", "-rss_limit_mb=2048", *map(str, regress)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"a regression input of fuzz-{name} fails again:\n{r.stderr[-4000:]}"
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "test" / "fuzz" / "corpus" / name, corpus)
    r = subprocess.run([str(binary), f"-max_total_time={SECONDS}", "-timeout=10", "-rss_limit_mb=2048",
                        f"-artifact_prefix={tmp_path}/", str(corpus)],
                       capture_output=True, text=True, timeout=SECONDS + 120)
    crashes = [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-"))]
    assert r.returncode == 0 and not crashes, \
        f"fuzz-{name} found {crashes} (kept in {tmp_path}):\n{r.stderr[-4000:]}"
    assert "DONE" in r.stderr, r.stderr[-2000:]

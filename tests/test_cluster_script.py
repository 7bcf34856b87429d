"""The SLURM check script (tests/cluster/run_slurm_check.sh) leaves a machine as it found it: where
a SLURM or munge daemon already runs, it refuses to start, says so, and touches nothing."""

import os
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_slurm_check_refuses_to_start_next_to_running_daemons(tmp_path):
    fake = tmp_path / "munged"  # a process that pgrep sees as munged
    shutil.copy("/bin/sleep", fake)
    proc = subprocess.Popen([str(fake), "60"])
    try:
        time.sleep(0.2)
        before = sorted(os.listdir("/tmp"))
        out = subprocess.run(["bash", str(REPO / "tests" / "cluster" / "run_slurm_check.sh")], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2
        assert "refusing to run: SLURM or munge daemons already run" in out.stderr and f"{proc.pid} {fake}" in out.stderr
        assert sorted(os.listdir("/tmp")) == before  # no working folder made
        assert proc.poll() is None  # and the "daemon" was left running
    finally:
        proc.kill()
        proc.wait()

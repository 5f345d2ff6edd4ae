"""The live one-node SLURM cluster as a session fixture (tests marked `slurm`, run by `make test-slurm`)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from slurm_cluster import CLUSTER_SCRIPT


def _default_partition() -> str | None:
    out = subprocess.run(["sinfo", "-h", "-o", "%P|%a"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return None
    parts = [line.split("|") for line in out.stdout.split()]
    for name, avail in parts:
        if name.endswith("*") and avail == "up":
            return name.rstrip("*")
    return parts[0][0].rstrip("*") if parts else None


@pytest.fixture(scope="session")
def slurm_partition() -> str:
    """The live cluster's default partition; brings the cluster up (idempotent) if it is not."""
    if shutil.which("sinfo") is None or _default_partition() is None:
        if os.geteuid() != 0:
            pytest.fail("no SLURM cluster reachable; run `sudo make slurm-up` (scripts/slurm/cluster.sh up)")
        subprocess.run([str(CLUSTER_SCRIPT), "up"], check=True, timeout=900)
    partition = _default_partition()
    if partition is None:
        pytest.fail("sinfo shows no partition after scripts/slurm/cluster.sh up")
    return partition

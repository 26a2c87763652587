"""A real single-node Slurm for the launcher tests (scripts/slurm/test_cluster.sh), started once per session."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

TEST_CLUSTER = PROJECT_ROOT / "scripts" / "slurm" / "test_cluster.sh"
# The chain's jobs on the test cluster: one node, the training stages as 2 gloo processes, no GPU requested.
SLURM_TEST_OVERRIDES = ["launcher=slurm", "launcher.nnodes=1", "launcher.nproc_per_node=2",
                        "launcher.slurm.gpus_per_node=null", "launcher.slurm.single_process_gpus.eval=0",
                        "launcher.slurm.single_process_gpus.elo=0",
                        "launcher.slurm.cpus_per_task=2",
                        "launcher.slurm.mem=null", "launcher.preemption_grace_s=60"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def slurm_cluster():
    """SLURM_CONF of a running test cluster; skips only where Slurm is not installed or cannot run here."""
    missing = [name for name in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(name) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): run scripts/slurm/install.sh as root")
    if os.geteuid() != 0:
        pytest.skip("the test cluster runs slurmctld/slurmd as root (SlurmUser=root): run the tests as root")
    directory = Path(tempfile.mkdtemp(prefix="med42-slurm-"))  # not under pytest's 0700 tmp: munged must reach it
    env = {**os.environ, "SLURMCTLD_PORT": str(_free_port()), "SLURMD_PORT": str(_free_port())}
    started = subprocess.run([str(TEST_CLUSTER), "start", str(directory)], env=env, capture_output=True, text=True)
    if started.returncode != 0:  # installed but broken: a real failure, not a skip
        logs = "\n".join(p.read_text()[-2000:] for p in (directory / "log").glob("*.log"))
        subprocess.run([str(TEST_CLUSTER), "stop", str(directory)], check=False)
        pytest.fail(f"test_cluster.sh start failed:\n{started.stdout}\n{started.stderr}\n{logs}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(directory / "slurm.conf")
    yield directory / "slurm.conf"
    subprocess.run([str(TEST_CLUSTER), "stop", str(directory)], check=False)
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
    shutil.rmtree(directory, ignore_errors=True)


def chain_jobs(run_dir: Path) -> dict[str, str]:
    """{job label: job id} of the chain last submitted for run_dir."""
    return {job["label"]: job["job_id"] for job in json.loads((run_dir / "slurm" / "jobs.json").read_text())["jobs"]}


def wait_until_drained(job_ids, timeout_s: float) -> None:
    """Block until none of job_ids is in the queue (finished, failed or cancelled)."""
    deadline = time.time() + timeout_s
    while True:
        queue = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
        if not set(queue.split()) & set(job_ids):
            return
        assert time.time() < deadline, f"jobs {sorted(set(queue.split()) & set(job_ids))} still queued"
        time.sleep(1)


def job_events(run_dir: Path, label: str) -> list[dict]:
    path = run_dir / "slurm" / "status" / f"{label}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []

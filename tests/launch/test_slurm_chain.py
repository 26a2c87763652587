"""`med42 pipeline launcher=slurm` against a real Slurm (scripts/slurm/test_cluster.sh): the demo pipeline as a
chain of jobs, a USR1 mid-SFT that checkpoints, requeues and resumes exactly, and a failure that stops the chain."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from med42_train.config import STAGES
from tests.conftest import SMALL_RUN_OVERRIDES, run_med42
from tests.launch.conftest import SLURM_TEST_OVERRIDES, chain_jobs, job_events, wait_until_drained
from tests.train.conftest import copy_run, logged_steps

pytestmark = pytest.mark.slow
# Every stage of config.STAGES in order, the demo's two DPO rounds as two jobs.
CHAIN = [label for stage in STAGES for label in (["dpo-iter1", "dpo-iter2"] if stage == "dpo" else [stage])]
EVERY_STEP = "sft.logging_steps=1"  # each step's loss logged, so the sequences compare step by step
FEWER_EVALS = "eval.models=[dpo]"  # ours: the two DPO rounds only, to keep the chain within the CI budget


def test_a_failed_stage_stops_the_chain_and_the_status_names_the_failed_job(slurm_cluster, tmp_path):
    run_dir = tmp_path / "failing"
    # An interrupted data attempt made with another config: the data job refuses it (exit 2), a real failure.
    (run_dir / "data").mkdir(parents=True)
    (run_dir / "data" / "started.json").write_text(json.dumps({"config_hash": "0" * 16, "inputs": {}}))
    overrides = [f"run_dir={run_dir}", *SMALL_RUN_OVERRIDES, *SLURM_TEST_OVERRIDES]
    run_med42(["pipeline", *overrides])
    jobs = chain_jobs(run_dir)
    assert list(jobs) == CHAIN
    wait_until_drained(jobs.values(), timeout_s=180)

    status = run_med42(["pipeline", *overrides, "--status"], check=False)
    assert status.returncode == 1, status.stdout
    assert re.search(rf"^data +job {jobs['data']} +FAILED with exit code 2", status.stdout, re.M), status.stdout
    for label in CHAIN[1:]:  # cancelled by --kill-on-invalid-dep=yes, never started
        assert re.search(rf"^{label} +job {jobs[label]} +CANCELLED: never ran", status.stdout, re.M), status.stdout
        assert job_events(run_dir, label) == []
    assert not (run_dir / "sft").exists()
    log = (run_dir / "slurm" / "logs" / f"data-{jobs['data']}.log").read_text()
    assert "holds an interrupted run but was made with other config" in log


def test_demo_chain_survives_usr1_mid_sft_and_completes_in_dependency_order(slurm_cluster, tmp_path):
    run_dir = tmp_path / "chain"
    overrides = [f"run_dir={run_dir}", *SMALL_RUN_OVERRIDES, EVERY_STEP, FEWER_EVALS, *SLURM_TEST_OVERRIDES]
    submitted = run_med42(["pipeline", *overrides])
    jobs = chain_jobs(run_dir)
    assert list(jobs) == CHAIN and "scancel" in submitted.stdout
    again = run_med42(["pipeline", *overrides], check=False)  # while the chain is queued
    assert again.returncode == 2 and "still queued" in again.stderr
    assert all(job_id in again.stderr for job_id in jobs.values()), again.stderr

    _usr1_after_two_logged_steps(run_dir, jobs["sft"])
    wait_until_drained(jobs.values(), timeout_s=900)

    status = run_med42(["pipeline", *overrides, "--status"])
    for stage in (*STAGES, "dpo/iter_1", "dpo/iter_2"):
        assert (run_dir / stage / "COMPLETE").is_file(), f"{stage} not COMPLETE:\n{status.stdout}"
    _assert_ran_in_order(run_dir)
    sft_events = [(e["state"], e["code"]) for e in job_events(run_dir, "sft")]
    assert sft_events == [("started", None), ("requeued", 75), ("started", None), ("completed", 0)]
    assert re.search(r"^sft +job \S+ +COMPLETED \(requeued 1x\)", status.stdout, re.M), status.stdout
    stopped_at = _stopped_at_step(run_dir, jobs["sft"])
    assert stopped_at >= 1

    # Same loss, grad norm and learning rate at every step as an uninterrupted run on the same data.
    straight = copy_run(run_dir, tmp_path / "straight", stages=("data",))
    run_med42(["sft", f"run_dir={straight}", *SMALL_RUN_OVERRIDES, EVERY_STEP], nproc=2, timeout_s=600)
    expected, resumed = logged_steps(straight), logged_steps(run_dir)
    assert sorted(resumed) == sorted(expected) and max(expected) > stopped_at
    for step, values in expected.items():
        assert resumed[step] == pytest.approx(values, rel=1e-5), f"step {step} differs after the requeue"

    # One W&B run id for both attempts: kept in the stage folder, recorded in the manifest.
    run_id = (run_dir / "sft" / "wandb_run_id").read_text().strip()
    assert json.loads((run_dir / "sft" / "manifest.json").read_text())["wandb_run_id"] == run_id
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))) == 2


def _usr1_after_two_logged_steps(run_dir, sft_job: str, timeout_s: float = 600) -> None:
    """`scancel --signal=USR1` to the sft job's steps (torchrun and its workers) once it has trained 2 steps."""
    log, deadline = run_dir / "slurm" / "logs" / f"sft-{sft_job}.log", time.time() + timeout_s
    while not (log.is_file() and log.read_text(errors="replace").count("'loss'") >= 2):
        assert time.time() < deadline, "the sft job never logged two training steps"
        time.sleep(0.3)
    subprocess.run(["scancel", "--signal=USR1", sft_job], check=True)


def _stopped_at_step(run_dir, sft_job: str) -> int:
    log = (run_dir / "slurm" / "logs" / f"sft-{sft_job}.log").read_text(errors="replace")
    assert "requeueing job" in log and "resuming from" in log
    return int(re.search(r"preemption signal \(SIGUSR1 on some rank\) at step (\d+)", log).group(1))


def _assert_ran_in_order(run_dir) -> None:
    """Each job first started after the job before it completed (afterok), and each ended completed."""
    previous_done = 0.0
    for label in CHAIN:
        events = job_events(run_dir, label)
        assert events and events[-1]["state"] == "completed", f"{label}: {events}"
        assert events[0]["time"] >= previous_done, f"{label} started before the job before it completed"
        previous_done = events[-1]["time"]

"""Preemption under 2-process FSDP2: a signal saves a complete checkpoint and exits 75; the rerun resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from med42_train.runtime.preemption import FAULT_INJECTION_ENV, PREEMPTED_EXIT_CODE
from med42_train.train.checkpoint import COMPLETE_MARKER, complete_checkpoints
from tests.conftest import PROJECT_ROOT, run_med42
from tests.train.conftest import SHORT_SFT, logged_steps


def test_a_run_preempted_by_sigterm_then_resumed_matches_an_uninterrupted_run(sft_ready_run):
    straight, interrupted = sft_ready_run(), sft_ready_run()
    run_med42(["sft", f"run_dir={straight}", *SHORT_SFT], nproc=2, timeout_s=600)

    # SIGTERM reaches rank 1 only, after step 2: both ranks must stop at the same step and save together.
    first = run_med42(["sft", f"run_dir={interrupted}", *SHORT_SFT], nproc=2, timeout_s=600, check=False,
                      env_extra={FAULT_INJECTION_ENV: "SIGTERM@2:rank1"})
    assert first.returncode != 0
    assert f"exitcode  : {PREEMPTED_EXIT_CODE}" in first.stderr  # torchrun's summary of the workers' exit
    assert json.loads((interrupted / "sft" / "PREEMPTED").read_text())["global_step"] == 2
    assert [step for step, _ in complete_checkpoints(interrupted / "sft" / "checkpoints")] == [2]
    assert not (interrupted / "sft" / "COMPLETE").exists()

    run_med42(["sft", f"run_dir={interrupted}", *SHORT_SFT], nproc=2, timeout_s=600)
    expected, resumed = logged_steps(straight), logged_steps(interrupted)
    assert sorted(resumed) == sorted(expected) == [1, 2, 3, 4, 5, 6]
    for step, values in expected.items():  # loss, grad norm and learning rate, step by step
        assert resumed[step] == pytest.approx(values, rel=1e-5), f"step {step} differs after the resume"
    assert not (interrupted / "sft" / "PREEMPTED").exists()


def test_sigusr1_to_the_pipeline_saves_a_complete_checkpoint_and_exits_75(sft_ready_run):
    run_dir = sft_ready_run()
    overrides = [f"run_dir={run_dir}", "logger.wandb=false", "sft.max_steps=500", "sft.save_steps=400"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    pipeline = subprocess.Popen([sys.executable, "-m", "med42_train", "pipeline", *overrides], cwd=PROJECT_ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (run_dir / "sft" / "started.json").exists():  # the workers have installed their handlers
        assert pipeline.poll() is None and time.time() < deadline, "the sft stage never started"
        time.sleep(0.5)
    pipeline.send_signal(signal.SIGUSR1)  # what `#SBATCH --signal=USR1@N` sends before the time limit
    output, _ = pipeline.communicate(timeout=300)

    assert pipeline.returncode == PREEMPTED_EXIT_CODE, output[-3000:]
    stopped_at = json.loads((run_dir / "sft" / "PREEMPTED").read_text())
    assert stopped_at["signal"] == "SIGUSR1" and 1 <= stopped_at["global_step"] < 400
    checkpoints = complete_checkpoints(run_dir / "sft" / "checkpoints")
    assert [step for step, _ in checkpoints] == [stopped_at["global_step"]]
    marker = json.loads((checkpoints[0][1] / COMPLETE_MARKER).read_text())
    assert marker["world_size"] == 2
    assert sorted(p.name for p in (checkpoints[0][1] / "pytorch_model_fsdp_0").glob("*.distcp")) == [
        "__0_0.distcp", "__1_0.distcp"]
    assert not (run_dir / "sft" / "COMPLETE").exists() and not (run_dir / "dpo").exists()

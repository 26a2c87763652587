"""Hydra multirun of a CPU stage through hydra-submitit-launcher, one Slurm job per point, on the test cluster."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from med42_train.config import ConfigError
from med42_train.launch.sweep import run_point
from tests.conftest import PROJECT_ROOT


def test_a_training_stage_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match=r"\+stage=sft: a sweep runs one of data, eval"):
        run_point(OmegaConf.create({"stage": "sft"}))


@pytest.mark.slow
def test_a_data_sweep_runs_one_slurm_job_per_point(slurm_cluster, tmp_path):
    command = [sys.executable, "-m", "med42_train.launch.sweep", "-m", "+stage=data", "data.max_length=256,512",
               f"run_dir={tmp_path}/len${{data.max_length}}", "hydra/launcher=submitit_slurm",
               "hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1", f"hydra.sweep.dir={tmp_path}/sweep"]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env={**os.environ, "WANDB_MODE": "offline"},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Submitit 'slurm' sweep output dir" in result.stdout + result.stderr
    for length in (256, 512):
        manifest = OmegaConf.load(tmp_path / f"len{length}" / "data" / "config.yaml")
        assert manifest.data.max_length == length and (tmp_path / f"len{length}" / "data" / "COMPLETE").is_file()
    job_logs = list((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))
    assert len(job_logs) == 2  # two Slurm jobs, one per point

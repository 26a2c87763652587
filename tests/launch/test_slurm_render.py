"""The sbatch scripts the chain renders (no scheduler needed): what each job asks for and runs."""

from __future__ import annotations

import subprocess

import pytest
from omegaconf import OmegaConf

from med42_train.config import STAGES, load_config
from med42_train.launch.slurm import plan_jobs, submit
from tests.conftest import SMALL_RUN_OVERRIDES


@pytest.fixture
def rendered_70b(tmp_path, capsys):
    cfg = load_config(["experiment=med42_v2_70b", f"run_dir={tmp_path}", "launcher.preemption_signal=USR2",
                       "launcher.slurm.partition=gpu", "+launcher.slurm.nccl_env.NCCL_SOCKET_IFNAME=ib0"])
    submitted = submit(cfg, dry_run=True)
    return cfg, {job["label"]: job for job in submitted}, capsys.readouterr().out


def test_one_job_per_stage_and_per_dpo_round_in_order(rendered_70b):
    cfg, jobs, printed = rendered_70b
    rounds = [f"dpo-iter{k}" for k in range(1, cfg.dpo.iterations + 1)]
    assert list(jobs) == [label for stage in STAGES for label in (rounds if stage == "dpo" else [stage])]
    assert "--dependency=afterok:<sft id>" in jobs["dpo-iter1"]["command"]
    assert all("--kill-on-invalid-dep=yes" in job["command"] for job in jobs.values())
    assert "submit in this order" in printed


def test_training_jobs_run_one_torchrun_per_node_on_the_experiments_nodes(rendered_70b):
    cfg, jobs, _ = rendered_70b
    sft = open(jobs["sft"]["script"]).read()
    dpo = open(jobs["dpo-iter2"]["script"]).read()
    assert sft.startswith("#!/bin/bash\n# med42 sft") and "#   sbatch --kill-on-invalid-dep=yes" in sft
    assert "#SBATCH --nodes=6\n" in sft and "#SBATCH --nodes=4\n" in dpo  # paper: SFT on 6 nodes, DPO on 4
    for line in ("#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8", "#SBATCH --signal=USR2@300",
                 "#SBATCH --requeue", "#SBATCH --open-mode=append", "#SBATCH --partition=gpu",
                 'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)',
                 '--nnodes="$SLURM_NNODES" --nproc-per-node=8', '--rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d',
                 "export NCCL_SOCKET_IFNAME=ib0", 'scontrol requeue "$SLURM_JOB_ID"'):
        assert line in sft, line
    assert f"dpo --config {cfg.run_dir}/slurm/config.yaml dpo.until_iteration=2" in dpo
    assert "#SBATCH --time=24:00:00" in sft and "#SBATCH --time=12:00:00" in dpo


def test_cpu_jobs_ask_for_no_gpu_and_scripts_are_valid_bash(rendered_70b):
    _, jobs, _ = rendered_70b
    data, evaluation = open(jobs["data"]["script"]).read(), open(jobs["eval"]["script"]).read()
    assert "--gpus-per-node" not in data and "torch.distributed.run" not in data
    assert "#SBATCH --gpus-per-node=8\n" in evaluation and "torch.distributed.run" not in evaluation
    for job in jobs.values():
        subprocess.run(["bash", "-n", job["script"]], check=True)


def test_the_frozen_config_is_the_resolved_one(rendered_70b):
    cfg, _, _ = rendered_70b
    frozen = OmegaConf.load(f"{cfg.run_dir}/slurm/config.yaml")
    assert OmegaConf.to_container(frozen) == OmegaConf.to_container(cfg, resolve=True)


def test_complete_stages_are_not_submitted_again(demo_run):
    cfg = load_config([f"run_dir={demo_run}", *SMALL_RUN_OVERRIDES, "launcher=slurm", "launcher.nnodes=1",
                       "launcher.nproc_per_node=2"])
    assert plan_jobs(cfg) == []

"""How the pipeline launches training stages: torchrun with the user's overrides and an absolute run_dir."""

from __future__ import annotations

import sys

from med42_train.config import load_config
from med42_train.launch.local import torchrun_command


def test_single_node_uses_a_private_rendezvous_and_forwards_overrides(tmp_path):
    overrides = ["run_dir=relative/dir", "sft.learning_rate=1e-4", "launcher.nproc_per_node=4"]
    cfg = load_config([f"run_dir={tmp_path}", "sft.learning_rate=1e-4", "launcher.nproc_per_node=4",
                       "sft.per_device_train_batch_size=2"])
    command = torchrun_command(cfg, "sft", overrides)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=4" in command and "--standalone" in command
    assert command[-4:] == ["sft", "sft.learning_rate=1e-4", "launcher.nproc_per_node=4", f"run_dir={tmp_path}"]
    assert "run_dir=relative/dir" not in command


def test_torchrun_forwards_preemption_signals_and_waits_the_grace_period(tmp_path):
    cfg = load_config([f"run_dir={tmp_path}", "launcher.preemption_grace_s=120"])
    command = torchrun_command(cfg, "sft", [])
    signals = next(arg for arg in command if arg.startswith("--signals-to-handle=")).split("=")[1].split(",")
    assert {"SIGTERM", "SIGUSR1"} <= set(signals)
    assert "--shutdown-timeout=120" in command


def test_the_local_pipeline_refuses_multi_node_launchers(tmp_path):
    import pytest

    from med42_train.config import ConfigError
    from med42_train.launch.local import run

    overrides = ["launcher.nnodes=2"]  # launcher=slurm submits a chain instead (tests/launch/test_slurm_*.py)
    with pytest.raises(ConfigError, match="use launcher=slurm"):
        run(load_config([f"run_dir={tmp_path}", *overrides]), overrides)

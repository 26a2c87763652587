"""The rendezvous check: ranks that disagree fail within seconds, naming the ranks, instead of hanging."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from med42_train.runtime.rendezvous import _disagreement
from tests.conftest import PROJECT_ROOT


def test_disagreement_names_the_ranks_of_each_value():
    records = [{"rank": 0, "config_hash": "aaa"}, {"rank": 1, "config_hash": "bbb"}, {"rank": 2, "config_hash": "aaa"}]
    assert _disagreement(records, "config_hash") == "config_hash differs between ranks (ranks [0, 2] have aaa, " \
                                                    "ranks [1] have bbb)"
    assert _disagreement(records[:1] + records[2:], "config_hash") is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_rank_with_another_config_fails_fast_naming_the_ranks(tmp_path):
    """Two ranks joined by hand (the environment torchrun would set), rank 1 given another learning rate."""
    port, ranks = _free_port(), []
    started = time.time()
    for rank, learning_rate in ((0, "1e-5"), (1, "2e-5")):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WANDB_MODE": "disabled"}
        command = [sys.executable, "-m", "med42_train", "sft", f"run_dir={tmp_path}",
                   f"sft.learning_rate={learning_rate}", "launcher.nccl_timeout_s=600"]
        ranks.append(subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=300) for process in ranks]
    elapsed_s = time.time() - started
    for process, (_, stderr) in zip(ranks, outputs):
        assert process.returncode == 2, stderr[-3000:]
        assert "rendezvous check failed: config_hash differs between ranks" in stderr
        assert "ranks [0] have" in stderr and "ranks [1] have" in stderr
    # Both stop at the check (start-up plus one all-gather), far below the 600 s collective timeout.
    assert elapsed_s < 120, f"took {elapsed_s:.0f} s"
    assert not (tmp_path / "sft").exists()


def test_under_slurm_a_world_size_other_than_planned_is_a_problem(tmp_path):
    from med42_train.config import load_config
    from med42_train.runtime.rendezvous import _world_size_problem

    slurm = load_config([f"run_dir={tmp_path}", "launcher=slurm", "launcher.nnodes=2", "launcher.nproc_per_node=8",
                         "dpo.nnodes=1"])
    assert _world_size_problem(slurm, "sft", 16) is None and _world_size_problem(slurm, "dpo", 8) is None
    assert "8 ranks joined but the config plans 16" in _world_size_problem(slurm, "sft", 8)
    # A hand-run torchrun on one machine may pick its own size (the sft stage checks the batch split itself).
    assert _world_size_problem(load_config([f"run_dir={tmp_path}"]), "sft", 1) is None

"""The same global batch split differently gives the same loss and gradients (2-process FSDP2, gloo)."""

from __future__ import annotations

import pytest

from tests.conftest import run_med42
from tests.train.conftest import QUIET_LR, logged_steps

# 16 rows of 512 tokens per step on 2 ranks: 8 rows x 1 micro-batch, or 1 row x 8 micro-batches per rank.
SPLITS = {"8x1": "sft.per_device_train_batch_size=8", "1x8": "sft.per_device_train_batch_size=1"}


def test_8x1_and_1x8_micro_batching_give_the_same_loss_and_gradient_norm(sft_ready_run):
    steps = {}
    for name, split in SPLITS.items():
        run_dir = sft_ready_run()
        run_med42(["sft", f"run_dir={run_dir}", "logger.wandb=false", "sft.logging_steps=1", "sft.max_steps=2",
                   "sft.tokens_per_step=8192", QUIET_LR, split], nproc=2, timeout_s=600)
        manifest = (run_dir / "sft" / "manifest.json").read_text()
        assert '"gradient_accumulation_steps": ' + ("1" if name == "8x1" else "8") in manifest
        steps[name] = logged_steps(run_dir)
    assert sorted(steps["8x1"]) == [1, 2]
    for step in (1, 2):
        loss, grad_norm, _ = steps["8x1"][step]
        assert steps["1x8"][step][:2] == pytest.approx((loss, grad_norm), rel=1e-4)

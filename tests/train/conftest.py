"""Run directories for short SFT runs under torchrun, built from the session's demo run."""

from __future__ import annotations

import json
import shutil

import pytest

# Short runs: every step logged, so loss sequences can be compared step by step. A small learning rate keeps the
# demo SFT model (the starting point) able to end its replies, so the exports still validate.
QUIET_LR = "sft.learning_rate=1e-4"
SHORT_SFT = ["logger.wandb=false", "sft.logging_steps=1", "sft.save_steps=3", "sft.max_steps=6", QUIET_LR]


@pytest.fixture
def sft_ready_run(demo_run, tmp_path_factory):
    """Factory of fresh run directories whose data stage is complete, starting SFT from the demo SFT export.

    A few steps from the untrained base would leave a model that never ends its reply, and the export
    validation would (rightly) refuse it; starting from a model that already stops keeps these runs whole.
    """
    def make():
        run_dir = tmp_path_factory.mktemp("sft_run")
        shutil.copytree(demo_run / "data", run_dir / "data")
        manifest_path = run_dir / "data" / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["outputs"]["base_model"]["path"] = str(demo_run / "sft" / "model")
        manifest_path.write_text(json.dumps(manifest))
        return run_dir
    return make


def logged_steps(run_dir, stage="sft"):
    """{step: (loss, grad_norm, learning_rate)} from the stage's log history."""
    history = json.loads((run_dir / stage / "log_history.json").read_text())
    return {e["step"]: (e["loss"], e["grad_norm"], e["learning_rate"]) for e in history if "loss" in e}

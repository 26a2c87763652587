"""Run directories for short SFT runs under torchrun, built from the session's demo run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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


def copy_run(source, target, stages=("data", "sft", "dpo")):
    """Copy finished stages into another run directory, pointing their manifests and configs at the copy (the
    exports' own files stay byte for byte, so their recorded hashes still hold)."""
    for stage in stages:
        shutil.copytree(source / stage, target / stage)
        for name in ("manifest.json", "started.json", "config.yaml"):
            for path in (target / stage).glob(f"**/{name}"):
                if "model" not in path.relative_to(target).parts:
                    path.write_text(path.read_text().replace(str(source), str(target)))
    _refresh_input_fingerprints(target)
    return target


def _refresh_input_fingerprints(run_dir):
    """Manifests name their inputs by path and fingerprint, and a fingerprint covers output paths: recompute them
    upstream first, so the copy is as up to date as the original."""
    from med42_train.runtime.rundir import fingerprint

    rounds = sorted((run_dir / "dpo").glob("iter_*"), key=lambda p: int(p.name.removeprefix("iter_")))
    for directory in [run_dir / "data", run_dir / "sft", *rounds, run_dir / "dpo"]:
        for name in ("manifest.json", "started.json"):
            path = directory / name
            if not path.is_file():
                continue
            record = json.loads(path.read_text())
            for entry in record.get("inputs", {}).values():
                upstream = Path(entry["path"])
                if upstream.name == "manifest.json" and upstream.is_file():
                    entry["sha256"] = fingerprint(json.loads(upstream.read_text()))
            path.write_text(json.dumps(record, indent=2, sort_keys=True))


def dpo_losses(run_dir, k):
    """Loss per logged step of DPO iteration k."""
    history = json.loads((run_dir / "dpo" / f"iter_{k}" / "log_history.json").read_text())
    return {e["step"]: e["loss"] for e in history if "loss" in e}

"""DPO from the SFT export (also its reference) on 2 gloo processes with FSDP2."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM


def test_dpo_starts_from_the_sft_export_found_through_its_manifest(demo_run):
    dpo = json.loads((demo_run / "dpo" / "manifest.json").read_text())
    sft = json.loads((demo_run / "sft" / "manifest.json").read_text())
    assert dpo["reference_model"] == sft["outputs"]["model"]["path"]
    assert dpo["inputs"]["sft"]["path"] == str(demo_run / "sft" / "manifest.json")
    assert dpo["world_size"] == 2 and dpo["fsdp_version"] == 2 and dpo["distributed_type"] == "DistributedType.FSDP"
    assert dpo["figures"]["global_steps"] == 6 and dpo["outputs"]["model"]["stops_on"] == "<|eot_id|>"


def test_dpo_moved_the_policy_away_from_the_reference(demo_run):
    sft = AutoModelForCausalLM.from_pretrained(str(demo_run / "sft" / "model")).state_dict()
    dpo = AutoModelForCausalLM.from_pretrained(str(demo_run / "dpo" / "model")).state_dict()
    assert any(not torch.equal(sft[name], dpo[name]) for name in sft)


# ---- DPO accepts only a validated SFT export whose files are unchanged ----

def _fake_sft(tmp_path, **record_overrides):
    from omegaconf import OmegaConf

    from med42_train.runtime.rundir import sha256_tree

    export = tmp_path / "sft" / "model"
    export.mkdir(parents=True)
    (export / "model.safetensors").write_bytes(b"weights")
    (export / "config.json").write_text("{}")
    record = {"path": str(export), "validated": True, "sha256": sha256_tree(export), **record_overrides}
    return OmegaConf.create({"run_dir": str(tmp_path)}), {"outputs": {"model": record}}, export


def test_a_validated_unchanged_export_is_accepted(tmp_path):
    from med42_train.train.dpo import validated_export

    cfg, manifest, export = _fake_sft(tmp_path)
    assert validated_export(cfg, manifest) == str(export)


@pytest.mark.parametrize("problem", ["tampered", "not_validated", "no_hash", "missing"])
def test_an_unvalidated_or_changed_export_is_refused_with_the_fix(tmp_path, problem):
    import shutil

    from med42_train.runtime.rundir import StageInputError
    from med42_train.train.dpo import validated_export

    overrides = {"not_validated": {"validated": False}, "no_hash": {"sha256": None}}.get(problem, {})
    cfg, manifest, export = _fake_sft(tmp_path, **overrides)
    if problem == "tampered":
        (export / "model.safetensors").write_bytes(b"weightz")
    if problem == "missing":
        shutil.rmtree(export)
    with pytest.raises(StageInputError, match="rerun `med42 sft .* overwrite=true`"):
        validated_export(cfg, manifest)


def test_dpo_stage_refuses_a_tampered_sft_export_before_loading_a_model(demo_run, tmp_path):
    import shutil

    from tests.conftest import run_med42

    for stage in ("data", "sft"):
        shutil.copytree(demo_run / stage, tmp_path / stage)
    manifest_path = tmp_path / "sft" / "manifest.json"
    # The copied manifest points at the original export; point it at the copy, which is then tampered with.
    manifest_path.write_text(manifest_path.read_text().replace(str(demo_run / "sft"), str(tmp_path / "sft")))
    with open(tmp_path / "sft" / "model" / "config.json", "a") as handle:
        handle.write("\n")
    result = run_med42(["dpo", f"run_dir={tmp_path}", "logger.wandb=false"], check=False, timeout_s=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "changed after validation" in output and "overwrite=true" in output
    assert "Loading weights" not in output and not (tmp_path / "dpo" / "COMPLETE").exists()

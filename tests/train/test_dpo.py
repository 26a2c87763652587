"""DPO from the SFT export (also its reference) on 2 gloo processes with FSDP2."""

from __future__ import annotations

import json

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

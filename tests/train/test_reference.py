"""Reference log-probs computed once under FSDP2 (2 gloo ranks), cached, reused, and equal to a live reference."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import load_from_disk
from omegaconf import OmegaConf
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from med42_train.train.reference import reference_cache_key
from tests.conftest import run_med42
from tests.train.conftest import copy_run, dpo_losses
from tests.train.test_dpo import SHORT_DPO


def _manifest(run_dir, k):
    return json.loads((run_dir / "dpo" / f"iter_{k}" / "manifest.json").read_text())


@torch.no_grad()
def _summed_logps(model, prompt: list[int], response: list[int]) -> float:
    """log p(response | prompt) by a plain forward of one sequence: the definition, written out."""
    ids = torch.tensor([prompt + response])
    log_probs = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    positions = range(len(prompt) - 1, len(prompt) + len(response) - 1)  # position t predicts token t + 1
    return float(sum(log_probs[t, ids[0, t + 1]] for t in positions))


def test_cached_reference_logps_equal_a_plain_forward_of_the_reference(demo_run):
    report = _manifest(demo_run, 1)["reference"]
    assert report["mode"] == "precomputed" and report["cache"] == "miss" and report["num_forward_pairs"] > 0
    assert report["check"]["max_relative_difference"] <= report["check"]["tolerance"]
    cached = load_file(f"{report['cache_path']}/{report['cache_key']}.safetensors")
    pairs = load_from_disk(str(demo_run / "data" / "preference"))
    pairs = pairs.select([i for i, it in enumerate(pairs["iteration"]) if it == 1])
    assert len(cached["chosen"]) == len(cached["rejected"]) == len(pairs) == report["num_pairs"]
    reference = AutoModelForCausalLM.from_pretrained(_manifest(demo_run, 1)["reference_model"]["path"]).eval()
    for row in (0, 1, len(pairs) // 2, len(pairs) - 1):  # both ranks' blocks, in dataset order
        pair = pairs[row]
        for column, key in (("chosen_ids", "chosen"), ("rejected_ids", "rejected")):
            expected = _summed_logps(reference, pair["prompt_ids"], pair[column])
            assert float(cached[key][row]) == pytest.approx(expected, rel=1e-4), f"row {row} {key}"


def test_the_cache_key_changes_with_the_reference_the_pairs_and_what_is_summed():
    cfg = OmegaConf.create({"data": {"preference_max_length": 512}, "dpo": {"ld_alpha": None},
                            "model": {"dtype": "float32", "attn_implementation": "sdpa"},
                            "fsdp": {"mixed_precision": False}})
    base = reference_cache_key(cfg, "sha-a", "pairs-a")
    assert base == reference_cache_key(cfg, "sha-a", "pairs-a")
    variants = [reference_cache_key(cfg, "sha-b", "pairs-a"), reference_cache_key(cfg, "sha-a", "pairs-b")]
    for key, value in (("data.preference_max_length", 1024), ("dpo.ld_alpha", 0.5), ("model.dtype", "bfloat16")):
        changed = OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{key}={value}"]))
        variants.append(reference_cache_key(changed, "sha-a", "pairs-a"))
    assert len({base, *variants}) == len(variants) + 1


def test_a_second_run_reuses_the_cache_and_a_new_reference_invalidates_it(demo_run, tmp_path):
    run_dir = copy_run(demo_run, tmp_path)
    # Another learning rate redoes both rounds: iteration 1 has the same reference (SFT) and pairs, iteration 2
    # a new reference (the new iteration 1).
    result = run_med42(["dpo", f"run_dir={run_dir}", *SHORT_DPO, "overwrite=true", "dpo.learning_rate=3e-5"],
                       nproc=2, timeout_s=600)
    first, second = _manifest(run_dir, 1)["reference"], _manifest(run_dir, 2)["reference"]
    assert (first["cache"], first["num_forward_pairs"]) == ("hit", 0)
    assert first["cache_key"] == _manifest(demo_run, 1)["reference"]["cache_key"]
    assert (second["cache"], second["num_forward_pairs"]) == ("miss", second["num_pairs"])
    assert second["cache_key"] != _manifest(demo_run, 2)["reference"]["cache_key"]
    assert result.stderr.count("reference log-probs of") + result.stdout.count("reference log-probs of") == 1
    assert dpo_losses(run_dir, 1)[1] == pytest.approx(0.693147, abs=1e-6)  # cached values still fit the start


def test_a_live_reference_gives_the_same_losses_as_the_precomputed_one(demo_run, tmp_path):
    run_dir = copy_run(demo_run, tmp_path)
    run_med42(["dpo", f"run_dir={run_dir}", *SHORT_DPO, "overwrite=true", "dpo.reference=live", "dpo.iterations=1"],
              nproc=2, timeout_s=600)
    live_report = _manifest(run_dir, 1)["reference"]
    assert (live_report["mode"], live_report["num_forward_pairs"]) == ("live", 0)
    # Sharded per decoder layer like the policy (TRL's own would wrap the root only): layers + embed/tail + root.
    num_layers = json.loads((demo_run / "sft" / "model" / "config.json").read_text())["num_hidden_layers"]
    assert live_report["num_fsdp_units"] >= num_layers + 2
    sharding = live_report["sharding_rank0"]
    assert sharding["num_dtensor_params"] == sharding["num_params_tensors"]
    assert sharding["local_numel"] < sharding["global_numel"]
    precomputed, live = dpo_losses(demo_run, 1), dpo_losses(run_dir, 1)
    assert sorted(live) == sorted(precomputed) == [1, 2, 3, 4, 5, 6]
    for step, loss in precomputed.items():
        # Tolerance: the live reference runs in the training batch's padding, the pass in its own.
        assert live[step] == pytest.approx(loss, rel=1e-4), f"step {step}"

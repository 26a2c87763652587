"""SFT on 2 gloo processes: really sharded by FSDP2, sharded DCP checkpoints, a validated HF export."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from med42_train.models.chat import EOT
from med42_train.runtime.rundir import sha256_tree
from med42_train.train.export import generate_reply


def _manifest(run_dir, stage):
    return json.loads((run_dir / stage / "manifest.json").read_text())


def test_sft_ran_fsdp2_on_two_processes_with_sharded_parameters(demo_run):
    manifest = _manifest(demo_run, "sft")
    assert manifest["world_size"] == 2 and manifest["fsdp_version"] == 2
    assert manifest["distributed_type"] == "DistributedType.FSDP"
    sharding = manifest["figures"]["sharding_rank0"]
    assert sharding["num_dtensor_params"] == sharding["num_params_tensors"] > 0
    assert sharding["placements"] == ["(Shard(dim=0),)"]
    assert sharding["local_numel"] * 2 == sharding["global_numel"]  # each rank holds half


def test_sft_checkpoints_are_sharded_dcp(demo_run):
    checkpoints = sorted((demo_run / "sft" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints
    for part in ("pytorch_model_fsdp_0", "optimizer_0"):
        shards = sorted(p.name for p in (checkpoints[-1] / part).glob("*.distcp"))
        assert shards == ["__0_0.distcp", "__1_0.distcp"]
    assert (checkpoints[-1] / "rng_state_0.pth").is_file() and (checkpoints[-1] / "rng_state_1.pth").is_file()


def test_sft_export_loads_with_plain_transformers_and_stops_on_eot(demo_run):
    export_dir = demo_run / "sft" / "model"
    manifest = _manifest(demo_run, "sft")
    assert manifest["outputs"]["model"]["sha256"] == sha256_tree(export_dir)
    assert list(export_dir.glob("*.safetensors")) and not list(export_dir.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(str(export_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(export_dir))
    stop_ids = [tokenizer.convert_tokens_to_ids("<|end_of_text|>"), tokenizer.convert_tokens_to_ids(EOT)]
    assert sorted(model.generation_config.eos_token_id) == sorted(stop_ids)
    reply = generate_reply(model, tokenizer, manifest["outputs"]["model"]["validation_prompt"], 96)
    assert reply[-1] == tokenizer.convert_tokens_to_ids(EOT)
    assert tokenizer.decode(reply) == manifest["outputs"]["model"]["validation_reply"]


def test_sft_changed_the_weights(demo_run):
    base = AutoModelForCausalLM.from_pretrained(str(demo_run / "data" / "base_model")).state_dict()
    tuned = AutoModelForCausalLM.from_pretrained(str(demo_run / "sft" / "model")).state_dict()
    assert base.keys() == tuned.keys()
    assert not torch.equal(base["model.layers.0.self_attn.q_proj.weight"], tuned["model.layers.0.self_attn.q_proj.weight"])


def test_an_export_that_fails_validation_stops_both_ranks_and_completes_nothing(demo_run, tmp_path):
    import shutil
    import subprocess

    from tests.conftest import run_med42

    shutil.copytree(demo_run / "data", tmp_path / "data")
    try:
        # One step leaves the tiny model unable to end its reply: the export must be refused, on every rank.
        result = run_med42(["sft", f"run_dir={tmp_path}", "sft.max_steps=1", "logger.wandb=false"],
                           check=False, timeout_s=300, nproc=2)
    except subprocess.TimeoutExpired:
        raise AssertionError("a failed export left ranks waiting instead of stopping") from None
    assert result.returncode != 0
    assert "generation did not stop" in result.stdout + result.stderr
    assert not (tmp_path / "sft" / "COMPLETE").exists() and not (tmp_path / "sft" / "model").exists()


def test_a_compiled_model_exports_the_plain_model_names_and_validates(sft_ready_run):
    from safetensors import safe_open

    from tests.conftest import run_med42
    from tests.train.conftest import SHORT_SFT

    run_dir = sft_ready_run()
    # The eager backend wraps the model exactly as inductor does (torch.compile's OptimizedModule, whose state
    # dict names carry `_orig_mod.`) without generating code, so the test stays quick on CPU.
    run_med42(["sft", f"run_dir={run_dir}", *SHORT_SFT, "sft.max_steps=2", "sft.torch_compile=true",
               "sft.torch_compile_backend=eager"], nproc=2, timeout_s=600)
    export_dir = run_dir / "sft" / "model"
    assert _manifest(run_dir, "sft")["outputs"]["model"]["validated"]
    with safe_open(str(export_dir / "model.safetensors"), "pt") as handle:
        names = list(handle.keys())
    assert names and not any("_orig_mod" in name for name in names)
    _, loading = AutoModelForCausalLM.from_pretrained(str(export_dir), output_loading_info=True)
    assert not loading["missing_keys"] and not loading["unexpected_keys"]  # the trained weights, all of them

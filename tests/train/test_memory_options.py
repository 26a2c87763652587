"""The 70B memory switches reach accelerate's FSDP2 plugin as FSDP2 objects; CPU-impossible ones fail early."""

from __future__ import annotations

import os

import pytest
import torch
from accelerate.utils import FullyShardedDataParallelPlugin
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy
from transformers import TrainingArguments

from med42_train.config import ConfigError, load_config
from med42_train.train.common import apply_mixed_precision, fsdp_config


def _plugin(cfg, tmp_path) -> FullyShardedDataParallelPlugin:
    """The plugin Trainer.create_accelerator_and_postprocess builds from our TrainingArguments."""
    args = TrainingArguments(output_dir=str(tmp_path), fsdp=True, fsdp_config=fsdp_config(cfg), use_cpu=True,
                             report_to=[])
    apply_mixed_precision(cfg, args)
    return FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)


def test_the_70b_experiment_turns_on_every_memory_option_in_the_fsdp2_plugin(tmp_path):
    cfg = load_config(["experiment=med42_v2_70b", "launcher.backend=nccl", "fsdp.cpu_offload=true"])
    plugin = _plugin(cfg, tmp_path)
    assert plugin.fsdp_version == 2 and plugin.activation_checkpointing and plugin.cpu_ram_efficient_loading
    assert isinstance(plugin.cpu_offload, CPUOffloadPolicy)
    assert plugin.mixed_precision_policy == MixedPrecisionPolicy(
        param_dtype=torch.bfloat16, reduce_dtype=torch.float32, output_dtype=torch.float32)
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]


def test_accelerate_keeps_our_policy_when_the_trainer_asks_for_bf16(tmp_path):
    # Under bf16=true accelerate calls set_mixed_precision("bf16"), which would reduce gradients in bf16.
    plugin = _plugin(load_config(["experiment=med42_v2_70b", "launcher.backend=nccl"]), tmp_path)
    plugin.set_mixed_precision("bf16")
    assert plugin.mixed_precision_policy.reduce_dtype == torch.float32


def test_the_default_config_leaves_the_memory_options_off(tmp_path):
    plugin = _plugin(load_config([]), tmp_path)
    assert not plugin.activation_checkpointing and not plugin.cpu_ram_efficient_loading
    assert plugin.mixed_precision_policy is None and not isinstance(plugin.cpu_offload, CPUOffloadPolicy)


def test_mixed_precision_on_gloo_fails_at_config_time_and_at_launch(tmp_path):
    with pytest.raises(ConfigError, match="fsdp.mixed_precision=true needs CUDA"):
        load_config(["fsdp.mixed_precision=true", "launcher.backend=gloo"])
    cfg = load_config(["fsdp.mixed_precision=true"])  # auto: resolved only at launch
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fsdp.mixed_precision=false"):
            _plugin(cfg, tmp_path)


@pytest.mark.parametrize("override, fix", [
    ("export.max_shard_size=lots", "use a size such as 5GB"),
    ("launcher.peak_tflops_per_device=-1", "peak_tflops_per_device must be positive"),
])
def test_bad_export_and_mfu_settings_fail_early(override, fix):
    with pytest.raises(ConfigError, match=fix):
        load_config([override])


def test_liger_without_the_package_or_on_gloo_fails_early():
    import importlib.util

    message = "pip install liger-kernel" if importlib.util.find_spec("liger_kernel") is None else "needs CUDA"
    with pytest.raises(ConfigError, match=message):
        load_config(["sft.use_liger_kernel=true", "launcher.backend=gloo"])


def test_ram_efficient_loading_reads_weights_on_rank0_only(tmp_path, monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM

    from med42_train.train.common import load_model

    saved = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    saved.save_pretrained(str(tmp_path / "base"))
    cfg = load_config(["fsdp.cpu_ram_efficient_loading=true"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    (tmp_path / "base" / "model.safetensors").unlink()  # rank 1 must not need the weights at all
    empty = load_model(cfg, str(tmp_path / "base"))
    params = list(empty.parameters())
    assert [p.shape for p in params] == [p.shape for p in saved.parameters()]
    # Real CPU storage with distinct addresses: accelerate maps optimizer parameters by data_ptr.
    assert all(p.device.type == "cpu" for p in params) and len({p.data_ptr() for p in params}) == len(params)
    # Buffers computed from the config stay right: accelerate re-registers them after sharding.
    assert torch.equal(empty.model.rotary_emb.inv_freq, saved.model.rotary_emb.inv_freq)


PEAK_RSS_OF_LOADING = """
import resource, sys
from med42_train.config import load_config
from med42_train.train.common import load_model
cfg = load_config(["fsdp.cpu_ram_efficient_loading=true"])
before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model = load_model(cfg, sys.argv[1])
model_mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
print(model_mib, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib) / 1024)
"""


def test_an_empty_model_on_nonzero_ranks_costs_no_physical_memory(tmp_path):
    import subprocess
    import sys

    from transformers import LlamaConfig

    from tests.conftest import PROJECT_ROOT

    # About 400 MiB of float32 parameters; only the config is on disk. A fresh process, so its peak RSS is ours.
    LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2048, num_hidden_layers=4,
                num_attention_heads=8, num_key_value_heads=8).save_pretrained(str(tmp_path / "big"))
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run([sys.executable, "-c", PEAK_RSS_OF_LOADING, str(tmp_path / "big")], env=env,
                            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    model_mib, peak_growth_mib = map(float, result.stdout.split()[-2:])
    assert model_mib > 350 and peak_growth_mib < model_mib / 4


def test_ram_efficient_loading_trains_exactly_like_loading_everywhere(demo_run, tmp_path):
    """Rank 1 starts from an empty model and gets rank 0's weights while sharding: same losses as the demo run."""
    import shutil

    from tests.conftest import SMALL_RUN_OVERRIDES, run_med42
    from tests.train.conftest import logged_steps

    shutil.copytree(demo_run / "data", tmp_path / "data")
    sft_overrides = [o for o in SMALL_RUN_OVERRIDES if o.startswith("sft.")]
    run_med42(["sft", f"run_dir={tmp_path}", "fsdp.cpu_ram_efficient_loading=true", "logger.wandb=false",
               *sft_overrides], timeout_s=600, nproc=2)
    assert (tmp_path / "sft" / "COMPLETE").is_file()
    reference, losses = (logged_steps(run_dir) for run_dir in (demo_run, tmp_path))
    assert len(reference) >= 2 and sorted(losses) == sorted(reference)
    for step, values in reference.items():
        assert losses[step] == pytest.approx(values, rel=1e-6), f"step {step}"

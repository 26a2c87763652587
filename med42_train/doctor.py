"""`med42 doctor [overrides]`: what to run first on a new cluster. Each line is ok / warn / fail with the fix.

Checks: torch, CUDA and NCCL versions; GPUs and their memory; free disk under run_dir against the checkpoints
the experiment keeps (computed from the model's size); hub and W&B credentials present (never printed);
Slurm (sinfo partitions); the attention kernel the config asks for. Exit code 1 when any line fails.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import torch
from omegaconf import DictConfig

from med42_train.config import load_config

# Bytes per parameter of one resumable checkpoint: bf16/fp32 weights (dtype) + fp32 AdamW moments (8 bytes);
# an export adds the weights once more.
_OPTIMIZER_BYTES_PER_PARAM = 8


def run_doctor(overrides: list[str]) -> int:
    cfg = load_config(overrides)
    checks = [_torch(), _gpus(cfg), _disk(cfg), _credentials(), _slurm(cfg), _attention(cfg)]
    for status, what, detail in checks:
        print(f"{status:<5} {what:<12} {' | '.join(detail.splitlines())}")  # one line per check
    return 1 if any(status == "fail" for status, _, _ in checks) else 0


def _torch() -> tuple[str, str, str]:
    nccl = ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else "n/a"
    detail = f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none (CPU build)'}, NCCL {nccl}"
    return ("ok" if torch.version.cuda else "warn"), "torch", detail + (
        "" if torch.version.cuda else ": training runs on gloo/CPU only; install the CUDA build of the pinned torch")


def _gpus(cfg: DictConfig) -> tuple[str, str, str]:
    count = torch.cuda.device_count()
    if count == 0:
        return "warn", "gpus", "no CUDA device here (fine on a login node; training jobs need them)"
    memory_gib = [torch.cuda.get_device_properties(i).total_memory / 2**30 for i in range(count)]
    detail = f"{count} x {torch.cuda.get_device_name(0)} ({min(memory_gib):.0f} GiB each)"
    if count < cfg.launcher.nproc_per_node:
        return "fail", "gpus", (f"{detail}, but launcher.nproc_per_node={cfg.launcher.nproc_per_node}: "
                                f"lower it to {count} or run on a node with more GPUs")
    return "ok", "gpus", detail


def checkpoint_bytes(cfg: DictConfig, num_params: int) -> int:
    """Disk the run keeps at most: save_total_limit checkpoints of SFT and of one DPO round, plus the exports."""
    weight_bytes = 4 if cfg.model.dtype == "float32" else 2
    per_checkpoint = num_params * (weight_bytes + _OPTIMIZER_BYTES_PER_PARAM)
    num_checkpoints = cfg.sft.save_total_limit + cfg.dpo.save_total_limit
    num_exports = 1 + cfg.dpo.iterations
    return per_checkpoint * num_checkpoints + num_params * weight_bytes * num_exports


def _num_params(cfg: DictConfig) -> int:
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    if cfg.model.name_or_path == "demo":
        tiny = cfg.model.tiny
        config = LlamaConfig(vocab_size=tiny.bpe_vocab_size + 256, hidden_size=tiny.hidden_size,
                             intermediate_size=tiny.intermediate_size, num_hidden_layers=tiny.num_hidden_layers,
                             num_attention_heads=tiny.num_attention_heads,
                             num_key_value_heads=tiny.num_key_value_heads)
    else:
        config = _model_config(cfg.model.name_or_path, AutoConfig, LlamaConfig)
    with init_empty_weights():  # shapes only, nothing allocated
        return sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())


# Shapes from Meta's published config.json of Llama 3 / 3.1 (8B, 70B), for sizing before the weights are here.
_LLAMA3_SHAPES = {
    "70b": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32),
}


def _model_config(name_or_path: str, auto_config, llama_config):
    try:  # a local folder or the hub cache; never the network (a login node may have none)
        return auto_config.from_pretrained(name_or_path, trust_remote_code=False, local_files_only=True)
    except OSError:
        size = next((key for key in _LLAMA3_SHAPES if key in name_or_path.lower() and "llama-3" in
                     name_or_path.lower()), None)
        if size is None:
            raise
        return llama_config(vocab_size=128256, num_key_value_heads=8, **_LLAMA3_SHAPES[size])


def _disk(cfg: DictConfig) -> tuple[str, str, str]:
    try:
        num_params = _num_params(cfg)
    except Exception as err:  # no network / no local copy of the model's config
        return "warn", "disk", f"cannot size {cfg.model.name_or_path} ({type(err).__name__}): download it first"
    existing = Path(cfg.run_dir)
    while not existing.exists():
        existing = existing.parent
    free, needed = shutil.disk_usage(existing).free, checkpoint_bytes(cfg, num_params)
    detail = (f"{free / 2**30:.1f} GiB free under {existing}; the run keeps up to {needed / 2**30:.1f} GiB "
              f"({num_params / 1e6:,.0f} M params: checkpoints x save_total_limit + exports)")
    if free < needed:
        return "fail", "disk", detail + ": point run_dir at a larger (shared) file system, or lower save_total_limit"
    return "ok", "disk", detail


def _credentials() -> tuple[str, str, str]:
    from huggingface_hub import get_token

    hub = bool(get_token())
    wandb = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").is_file()
    detail = f"hub token {'found' if hub else 'missing'}, W&B key {'found' if wandb else 'missing'} (values never shown)"
    if hub and wandb:
        return "ok", "credentials", detail
    return "warn", "credentials", detail + (": `huggingface-cli login` for gated Llama weights; "
                                            "`wandb login` or logger.mode=offline")


def _slurm(cfg: DictConfig) -> tuple[str, str, str]:
    level = "fail" if cfg.launcher.name == "slurm" else "warn"  # only launcher=slurm needs it
    if shutil.which("sinfo") is None:
        return level, "slurm", "sinfo not found: launcher=slurm needs a Slurm login node (or launcher=local)"
    result = subprocess.run(["sinfo", "-h", "-o", "%P %a %D %G"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return level, "slurm", f"sinfo failed: {result.stderr.strip()[:300]} (is slurmctld reachable? SLURM_CONF?)"
    partitions = "; ".join(line.strip() for line in result.stdout.splitlines())
    return "ok", "slurm", f"partitions (name avail nodes gres): {partitions}; preemption signal " \
                          f"{cfg.launcher.preemption_signal} (USR2 if your NCCL build handles USR1)"


def _attention(cfg: DictConfig) -> tuple[str, str, str]:
    kernel = cfg.model.attn_implementation
    needs = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}.get(kernel)
    if needs and importlib.util.find_spec(needs) is None:
        return "fail", "attention", f"{kernel} needs the {needs} package: install it, or model.attn_implementation=sdpa"
    return "ok", "attention", f"{kernel} available"

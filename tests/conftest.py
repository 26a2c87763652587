"""Shared fixtures: one small end-to-end demo run (real torchrun, 2 gloo processes), real-data location."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Small but real: SFT needs about one epoch for the tiny model to learn to end its reply on <|eot_id|>,
# which the export validation demands.
SMALL_RUN_OVERRIDES = [
    "sft.num_train_epochs=1",
    "sft.save_steps=8",
    "dpo.max_steps=6",
    "dpo.save_steps=3",
    "dpo.logging_steps=1",
    "eval.limit=16",
]
PLANTED_SECRET = "wandb-secret-0123456789abcdef"


def run_med42(args: list[str], env_extra: dict[str, str] | None = None, check: bool = True,
              timeout_s: float | None = None, nproc: int = 0):
    """`python -m med42_train ARGS` in a subprocess, under `torchrun --nproc-per-node NPROC` when nproc > 0."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_API_KEY": PLANTED_SECRET, **(env_extra or {})}
    env.pop("WANDB_DIR", None)
    env.pop("WANDB_SERVICE", None)  # this session's own wandb service (in-process tests) is not the child's
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc else []
    result = subprocess.run([sys.executable, *launcher, "-m", "med42_train", *args], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout_s)
    if check and result.returncode != 0:
        raise AssertionError(f"med42 {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}"
                             f"\n{result.stderr[-8000:]}")
    return result


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A whole pipeline (data -> sft -> dpo -> eval) in a temporary run_dir, run once per test session."""
    run_dir = tmp_path_factory.mktemp("demo_run")
    result = run_med42(["pipeline", f"run_dir={run_dir}", *SMALL_RUN_OVERRIDES])
    (run_dir / "pipeline.log").write_text(result.stdout + result.stderr)
    return run_dir


@pytest.fixture(scope="session")
def realdata() -> Path:
    """../shared/realdata (or $MED42_REALDATA); tests using it skip where it is absent."""
    candidates = [os.environ.get("MED42_REALDATA"), PROJECT_ROOT.parent / "shared" / "realdata"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "README.md").is_file():
            return Path(candidate)
    pytest.skip("real public data not found at ../shared/realdata or $MED42_REALDATA")


@pytest.fixture(scope="session")
def llama3_tokenizer(realdata, tmp_path_factory):
    """Meta's Llama 3 tokenizer rebuilt from ../shared/realdata (tiktoken ranks + the official config)."""
    from med42_train.models.tokenizer import tokenizer_from_tiktoken

    return tokenizer_from_tiktoken(realdata / "llama3_tokenizer.model",
                                   realdata / "llama3_8b_instruct_tokenizer_config.json",
                                   tmp_path_factory.mktemp("llama3_tokenizer"))


# Llama 3.1's names for tokens Llama 3 keeps reserved, as transformers' conversion scripts list them (public code,
# found with the code search: DEFAULT_LLAMA_SPECIAL_TOKENS["3.1"] of convert_llama_weights_to_hf.py; the Llama 3.2
# vision converter's list gives the same ids to these three).
# The remaining reserved tokens are renumbered from <|reserved_special_token_2|> (128005) on.
LLAMA31_NAMED_IDS = {128004: "<|finetune_right_pad_id|>", 128008: "<|eom_id|>", 128010: "<|python_tag|>"}


@pytest.fixture(scope="session")
def llama31_tokenizer(realdata, tmp_path_factory):
    """Meta's Llama 3.1 tokenizer: Llama 3's ranks (the same file) with 3.1's special-token names."""
    import json

    from med42_train.models.tokenizer import tokenizer_from_tiktoken

    config = json.loads((realdata / "llama3_8b_instruct_tokenizer_config.json").read_text())
    reserved = 0
    for token_id in range(128002, 128256):
        if token_id in (128006, 128007, 128009):  # start/end header, eot: the same in 3 and 3.1
            continue
        entry = config["added_tokens_decoder"][str(token_id)]
        entry["content"] = LLAMA31_NAMED_IDS.get(token_id) or f"<|reserved_special_token_{reserved}|>"
        reserved += token_id not in LLAMA31_NAMED_IDS
    config_file = tmp_path_factory.mktemp("llama31_config") / "tokenizer_config.json"
    config_file.write_text(json.dumps(config))
    return tokenizer_from_tiktoken(realdata / "llama3_tokenizer.model", config_file,
                                   tmp_path_factory.mktemp("llama31_tokenizer"))


@pytest.fixture(autouse=True)
def no_inherited_wandb_service():
    """An in-process wandb.init leaves this session's service token in the environment; a child process (a stage,
    an sbatch job) that inherited it would attach to that service instead of starting its own, and a requeued
    job's attempt would find its run id still held there ("run ID ... is in use")."""
    os.environ.pop("WANDB_SERVICE", None)

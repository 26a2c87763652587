"""The training stages' deliverable: a consolidated HF export (safetensors), validated before it is declared.

Validation reloads the export with plain transformers on CPU, checks parameter count and dtype against the
trained model, and generates a reply to one prompt, which must end on <|eot_id|> (or <|end_of_text|>).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import save_torch_state_dict
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from transformers import AutoModelForCausalLM, AutoTokenizer

from med42_train.models.chat import EOT
from med42_train.models.demo import generation_config
from med42_train.runtime.dist import broadcast_object, dist_info
from med42_train.runtime.log import get_logger
from med42_train.runtime.rundir import sha256_tree

log = get_logger()


class ExportError(RuntimeError):
    """The export does not load, does not match the trained model, or does not stop generating."""


def export_model(trainer, tokenizer, out_dir: Path, validation_prompt: str, max_new_tokens: int = 96) -> dict:
    """Gather the FSDP2 shards into one state dict (all ranks take part), save and validate on rank 0.

    Rank 0's outcome, success or error, is broadcast, so a failed validation stops every rank at once instead
    of leaving the others waiting at a barrier until the process-group timeout.
    """
    # Every rank sends its shards; rank 0 receives full tensors on CPU, the others an empty dict.
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state_dict = get_model_state_dict(trainer.model, options=options)
    outcome: dict[str, Any] = {}
    if dist_info().is_main:
        try:
            model = trainer.accelerator.unwrap_model(trainer.model)
            outcome = {"report": _save_validated(model, state_dict, tokenizer, out_dir, validation_prompt,
                                                 max_new_tokens)}
        except Exception as err:  # noqa: BLE001 - re-raised on every rank below
            outcome = {"error": f"{type(err).__name__}: {err}"}
    outcome = broadcast_object(outcome)
    if "error" in outcome:
        raise ExportError(f"export to {out_dir} failed: {outcome['error']}")
    return {"path": str(out_dir), **outcome["report"]}


def _save_validated(model, state_dict, tokenizer, out_dir: Path, prompt: str, max_new_tokens: int) -> dict:
    """Write the export under a temporary name, validate it, then rename: a model/ folder is always whole."""
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model.config.use_cache = True  # inference default for users of the export
    model.generation_config = generation_config(tokenizer)
    # huggingface_hub writes sharded safetensors plus the index; the model object itself still holds DTensors,
    # which save_pretrained cannot serialise.
    save_torch_state_dict(state_dict, str(partial), max_shard_size="5GB")
    model.config.save_pretrained(str(partial))
    model.generation_config.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    expected = {"num_params": sum(t.numel() for t in state_dict.values()),
                "dtype": str(next(iter(state_dict.values())).dtype)}
    report = validate_export(partial, prompt, expected, max_new_tokens)
    report["sha256"] = sha256_tree(partial)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(partial, out_dir)
    return report


def validate_export(out_dir: Path, prompt: str, expected: dict[str, Any], max_new_tokens: int) -> dict[str, Any]:
    model = AutoModelForCausalLM.from_pretrained(str(out_dir), dtype="auto", device_map="cpu")
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
    num_params = sum(p.numel() for p in model.state_dict().values())
    dtype = str(next(model.parameters()).dtype)
    if num_params != expected["num_params"] or dtype != expected["dtype"]:
        raise ExportError(f"{out_dir}: reloaded {num_params} params as {dtype}, trained model had {expected}")
    reply_ids = generate_reply(model, tokenizer, prompt, max_new_tokens)
    stopped = bool(reply_ids) and reply_ids[-1] in model.generation_config.eos_token_id
    reply = tokenizer.decode(reply_ids)
    log.info("export validation: %s -> %r (stopped=%s)", prompt, reply, stopped)
    if not stopped:
        raise ExportError(f"{out_dir}: generation did not stop within {max_new_tokens} tokens: {reply!r}")
    return {"num_params": num_params, "dtype": dtype, "validation_prompt": prompt, "validation_reply": reply,
            "stops_on": EOT if reply.endswith(EOT) else "<|end_of_text|>"}


@torch.no_grad()
def generate_reply(model, tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    """Greedy reply token ids (including the stop token, if any) to one user message."""
    input_ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    output = model.generate(input_ids, max_new_tokens=max_new_tokens, do_sample=False)
    return output[0, input_ids.shape[1]:].tolist()

"""Validation of an export with bounded memory: it never holds the whole model.

1. Every shard is read back one tensor at a time (safetensors `safe_open`): the file names, tensor names, shapes,
   dtypes and a sha256 of each tensor's bytes must be what the export wrote (ShardWriter records them while it
   writes). A missing, extra, retyped or altered tensor is refused, naming the shard and the tensor.
2. The export is loaded by plain transformers with its decoder layers offloaded to disk (accelerate reads each
   layer from the safetensors files in place when it runs), so the loader's own view is checked too: names it
   does not find (missing/unexpected keys), parameter count, dtype. One greedy reply must end on <|eot_id|>
   (or <|end_of_text|>).
Resident memory is then about one shard's read-back plus the embedding, LM head and one layer at a time; pages
mapped from the files are the kernel's page cache, which it can reclaim.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from med42_train.runtime.log import get_logger

log = get_logger()


class ExportError(RuntimeError):
    """The export does not load, does not match the trained model, or does not stop generating."""


def tensor_record(tensor: torch.Tensor) -> dict[str, Any]:
    """What validation compares a written tensor with: shape, dtype, sha256 of its bytes."""
    raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype), "sha256": hashlib.sha256(raw).hexdigest()}


def check_shards(out_dir: Path, written: dict[str, dict[str, dict]]) -> None:
    """Each shard file holds exactly the tensors written to it ({file: {name: tensor_record}}), unaltered."""
    on_disk = {path.name for path in Path(out_dir).glob("*.safetensors")}
    if on_disk != set(written):
        raise ExportError(f"{out_dir}: shard files {sorted(on_disk)}, written {sorted(written)}")
    for file_name, records in written.items():
        with safe_open(str(Path(out_dir) / file_name), framework="pt") as handle:
            names = set(handle.keys())
            if names != set(records):
                raise ExportError(f"{out_dir}/{file_name}: missing tensors {sorted(set(records) - names)[:5]}, "
                                  f"unexpected {sorted(names - set(records))[:5]}")
            for name, expected in records.items():
                actual = tensor_record(handle.get_tensor(name))  # one tensor in memory at a time
                if actual != expected:
                    raise ExportError(f"{out_dir}/{file_name}: tensor {name} reads back as "
                                      f"{_differs(actual, expected)}")


def _differs(actual: dict, expected: dict) -> str:
    return ", ".join(f"{key} {actual[key]} (written {expected[key]})" for key in actual if actual[key] != expected[key])


def validate_export(out_dir: Path, prompt: str, expected: dict[str, Any], written: dict[str, dict[str, dict]],
                    max_new_tokens: int) -> dict[str, Any]:
    check_shards(out_dir, written)
    with tempfile.TemporaryDirectory(prefix="export-offload-") as offload_dir:
        model = load_offloaded(out_dir, offload_dir)
        num_params = sum(p.numel() for p in model.state_dict().values())
        dtype = str(next(model.parameters()).dtype)
        if num_params != expected["num_params"] or dtype != expected["dtype"]:
            raise ExportError(f"{out_dir}: reloaded {num_params} params as {dtype}, trained model had {expected}")
        tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
        reply_ids = generate_reply(model, tokenizer, prompt, max_new_tokens)
        stopped = bool(reply_ids) and reply_ids[-1] in model.generation_config.eos_token_id
    reply = tokenizer.decode(reply_ids)
    log.info("export validation: %s -> %r (stopped=%s)", prompt, reply, stopped)
    if not stopped:
        raise ExportError(f"{out_dir}: generation did not stop within {max_new_tokens} tokens: {reply!r}")
    return {"num_params": num_params, "dtype": dtype, "validation_prompt": prompt, "validation_reply": reply,
            "stops_on": tokenizer.convert_ids_to_tokens(reply_ids[-1])}  # 3.1 may also stop on <|eom_id|>


def load_offloaded(out_dir: Path, offload_dir: str):
    """The export as transformers loads it, decoder layers on disk (read in place), the rest on CPU."""
    with _not_fsdp_loading():
        model, loading = AutoModelForCausalLM.from_pretrained(
            str(out_dir), dtype="auto", device_map=offload_device_map(out_dir), offload_folder=offload_dir,
            output_loading_info=True)
    # A weight the loader did not find is initialised at random: the parameter count would still match.
    if loading["missing_keys"] or loading["unexpected_keys"]:
        raise ExportError(f"{out_dir}: the saved names do not match the model's: missing "
                          f"{sorted(loading['missing_keys'])[:5]}, unexpected {sorted(loading['unexpected_keys'])[:5]}")
    return model


@contextmanager
def _not_fsdp_loading():
    """transformers skips dispatching an offloaded model (its layers stay on meta, with no hooks to load them)
    when it believes FSDP's RAM-efficient loading is on: torch.distributed initialised plus accelerate's
    ACCELERATE_USE_FSDP and FSDP_CPU_RAM_EFFICIENT_LOADING (transformers/distributed/fsdp.py is_fsdp_enabled),
    as in a training job with fsdp.cpu_ram_efficient_loading. This load is rank 0's own inference load."""
    previous = os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING")
    os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("FSDP_CPU_RAM_EFFICIENT_LOADING")
        else:
            os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = previous


def offload_device_map(out_dir: Path) -> dict[str, str]:
    """Llama-family layout: `model.layers.<i>` to disk, every other module of the model to CPU."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(out_dir)))
    device_map = {f"model.{name}": "cpu" for name, _ in skeleton.model.named_children() if name != "layers"}
    device_map.update({f"model.layers.{i}": "disk" for i in range(len(skeleton.model.layers))})
    device_map.update({name: "cpu" for name, _ in skeleton.named_children() if name != "model"})
    return device_map


@torch.no_grad()
def generate_reply(model, tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    """Greedy reply token ids (including the stop token, if any) to one user message."""
    input_ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    output = model.generate(input_ids, max_new_tokens=max_new_tokens, do_sample=False)
    return output[0, input_ids.shape[1]:].tolist()

"""The training stages' deliverable: an HF export (sharded safetensors), streamed, validated before it is declared.

The export never gathers the whole model in one process: every rank takes part in gathering one parameter at
a time (DTensor.full_tensor(), same order everywhere), rank 0 moves it to CPU and appends it to the current
safetensors shard, and a shard is written as soon as it reaches `max_shard_bytes`. Rank 0 therefore holds at
most one shard plus one tensor (a 70B model in bf16 is 140 GB; a shard is 5 GB by default).

Validation reloads the export with plain transformers on CPU, checks parameter count and dtype against the
trained model, and generates a reply to one prompt, which must end on <|eot_id|> (or <|end_of_text|>).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from safetensors.torch import save_file
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from med42_train.models.chat import generation_config
from med42_train.runtime.dist import broadcast_object, dist_info
from med42_train.runtime.log import get_logger
from med42_train.runtime.rundir import sha256_tree

log = get_logger()

INDEX_NAME = "model.safetensors.index.json"
SINGLE_SHARD_NAME = "model.safetensors"


class ExportError(RuntimeError):
    """The export does not load, does not match the trained model, or does not stop generating."""


class ShardWriter:
    """Appends tensors to an in-memory shard and writes it to disk once it reaches `max_shard_bytes`.

    A tensor larger than the bound gets a shard of its own (as huggingface_hub does). `peak_held_bytes` is the
    most this writer held at once (its shard plus the incoming tensor): the export's extra memory on rank 0.
    """

    def __init__(self, out_dir: Path, max_shard_bytes: int):
        self.out_dir, self.max_shard_bytes = Path(out_dir), max_shard_bytes
        self.shard: dict[str, torch.Tensor] = {}
        self.shard_bytes = 0
        self.files: list[tuple[str, list[str]]] = []  # (temporary file name, tensor names) per written shard
        self.total_bytes = self.peak_held_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        num_bytes = tensor.numel() * tensor.element_size()
        if self.shard and self.shard_bytes + num_bytes > self.max_shard_bytes:
            self.flush()
        self.peak_held_bytes = max(self.peak_held_bytes, self.shard_bytes + num_bytes)
        self.shard[name] = tensor.contiguous()
        self.shard_bytes += num_bytes
        self.total_bytes += num_bytes

    def flush(self) -> None:
        if not self.shard:
            return
        file_name = f".shard-{len(self.files):05d}.tmp"
        save_file(self.shard, str(self.out_dir / file_name), metadata={"format": "pt"})
        self.files.append((file_name, list(self.shard)))
        self.shard, self.shard_bytes = {}, 0

    def finish(self) -> list[str]:
        """Write the last shard, give shards their final HF names and write the index if there are several."""
        self.flush()
        count = len(self.files)
        names = [SINGLE_SHARD_NAME] if count == 1 else [
            f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        weight_map = {}
        for (tmp_name, tensor_names), final_name in zip(self.files, names):
            os.replace(self.out_dir / tmp_name, self.out_dir / final_name)
            weight_map.update({tensor_name: final_name for tensor_name in tensor_names})
        if count > 1:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
            (self.out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True))
        return names


def export_model(model, tokenizer, out_dir: Path, validation_prompt: str, max_shard_bytes: int,
                 dtype: Optional[torch.dtype] = None, max_new_tokens: int = 96) -> dict:
    """Stream the (possibly FSDP2-sharded) model into a safetensors export and validate it on rank 0.

    Every rank must call this: each gathers its shards of every tensor in the same order. Rank 0's outcome,
    success or error, is broadcast, so a failed write or validation stops every rank at once instead of
    leaving the others waiting at a barrier until the process-group timeout. `dtype` casts the export
    (FSDP mixed precision keeps fp32 master weights; users get the model's bf16).
    """
    is_main = dist_info().is_main
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    outcome: dict[str, Any] = {}
    writer: Optional[ShardWriter] = None  # rank 0 only
    if is_main:
        try:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            writer = ShardWriter(partial, max_shard_bytes)
        except OSError as err:
            outcome = {"error": f"{type(err).__name__}: {err}"}
    expected = {"num_params": 0, "dtype": None}
    tied = _tied_names(model)
    for name, numel, tensor_dtype, full in _gathered_tensors(model):
        expected["num_params"] += numel
        expected["dtype"] = expected["dtype"] or str(dtype or tensor_dtype)
        # Rank 0 keeps taking part in the gathers after an error, else the other ranks would hang in them.
        if full is not None and "error" not in outcome and name not in tied:
            try:
                writer.add(name, full if dtype is None else full.to(dtype))
            except Exception as err:  # noqa: BLE001 - re-raised on every rank below
                outcome = {"error": f"{type(err).__name__}: {err}"}
    if is_main and "error" not in outcome:
        outcome = _finish_on_main(model, tokenizer, writer, out_dir, validation_prompt, expected, max_new_tokens)
    if is_main and "error" in outcome:
        shutil.rmtree(partial, ignore_errors=True)  # a 70B partial export is 140 GB of disk
    outcome = broadcast_object(outcome)
    if "error" in outcome:
        raise ExportError(f"export to {out_dir} failed: {outcome['error']}")
    return {"path": str(out_dir), **outcome["report"]}


def _gathered_tensors(model) -> Iterator[tuple[str, int, torch.dtype, Optional[torch.Tensor]]]:
    """(name, numel, dtype, full tensor on CPU on rank 0 / None elsewhere) per state-dict entry, one at a time.

    DTensor.full_tensor() is a collective: every rank runs this loop over the same names in the same order.
    """
    from torch.distributed.tensor import DTensor

    is_main = dist_info().is_main
    state_dict = model.state_dict()  # DTensor shards under FSDP2: no copy, nothing gathered yet
    for name, tensor in tqdm(state_dict.items(), desc="export", disable=not is_main, leave=False):
        if isinstance(tensor, DTensor):
            tensor = _to_collective_device(tensor).full_tensor()
        # Non-main ranks drop their gathered copy at once; rank 0 keeps a CPU copy until its shard is written.
        yield name, tensor.numel(), tensor.dtype, tensor.detach().to("cpu") if is_main else None


def _to_collective_device(tensor):
    # With FSDP CPU offload the shards live on CPU, but NCCL only moves GPU memory (untested here: no GPU).
    if tensor.device.type == "cpu" and torch.distributed.get_backend() == "nccl":
        return tensor.to(torch.device("cuda", torch.cuda.current_device()))
    return tensor


def _tied_names(model) -> set[str]:
    # A tied lm_head is the embedding: save_pretrained stores it once, and so do we.
    return set(getattr(model, "all_tied_weights_keys", {}) or {})


def _finish_on_main(model, tokenizer, writer: ShardWriter, out_dir: Path, prompt: str, expected: dict,
                    max_new_tokens: int) -> dict:
    """Shards, config, tokenizer, validation, hash, then the rename that makes model/ appear whole."""
    try:
        files = writer.finish()
        _save_metadata(model, tokenizer, writer.out_dir)
        report = validate_export(writer.out_dir, prompt, expected, max_new_tokens)
        report.update(num_shards=len(files), max_shard_bytes=writer.max_shard_bytes,
                      model_bytes=writer.total_bytes, peak_held_bytes=writer.peak_held_bytes,
                      sha256=sha256_tree(writer.out_dir), validated=True)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(writer.out_dir, out_dir)
        return {"report": report}
    except Exception as err:  # noqa: BLE001 - re-raised on every rank by the caller
        return {"error": f"{type(err).__name__}: {err}"}


def _save_metadata(model, tokenizer, out_dir: Path) -> None:
    model.config.use_cache = True  # inference default for users of the export
    model.generation_config = generation_config(tokenizer)
    model.config.save_pretrained(str(out_dir))
    model.generation_config.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def validate_export(out_dir: Path, prompt: str, expected: dict[str, Any], max_new_tokens: int) -> dict[str, Any]:
    model, loading = AutoModelForCausalLM.from_pretrained(str(out_dir), dtype="auto", device_map="cpu",
                                                          output_loading_info=True)
    # A weight the loader did not find is initialised at random: the parameter count would still match.
    if loading["missing_keys"] or loading["unexpected_keys"]:
        raise ExportError(f"{out_dir}: the saved names do not match the model's: missing "
                          f"{sorted(loading['missing_keys'])[:5]}, unexpected {sorted(loading['unexpected_keys'])[:5]}")
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
            "stops_on": tokenizer.convert_ids_to_tokens(reply_ids[-1])}  # 3.1 may also stop on <|eom_id|>


@torch.no_grad()
def generate_reply(model, tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    """Greedy reply token ids (including the stop token, if any) to one user message."""
    input_ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    output = model.generate(input_ids, max_new_tokens=max_new_tokens, do_sample=False)
    return output[0, input_ids.shape[1]:].tolist()
